// Tar header encoding that reproduces Go's archive/tar Writer byte for byte (USTAR, else PAX),
// because layer digests from our diffs must equal the ones BuildKit/containerd produce.

export const TypeReg = 0x30; // '0'
export const TypeLink = 0x31; // '1'
export const TypeSymlink = 0x32; // '2'
export const TypeChar = 0x33; // '3'
export const TypeBlock = 0x34; // '4'
export const TypeDir = 0x35; // '5'
export const TypeFifo = 0x36; // '6'
export const TypeXHeader = 0x78; // 'x'

export const BLOCK_SIZE = 512;

/** The two zero blocks that end an archive. */
export const TAR_TRAILER: Buffer = Buffer.alloc(2 * BLOCK_SIZE);

/**
 * One entry as Go's tar.Header would hold it, limited to what layer diffs need: times are whole
 * seconds (containerd truncates them, and atime/ctime are never written).
 */
export interface TarHeader {
  typeflag: number;
  /** Raw bytes of the name; strings are taken as UTF-8. Directories end with '/'. */
  name: Buffer | string;
  linkname?: Buffer | string;
  size?: number;
  /** Permission bits plus setuid/setgid/sticky; no file-type bits (Go's FileInfoHeader never sets them). */
  mode: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  /** Seconds since the epoch. */
  mtime: number;
  devmajor?: number;
  devminor?: number;
  /** Extra PAX records such as `SCHILY.xattr.security.capability`; forces the PAX format. */
  pax?: ReadonlyMap<string, Buffer | string>;
}

export class TarEncodeError extends Error {
  constructor(message: string) {
    super(`tar: cannot encode header: ${message}`);
    this.name = "TarEncodeError";
  }
}

const NAME_SIZE = 100;
const PREFIX_SIZE = 155;
const MAX_SPECIAL_FILE_SIZE = 1 << 20;
const BASIC_PAX_KEYS = new Set(["path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime", "ctime"]);

function bytesOf(v: Buffer | string | undefined): Buffer {
  if (v === undefined) return Buffer.alloc(0);
  return typeof v === "string" ? Buffer.from(v, "utf8") : v;
}

/** Go's isASCII: no byte >= 0x80 and no NUL. */
function isASCII(b: Buffer): boolean {
  for (const c of b) if (c >= 0x80 || c === 0) return false;
  return true;
}

/** Go's toASCII: drops what isASCII rejects (every byte of a multi-byte rune is >= 0x80). */
function toASCII(b: Buffer): Buffer {
  if (isASCII(b)) return b;
  const out: number[] = [];
  for (const c of b) if (c < 0x80 && c !== 0) out.push(c);
  return Buffer.from(out);
}

/** Go's fitsInOctal: n-1 octal digits plus a NUL. */
function fitsInOctal(n: number, x: number): boolean {
  return x >= 0 && (n >= 22 || x < 2 ** ((n - 1) * 3));
}

/**
 * Go's formatter.formatString: copies what fits, NUL-terminates when there is room, and when a
 * truncated value would end in '/' cuts the slashes (some readers would take it for a directory).
 */
function putString(blk: Buffer, off: number, size: number, s: Buffer): void {
  s.copy(blk, off, 0, Math.min(s.length, size));
  if (s.length < size) blk[off + s.length] = 0;
  if (s.length > size && blk[off + size - 1] === 0x2f) {
    let n = size;
    while (n > 0 && s[n - 1] === 0x2f) n--;
    blk[off + n] = 0;
  }
}

/** Go's formatter.formatOctal: zero-padded octal leaving room for a NUL; values that do not fit become 0. */
function putOctal(blk: Buffer, off: number, size: number, x: number): void {
  let s = fitsInOctal(size, x) ? x.toString(8) : "0";
  const pad = size - s.length - 1;
  if (pad > 0) s = "0".repeat(pad) + s;
  putString(blk, off, size, Buffer.from(s, "latin1"));
}

/** Go's splitUSTARPath. */
function splitUSTARPath(name: Buffer): [Buffer, Buffer] | undefined {
  let length = name.length;
  if (length <= NAME_SIZE || !isASCII(name)) return undefined;
  if (length > PREFIX_SIZE + 1) length = PREFIX_SIZE + 1;
  else if (name[length - 1] === 0x2f) length--;
  const i = name.subarray(0, length).lastIndexOf(0x2f);
  const nlen = name.length - i - 1;
  if (i <= 0 || nlen > NAME_SIZE || nlen === 0 || i > PREFIX_SIZE) return undefined;
  return [name.subarray(0, i), name.subarray(i + 1)];
}

