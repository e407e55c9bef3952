// fsutil's Packet in protobuf wire format, written by hand: a listing is one packet per entry,
// and the reflective encoder spent more on each than the walk that produced it. Fields in
// number order with proto3's defaults left out, as protobuf-es writes them (the test checks the
// bytes against it). Straight-line code on purpose: a CLI's short life runs it mostly
// unoptimised, where every temporary array and closure counts.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { fsutil } from "../api/index.js";

type PacketInit = MessageInitShape<typeof fsutil.PacketSchema>;
type StatInit = NonNullable<PacketInit["stat"]>;

/** Room for a varint's largest encoding (a negative int64). */
const maxVarint = 10;

/** Where stats are assembled before their length is known; grown when one does not fit. */
let scratch = Buffer.allocUnsafe(64 << 10);

function varint(buf: Buffer, pos: number, v: number): number {
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[pos++] = v;
  return pos;
}

/** int64 as protobuf writes it: two's complement, so a negative value takes ten bytes. */
function varint64(buf: Buffer, pos: number, v: bigint): number {
  if (v >= 0n && v <= 0xffffffffn) return varint(buf, pos, Number(v));
  // Two 32-bit halves in Numbers: BigInt arithmetic per seven bits was most of a stat's cost.
  const u = BigInt.asUintN(64, v);
  let lo = Number(u & 0xffffffffn);
  let hi = Number(u >> 32n);
  while (hi > 0) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  while (lo > 0x7f) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo >>>= 7;
  }
  buf[pos++] = lo;
  return pos;
}

function string(buf: Buffer, pos: number, s: string): number {
  const n = Buffer.byteLength(s);
  pos = varint(buf, pos, n);
  // All ASCII when the lengths agree: written byte for byte.
  return pos + buf.write(s, pos, n === s.length ? "latin1" : "utf8");
}

function bytes(buf: Buffer, pos: number, b: Uint8Array): number {
  pos = varint(buf, pos, b.length);
  buf.set(b, pos);
  return pos + b.length;
}

const int64 = (v: bigint | number | string | undefined): bigint => (typeof v === "bigint" ? v : v === undefined ? 0n : BigInt(v));

/** An upper bound of the stat's encoded size. */
function statBound(st: StatInit): number {
  let n = 9 * (2 + maxVarint) + 3 * (Buffer.byteLength(st.path ?? "") + Buffer.byteLength(st.linkname ?? ""));
  if (st.xattrs) for (const k in st.xattrs) n += 4 * maxVarint + 3 * k.length + st.xattrs[k]!.length;
  return n;
}

/** The stat's fields at `pos`; returns the end. */
function writeStat(buf: Buffer, pos: number, st: StatInit): number {
  if (st.path) {
    buf[pos++] = (1 << 3) | 2;
    pos = string(buf, pos, st.path);
  }
  if (st.mode) {
    buf[pos++] = 2 << 3;
    pos = varint(buf, pos, st.mode >>> 0);
  }
  if (st.uid) {
    buf[pos++] = 3 << 3;
    pos = varint(buf, pos, st.uid >>> 0);
  }
  if (st.gid) {
    buf[pos++] = 4 << 3;
    pos = varint(buf, pos, st.gid >>> 0);
  }
  const size = int64(st.size);
  if (size !== 0n) {
    buf[pos++] = 5 << 3;
    pos = varint64(buf, pos, size);
  }
  const modTime = int64(st.modTime);
  if (modTime !== 0n) {
    buf[pos++] = 6 << 3;
    pos = varint64(buf, pos, modTime);
  }
  if (st.linkname) {
    buf[pos++] = (7 << 3) | 2;
    pos = string(buf, pos, st.linkname);
  }
  const devmajor = int64(st.devmajor);
  if (devmajor !== 0n) {
    buf[pos++] = 8 << 3;
    pos = varint64(buf, pos, devmajor);
  }
  const devminor = int64(st.devminor);
  if (devminor !== 0n) {
    buf[pos++] = 9 << 3;
    pos = varint64(buf, pos, devminor);
  }
  if (st.xattrs) {
    for (const k in st.xattrs) {
      const v = st.xattrs[k]!;
      const keyLen = Buffer.byteLength(k);
      // The map entry: key (1) and value (2), behind its own tag and length.
      const entryLen = 1 + varintSize(keyLen) + keyLen + 1 + varintSize(v.length) + v.length;
      buf[pos++] = (10 << 3) | 2;
      pos = varint(buf, pos, entryLen);
      buf[pos++] = (1 << 3) | 2;
      pos = string(buf, pos, k);
      buf[pos++] = (2 << 3) | 2;
      pos = bytes(buf, pos, v);
    }
  }
  return pos;
}

