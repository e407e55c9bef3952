// A lossless tar scanner: walks a tar stream header by header and hands back the raw bytes it
// consumed, with the entry's attributes decoded as Go's archive/tar reports them (PAX and GNU
// long names applied). Used by the eStargz writer, which must reproduce the input tar exactly.
import type { ByteSource } from "./stream.js";

export const BLOCK = 512;

export interface ScannedHeader {
  typeflag: number;
  name: string;
  linkname: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** Seconds and nanoseconds. */
  mtimeSec: number;
  mtimeNsec: number;
  devmajor: number;
  devminor: number;
  xattrs: Map<string, Buffer>;
}

/** Pulls exact byte counts from a chunked source. */
export class ByteReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(source: ByteSource) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<boolean> {
    while (this.buf.length < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else {
        const c = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
        this.buf = this.buf.length === 0 ? c : Buffer.concat([this.buf, c]);
      }
    }
    return this.buf.length >= n;
  }

  /** Exactly `n` bytes, or undefined at a clean end of input; throws on a short read. */
  async read(n: number): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) {
      if (this.buf.length === 0) return undefined;
      throw new Error(`tar: unexpected end of input (wanted ${n} bytes, got ${this.buf.length})`);
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Up to `max` bytes (at least one), or undefined at the end of input. */
  async readSome(max: number): Promise<Buffer | undefined> {
    if (this.buf.length === 0 && !(await this.fill(1))) return undefined;
    const n = Math.min(max, this.buf.length);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  async *rest(): AsyncGenerator<Buffer> {
    if (this.buf.length > 0) {
      const b = this.buf;
      this.buf = Buffer.alloc(0);
      yield b;
    }
    for (;;) {
      if (this.ended) return;
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        return;
      }
      yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    }
  }
}

function cstr(b: Buffer): Buffer {
  const i = b.indexOf(0);
  return i < 0 ? b : b.subarray(0, i);
}

function parseNumeric(b: Buffer): number {
  if (b.length > 0 && (b[0]! & 0x80) !== 0) {
    // base-256
    let v = 0;
    for (let i = 0; i < b.length; i++) v = v * 256 + (i === 0 ? b[i]! & 0x7f : b[i]!);
    return v;
  }
  const s = cstr(b).toString("latin1").trim();
  return s === "" ? 0 : parseInt(s, 8);
}

function isZero(b: Buffer): boolean {
  for (const c of b) if (c !== 0) return false;
  return true;
}

function checksumOK(blk: Buffer): boolean {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : blk[i]!;
    unsigned += c;
    signed += c >= 128 ? c - 256 : c;
  }
  const want = parseNumeric(blk.subarray(148, 156));
  return want === unsigned || want === signed;
}

function parsePAX(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < data.length) {
    const sp = data.indexOf(0x20, off);
    if (sp < 0) throw new Error("tar: invalid PAX record");
    const len = parseInt(data.subarray(off, sp).toString("latin1"), 10);
    if (!Number.isInteger(len) || len <= 0 || off + len > data.length) throw new Error("tar: invalid PAX record length");
    const rec = data.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new Error("tar: invalid PAX record");
    out.set(rec.subarray(0, eq).toString("utf8"), Buffer.from(rec.subarray(eq + 1)));
    off += len;
  }
  return out;
}

export const TypeReg = 0x30;
export const TypeRegA = 0x00;
const TypeXHeader = 0x78;
const TypeXGlobal = 0x67;
const TypeGNULongName = 0x4c;
const TypeGNULongLink = 0x4b;

export function headerOnly(typeflag: number): boolean {
  // link, symlink, char, block, dir, fifo carry no data whatever their size says.
  return typeflag >= 0x31 && typeflag <= 0x36;
}

export type ScanItem = { kind: "header"; raw: Buffer[]; header: ScannedHeader } | { kind: "end"; raw: Buffer[] };

/**
 * Reads the next entry's headers (extended headers included) and returns them with the raw
 * bytes; the entry's data (header.size bytes plus padding) is left in the reader for the caller.
 * At the end marker, returns the marker's bytes (the rest of the input is the caller's).
 */
