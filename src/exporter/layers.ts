// Turns a ref's layer chain into compressed blobs in the content store: base-image layers keep the
// blob they were pulled as; new layers are diffed, compressed once and remembered on the ref.
import { createGzip } from "node:zlib";
import { createHash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ContentStore } from "../content/types.js";
import type { CacheManager, ImmutableRef, LayerBlob } from "../cache/index.js";
import { writeDiff } from "../snapshot/index.js";
import { MediaType } from "../api/oci.js";
import type { Digest } from "../util/index.js";

export interface LayerExportOptions {
  compression: "gzip" | "uncompressed";
  compressionLevel?: number;
}

/** Hashes bytes passing through. */
class HashingPassThrough extends Transform {
  readonly hash = createHash("sha256");
  size = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }
}

export async function layerBlobs(signal: AbortSignal, mgr: CacheManager, content: ContentStore, ref: ImmutableRef | undefined, opts: LayerExportOptions): Promise<LayerBlob[]> {
  if (!ref) return [];
  const chain = ref.chain();
  const out: LayerBlob[] = [];
  for (const rec of chain) {
    const layerRef = mgr.get(rec.id);
    try {
      out.push(await ensureBlob(signal, mgr, content, layerRef, opts));
    } finally {
      await layerRef.release();
    }
  }
  return out;
}

async function ensureBlob(signal: AbortSignal, mgr: CacheManager, content: ContentStore, ref: ImmutableRef, opts: LayerExportOptions): Promise<LayerBlob> {
  const existing = ref.blob();
  if (existing && (await content.has(existing.digest))) return existing;
  const diff = writeDiff(signal, mgr.snapshotter, ref.id);
  const uncompressed = new HashingPassThrough();
  let info: { digest: Digest; size: number } | undefined;
  const sink = async (source: AsyncIterable<Uint8Array>) => {
    info = await content.ingest(signal, source);
  };
  if (opts.compression === "gzip") {
    await pipeline(diff, uncompressed, createGzip({ level: opts.compressionLevel ?? 6 }), sink, { signal });
  } else {
    await pipeline(diff, uncompressed, sink, { signal });
  }
  const diffId = `sha256:${uncompressed.hash.digest("hex")}` as Digest;
  const blob: LayerBlob = {
    digest: info!.digest,
    size: info!.size,
    diffId,
    mediaType: opts.compression === "gzip" ? MediaType.ociLayerGzip : MediaType.ociLayer,
  };
  ref.setBlob(blob);
  return blob;
}

/** Maps a layer media type to its OCI or Docker spelling, keeping the compression. */
export function layerMediaType(mt: string, oci: boolean): string {
  const gz = mt.endsWith("gzip");
  const zst = mt.endsWith("zstd");
  if (oci) return zst ? MediaType.ociLayerZstd : gz ? MediaType.ociLayerGzip : MediaType.ociLayer;
  return zst ? MediaType.ociLayerZstd : gz ? MediaType.dockerLayerGzip : MediaType.dockerLayer;
}
