// The content-addressed blob store's boundary.
import type { Readable } from "node:stream";
import type { Digest } from "../util/index.js";

export interface BlobInfo {
  digest: Digest;
  size: number;
}

export interface ContentStore {
  /** Directory that holds the store (`<root>/content`). */
  readonly root: string;
  has(digest: Digest): Promise<boolean>;
  info(digest: Digest): Promise<BlobInfo | undefined>;
  /** Absolute path of a committed blob (it may not exist). */
  blobPath(digest: Digest): string;
  /**
   * Streams `source` into the store: temp file → digest verified (when `expected` is given) →
   * fsync → rename. Concurrent ingests of the same expected digest share one write.
   */
  ingest(signal: AbortSignal, source: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, expected?: { digest?: Digest; size?: number }): Promise<BlobInfo>;
  /** Stores a small in-memory blob (manifests, configs). */
  put(signal: AbortSignal, data: Uint8Array | string): Promise<BlobInfo>;
  read(digest: Digest): Promise<Buffer>;
  readJSON<T>(digest: Digest): Promise<T>;
  createReadStream(digest: Digest): Readable;
  delete(digest: Digest): Promise<void>;
  list(): AsyncIterable<BlobInfo>;
}