export async function scanHeader(r: ByteReader): Promise<ScanItem> {
  const raw: Buffer[] = [];
  let pax: Map<string, Buffer> | undefined;
  let longName: Buffer | undefined;
  let longLink: Buffer | undefined;
  for (;;) {
    const blk = await r.read(BLOCK);
    if (!blk) {
      if (raw.length > 0) throw new Error("tar: unexpected end of input after an extended header");
      return { kind: "end", raw };
    }
    raw.push(blk);
    if (isZero(blk)) {
      const next = await r.read(BLOCK);
      if (next) raw.push(next);
      return { kind: "end", raw };
    }
    if (!checksumOK(blk)) throw new Error("tar: invalid header checksum");
    const typeflag = blk[156]!;
    const size = parseNumeric(blk.subarray(124, 136));
    if (typeflag === TypeXHeader || typeflag === TypeGNULongName || typeflag === TypeGNULongLink) {
      const padded = size + ((BLOCK - (size % BLOCK)) % BLOCK);
      const data = padded > 0 ? await r.read(padded) : Buffer.alloc(0);
      if (!data) throw new Error("tar: unexpected end of input in an extended header");
      raw.push(data);
      const body = data.subarray(0, size);
      if (typeflag === TypeXHeader) pax = new Map([...(pax ?? []), ...parsePAX(body)]);
      else if (typeflag === TypeGNULongName) longName = cstr(body);
      else longLink = cstr(body);
      continue;
    }
    if (typeflag === TypeXGlobal) throw new Error(`unsupported input tar entry "${String.fromCharCode(typeflag)}"`);
    let name = cstr(blk.subarray(0, 100));
    const magic = blk.subarray(257, 263).toString("latin1");
    if (magic === "ustar\0") {
      const prefix = cstr(blk.subarray(345, 500));
      if (prefix.length > 0) name = Buffer.concat([prefix, Buffer.from("/"), name]);
    }
    const h: ScannedHeader = {
      typeflag: typeflag === TypeRegA ? (name.at(-1) === 0x2f ? 0x35 : TypeReg) : typeflag,
      name: (longName ?? name).toString("utf8"),
      linkname: (longLink ?? cstr(blk.subarray(157, 257))).toString("utf8"),
      size,
      mode: parseNumeric(blk.subarray(100, 108)),
      uid: parseNumeric(blk.subarray(108, 116)),
      gid: parseNumeric(blk.subarray(116, 124)),
      uname: cstr(blk.subarray(265, 297)).toString("utf8"),
      gname: cstr(blk.subarray(297, 329)).toString("utf8"),
      mtimeSec: parseNumeric(blk.subarray(136, 148)),
      mtimeNsec: 0,
      devmajor: parseNumeric(blk.subarray(329, 337)),
      devminor: parseNumeric(blk.subarray(337, 345)),
      xattrs: new Map(),
    };
    if (pax) applyPAX(h, pax);
    if (headerOnly(h.typeflag)) h.size = 0;
    return { kind: "header", raw, header: h };
  }
}

function applyPAX(h: ScannedHeader, pax: Map<string, Buffer>): void {
  for (const [k, v] of pax) {
    const s = v.toString("utf8");
    switch (k) {
      case "path":
        h.name = s;
        break;
      case "linkpath":
        h.linkname = s;
        break;
      case "size":
        h.size = Number(s);
        break;
      case "uid":
        h.uid = Number(s);
        break;
      case "gid":
        h.gid = Number(s);
        break;
      case "uname":
        h.uname = s;
        break;
      case "gname":
        h.gname = s;
        break;
      case "mtime": {
        const [sec, frac = ""] = s.split(".");
        h.mtimeSec = Number(sec);
        h.mtimeNsec = Number((frac + "000000000").slice(0, 9));
        if (s.startsWith("-") && h.mtimeNsec > 0) h.mtimeNsec = -h.mtimeNsec;
        break;
      }
      default:
        if (k.startsWith("SCHILY.xattr.")) h.xattrs.set(k.slice("SCHILY.xattr.".length), v);
    }
  }
}
