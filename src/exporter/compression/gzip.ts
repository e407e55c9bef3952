// gzip that uses every core and stays streaming: the input is cut into fixed blocks, each block is
// deflated on libuv's thread pool (zlib's asynchronous API) primed with the previous block's last
// 32 KiB as its dictionary and ended with a sync flush, and the results are concatenated in order.
// The output is one ordinary gzip member (any gunzip reads it) whose bytes depend only on the
// input, the level and the block size, so it is reproducible whatever the machine's core count.
import zlib from "node:zlib";
import os from "node:os";
import { blocks, OrderedJobs, type ByteSource } from "./stream.js";

export const defaultGzipBlockSize = 1 << 20;
const windowBytes = 32 << 10;

export interface GzipOptions {
  /** -1 (default, which is 6) or 0–9. */
  level?: number;
  blockSize?: number;
  /** Blocks being compressed at once; default one per core plus one. */
  concurrency?: number;
}

/** The 10-byte header Go's compress/gzip writes: no name, mtime 0, OS unknown. */
export function gzipHeader(level: number): Buffer {
  // XFL: 2 = best compression, 4 = fastest, as Go sets it.
  const xfl = level === 9 ? 2 : level === 1 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff]);
}

export function gzipTrailer(crc: number, size: number): Buffer {
  const t = Buffer.alloc(8);
  t.writeUInt32LE(crc >>> 0, 0);
  t.writeUInt32LE(size % 2 ** 32, 4);
  return t;
}

export function normalizeGzipLevel(level: number | undefined): number {
  return level === undefined || level === -1 ? 6 : level;
}

function deflateRaw(data: Buffer, opts: zlib.ZlibOptions): Promise<Buffer> {
  // Output room for the whole block at once (deflate's worst case is the input plus 5 bytes per
  // 16 KiB): with the default 16 KiB each piece is a round trip between the thread pool and the
  // main thread, which a busy main thread (or machine) makes slow.
  const chunkSize = Math.max(zlib.constants.Z_MIN_CHUNK, data.length + (data.length >> 10) + 1024);
  return new Promise((resolve, reject) => zlib.deflateRaw(data, { chunkSize, ...opts }, (err, out) => (err ? reject(err) : resolve(out))));
}

const sampleSize = 16 << 10;
const sampleCount = 4;

/**
 * True when samples spread over the block do not compress even at level 1 (random or already
 * compressed data). zlib would end up storing such a block after a costly search for matches;
 * storing it directly gives the same size in a fraction of the time. The decision depends only on
 * the block's bytes, so output stays reproducible.
 */
async function incompressible(block: Buffer): Promise<boolean> {
  if (block.length < sampleSize * sampleCount * 2) return false;
  const step = Math.floor((block.length - sampleSize) / (sampleCount - 1));
  const samples = Buffer.concat(Array.from({ length: sampleCount }, (_, i) => block.subarray(i * step, i * step + sampleSize)));
  const out = await deflateRaw(samples, { level: 1 });
  return out.length >= samples.length * 0.99;
}

/** Compresses one block as raw deflate, continuing the stream after `dictionary`; ends byte-aligned and not final. */
async function deflateBlock(block: Buffer, dictionary: Buffer | undefined, level: number): Promise<Buffer> {
  const stored = level > 0 && (await incompressible(block));
  const opts: zlib.ZlibOptions = { level: stored ? 0 : level, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  if (dictionary && !stored) opts.dictionary = dictionary;
  return deflateRaw(block, opts);
}

/** A final, empty fixed-Huffman deflate block: closes a stream that ended on a sync flush. */
const finalEmptyBlock = Buffer.from([0x03, 0x00]);

export async function* gzipParallel(source: ByteSource, opts: GzipOptions = {}): AsyncGenerator<Buffer> {
  const level = normalizeGzipLevel(opts.level);
  const blockSize = opts.blockSize ?? defaultGzipBlockSize;
  const jobs = new OrderedJobs<Buffer>(opts.concurrency ?? os.availableParallelism() + 1);
  yield gzipHeader(level);
  let crc = 0;
  let size = 0;
  let tail: Buffer | undefined;
  for await (const block of blocks(source, blockSize)) {
    crc = zlib.crc32(block, crc);
    size += block.length;
    jobs.push(deflateBlock(block, tail, level));
    // A copy: the dictionary must not pin (or alias) the whole block.
    tail = Buffer.from(block.subarray(Math.max(0, block.length - windowBytes)));
    while (jobs.full) yield await jobs.shift();
  }
  while (jobs.size > 0) yield await jobs.shift();
  yield Buffer.concat([finalEmptyBlock, gzipTrailer(crc, size)]);
}

/** One complete gzip member of `data` (compressed on the thread pool). */
export async function gzipMember(data: Buffer, level: number): Promise<Buffer> {
  const body = await deflateRaw(data, { level });
  return Buffer.concat([gzipHeader(level), body, gzipTrailer(zlib.crc32(data), data.length)]);
}