function varintSize(v: number): number {
  let n = 1;
  while (v > 0x7f) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

export function encodePacket(p: PacketInit): Buffer {
  let statStart = 0;
  let statEnd = 0;
  if (p.stat) {
    const bound = statBound(p.stat);
    if (bound > scratch.length) scratch = Buffer.allocUnsafe(bound);
    statEnd = writeStat(scratch, 0, p.stat);
    statStart = 0;
  }
  const statLen = statEnd - statStart;
  const dataLen = p.data ? p.data.length : 0;
  const out = Buffer.allocUnsafe(3 * (1 + maxVarint) + (p.stat ? 1 + maxVarint + statLen : 0) + (dataLen > 0 ? 1 + maxVarint + dataLen : 0));
  let pos = 0;
  if (p.type) {
    out[pos++] = 1 << 3;
    pos = varint(out, pos, p.type);
  }
  if (p.stat) {
    out[pos++] = (2 << 3) | 2;
    pos = varint(out, pos, statLen);
    scratch.copy(out, pos, statStart, statEnd);
    pos += statLen;
  }
  if (p.ID) {
    out[pos++] = 3 << 3;
    pos = varint(out, pos, p.ID >>> 0);
  }
  if (dataLen > 0) {
    out[pos++] = (4 << 3) | 2;
    pos = bytes(out, pos, p.data!);
  }
  return out.subarray(0, pos);
}

type Packet = fsutil.Packet;
type Stat = NonNullable<Packet["stat"]>;

/** Reads protobuf wire format from a buffer; `pos` moves past what was read. */
class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  /** A varint of up to 53 bits as a Number (tags, lengths, enums, uint32s). */
  uint(): number {
    const buf = this.buf;
    let v = 0;
    let mul = 1;
    for (;;) {
      if (this.pos >= buf.length) throw new Error("fsutil packet: truncated varint");
      const b = buf[this.pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
      if (mul > 2 ** 63) throw new Error("fsutil packet: varint too long");
    }
  }

  /** An int64 varint, two's complement, in two 32-bit halves rather than BigInt per seven bits. */
  int64(): bigint {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= buf.length) throw new Error("fsutil packet: truncated varint");
      const b = buf[this.pos++]!;
      if (shift < 28) lo |= (b & 0x7f) << shift;
      else if (shift === 28) {
        lo |= (b & 0x0f) << 28;
        hi = (b & 0x7f) >> 4;
      } else hi |= (b & 0x7f) << (shift - 32);
      if (b < 0x80) break;
      shift += 7;
      if (shift > 63) throw new Error("fsutil packet: varint too long");
    }
    lo >>>= 0;
    hi >>>= 0;
    if (hi === 0) return BigInt(lo);
    return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
  }

  /** The next length-delimited field's bytes, a view of the buffer as protobuf-es gives it. */
  bytes(): Uint8Array {
    const n = this.uint();
    const end = this.pos + n;
    if (end > this.buf.length) throw new Error("fsutil packet: truncated field");
    const b = this.buf.subarray(this.pos, end);
    this.pos = end;
    return b;
  }

  string(): string {
    const b = this.bytes();
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8");
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.int64();
        return;
      case 1:
        this.pos += 8;
        return;
      case 2:
        this.bytes();
        return;
      case 5:
        this.pos += 4;
        return;
      default:
        throw new Error(`fsutil packet: unsupported wire type ${wireType}`);
    }
  }
}

function readStat(r: Reader, end: number): Stat {
  const st: Stat = { $typeName: "fsutil.types.Stat", path: "", mode: 0, uid: 0, gid: 0, size: 0n, modTime: 0n, linkname: "", devmajor: 0n, devminor: 0n, xattrs: {} };
  while (r.pos < end) {
    const tag = r.uint();
    switch (tag) {
      case (1 << 3) | 2:
        st.path = r.string();
        break;
      case 2 << 3:
        st.mode = r.uint() >>> 0;
        break;
      case 3 << 3:
        st.uid = r.uint() >>> 0;
        break;
      case 4 << 3:
        st.gid = r.uint() >>> 0;
        break;
      case 5 << 3:
        st.size = r.int64();
        break;
      case 6 << 3:
        st.modTime = r.int64();
        break;
      case (7 << 3) | 2:
        st.linkname = r.string();
        break;
      case 8 << 3:
        st.devmajor = r.int64();
        break;
      case 9 << 3:
        st.devminor = r.int64();
        break;
      case (10 << 3) | 2: {
        const entryEnd = r.uint() + r.pos;
        let key = "";
        let value: Uint8Array = new Uint8Array(0);
        while (r.pos < entryEnd) {
          const t = r.uint();
          if (t === ((1 << 3) | 2)) key = r.string();
          else if (t === ((2 << 3) | 2)) value = r.bytes();
          else r.skip(t & 7);
        }
        st.xattrs[key] = value;
        break;
      }
      default:
        r.skip(tag & 7);
    }
  }
  if (r.pos !== end) throw new Error("fsutil packet: stat overruns its length");
  return st;
}

/**
 * A Packet from its wire bytes: what `fromBinary(fsutil.PacketSchema, b)` returns (the test checks
 * it against protobuf-es), less unknown fields. The daemon decodes one per listed entry, where the
 * reflective reader cost more than everything else it does with the entry.
 */
export function decodePacket(b: Uint8Array): Packet {
  const r = new Reader(b);
  const p: Packet = { $typeName: "fsutil.types.Packet", type: 0, stat: undefined, ID: 0, data: new Uint8Array(0) };
  while (r.pos < b.length) {
    const tag = r.uint();
    switch (tag) {
      case 1 << 3:
        p.type = r.uint();
        break;
      case (2 << 3) | 2: {
        const end = r.uint() + r.pos;
        if (end > b.length) throw new Error("fsutil packet: truncated stat");
        p.stat = readStat(r, end);
        break;
      }
      case 3 << 3:
        p.ID = r.uint() >>> 0;
        break;
      case (4 << 3) | 2:
        p.data = r.bytes();
        break;
      default:
        r.skip(tag & 7);
    }
  }
  if (r.pos !== b.length) throw new Error("fsutil packet: truncated");
  return p;
}