/** Go's formatPAXRecord: "%d key=value\n" where %d counts the whole record. */
function paxRecord(key: string, value: Buffer): Buffer {
  const k = Buffer.from(key, "utf8");
  let size = k.length + value.length + 3;
  size += String(size).length;
  if (String(size).length + k.length + value.length + 3 !== size) size = String(size).length + k.length + value.length + 3;
  return Buffer.concat([Buffer.from(`${size} `, "latin1"), k, Buffer.from("="), value, Buffer.from("\n")]);
}

function validPAXRecord(key: string, value: Buffer): boolean {
  if (key === "path" || key === "linkpath" || key === "uname" || key === "gname") return !value.includes(0);
  return !key.includes("\0");
}

function setChecksumAndMagic(blk: Buffer): void {
  blk.write("ustar\0", 257, "latin1");
  blk.write("00", 263, "latin1");
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) sum += i >= 148 && i < 156 ? 0x20 : blk[i]!;
  putOctal(blk, 148, 7, sum);
  blk[155] = 0x20;
}

interface Fields {
  typeflag: number;
  name: Buffer;
  linkname: Buffer;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  uname: Buffer;
  gname: Buffer;
  mtime: number;
  devmajor: number;
  devminor: number;
}

/** Go's templateV7Plus: V7 fields plus uname/gname/devmajor/devminor. */
function template(f: Fields, str: (b: Buffer) => Buffer): Buffer {
  const blk = Buffer.alloc(BLOCK_SIZE);
  blk[156] = f.typeflag;
  putString(blk, 0, 100, str(f.name));
  putString(blk, 157, 100, str(f.linkname));
  putOctal(blk, 100, 8, f.mode);
  putOctal(blk, 108, 8, f.uid);
  putOctal(blk, 116, 8, f.gid);
  putOctal(blk, 124, 12, f.size);
  putOctal(blk, 136, 12, f.mtime);
  putString(blk, 265, 32, str(f.uname));
  putString(blk, 297, 32, str(f.gname));
  putOctal(blk, 329, 8, f.devmajor);
  putOctal(blk, 337, 8, f.devminor);
  return blk;
}

