// Turns a ref's layer chain into compressed blobs in the content store, concurrently. Layers that
// came with a blob (pulled base-image layers) are reused as they are unless force-compression
// asks for another compression; new layers are diffed and compressed once per compression kind,
// and what was made is remembered per ref (a kv bucket beside the ref's own blob column).
import type { ContentStore } from "../content/types.js";
import type { CacheManager, ImmutableRef, RefRecord } from "../cache/index.js";
import { writeDiff } from "../snapshot/index.js";
import { MediaType } from "../api/oci.js";
import { Flight, KilnError, mapLimit, type Digest } from "../util/index.js";
import { compressInto, compressionOfMediaType, decompressed, type CompressedBlob, type CompressionConfig } from "./compression/index.js";

export interface LayerExportOptions {
  compression: CompressionConfig;
  /** Clamp file times in new layers to this (seconds since the epoch): rewrite-timestamp. */
  rewriteTimestamp?: number;
}

export interface ExportedLayer extends CompressedBlob {
  /** The ref record the layer belongs to (for history: its description and creation time). */
  record: RefRecord;
}

/** kv bucket: `<ref id>/<compression>[@<epoch>]` → CompressedBlob JSON, and `<ref id>/made` when the ref's own blob is one of ours. */
export const blobsBucket = "exporter.blobs";

const flight = new Flight<CompressedBlob>();

/** Layers at once: diffs are I/O bound, compression keeps its own threads busy. */
const layerConcurrency = 4;

export async function layerBlobs(signal: AbortSignal, mgr: CacheManager, content: ContentStore, ref: ImmutableRef | undefined, opts: LayerExportOptions): Promise<ExportedLayer[]> {
  if (!ref) return [];
  const chain = ref.chain();
  return mapLimit(chain, layerConcurrency, async (rec) => {
    const layerRef = mgr.get(rec.id);
    try {
      const blob = await ensureBlob(signal, mgr, content, layerRef, opts);
      return { ...blob, record: rec };
    } finally {
      await layerRef.release();
    }
  });
}

function memoKey(id: string, opts: LayerExportOptions): string {
  return `${id}/${opts.compression.type}${opts.rewriteTimestamp !== undefined ? `@${opts.rewriteTimestamp}` : ""}`;
}

function readMemo(mgr: CacheManager, key: string): CompressedBlob | undefined {
  const raw = mgr.db.getKV(blobsBucket, key);
  if (!raw) return undefined;
  try {
    return JSON.parse(raw) as CompressedBlob;
  } catch {
    return undefined;
  }
}

async function ensureBlob(signal: AbortSignal, mgr: CacheManager, content: ContentStore, ref: ImmutableRef, opts: LayerExportOptions): Promise<CompressedBlob> {
  const key = memoKey(ref.id, opts);
  const memo = readMemo(mgr, key);
  if (memo && (await content.has(memo.digest))) return memo;
  const own = ref.blob();
  const original = own !== undefined && mgr.db.getKV(blobsBucket, `${ref.id}/made`) === undefined;
  if (original && own) {
    // A layer that arrived as a blob (a base-image layer): as it is, unless forced into another compression.
    const kind = compressionOfMediaType(own.mediaType);
    if (!opts.compression.force || (kind === opts.compression.type && opts.compression.type !== "estargz")) {
      // A lazy (imported) layer's blob may still be in the registry it came from.
      if (!(await content.has(own.digest))) await mgr.ensureBlob(signal, own, ref.description);
      return { digest: own.digest, size: own.size, diffId: own.diffId, mediaType: own.mediaType };
    }
  }
  return flight.run(key, async () => {
    const again = readMemo(mgr, key);
    if (again && (await content.has(again.digest))) return again;
    let blob: CompressedBlob;
    if (original && own) {
      if (!(await content.has(own.digest))) await mgr.ensureBlob(signal, own, ref.description);
      blob = await compressInto(signal, content, decompressed(content.createReadStream(own.digest), own.mediaType), opts.compression);
      if (opts.compression.type !== "estargz" && blob.diffId !== own.diffId) {
        throw new KilnError("KILN_EXPORTER", `recompressing ${own.digest}: its content is ${blob.diffId}, expected ${own.diffId}`);
      }
    } else {
      const diff = writeDiff(signal, mgr.snapshotter, ref.id, opts.rewriteTimestamp !== undefined ? { rewriteTimestamp: opts.rewriteTimestamp } : {});
      // A diff's chunks are fresh buffers nobody reuses: compressors may take them over.
      blob = await compressInto(signal, content, diff, opts.compression, { ownsChunks: true });
    }
    mgr.db.setKV(blobsBucket, key, JSON.stringify(blob));
    if (!own && opts.rewriteTimestamp === undefined) {
      mgr.db.setKV(blobsBucket, `${ref.id}/made`, "1");
      ref.setBlob({ digest: blob.digest, mediaType: blob.mediaType, size: blob.size, diffId: blob.diffId });
    }
    return blob;
  });
}

const toOCI: Record<string, string> = {
  [MediaType.ociLayer]: MediaType.ociLayer,
  [MediaType.dockerLayer]: MediaType.ociLayer,
  [MediaType.ociLayerGzip]: MediaType.ociLayerGzip,
  [MediaType.dockerLayerGzip]: MediaType.ociLayerGzip,
  [MediaType.ociLayerZstd]: MediaType.ociLayerZstd,
  "application/vnd.docker.image.rootfs.diff.tar.zstd": MediaType.ociLayerZstd,
  "application/vnd.docker.image.rootfs.foreign.diff.tar": "application/vnd.oci.image.layer.nondistributable.v1.tar",
  [MediaType.dockerLayerForeignGzip]: MediaType.ociLayerNondistGzip,
  "application/vnd.oci.image.layer.nondistributable.v1.tar": "application/vnd.oci.image.layer.nondistributable.v1.tar",
  [MediaType.ociLayerNondistGzip]: MediaType.ociLayerNondistGzip,
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
};

const toDocker: Record<string, string> = {
  [MediaType.ociLayer]: MediaType.dockerLayer,
  [MediaType.dockerLayer]: MediaType.dockerLayer,
  [MediaType.ociLayerGzip]: MediaType.dockerLayerGzip,
  [MediaType.dockerLayerGzip]: MediaType.dockerLayerGzip,
  "application/vnd.docker.image.rootfs.foreign.diff.tar": "application/vnd.docker.image.rootfs.foreign.diff.tar",
  [MediaType.dockerLayerForeignGzip]: MediaType.dockerLayerForeignGzip,
  "application/vnd.oci.image.layer.nondistributable.v1.tar": "application/vnd.docker.image.rootfs.foreign.diff.tar",
  [MediaType.ociLayerNondistGzip]: MediaType.dockerLayerForeignGzip,
  [MediaType.ociLayerZstd]: "application/vnd.docker.image.rootfs.diff.tar.zstd",
  "application/vnd.docker.image.rootfs.diff.tar.zstd": "application/vnd.docker.image.rootfs.diff.tar.zstd",
};

/** Maps a layer media type to its OCI or Docker spelling, keeping the compression (BuildKit's table). */
export function layerMediaType(mt: string, oci: boolean): string {
  return (oci ? toOCI : toDocker)[mt] ?? mt;
}

export type { Digest };
