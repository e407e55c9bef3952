// eStargz (seekable tar.gz), laid out as containerd/stargz-snapshotter's estargz package writes it
// in lossless mode: the input tar's bytes unchanged, as a series of gzip members where every
// regular-file chunk (at most 4 MiB) starts a new member; then a member holding a tar with the
// table of contents `stargz.index.json`; then a 51-byte footer (an empty gzip member whose Extra
// field records the TOC's offset). Members are compressed in parallel and written in order.
import { createHash, type Hash } from "node:crypto";
import os from "node:os";
import zlib from "node:zlib";
import { encodeTarHeader, tarPadding, TAR_TRAILER, TypeReg as TarTypeReg } from "../../snapshot/index.js";
import { gzipHeader, gzipMember, gzipTrailer, normalizeGzipLevel } from "./gzip.js";
import { OrderedJobs, type ByteSource } from "./stream.js";
import { ByteReader, scanHeader, TypeReg, type ScannedHeader } from "./tarscan.js";

export const TOCTarName = "stargz.index.json";
export const FooterSize = 51;
export const TOCJSONDigestAnnotation = "containerd.io/snapshot/stargz/toc.digest";
export const StoreUncompressedSizeAnnotation = "io.containers.estargz.uncompressed-size";
const defaultChunkSize = 4 << 20;
/** Members that hold only headers are cut at this size; nothing in the TOC points into them. */
const maxHeaderMember = 4 << 20;

/** A TOC entry, in the JSON field order of estargz's TOCEntry. */
export interface TOCEntry {
  name: string;
  type: string;
  size?: number;
  modtime?: string;
  linkName?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  userName?: string;
  groupName?: string;
  offset?: number;
  innerOffset?: number;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Record<string, string>;
  digest?: string;
  chunkOffset?: number;
  chunkSize?: number;
  chunkDigest?: string;
}

export interface JTOC {
  version: number;
  entries: TOCEntry[] | null;
}

export interface EstargzResult {
  /** sha256 of everything the blob decompresses to (the input tar followed by the TOC tar). */
  diffId: `sha256:${string}`;
  uncompressedSize: number;
  tocDigest: `sha256:${string}`;
}

export interface EstargzOptions {
  level?: number;
  chunkSize?: number;
  concurrency?: number;
}

const typeNames: Record<number, string> = { 0x31: "hardlink", 0x32: "symlink", 0x35: "dir", [TypeReg]: "reg", 0x33: "char", 0x34: "block", 0x36: "fifo" };