/** Zero bytes that pad `size` bytes of data up to the next block boundary. */
export function tarPadding(size: number): Buffer {
  const n = (BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE;
  return n === 0 ? EMPTY : Buffer.alloc(n);
}
const EMPTY = Buffer.alloc(0);

/**
 * Encodes one header as Go's Writer.WriteHeader would: a single USTAR block when the fields fit,
 * else a PAX extended header (named `dir/PaxHeaders.0/file`) followed by the main block.
 * The entry's data (size bytes) and its padding are the caller's to write.
 */
export function encodeTarHeader(h: TarHeader): Buffer {
  const f: Fields = {
    typeflag: h.typeflag,
    name: bytesOf(h.name),
    linkname: bytesOf(h.linkname),
    size: h.size ?? 0,
    mode: h.mode,
    uid: h.uid ?? 0,
    gid: h.gid ?? 0,
    uname: bytesOf(h.uname),
    gname: bytesOf(h.gname),
    mtime: h.mtime,
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
  };
  if (!Number.isSafeInteger(f.mtime)) throw new TarEncodeError(`mtime ${f.mtime} is not whole seconds`);
  if (f.typeflag !== TypeDir && f.typeflag !== TypeLink && f.typeflag !== TypeSymlink && f.name.at(-1) === 0x2f) {
    throw new TarEncodeError("filename may not have trailing slash");
  }

  let ustar = true;
  const paxHdrs = new Map<string, Buffer>();
  const verifyString = (s: Buffer, size: number, key: string, canSplit: boolean) => {
    const tooLong = s.length > size;
    if (!isASCII(s) || tooLong) {
      if (!canSplit || splitUSTARPath(s) === undefined) ustar = false;
      paxHdrs.set(key, s);
    }
  };
  const verifyNumeric = (n: number, size: number, key: string | undefined, field: string) => {
    if (!fitsInOctal(size, n)) {
      ustar = false;
      if (key === undefined) throw new TarEncodeError(`${field}=${n} does not fit`);
      paxHdrs.set(key, Buffer.from(String(n), "latin1"));
    }
  };
  verifyString(f.name, 100, "path", true);
  verifyString(f.linkname, 100, "linkpath", false);
  verifyString(f.uname, 32, "uname", false);
  verifyString(f.gname, 32, "gname", false);
  verifyNumeric(f.mode, 8, undefined, "mode");
  verifyNumeric(f.uid, 8, "uid", "uid");
  verifyNumeric(f.gid, 8, "gid", "gid");
  verifyNumeric(f.size, 12, "size", "size");
  verifyNumeric(f.devmajor, 8, undefined, "devmajor");
  verifyNumeric(f.devminor, 8, undefined, "devminor");
  // Go prefers PAX for an mtime that octal cannot hold; whole seconds never need sub-second records.
  if (!fitsInOctal(12, f.mtime)) {
    ustar = false;
    paxHdrs.set("mtime", Buffer.from(String(f.mtime), "latin1"));
  }
  if (h.pax && h.pax.size > 0) {
    for (const [k, v] of h.pax) {
      if (paxHdrs.has(k) || BASIC_PAX_KEYS.has(k) || k.startsWith("GNU.sparse.")) continue;
      paxHdrs.set(k, bytesOf(v));
    }
    ustar = false;
  }
  for (const [k, v] of paxHdrs) if (!validPAXRecord(k, v)) throw new TarEncodeError(`invalid PAX record ${JSON.stringify(k)}`);

  if (ustar) {
    const split = splitUSTARPath(f.name);
    const blk = template(split ? { ...f, name: split[1] } : f, (b) => b);
    if (split) putString(blk, 345, 155, split[0]);
    setChecksumAndMagic(blk);
    return blk;
  }

  const parts: Buffer[] = [];
  if (paxHdrs.size > 0) {
    const keys = [...paxHdrs.keys()].sort((a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
    const data = Buffer.concat(keys.map((k) => paxRecord(k, paxHdrs.get(k)!)));
    if (data.length > MAX_SPECIAL_FILE_SIZE) throw new TarEncodeError("PAX header too large");
    parts.push(rawFileHeader(paxHeaderName(f.name), data.length, TypeXHeader), data, tarPadding(data.length));
  }
  const blk = template(f, toASCII);
  setChecksumAndMagic(blk);
  parts.push(blk);
  return Buffer.concat(parts);
}

/** Go's `path.Join(dir, "PaxHeaders.0", file)` for an already clean name. */
function paxHeaderName(name: Buffer): Buffer {
  const slash = name.lastIndexOf(0x2f);
  const dir = name.subarray(0, slash + 1);
  const file = name.subarray(slash + 1);
  const trimmedDir = dir.length > 0 ? dir.subarray(0, dir.length - 1) : dir;
  const segs: Buffer[] = [];
  if (trimmedDir.length > 0) segs.push(trimmedDir);
  segs.push(Buffer.from("PaxHeaders.0"));
  if (file.length > 0) segs.push(file);
  return Buffer.concat(segs.flatMap((s, i) => (i === 0 ? [s] : [Buffer.from("/"), s])));
}

/** Go's writeRawFile header: only name, type, size; mode/uid/gid/mtime as octal zeros. */
function rawFileHeader(name: Buffer, size: number, typeflag: number): Buffer {
  let n = toASCII(name);
  if (n.length > NAME_SIZE) n = n.subarray(0, NAME_SIZE);
  let end = n.length;
  while (end > 0 && n[end - 1] === 0x2f) end--;
  n = n.subarray(0, end);
  const blk = Buffer.alloc(BLOCK_SIZE);
  blk[156] = typeflag;
  putString(blk, 0, 100, n);
  putOctal(blk, 100, 8, 0);
  putOctal(blk, 108, 8, 0);
  putOctal(blk, 116, 8, 0);
  putOctal(blk, 124, 12, size);
  putOctal(blk, 136, 12, 0);
  setChecksumAndMagic(blk);
  return blk;
}

/** True for typeflags that carry no data whatever their size field says (links, devices, dirs, fifos). */
export function isHeaderOnlyType(typeflag: number): boolean {
  return typeflag >= TypeLink && typeflag <= TypeFifo;
}
