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