/** Go's RFC 3339 for a TOC modtime: rounded to the second, UTC, empty for the zero time or the epoch. */
function formatModtime(sec: number, nsec: number): string | undefined {
  if (sec === 0) return undefined;
  const rounded = nsec >= 500_000_000 ? sec + 1 : sec;
  return new Date(rounded * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Go's encoding/json escaping on top of JSON.stringify. */
function goEscape(s: string): string {
  return s.replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/** The TOC JSON exactly as estargz marshals it (json.MarshalIndent with a tab). */
export function marshalTOC(toc: JTOC): Buffer {
  return Buffer.from(goEscape(JSON.stringify(toc, null, "\t")), "utf8");
}

/** The 51-byte footer: an empty, stored gzip member whose Extra field is `SG` + len + "%016xSTARGZ". */
export function footerBytes(tocOffset: number): Buffer {
  const subfield = Buffer.from(`${tocOffset.toString(16).padStart(16, "0")}STARGZ`, "latin1");
  const extra = Buffer.alloc(4 + subfield.length);
  extra.write("SG", 0, "latin1");
  extra.writeUInt16LE(subfield.length, 2);
  subfield.copy(extra, 4);
  const header = Buffer.from([0x1f, 0x8b, 8, 4 /* FEXTRA */, 0, 0, 0, 0, 0, 0xff]);
  const xlen = Buffer.alloc(2);
  xlen.writeUInt16LE(extra.length, 0);
  // A final stored block of length 0, then crc32 0 and size 0.
  const body = Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff]);
  const out = Buffer.concat([header, xlen, extra, body, gzipTrailer(0, 0)]);
  if (out.length !== FooterSize) throw new Error(`estargz footer is ${out.length} bytes, not ${FooterSize}`);
  return out;
}

/** Reads the TOC offset back out of a footer. */
export function parseFooter(footer: Buffer): number {
  if (footer.length !== FooterSize || footer[0] !== 0x1f || footer[1] !== 0x8b || (footer[3]! & 4) === 0) throw new Error("not an estargz footer");
  const extra = footer.subarray(12, 12 + footer.readUInt16LE(10));
  if (extra.toString("latin1", 0, 2) !== "SG" || extra.readUInt16LE(2) !== 22 || extra.toString("latin1", 20, 26) !== "STARGZ") throw new Error("invalid estargz footer subfield");
  return parseInt(extra.toString("latin1", 4, 20), 16);
}

/** The TOC tar (one entry, `stargz.index.json`) as Go's tar.Writer writes it for estargz. */
export function tocTar(tocJSON: Buffer): Buffer {
  const hdr = encodeTarHeader({ typeflag: TarTypeReg, name: TOCTarName, size: tocJSON.length, mode: 0, mtime: 0 });
  return Buffer.concat([hdr, tocJSON, tarPadding(tocJSON.length), TAR_TRAILER]);
}

interface Member {
  parts: Buffer[];
  bytes: number;
  /** TOC entries whose `offset` is where this member starts. */
  starts: TOCEntry[];
}

/**
 * Converts an uncompressed layer tar into an eStargz blob, streaming. `result` is filled in once
 * the generator has finished.
 */
export class EstargzWriter {
  result: EstargzResult | undefined;
  private readonly level: number;
  private readonly chunkSize: number;
  private readonly concurrency: number;

  constructor(opts: EstargzOptions = {}) {
    this.level = normalizeGzipLevel(opts.level);
    this.chunkSize = opts.chunkSize ?? defaultChunkSize;
    this.concurrency = opts.concurrency ?? os.availableParallelism() + 1;
  }

  async *run(source: ByteSource): AsyncGenerator<Buffer> {
    const diffHash = createHash("sha256");
    let uncompressed = 0;
    const entries: TOCEntry[] = [];
    const lastUname = new Map<number, string>();
    const lastGname = new Map<number, string>();
    const jobs = new OrderedJobs<{ data: Buffer; member: Member }>(this.concurrency);
    let cur: Member | undefined;
    let emitted = 0;
    const level = this.level;

    const submit = (m: Member): void => {
      const data = m.parts.length === 1 ? m.parts[0]! : Buffer.concat(m.parts, m.bytes);
      jobs.push(gzipMember(data, level).then((gz) => ({ data: gz, member: m })));
    };
    const close = (): void => {
      if (cur) submit(cur);
      cur = undefined;
    };
    const write = (b: Buffer): void => {
      if (b.length === 0) return;
      diffHash.update(b);
      uncompressed += b.length;
      cur ??= { parts: [], bytes: 0, starts: [] };
      cur.parts.push(b);
      cur.bytes += b.length;
    };
    const flushReady = async function* (all: boolean): AsyncGenerator<Buffer> {
      while (jobs.size > 0 && (all || jobs.full)) {
        const { data, member } = await jobs.shift();
        for (const e of member.starts) e.offset = emitted;
        emitted += data.length;
        yield data;
      }
    };

    const reader = new ByteReader(source);
    for (;;) {
      const item = await scanHeader(reader);
      if (cur && cur.bytes >= maxHeaderMember) close();
      for (const b of item.raw) write(b);
      if (item.kind === "end") break;
      const h = item.header;
      if (h.name.replace(/^\/+/, "").replace(/\/+$/, "") === TOCTarName) {
        throw new Error("existing TOC JSON is not allowed; decompress layer before append");
      }
      const type = typeNames[h.typeflag];
      if (!type) throw new Error(`unsupported input tar entry "${String.fromCharCode(h.typeflag)}"`);
      const ent = this.entryOf(h, type, lastUname, lastGname);
      if (h.typeflag !== TypeReg || h.size === 0) {
        if (h.typeflag === TypeReg) ent.digest = emptyDigest;
        entries.push(ent);
        if (h.size > 0) await copyData(reader, h.size, write, undefined);
      } else {
        const fileHash = createHash("sha256");
        let written = 0;
        let chunkEnt = ent;
        while (written < h.size) {
          const remain = h.size - written;
          const size = remain < this.chunkSize ? remain : this.chunkSize;
          if (remain >= this.chunkSize) chunkEnt.chunkSize = size;
          close();
          cur = { parts: [], bytes: 0, starts: [chunkEnt] };
          chunkEnt.chunkOffset = written;
          const chunkHash = createHash("sha256");
          await copyData(reader, size, write, [fileHash, chunkHash]);
          chunkEnt.chunkDigest = `sha256:${chunkHash.digest("hex")}`;
          entries.push(chunkEnt);
          written += size;
          chunkEnt = { name: h.name, type: "chunk" };
          yield* flushReady(false);
        }
        ent.digest = `sha256:${fileHash.digest("hex")}`;
      }
      // The data's padding goes with the data (it is raw tar, not part of the file).
      const pad = (512 - (h.size % 512)) % 512;
      if (pad > 0) {
        const p = await reader.read(pad);
        if (!p) throw new Error("tar: unexpected end of input in padding");
        write(p);
      }
      yield* flushReady(false);
    }
    for await (const b of reader.rest()) write(b);
    close();
    yield* flushReady(true);

    const toc: JTOC = { version: 1, entries: entries.length > 0 ? entries.map(orderEntry) : null };
    const tocJSON = marshalTOC(toc);
    const tarBytes = tocTar(tocJSON);
    diffHash.update(tarBytes);
    uncompressed += tarBytes.length;
    const tocOffset = emitted;
    const tocMember = await gzipMember(tarBytes, level);
    yield tocMember;
    yield footerBytes(tocOffset);
    this.result = {
      diffId: `sha256:${diffHash.digest("hex")}`,
      uncompressedSize: uncompressed,
      tocDigest: `sha256:${createHash("sha256").update(tocJSON).digest("hex")}`,
    };
  }

  private entryOf(h: ScannedHeader, type: string, lastUname: Map<number, string>, lastGname: Map<number, string>): TOCEntry {
    const ent: TOCEntry = { name: h.name, type };
    if (h.typeflag === TypeReg) ent.size = h.size;
    const mt = formatModtime(h.mtimeSec, h.mtimeNsec);
    if (mt) ent.modtime = mt;
    if (type === "hardlink" || type === "symlink") ent.linkName = h.linkname;
    if (h.mode) ent.mode = h.mode;
    if (h.uid) ent.uid = h.uid;
    if (h.gid) ent.gid = h.gid;
    const un = nameIfChanged(lastUname, h.uid, h.uname);
    if (un) ent.userName = un;
    const gn = nameIfChanged(lastGname, h.gid, h.gname);
    if (gn) ent.groupName = gn;
    if (type === "char" || type === "block") {
      if (h.devmajor) ent.devMajor = h.devmajor;
      if (h.devminor) ent.devMinor = h.devminor;
    }
    if (h.xattrs.size > 0) {
      const x: Record<string, string> = {};
      for (const k of [...h.xattrs.keys()].sort()) x[k] = h.xattrs.get(k)!.toString("base64");
      ent.xattrs = x;
    }
    return ent;
  }
}

async function copyData(reader: ByteReader, n: number, write: (b: Buffer) => void, hashes: Hash[] | undefined): Promise<void> {
  let left = n;
  while (left > 0) {
    const b = await reader.readSome(Math.min(left, 256 << 10));
    if (!b) throw new Error("tar: unexpected end of input in file data");
    if (hashes) for (const h of hashes) h.update(b);
    write(b);
    left -= b.length;
  }
}

const emptyDigest = `sha256:${createHash("sha256").digest("hex")}`;

function nameIfChanged(m: Map<number, string>, id: number, name: string): string | undefined {
  if (name === "") return undefined;
  if (m.get(id) === name) return undefined;
  m.set(id, name);
  return name;
}

const fieldOrder: (keyof TOCEntry)[] = [
  "name",
  "type",
  "size",
  "modtime",
  "linkName",
  "mode",
  "uid",
  "gid",
  "userName",
  "groupName",
  "offset",
  "innerOffset",
  "devMajor",
  "devMinor",
  "xattrs",
  "digest",
  "chunkOffset",
  "chunkSize",
  "chunkDigest",
];

/** The entry with its fields in struct order, zero values omitted (`omitempty`). */
function orderEntry(e: TOCEntry): TOCEntry {
  const out: Record<string, unknown> = {};
  for (const k of fieldOrder) {
    const v = e[k];
    if (v === undefined || v === 0 || v === "") continue;
    out[k] = v;
  }
  return out as unknown as TOCEntry;
}

/** Reads an eStargz blob's TOC (for tests and checks): footer → TOC member → tar → JSON. */
export function readTOC(blob: Buffer): { toc: JTOC; tocDigest: string; tocOffset: number } {
  const tocOffset = parseFooter(blob.subarray(blob.length - FooterSize));
  const tarBytes = zlib.gunzipSync(blob.subarray(tocOffset, blob.length - FooterSize));
  const name = tarBytes.subarray(0, 100).toString("utf8").replace(/\0.*$/s, "");
  if (name !== TOCTarName) throw new Error(`TOC tar entry had name ${JSON.stringify(name)}; expected ${TOCTarName}`);
  const size = parseInt(tarBytes.subarray(124, 136).toString("latin1").replace(/\0.*$/s, "").trim(), 8);
  const json = tarBytes.subarray(512, 512 + size);
  return { toc: JSON.parse(json.toString("utf8")) as JTOC, tocDigest: `sha256:${createHash("sha256").update(json).digest("hex")}`, tocOffset };
}

export { gzipHeader };
