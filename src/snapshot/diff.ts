// Layer diff: a tar of one snapshot's own changes (its overlay upper dir against its parents),
// entry for entry what BuildKit's overlay differ feeds containerd's ChangeWriter.
import { Readable } from "node:stream";
import { open, readdir, readlink, stat } from "node:fs/promises";
import type { BigIntStats } from "node:fs";
import { CanceledError, KilnError, throwIfAborted } from "../util/index.js";
import type { Snapshotter } from "./types.js";
import { parentUpperDirs, statOrThrow } from "./chain.js";
import { isOpaqueDir, isWhiteout, joinPath, LayerView, lstatMaybe, readXattr, relName, type Components, type ViewEntry } from "./layerview.js";
import {
  encodeTarHeader,
  tarPadding,
  TAR_TRAILER,
  TypeBlock,
  TypeChar,
  TypeDir,
  TypeFifo,
  TypeLink,
  TypeReg,
  TypeSymlink,
  type TarHeader,
} from "./tarwriter.js";

export interface WriteDiffOptions {
  /** Clamp modification times later than this (seconds since the epoch) to it, as SOURCE_DATE_EPOCH does. */
  rewriteTimestamp?: number;
}

/**
 * Streams the snapshot's changes as an uncompressed OCI layer tar: entries in the order of a
 * depth-first walk with sorted names, deletions as `.wh.` files, hardlinks inside the layer as
 * typeflag '1', and only `security.capability` among the xattrs (as containerd writes them).
 */
export function writeDiff(signal: AbortSignal, snapshotter: Snapshotter, snapshotId: string, opts: WriteDiffOptions = {}): Readable {
  return Readable.from(coalesce(generateDiff(signal, snapshotter, snapshotId, opts)), { objectMode: false });
}

enum Change {
  Add,
  Modify,
  Delete,
  Unmodified,
}

interface WalkEntry {
  comps: Buffer[];
  path: Buffer;
  stat: BigIntStats;
}

const CHUNK = 128 * 1024;
const STAT_BATCH = 64;

async function* generateDiff(signal: AbortSignal, snapshotter: Snapshotter, id: string, opts: WriteDiffOptions): AsyncGenerator<Buffer> {
  throwIfAborted(signal);
  const info = await statOrThrow(snapshotter, id);
  const base = new LayerView((await parentUpperDirs(snapshotter, info)).map((p) => Buffer.from(p)));
  const upper = Buffer.from(snapshotter.upperDir(id));
  const cw = new ChangeWriter(upper, opts.rewriteTimestamp);
  yield* upperChanges(signal, upper, base, cw, []);
  yield TAR_TRAILER;
}

/** Sorted children of a real directory, lstat'ed in small parallel batches. */
async function children(dir: Buffer, comps: Components): Promise<WalkEntry[]> {
  const names = (await readdir(dir, { encoding: "buffer" })).sort(Buffer.compare);
  const out: WalkEntry[] = [];
  for (let i = 0; i < names.length; i += STAT_BATCH) {
    const batch = names.slice(i, i + STAT_BATCH);
    const stats = await Promise.all(batch.map((n) => lstatMaybe(joinPath(dir, [n]))));
    batch.forEach((n, j) => {
      const st = stats[j];
      if (st !== undefined) out.push({ comps: [...comps, n], path: joinPath(dir, [n]), stat: st });
    });
  }
  return out;
}

async function* upperChanges(signal: AbortSignal, upper: Buffer, base: LayerView, cw: ChangeWriter, comps: Components): AsyncGenerator<Buffer> {
  for (const e of await children(joinPath(upper, comps), comps)) {
    if (signal.aborted) throw new CanceledError(signal.reason);
    if (e.stat.isDirectory() && (await readXattr(e.path, "trusted.overlay.redirect")) !== undefined) {
      throw new KilnError("KILN_DIFF_REDIRECT", `overlay redirect_dir is set on ${e.path.toString()}; the layer cannot be diffed`);
    }
    const below = base.empty ? undefined : await base.lookup(e.comps);
    if (isWhiteout(e.stat)) {
      // A whiteout of something no parent has hides nothing: leave it out.
      if (below !== undefined) yield* cw.handle(Change.Delete, e.comps, undefined);
      continue;
    }
    if (below === undefined || !(await sameDirent(below, e))) {
      yield* cw.handle(below === undefined ? Change.Add : Change.Modify, e.comps, e.stat);
    }
    if (!e.stat.isDirectory()) continue;
    if (below !== undefined && (await isOpaqueDir(e.path))) {
      yield* opaqueChanges(signal, upper, base, cw, e.comps);
    } else {
      yield* upperChanges(signal, upper, base, cw, e.comps);
    }
  }
}

