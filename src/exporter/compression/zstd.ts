// zstd through zstd-napi's streaming compressor with zstd's own worker threads. With at least one
// worker, zstd's output does not depend on the worker count, so blobs stay reproducible.
import os from "node:os";
import { createRequire } from "node:module";
import type { Transform } from "node:stream";
import { throughTransform, type ByteSource } from "./stream.js";

interface ZstdModule {
  CompressStream: new (p: { compressionLevel?: number; nbWorkers?: number; checksumFlag?: boolean }) => Transform;
  DecompressStream: new () => Transform;
}

let loaded: ZstdModule | undefined;
function zstd(): ZstdModule {
  // Loaded on first use: the native addon costs start-up time every other build would pay.
  loaded ??= createRequire(import.meta.url)("zstd-napi") as ZstdModule;
  return loaded;
}

/**
 * BuildKit maps `compression-level` onto klauspost/compress's four encoder levels; the same
 * buckets here, expressed as the zstd levels those encoders correspond to.
 */
export function zstdLevel(level: number | undefined): number {
  if (level === undefined || level < 0) return 3;
  if (level < 3) return 1;
  if (level < 7) return 3;
  if (level < 9) return 7;
  return 11;
}

export function zstdCompress(source: ByteSource, level: number | undefined): AsyncGenerator<Buffer> {
  const { CompressStream } = zstd();
  return throughTransform(source, new CompressStream({ compressionLevel: zstdLevel(level), nbWorkers: Math.max(1, os.availableParallelism()) }));
}

export function zstdDecompress(source: ByteSource): AsyncGenerator<Buffer> {
  const { DecompressStream } = zstd();
  return throughTransform(source, new DecompressStream());
}
