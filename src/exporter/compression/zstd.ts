// zstd that uses every core and stays streaming: the input is cut into fixed 2 MiB blocks, each
// compressed as an independent zstd frame by a small pool of worker threads (zstd-napi's one-shot
// compressor), and the frames are written in order. Concatenated frames are one valid zstd stream
// (every decoder reads them back to back). The bytes depend only on the input, the level and the
// block size, so blobs are reproducible on any machine.
//
// Why not zstd's own multi-threading: fed by a stream in 128 KiB pieces it measured 3–10× slower
// than single-threaded here; and single-threaded zstd on the main thread would stall everything
// else an export does there (reading the diff, digests, writes).
import os from "node:os";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { Transform } from "node:stream";
import { blockParts, OrderedJobs, ownsMemory, throughTransform, type ByteSource } from "./stream.js";

export const zstdBlockSize = 2 << 20;

interface ZstdModule {
  DecompressStream: new () => Transform;
}

const require = createRequire(import.meta.url);
let loaded: ZstdModule | undefined;
function zstd(): ZstdModule {
  // Loaded on first use: the native addon costs start-up time every other build would pay.
  loaded ??= require("zstd-napi") as ZstdModule;
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

// The worker is plain CommonJS evaluated from a string, so the bundled CLI needs no extra file.
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads");
const zstd = require(workerData.zstdPath);
const compressors = new Map();
parentPort.on("message", (m) => {
  try {
    let c = compressors.get(m.level);
    if (!c) {
      c = new zstd.Compressor();
      c.setParameters({ compressionLevel: m.level, contentSizeFlag: true });
      compressors.set(m.level, c);
    }
    const data = m.parts.length === 1 ? m.parts[0] : Buffer.concat(m.parts);
    const out = c.compress(data);
    // Hand the result over without a copy when it owns its memory.
    const own = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? out : new Uint8Array(out);
    parentPort.postMessage({ id: m.id, out: own }, [own.buffer]);
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String(err && err.stack || err) });
  }
});
`;

interface Job {
  resolve(b: Buffer): void;
  reject(e: Error): void;
}

class ZstdPool {
  private readonly workers: Worker[] = [];
  private readonly jobs = new Map<number, Job>();
  private readonly load = new Map<Worker, number>();
  private nextId = 0;

  constructor(private readonly size: number) {}

  private spawn(): Worker {
    const w = new Worker(workerSource, { eval: true, workerData: { zstdPath: require.resolve("zstd-napi") } });
    w.on("message", (m: { id: number; out?: Uint8Array; error?: string }) => {
      const job = this.jobs.get(m.id);
      this.jobs.delete(m.id);
      const left = (this.load.get(w) ?? 1) - 1;
      this.load.set(w, left);
      if (left === 0) w.unref();
      if (!job) return;
      if (m.error !== undefined || !m.out) job.reject(new Error(`zstd: ${m.error ?? "no output"}`));
      else job.resolve(Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength));
    });
    const fail = (err: Error) => {
      // A dead worker fails everything in flight; the next job gets a fresh one.
      const i = this.workers.indexOf(w);
      if (i >= 0) this.workers.splice(i, 1);
      this.load.delete(w);
      for (const [id, job] of this.jobs) {
        this.jobs.delete(id);
        job.reject(err);
      }
    };
    w.on("error", fail);
    w.on("exit", (code) => (code !== 0 ? fail(new Error(`zstd worker exited with ${code}`)) : undefined));
    // Idle workers must not keep the process alive; busy ones must (see compress). After the
    // listeners, which would re-ref it.
    w.unref();
    this.workers.push(w);
    this.load.set(w, 0);
    return w;
  }

  /**
   * Compresses the concatenation of `parts` as one frame. With `transfer`, parts that own their
   * memory are moved to the worker (the caller must not touch them again); the rest are copied.
   */
  compress(parts: Buffer[], level: number, transfer: boolean): Promise<Buffer> {
    let w = this.workers.find((x) => (this.load.get(x) ?? 0) === 0);
    if (!w && this.workers.length < this.size) w = this.spawn();
    w ??= this.workers.reduce((a, b) => ((this.load.get(a) ?? 0) <= (this.load.get(b) ?? 0) ? a : b));
    const id = this.nextId++;
    const sent = parts.map((p) => (transfer && ownsMemory(p) ? p : new Uint8Array(p)));
    const moved = sent.map((p) => p.buffer as ArrayBuffer);
    return new Promise<Buffer>((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      const load = (this.load.get(w) ?? 0) + 1;
      this.load.set(w, load);
      if (load === 1) w.ref();
      w.postMessage({ id, level, parts: sent }, moved);
    });
  }
}

let pool: ZstdPool | undefined;

export interface ZstdOptions {
  blockSize?: number;
  concurrency?: number;
  /**
   * The source's chunks are not used again once yielded (fresh buffers per chunk): move them to
   * the workers instead of copying them.
   */
  transferChunks?: boolean;
}

export async function* zstdCompress(source: ByteSource, level: number | undefined, opts: ZstdOptions = {}): AsyncGenerator<Buffer> {
  pool ??= new ZstdPool(Math.max(1, os.availableParallelism()));
  const lvl = zstdLevel(level);
  const jobs = new OrderedJobs<Buffer>(opts.concurrency ?? os.availableParallelism() + 1);
  let any = false;
  for await (const block of blockParts(source, opts.blockSize ?? zstdBlockSize)) {
    any = true;
    jobs.push(pool.compress(block, lvl, opts.transferChunks === true));
    while (jobs.full) yield await jobs.shift();
  }
  // An empty input is still one (empty) frame.
  if (!any) jobs.push(pool.compress([], lvl, false));
  while (jobs.size > 0) yield await jobs.shift();
}

export function zstdDecompress(source: ByteSource): AsyncGenerator<Buffer> {
  const { DecompressStream } = zstd();
  return throughTransform(source, new DecompressStream());
}