/** Depth-first walk of the parents' merged view below `root`. */
async function* baseWalk(base: LayerView, root: Components): AsyncGenerator<WalkEntry> {
  for (const name of await base.readdir(root)) {
    const comps = [...root, name];
    const e = await base.lookup(comps);
    if (e === undefined) continue;
    yield { comps, path: e.path, stat: e.stat };
    if (e.stat.isDirectory()) yield* baseWalk(base, comps);
  }
}

/** Depth-first walk of the upper dir below `root` as overlay shows it alone: whiteouts hidden. */
async function* upperWalk(upper: Buffer, root: Components): AsyncGenerator<WalkEntry> {
  for (const e of await children(joinPath(upper, root), root)) {
    if (isWhiteout(e.stat)) continue;
    yield e;
    if (e.stat.isDirectory()) yield* upperWalk(upper, e.comps);
  }
}

/** Path order of a depth-first walk with sorted names ('/' sorts before every other byte). */
function compareComps(a: Components, b: Components): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const c = Buffer.compare(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

function isPrefix(prefix: Components, comps: Components): boolean {
  if (prefix.length >= comps.length) return false;
  return prefix.every((c, i) => c.equals(comps[i]!));
}

/**
 * An opaque directory hides its whole lower subtree, so (like BuildKit) diff it against the
 * parents with a double walk: one whiteout per lower entry that is gone, not one `.wh..wh..opq`.
 */
async function* opaqueChanges(signal: AbortSignal, upper: Buffer, base: LayerView, cw: ChangeWriter, root: Components): AsyncGenerator<Buffer> {
  const lower = baseWalk(base, root);
  const upperIt = upperWalk(upper, root);
  let l = (await lower.next()).value as WalkEntry | undefined;
  let u = (await upperIt.next()).value as WalkEntry | undefined;
  let removedDir: Components | undefined;
  while (l !== undefined || u !== undefined) {
    if (signal.aborted) throw new CanceledError(signal.reason);
    const order = l === undefined ? 1 : u === undefined ? -1 : compareComps(l.comps, u.comps);
    if (order > 0) {
      removedDir = undefined;
      yield* cw.handle(Change.Add, u!.comps, u!.stat);
      u = (await upperIt.next()).value as WalkEntry | undefined;
    } else if (order < 0) {
      const gone = l!;
      l = (await lower.next()).value as WalkEntry | undefined;
      if (removedDir !== undefined && isPrefix(removedDir, gone.comps)) continue;
      removedDir = gone.stat.isDirectory() ? gone.comps : undefined;
      yield* cw.handle(Change.Delete, gone.comps, undefined);
    } else {
      const was = l!;
      const now = u!;
      l = (await lower.next()).value as WalkEntry | undefined;
      u = (await upperIt.next()).value as WalkEntry | undefined;
      removedDir = was.stat.isDirectory() && !now.stat.isDirectory() ? was.comps : undefined;
      if (await sameDirent(was, now)) {
        if (!isLinked(now.stat)) continue;
        yield* cw.handle(Change.Unmodified, now.comps, now.stat);
      } else {
        yield* cw.handle(Change.Modify, now.comps, now.stat);
      }
    }
  }
}

function isLinked(st: BigIntStats): boolean {
  return !st.isDirectory() && st.nlink > 1n;
}

function splitNs(ns: bigint): { sec: bigint; nsec: bigint } {
  let sec = ns / 1_000_000_000n;
  if (ns < 0n && sec * 1_000_000_000n !== ns) sec -= 1n;
  return { sec, nsec: ns - sec * 1_000_000_000n };
}

/** continuity's sameFile: metadata first, content only when both mtimes look truncated. */
async function sameDirent(a: ViewEntry, b: ViewEntry): Promise<boolean> {
  const x = a.stat;
  const y = b.stat;
  if (x.dev === y.dev && x.ino === y.ino) return true;
  if (x.mode !== y.mode || x.uid !== y.uid || x.gid !== y.gid || x.rdev !== y.rdev) return false;
  const capA = await readXattr(a.path, "security.capability");
  const capB = await readXattr(b.path, "security.capability");
  if ((capA === undefined) !== (capB === undefined) || (capA !== undefined && !capA.equals(capB!))) return false;
  if (x.isDirectory()) return true;
  if (x.size !== y.size) return false;
  const tx = splitNs(x.mtimeNs);
  const ty = splitNs(y.mtimeNs);
  if (tx.sec !== ty.sec) return false;
  if (tx.nsec === 0n && ty.nsec === 0n) {
    if (x.isSymbolicLink()) {
      return (await readlink(a.path, { encoding: "buffer" })).equals(await readlink(b.path, { encoding: "buffer" }));
    }
    if (x.size === 0n) return true;
    return sameContent(a.path, b.path);
  }
  return tx.nsec === ty.nsec;
}

async function sameContent(p1: Buffer, p2: Buffer): Promise<boolean> {
  await using f1 = await open(p1, "r");
  await using f2 = await open(p2, "r");
  const b1 = Buffer.allocUnsafe(CHUNK);
  const b2 = Buffer.allocUnsafe(CHUNK);
  for (;;) {
    const [r1, r2] = await Promise.all([f1.read(b1, 0, CHUNK, null), f2.read(b2, 0, CHUNK, null)]);
    if (r1.bytesRead !== r2.bytesRead || !b1.subarray(0, r1.bytesRead).equals(b2.subarray(0, r2.bytesRead))) return false;
    if (r1.bytesRead === 0) return true;
  }
}

/** Linux dev_t decoding, as Go's unix.Major/unix.Minor. */
function devMajor(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
function devMinor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

const SLASH = 0x2f;
const DOT_WH = Buffer.from(".wh.");

/** containerd's ChangeWriter: turns changes into tar entries, adding missing parent directories. */
class ChangeWriter {
  private readonly inodeSrc = new Map<bigint, Buffer>();
  private readonly inodeRefs = new Map<bigint, Buffer[]>();
  private readonly addedDirs = new Set<string>();

  constructor(
    private readonly source: Buffer,
    private readonly rewriteTimestamp: number | undefined,
  ) {}

  async *handle(kind: Change, comps: Components, st: BigIntStats | undefined): AsyncGenerator<Buffer> {
    if (kind === Change.Delete) {
      const dir = relName(comps.slice(0, -1));
      const name = Buffer.concat(dir.length > 0 ? [dir, Buffer.from("/"), DOT_WH, comps.at(-1)!] : [DOT_WH, comps.at(-1)!]);
      // containerd >= 2.0 stamps whiteouts with the epoch; 1.6 used the wall clock, which made digests unstable.
      const hdr: TarHeader = { typeflag: TypeReg, name, mode: 0, mtime: 0 };
      yield* this.includeParents(name, TypeReg);
      yield encodeTarHeader(hdr);
      return;
    }
    if (st === undefined) throw new Error("change without stat");
    if (st.isSocket()) return;
    const source = joinPath(this.source, comps);
    let name = relName(comps);
    const hdr: TarHeader = {
      typeflag: TypeReg,
      name,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtime: this.mtime(st),
    };
    if (st.isFile()) {
      hdr.size = Number(st.size);
    } else if (st.isDirectory()) {
      hdr.typeflag = TypeDir;
      name = Buffer.concat([name, Buffer.from("/")]);
      hdr.name = name;
    } else if (st.isSymbolicLink()) {
      hdr.typeflag = TypeSymlink;
      hdr.linkname = await readlink(source, { encoding: "buffer" });
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      hdr.typeflag = st.isCharacterDevice() ? TypeChar : TypeBlock;
      hdr.devmajor = devMajor(st.rdev);
      hdr.devminor = devMinor(st.rdev);
    } else if (st.isFIFO()) {
      hdr.typeflag = TypeFifo;
    } else {
      throw new KilnError("KILN_DIFF_FILETYPE", `unsupported file type at ${source.toString()}`);
    }

    let additionalLinks: Buffer[] | undefined;
    if (isLinked(st)) {
      const src = this.inodeSrc.get(st.ino);
      if (src !== undefined) {
        hdr.typeflag = TypeLink;
        hdr.linkname = src;
        hdr.size = 0;
      } else {
        if (kind === Change.Unmodified) {
          const refs = this.inodeRefs.get(st.ino) ?? [];
          refs.push(name);
          this.inodeRefs.set(st.ino, refs);
          return;
        }
        this.inodeSrc.set(st.ino, name);
        additionalLinks = this.inodeRefs.get(st.ino);
        this.inodeRefs.delete(st.ino);
      }
    } else if (kind === Change.Unmodified) {
      return;
    }

    const cap = await readXattr(source, "security.capability");
    if (cap !== undefined && cap.length > 0) hdr.pax = new Map([["SCHILY.xattr.security.capability", cap]]);

    yield* this.includeParents(name, hdr.typeflag);
    yield encodeTarHeader(hdr);
    if (hdr.typeflag === TypeReg && (hdr.size ?? 0) > 0) {
      yield* readExactly(source, hdr.size!);
      yield tarPadding(hdr.size!);
    }
    for (const extra of additionalLinks ?? []) {
      const link: TarHeader = { ...hdr, name: extra, typeflag: TypeLink, linkname: name, size: 0 };
      yield* this.includeParents(extra, TypeLink);
      yield encodeTarHeader(link);
    }
  }

  private mtime(st: BigIntStats): number {
    const sec = Number(splitNs(st.mtimeNs).sec);
    return this.rewriteTimestamp !== undefined && sec > this.rewriteTimestamp ? this.rewriteTimestamp : sec;
  }

  private async *includeParents(name: Buffer, typeflag: number): AsyncGenerator<Buffer> {
    let end = name.length;
    while (end > 0 && name[end - 1] === SLASH) end--;
    const trimmed = name.subarray(0, end);
    const slash = trimmed.lastIndexOf(SLASH);
    if (slash > 0) {
      const parent = trimmed.subarray(0, slash);
      const key = parent.toString("latin1");
      if (!this.addedDirs.has(key)) {
        this.addedDirs.add(key);
        const comps = splitComps(parent);
        const st = await stat(joinPath(this.source, comps), { bigint: true });
        yield* this.handle(Change.Modify, comps, st);
      }
    }
    if (typeflag === TypeDir) this.addedDirs.add(trimmed.toString("latin1"));
  }
}

function splitComps(p: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= p.length; i++) {
    if (i === p.length || p[i] === SLASH) {
      if (i > start) out.push(p.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}

/** Streams exactly `size` bytes of a file; a file that shrank meanwhile is an error. */
async function* readExactly(p: Buffer, size: number): AsyncGenerator<Buffer> {
  await using fh = await open(p, "r");
  let left = size;
  while (left > 0) {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, left));
    const { bytesRead } = await fh.read(buf, 0, buf.length, null);
    if (bytesRead === 0) throw new KilnError("KILN_DIFF_SHORT_READ", `${p.toString()} shrank while it was being archived`);
    left -= bytesRead;
    yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
  }
}

/** Merges the many small header buffers into larger chunks so the stream is not per-512-bytes. */
async function* coalesce(src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let len = 0;
  for await (const b of src) {
    if (b.length === 0) continue;
    if (b.length >= CHUNK) {
      if (len > 0) {
        yield Buffer.concat(parts, len);
        parts = [];
        len = 0;
      }
      yield b;
      continue;
    }
    parts.push(b);
    len += b.length;
    if (len >= CHUNK) {
      yield Buffer.concat(parts, len);
      parts = [];
      len = 0;
    }
  }
  if (len > 0) yield Buffer.concat(parts, len);
}
