// Layer compression as BuildKit's `compression` exporter attribute offers it: gzip (default),
// estargz, zstd and uncompressed; compressing streams straight into the content store.
import { createGunzip } from "node:zlib";
import type { ContentStore } from "../../content/types.js";
import { MediaType } from "../../api/oci.js";
import { KilnError, type Digest } from "../../util/index.js";
import { gzipParallel } from "./gzip.js";
import { EstargzWriter, StoreUncompressedSizeAnnotation, TOCJSONDigestAnnotation } from "./estargz.js";
import { zstdCompress, zstdDecompress } from "./zstd.js";
import { Tap, readAhead, throughTransform, type ByteSource } from "./stream.js";

const stageBuffer = 4 << 20;

export type CompressionType = "uncompressed" | "gzip" | "estargz" | "zstd";
export const compressionTypes: readonly CompressionType[] = ["uncompressed", "gzip", "estargz", "zstd"];

export interface CompressionConfig {
  type: CompressionType;
  /** Unset means the type's default. */
  level?: number;
  /** Recompress blobs that already exist in another compression (base-image layers). */
  force: boolean;
}

export function parseCompressionType(s: string): CompressionType {
  if ((compressionTypes as readonly string[]).includes(s)) return s as CompressionType;
  throw new KilnError("KILN_EXPORTER_ATTR", `unsupported compression type ${s}`, { hint: `compression must be one of: ${compressionTypes.join(", ")}` });
}

/** Checks `compression-level` for a type; returns the level (undefined for the default). */
export function parseCompressionLevel(type: CompressionType, raw: string | undefined): number | undefined {
  if (raw === undefined || raw === "") return undefined;
  if (!/^-?\d+$/.test(raw.trim())) throw new KilnError("KILN_EXPORTER_ATTR", `non-int value ${raw} specified for compression-level`);
  const n = Number(raw.trim());
  const [min, max] = type === "zstd" ? [-1, 22] : [-1, 9];
  if (type !== "uncompressed" && (n < min || n > max)) {
    throw new KilnError("KILN_EXPORTER_ATTR", `invalid compression-level ${n} for ${type}: expected ${min === -1 ? "-1 (default) or " : ""}0 to ${max}`);
  }
  return n;
}

/** The OCI media type a new layer of this compression gets. */
export function layerMediaTypeFor(type: CompressionType): string {
  switch (type) {
    case "uncompressed":
      return MediaType.ociLayer;
    case "zstd":
      return MediaType.ociLayerZstd;
    default:
      return MediaType.ociLayerGzip;
  }
}

/** zstd and estargz layers only exist with OCI media types. */
export function onlySupportsOCITypes(type: CompressionType): boolean {
  return type === "zstd" || type === "estargz";
}

/** gzip/zstd/uncompressed from a layer media type (estargz looks like gzip); undefined when not a layer. */
export function compressionOfMediaType(mt: string): CompressionType | undefined {
  if (mt.endsWith("+gzip") || mt.endsWith(".gzip")) return "gzip";
  if (mt.endsWith("+zstd") || mt.endsWith(".zstd")) return "zstd";
  if (mt.endsWith(".tar") || mt === MediaType.dockerLayer || mt === "application/vnd.docker.image.rootfs.foreign.diff.tar") return "uncompressed";
  return undefined;
}

export interface CompressedBlob {
  digest: Digest;
  size: number;
  diffId: Digest;
  mediaType: string;
  /** Layer annotations that belong in the manifest (estargz's TOC digest and uncompressed size). */
  annotations?: Record<string, string>;
}

/** Compresses an uncompressed layer tar into the content store (temp → verify → fsync → rename). */
export async function compressInto(
  signal: AbortSignal,
  content: ContentStore,
  input: ByteSource,
  cfg: Pick<CompressionConfig, "type" | "level">,
  opts: { ownsChunks?: boolean } = {},
): Promise<CompressedBlob> {
  const tap = new Tap();
  // Reading the layer, compressing it and writing the blob overlap, each with a few MiB in hand.
  const tar = readAhead(input, stageBuffer);
  let estargz: EstargzWriter | undefined;
  let out: AsyncIterable<Buffer>;
  switch (cfg.type) {
    case "gzip":
      out = gzipParallel(tap.run(tar), { level: cfg.level });
      break;
    case "zstd":
      out = zstdCompress(tap.run(tar), cfg.level, { transferChunks: opts.ownsChunks === true });
      break;
    case "estargz":
      estargz = new EstargzWriter({ level: cfg.level });
      out = estargz.run(tar);
      break;
    default:
      out = tap.run(tar);
  }
  const info = await content.ingest(signal, readAhead(out, stageBuffer));
  const blob: CompressedBlob = { digest: info.digest, size: info.size, diffId: tap.digest() as Digest, mediaType: layerMediaTypeFor(cfg.type) };
  if (estargz) {
    const r = estargz.result;
    if (!r) throw new Error("estargz: writer did not finish");
    blob.diffId = r.diffId as Digest;
    blob.annotations = { [TOCJSONDigestAnnotation]: r.tocDigest, [StoreUncompressedSizeAnnotation]: String(r.uncompressedSize) };
  }
  return blob;
}

/** The uncompressed tar of a stored layer blob. */
export function decompressed(source: ByteSource, mediaType: string): AsyncIterable<Buffer> {
  switch (compressionOfMediaType(mediaType)) {
    case "gzip":
      return throughTransform(source, createGunzip());
    case "zstd":
      return zstdDecompress(source);
    case "uncompressed":
      return new Tap().run(source);
    default:
      throw new KilnError("KILN_EXPORTER", `cannot decompress a layer of media type ${mediaType}`);
  }
}

export { gzipParallel, gzipMember, defaultGzipBlockSize } from "./gzip.js";
export { zstdCompress, zstdDecompress, zstdLevel } from "./zstd.js";
export { EstargzWriter, readTOC, parseFooter, footerBytes, TOCJSONDigestAnnotation, StoreUncompressedSizeAnnotation, TOCTarName, type JTOC, type TOCEntry } from "./estargz.js";
export { blocks, readAhead, Tap, type ByteSource } from "./stream.js";
