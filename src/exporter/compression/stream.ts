// Small streaming helpers shared by the compressors: fixed-size blocks out of arbitrary chunks,
// an ordered window of asynchronous jobs, and running a Node Transform over an async iterable.
import { Readable, type Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createHash, type Hash } from "node:crypto";

export type ByteSource = AsyncIterable<Uint8Array>;

function asBuffer(c: Uint8Array | string): Buffer {
  if (typeof c === "string") return Buffer.from(c);
  return Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
}

/** Re-slices a stream into blocks of exactly `size` bytes (the last one may be shorter); each block is a fresh buffer. */
export async function* blocks(source: ByteSource, size: number): AsyncGenerator<Buffer> {
  let cur = Buffer.allocUnsafe(size);
  let fill = 0;
  for await (const chunk of source) {
    let b = asBuffer(chunk);
    while (b.length > 0) {
      const n = Math.min(size - fill, b.length);
      b.copy(cur, fill, 0, n);
      fill += n;
      b = b.subarray(n);
      if (fill === size) {
        yield cur;
        cur = Buffer.allocUnsafe(size);
        fill = 0;
      }
    }
  }
  if (fill > 0) yield cur.subarray(0, fill);
}

/**
 * Like `blocks`, without copying: each block is the list of (views of) the input chunks that make
 * up exactly `size` bytes (the last block may be shorter).
 */
export async function* blockParts(source: ByteSource, size: number): AsyncGenerator<Buffer[]> {
  let parts: Buffer[] = [];
  let fill = 0;
  for await (const chunk of source) {
    let b = asBuffer(chunk);
    while (b.length > 0) {
      const n = Math.min(size - fill, b.length);
      parts.push(n === b.length ? b : b.subarray(0, n));
      fill += n;
      b = b.subarray(n);
      if (fill === size) {
        yield parts;
        parts = [];
        fill = 0;
      }
    }
  }
  if (fill > 0) yield parts;
}

/** True when the view covers its whole ArrayBuffer, so handing the buffer over loses nothing else. */
export function ownsMemory(b: Uint8Array): boolean {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && !(b.buffer instanceof SharedArrayBuffer);
}

/**
 * Keeps up to `window` jobs running while results are taken in submission order: `submit` waits
 * for room, `drain` yields what is finished. Jobs that fail after the consumer gave up are
 * swallowed (their error already surfaced, or nobody is listening).
 */
export class OrderedJobs<T> {
  private readonly queue: Promise<T>[] = [];

  constructor(private readonly window: number) {}

  get size(): number {
    return this.queue.length;
  }

  get full(): boolean {
    return this.queue.length >= this.window;
  }

  push(job: Promise<T>): void {
    job.catch(() => undefined);
    this.queue.push(job);
  }

  /** The oldest job's result. */
  async shift(): Promise<T> {
    const j = this.queue.shift();
    if (!j) throw new Error("OrderedJobs: nothing queued");
    return j;
  }
}

/** Runs a Node Transform stream over an async iterable, yielding its output with back-pressure. */
export async function* throughTransform(source: ByteSource, t: Transform): AsyncGenerator<Buffer> {
  const feeding = pipeline(Readable.from(source, { objectMode: false }), t);
  feeding.catch(() => undefined);
  let done = false;
  try {
    for await (const c of t) yield asBuffer(c as Buffer);
    done = true;
  } finally {
    if (!done) t.destroy();
  }
  await feeding;
}

/** Hashes (sha256) and counts the bytes passing through. */
export class Tap {
  readonly hash: Hash = createHash("sha256");
  size = 0;

  async *run(source: ByteSource): AsyncGenerator<Buffer> {
    for await (const c of source) {
      const b = asBuffer(c);
      this.hash.update(b);
      this.size += b.length;
      yield b;
    }
  }

  digest(): `sha256:${string}` {
    return `sha256:${this.hash.digest("hex")}`;
  }
}

/**
 * Pulls from `source` ahead of the consumer, holding at most about `maxBytes`, so the stages of a
 * pipeline (read, compress, write) overlap instead of taking turns. Stopping early stops the source.
 */
export async function* readAhead(source: ByteSource, maxBytes: number): AsyncGenerator<Buffer> {
  const it = source[Symbol.asyncIterator]();
  const queue: Buffer[] = [];
  let queued = 0;
  let done = false;
  let stopped = false;
  let failure: { err: unknown } | undefined;
  let wakeConsumer: (() => void) | undefined;
  let wakeProducer: (() => void) | undefined;
  const pump = (async () => {
    try {
      for (;;) {
        while (queued >= maxBytes && !stopped) await new Promise<void>((r) => (wakeProducer = r));
        if (stopped) return;
        const r = await it.next();
        if (r.done) return;
        const b = asBuffer(r.value);
        queue.push(b);
        queued += b.length;
        wakeConsumer?.();
        wakeConsumer = undefined;
      }
    } catch (err) {
      failure = { err };
    } finally {
      done = true;
      wakeConsumer?.();
      wakeConsumer = undefined;
    }
  })();
  try {
    for (;;) {
      const b = queue.shift();
      if (b) {
        queued -= b.length;
        wakeProducer?.();
        wakeProducer = undefined;
        yield b;
        continue;
      }
      if (failure) throw failure.err;
      if (done) return;
      await new Promise<void>((r) => (wakeConsumer = r));
    }
  } finally {
    stopped = true;
    wakeProducer?.();
    wakeProducer = undefined;
    await pump;
    if (!done || failure || queue.length > 0) await it.return?.(undefined);
  }
}
