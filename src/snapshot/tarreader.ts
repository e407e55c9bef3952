// A streaming tar reader with Go archive/tar semantics that keeps names, link targets and PAX
// values as raw bytes (file names need not be UTF-8; `security.capability` xattrs are binary).
import { isHeaderOnlyType, TypeDir, TypeReg, TypeXHeader } from "./tarwriter.js";

export const TypeRegA = 0x00;
export const TypeCont = 0x37; // '7'
export const TypeXGlobalHeader = 0x67; // 'g'
export const TypeGNULongName = 0x4c; // 'L'
export const TypeGNULongLink = 0x4b; // 'K'
export const TypeGNUSparse = 0x53; // 'S'

export interface TarTime {
  sec: number;
  nsec: number;
}

export interface TarEntryHeader {
  typeflag: number;
  name: Buffer;
  linkname: Buffer;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: TarTime;
  atime: TarTime | undefined;
  devmajor: number;
  devminor: number;
  /** `SCHILY.xattr.*` records, key without the prefix, value as raw bytes. */
  xattrs: Map<string, Buffer>;
}

export interface TarEntry {
  header: TarEntryHeader;
  /** The entry's data; consume it (or not) before asking for the next entry. */
  body(): AsyncIterable<Buffer>;
}

export class TarFormatError extends Error {
  constructor(message: string) {
    super(`tar: ${message}`);
    this.name = "TarFormatError";
  }
}

/** Pulls exact byte counts out of a chunked async source. */
class ByteSource {
  private readonly it: AsyncIterator<Uint8Array>;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const r = await this.it.next();
    if (r.done) {
      this.ended = true;
      return false;
    }
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    if (b.length > 0) {
      this.chunks.push(b);
      this.buffered += b.length;
    }
    return true;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }

  /** Exactly n bytes; undefined at a clean end of input; throws when input ends part-way. */
  async read(n: number): Promise<Buffer | undefined> {
    while (this.buffered < n) {
      if (!(await this.pull())) {
        if (this.buffered === 0) return undefined;
        throw new TarFormatError("unexpected end of archive");
      }
    }
    return this.take(n);
  }

  /** Yields the next n bytes as they arrive. */
  async *stream(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0 && !(await this.pull())) throw new TarFormatError("unexpected end of archive");
      if (this.buffered === 0) continue;
      const k = Math.min(left, this.chunks[0]!.length);
      left -= k;
      yield this.take(k);
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.stream(n)) {
      // discarded
    }
  }

  /** Reads and drops everything left (trailing data still counts toward the layer's digest). */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (await this.pull()) {
      this.chunks = [];
      this.buffered = 0;
    }
  }
}

function cstring(b: Buffer): Buffer {
  const i = b.indexOf(0);
  return i < 0 ? b : b.subarray(0, i);
}

/** Go's parseNumeric: base-256 when the high bit is set, else octal padded by spaces/NULs. */
function parseNumeric(b: Buffer): number {
  if (b.length > 0 && (b[0]! & 0x80) !== 0) {
    const neg = (b[0]! & 0x40) !== 0;
    let x = 0n;
    for (let i = 0; i < b.length; i++) {
      let c = neg ? b[i]! ^ 0xff : b[i]!;
      if (i === 0) c &= 0x7f;
      x = (x << 8n) | BigInt(c);
    }
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new TarFormatError("numeric field out of range");
    return neg ? -Number(x) - 1 : Number(x);
  }
  let s = b.toString("latin1");
  s = s.replace(/^[ \0]+|[ \0]+$/g, "");
  s = cstring(Buffer.from(s, "latin1")).toString("latin1");
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarFormatError(`invalid octal field ${JSON.stringify(s)}`);
  return parseInt(s, 8);
}

function parsePaxTime(s: string): TarTime {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(s);
  if (!m) throw new TarFormatError(`invalid PAX time ${JSON.stringify(s)}`);
  const sec = Number(m[2]);
  const frac = (m[3] ?? "").padEnd(9, "0").slice(0, 9);
  const nsec = Number(frac);
  if (m[1] === "-") return nsec === 0 ? { sec: -sec, nsec: 0 } : { sec: -sec - 1, nsec: 1e9 - nsec };
  return { sec, nsec };
}

/** Parses "%d key=value\n" records; later records override earlier ones. */
function parsePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let rest = data;
  while (rest.length > 0) {
    const sp = rest.indexOf(0x20);
    if (sp < 0) throw new TarFormatError("invalid PAX record");
    const n = Number(rest.subarray(0, sp).toString("latin1"));
    if (!Number.isInteger(n) || n < 5 || n > rest.length || rest[n - 1] !== 0x0a) throw new TarFormatError("invalid PAX record");
    const rec = rest.subarray(sp + 1, n - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new TarFormatError("invalid PAX record");
    out.set(rec.subarray(0, eq).toString("utf8"), rec.subarray(eq + 1));
    rest = rest.subarray(n);
  }
  return out;
}

function checksumOK(blk: Buffer): boolean {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : blk[i]!;
    unsigned += c;
    signed += c >= 0x80 ? c - 256 : c;
  }
  let want: number;
  try {
    want = parseNumeric(blk.subarray(148, 156));
  } catch {
    return false;
  }
  return want === unsigned || want === signed;
}

function isZeroBlock(blk: Buffer): boolean {
  for (const c of blk) if (c !== 0) return false;
  return true;
}

