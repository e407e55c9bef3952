// LocalContentStore: the on-disk CAS under `<root>/content` (blobs/sha256/<hex>, ingest/ for
// in-progress writes). A blob only appears under blobs/ after its digest was verified and fsynced.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CanceledError, KilnError, digestHex, isAbortError, isDigest, throwIfAborted, type Digest } from "../util/index.js";
import { SharedFlight } from "./sharedflight.js";
import type { BlobInfo, ContentStore } from "./types.js";

type Source = AsyncIterable<Uint8Array> | NodeJS.ReadableStream;

export interface IngestExpectation {
  digest?: Digest;
  size?: number;
}

export class LocalContentStore implements ContentStore {
  readonly root: string;
  private readonly blobsDir: string;
  private readonly ingestDir: string;
  private readonly writes = new SharedFlight<BlobInfo>();
  private dirsReady: Promise<void> | undefined;

  /** `root` is the engine's root; the store lives in `<root>/content`. */
  constructor(root: string) {
    this.root = path.join(root, "content");
    this.blobsDir = path.join(this.root, "blobs", "sha256");
    this.ingestDir = path.join(this.root, "ingest");
  }

  blobPath(digest: Digest): string {
    return path.join(this.blobsDir, digestHex(checkDigest(digest)));
  }

  async has(digest: Digest): Promise<boolean> {
    return (await this.info(digest)) !== undefined;
  }