const MAX_SPECIAL = 1 << 20;

/**
 * Yields the entries of a tar stream. PAX ('x') and GNU long-name ('L'/'K') headers are folded into
 * the entry they precede; global PAX headers are skipped (as containerd does). After the end
 * marker the rest of the input is read and dropped, so a hashing source sees every byte.
 */
export async function* readTar(source: AsyncIterable<Uint8Array>): AsyncGenerator<TarEntry> {
  const src = new ByteSource(source);
  let pax: Map<string, Buffer> | undefined;
  let longName: Buffer | undefined;
  let longLink: Buffer | undefined;
  let pendingBody = 0;
  for (;;) {
    if (pendingBody > 0) {
      await src.skip(pendingBody);
      pendingBody = 0;
    }
    const blk = await src.read(512);
    if (blk === undefined) break;
    if (isZeroBlock(blk)) {
      const next = await src.read(512);
      if (next !== undefined && !isZeroBlock(next)) throw new TarFormatError("invalid header after a zero block");
      break;
    }
    if (!checksumOK(blk)) throw new TarFormatError("invalid header checksum");

    const typeflag = blk[156]!;
    let name = cstring(blk.subarray(0, 100));
    const linkname = cstring(blk.subarray(157, 257));
    const magic = blk.subarray(257, 263).toString("latin1");
    const version = blk.subarray(263, 265).toString("latin1");
    let atime: TarTime | undefined;
    if (magic === "ustar\0") {
      const isStar = blk.subarray(508, 512).toString("latin1") === "tar\0";
      const prefix = cstring(blk.subarray(345, isStar ? 345 + 131 : 345 + 155));
      if (prefix.length > 0) name = Buffer.concat([prefix, Buffer.from("/"), name]);
    } else if (magic === "ustar " && version === " \0") {
      const a = blk.subarray(345, 357);
      if (!isZeroBlock(a)) atime = { sec: parseNumeric(a), nsec: 0 };
    }
    const size = parseNumeric(blk.subarray(124, 136));
    if (size < 0) throw new TarFormatError("negative size");
    const padded = size + ((512 - (size % 512)) % 512);

    if (typeflag === TypeXHeader || typeflag === TypeXGlobalHeader) {
      if (size > MAX_SPECIAL) throw new TarFormatError("PAX header too large");
      const data = size > 0 ? (await src.read(padded))!.subarray(0, size) : Buffer.alloc(0);
      if (typeflag === TypeXHeader) pax = parsePax(data);
      continue;
    }
    if (typeflag === TypeGNULongName || typeflag === TypeGNULongLink) {
      if (size > MAX_SPECIAL) throw new TarFormatError("GNU long name too large");
      const data = size > 0 ? cstring((await src.read(padded))!.subarray(0, size)) : Buffer.alloc(0);
      if (typeflag === TypeGNULongName) longName = data;
      else longLink = data;
      continue;
    }
    if (typeflag === TypeGNUSparse) throw new TarFormatError("sparse files are not supported");

    const header: TarEntryHeader = {
      typeflag,
      name,
      linkname,
      size,
      mode: parseNumeric(blk.subarray(100, 108)),
      uid: parseNumeric(blk.subarray(108, 116)),
      gid: parseNumeric(blk.subarray(116, 124)),
      uname: cstring(blk.subarray(265, 297)).toString("utf8"),
      gname: cstring(blk.subarray(297, 329)).toString("utf8"),
      mtime: { sec: parseNumeric(blk.subarray(136, 148)), nsec: 0 },
      atime,
      devmajor: parseNumeric(blk.subarray(329, 337)),
      devminor: parseNumeric(blk.subarray(337, 345)),
      xattrs: new Map(),
    };
    if (pax) {
      for (const [k, v] of pax) {
        const s = () => v.toString("utf8");
        switch (k) {
          case "path":
            header.name = v;
            break;
          case "linkpath":
            header.linkname = v;
            break;
          case "uname":
            header.uname = s();
            break;
          case "gname":
            header.gname = s();
            break;
          case "uid":
          case "gid":
          case "size": {
            const n = Number(s());
            if (!Number.isSafeInteger(n) || n < 0) throw new TarFormatError(`invalid PAX ${k}`);
            header[k] = n;
            break;
          }
          case "mtime":
            header.mtime = parsePaxTime(s());
            break;
          case "atime":
            header.atime = parsePaxTime(s());
            break;
          default:
            if (k.startsWith("SCHILY.xattr.")) header.xattrs.set(k.slice("SCHILY.xattr.".length), v);
            else if (k.startsWith("GNU.sparse.")) throw new TarFormatError("sparse files are not supported");
        }
      }
      pax = undefined;
    }
    if (longName !== undefined) header.name = longName;
    if (longLink !== undefined) header.linkname = longLink;
    longName = longLink = undefined;
    if (header.typeflag === TypeRegA) header.typeflag = header.name.at(-1) === 0x2f ? TypeDir : TypeReg;

    // Go gives header-only types no data, whatever their size field says.
    const bodySize = isHeaderOnlyType(header.typeflag) ? 0 : header.size;
    let remaining = bodySize;
    yield {
      header,
      body: () =>
        (async function* () {
          for await (const c of src.stream(remaining)) {
            remaining -= c.length;
            yield c;
          }
        })(),
    };
    pendingBody = remaining + ((512 - (bodySize % 512)) % 512);
  }
  await src.drain();
}