  async info(digest: Digest): Promise<BlobInfo | undefined> {
    try {
      const st = await stat(this.blobPath(digest));
      return st.isFile() ? { digest, size: st.size } : undefined;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async ingest(signal: AbortSignal, source: Source, expected: IngestExpectation = {}): Promise<BlobInfo> {
    throwIfAborted(signal);
    const want = expected.digest;
    if (want === undefined) return this.write(signal, source, expected);
    checkDigest(want);
    const existing = await this.info(want);
    if (existing) {
      discard(source);
      return checkSize(existing, expected.size);
    }
    let used = false;
    try {
      return await this.writes.run(signal, want, async (shared) => {
        used = true;
        // Between our check and this flight starting, another flight may have committed it.
        const now = await this.info(want);
        if (now) {
          discard(source);
          return checkSize(now, expected.size);
        }
        return this.write(shared, source, expected);
      });
    } finally {
      // A caller that joined someone else's write never reads its own source.
      if (!used) discard(source);
    }
  }

  async put(signal: AbortSignal, data: Uint8Array | string): Promise<BlobInfo> {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    const digest: Digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    return this.ingest(signal, Readable.from([bytes]), { digest, size: bytes.length });
  }

  async read(digest: Digest): Promise<Buffer> {
    try {
      return await readFile(this.blobPath(digest));
    } catch (err) {
      if (isNotFound(err)) throw new KilnError("KILN_CONTENT_NOT_FOUND", `content ${digest}: not found in ${this.root}`, { cause: err });
      throw err;
    }
  }

  async readJSON<T>(digest: Digest): Promise<T> {
    const data = await this.read(digest);
    try {
      return JSON.parse(data.toString("utf8")) as T;
    } catch (err) {
      throw new KilnError("KILN_CONTENT_INVALID", `content ${digest}: not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  }

  createReadStream(digest: Digest): Readable {
    return createReadStream(this.blobPath(digest));
  }

  /** Removes partial writes that processes which died left in the ingest directory. */
  async cleanupStale(isDead: (pid: number) => Promise<boolean>): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.ingestDir).catch(() => [] as string[])) {
      const pid = /^\d+-(\d+)-/.exec(name)?.[1];
      if (pid && !(await isDead(Number(pid)))) continue;
      await rm(path.join(this.ingestDir, name), { force: true });
      removed++;
    }
    return removed;
  }

  async delete(digest: Digest): Promise<void> {
    await rm(this.blobPath(digest), { force: true });
  }

  async *list(): AsyncIterable<BlobInfo> {
    let names: string[];
    try {
      names = await readdir(this.blobsDir);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    for (const name of names.sort()) {
      const digest = `sha256:${name}`;
      if (!isDigest(digest)) continue;
      const info = await this.info(digest);
      if (info) yield info;
    }
  }

  /**
   * Removes temp files that a crashed process left in ingest/. Only files older than `olderThanMs`
   * go, because another process sharing the root may be writing right now.
   */
  async pruneIngests(signal: AbortSignal, olderThanMs = 24 * 3600_000): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.ingestDir);
    } catch (err) {
      if (isNotFound(err)) return 0;
      throw err;
    }
    let removed = 0;
    const cutoff = Date.now() - olderThanMs;
    for (const name of names) {
      throwIfAborted(signal);
      const p = path.join(this.ingestDir, name);
      const st = await stat(p).catch(() => undefined);
      if (st && st.mtimeMs < cutoff) {
        await rm(p, { force: true });
        removed++;
      }
    }
    return removed;
  }

  private ensureDirs(): Promise<void> {
    this.dirsReady ??= (async () => {
      await mkdir(this.blobsDir, { recursive: true });
      await mkdir(this.ingestDir, { recursive: true });
    })();
    // A failed mkdir (e.g. EACCES) should be retried on the next call, not cached.
    this.dirsReady.catch(() => (this.dirsReady = undefined));
    return this.dirsReady;
  }

  private async write(signal: AbortSignal, source: Source, expected: IngestExpectation): Promise<BlobInfo> {
    await this.ensureDirs();
    // The pid in the name lets start-up recovery tell a crashed write from a running one.
    const tmp = path.join(this.ingestDir, `${Date.now()}-${process.pid}-${randomBytes(8).toString("hex")}`);
    let fh: FileHandle | undefined = await open(tmp, "wx", 0o644);
    let committed = false;
    try {
      const hash = createHash("sha256");
      let size = 0;
      const file = fh;
      const copied = pipeline(
        source,
        async (chunks: AsyncIterable<Uint8Array | string>) => {
          // Chunks are copied into one buffer written when full: a registry body arrives in
          // pieces of a few KiB, and a write (a thread-pool round trip) each is slow. Copied, not
          // kept: a source may reuse its buffer once the next chunk is asked for.
          const cap = expected.size !== undefined && expected.size > 0 ? Math.min(expected.size, WRITE_BATCH) : WRITE_BATCH;
          const buf = Buffer.allocUnsafe(cap);
          let used = 0;
          for await (const c of chunks) {
            const chunk = typeof c === "string" ? Buffer.from(c) : c;
            size += chunk.byteLength;
            // Stop early on an oversized stream rather than filling the disk first.
            if (expected.size !== undefined && size > expected.size) throw sizeError(expected, size, true);
            hash.update(chunk);
            for (let off = 0; off < chunk.byteLength; ) {
              const n = Math.min(chunk.byteLength - off, cap - used);
              buf.set(chunk.subarray(off, off + n), used);
              used += n;
              off += n;
              if (used === cap) {
                await writeAll(file, buf);
                used = 0;
              }
            }
          }
          if (used > 0) await writeAll(file, buf.subarray(0, used));
        },
        { signal },
      );
      await untilAborted(signal, copied);
      const digest: Digest = `sha256:${hash.digest("hex")}`;
      if (expected.size !== undefined && size !== expected.size) throw sizeError(expected, size, false);
      if (expected.digest !== undefined && digest !== expected.digest) {
        throw new KilnError("KILN_DIGEST_MISMATCH", `content digest mismatch: got ${digest}, expected ${expected.digest} (${size} bytes)`);
      }
      await fh.sync();
      await fh.close();
      fh = undefined;
      throwIfAborted(signal);
      await rename(tmp, this.blobPath(digest));
      committed = true;
      await syncDir(this.blobsDir);
      return { digest, size };
    } catch (err) {
      if (signal.aborted && isAbortError(err)) throw new CanceledError(signal.reason);
      throw err;
    } finally {
      await fh?.close().catch(() => undefined);
      if (!committed) await rm(tmp, { force: true });
    }
  }
}

/**
 * Settles with `work`, or rejects as soon as `signal` aborts: a source whose destroy hangs (a
 * generator stuck in an await) must not keep the caller waiting.
 */
function untilAborted<T>(signal: AbortSignal, work: Promise<T>): Promise<T> {
  work.catch(() => undefined);
  if (signal.aborted) return Promise.reject(new CanceledError(signal.reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new CanceledError(signal.reason));
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

function checkDigest(d: string): Digest {
  if (!isDigest(d)) throw new KilnError("KILN_INVALID_DIGEST", `invalid digest ${JSON.stringify(d)}: want sha256:<64 hex digits>`);
  return d;
}

function checkSize(info: BlobInfo, size: number | undefined): BlobInfo {
  if (size !== undefined && info.size !== size) {
    throw new KilnError("KILN_DIGEST_MISMATCH", `content ${info.digest}: stored size ${info.size} differs from the expected ${size}`);
  }
  return info;
}

function sizeError(expected: IngestExpectation, got: number, early: boolean): KilnError {
  const what = expected.digest ? ` for ${expected.digest}` : "";
  return new KilnError("KILN_DIGEST_MISMATCH", `content size mismatch${what}: got ${early ? "more than " : ""}${early ? expected.size : got} bytes, expected ${expected.size}`);
}

/** Bytes gathered before one write. */
const WRITE_BATCH = 1 << 20;

async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.byteLength) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
    off += bytesWritten;
  }
}

/** Makes a rename durable: the new directory entry survives a power loss. */
async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, "r");
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** Releases a source nobody will read (an HTTP body would otherwise hold its socket). */
function discard(source: Source): void {
  const s = source as { destroy?: () => void };
  if (typeof s.destroy === "function") {
    s.destroy();
    return;
  }
  if (Symbol.asyncIterator in source) {
    const it = (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    void it.return?.()?.catch(() => undefined);
  }
}

function isNotFound(err: unknown): boolean {
  return (err as { code?: string }).code === "ENOENT";
}
