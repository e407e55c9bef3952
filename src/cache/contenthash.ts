// Content checksums of paths inside a ref, computed exactly as BuildKit v0.11.6's contenthash
// does, so cache keys built from them (a COPY's source, a RUN's read-only mounts) match the keys
// in a cache BuildKit exported, and ours match in BuildKit.
//
// An entry's hash is sha256 over tarsum-style header fields (mode, owner, size, type, link
// target, device numbers, xattrs; never times) followed by a regular file's bytes. A directory's
// digest folds its own header hash and each child's name and digest, children in byte order of
// their names. Digests are folded in their text form `sha256:<hex>`.
//
// A ref may come with its files' entry hashes known up front (a local context records them as it
// syncs, keeping those of unchanged files from the last sync), and then those files are not read.
// Such a tree was populated by a file transfer, whose root has no header of its own: BuildKit
// uses sha256("") for it, and so do we.
import { lstat, readdir, readlink, open } from "node:fs/promises";
import type { Stats } from "node:fs";
import { createHash, type Hash } from "node:crypto";
import path from "node:path";
import { listAttributes, getAttribute } from "@napi-rs/xattr";
import { goMatch, hasGoWildcard, mapLimit, throwIfAborted, type Digest } from "../util/index.js";
import type { ImmutableRef } from "./refs.js";
import type { MetadataDB } from "./db.js";

export interface ChecksumOptions {
  /** Follow a symlink that is the selected path itself (links in parent components are always followed). */
  followLinks: boolean;
  /** The selector may hold `*`, `?` and `[..]` (Go's path.Match). */
  wildcard: boolean;
  /** Matchers for include / exclude patterns, given the path relative to the selected one. */
  include?: (relPath: string) => boolean;
  exclude?: (relPath: string) => boolean;
}

/** kv bucket: per ref filled by a file transfer, JSON `{ "/path": "sha256:<entry hash>" }` for its regular files. */
export const fileDigestsBucket = "contenthash.files";

/** sha256("") — BuildKit's checksum of nothing (no match, no input, a transferred tree's root header). */
export const emptyDigest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" as Digest;

/** What BuildKit's tar header hash covers of an entry. */
export interface EntryHeader {
  /** Permission bits with setuid/setgid/sticky (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  type: "file" | "dir" | "symlink" | "char" | "block" | "fifo";
  /** Regular files only. */
  size: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: ReadonlyMap<string, Buffer>;
}

const typeflags: Record<EntryHeader["type"], string> = { file: "0", dir: "5", symlink: "2", char: "3", block: "4", fifo: "6" };

/** A hash primed with an entry's header fields; a regular file's bytes follow. */
export function entryHash(h: EntryHeader): Hash {
  const hash = createHash("sha256");
  const size = h.type === "file" ? h.size : 0;
  hash.update(
    `name` +
      `mode${h.mode & 0o7777}` +
      `uid${h.uid}` +
      `gid${h.gid}` +
      `size${size}` +
      `typeflag${typeflags[h.type]}` +
      `linkname${h.type === "symlink" ? (h.linkname ?? "") : ""}` +
      `uname` +
      `gname` +
      `devmajor${h.devmajor ?? 0}` +
      `devminor${h.devminor ?? 0}`,
  );
  if (h.xattrs) {
    // Only xattrs that describe the file itself count: not security labels or ACLs.
    const names = [...h.xattrs.keys()].filter((k) => k === "security.capability" || (!k.startsWith("security.") && !k.startsWith("system."))).sort();
    for (const k of names) {
      hash.update(k);
      hash.update(h.xattrs.get(k)!);
    }
  }
  return hash;
}

export function digestOfHash(h: Hash): Digest {
  return `sha256:${h.digest("hex")}` as Digest;
}

/** The entry hash of a regular file from its header and its bytes on disk. */
export async function fileEntryDigest(file: string, header: EntryHeader): Promise<Digest> {
  const h = entryHash(header);
  if (header.type === "file" && header.size > 0) await hashFileInto(h, file);
  return digestOfHash(h);
}

function headerFromStat(st: Stats, linkname: string | undefined, xattrs: Map<string, Buffer> | undefined): EntryHeader {
  const fmt = st.mode & 0o170000;
  const type: EntryHeader["type"] =
    fmt === 0o040000 ? "dir" : fmt === 0o120000 ? "symlink" : fmt === 0o020000 ? "char" : fmt === 0o060000 ? "block" : fmt === 0o010000 ? "fifo" : "file";
  const dev = type === "char" || type === "block";
  // Go gives a symlink read from disk every permission bit.
  const mode = type === "symlink" ? (st.mode & 0o7777) | 0o777 : st.mode & 0o7777;
  return { mode, uid: st.uid, gid: st.gid, type, size: st.size, linkname, devmajor: dev ? major(st.rdev) : 0, devminor: dev ? minor(st.rdev) : 0, xattrs };
}

function major(dev: number): number {
  return ((dev >>> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
}

function minor(dev: number): number {
  return (dev & 0xff) | ((dev >>> 12) & ~0xff & 0xfffff);
}

async function readXattrs(abs: string): Promise<Map<string, Buffer> | undefined> {
  let names: string[];
  try {
    names = await listAttributes(abs);
  } catch {
    return undefined;
  }
  if (names.length === 0) return undefined;
  const out = new Map<string, Buffer>();
  for (const n of names) {
    const v = await getAttribute(abs, n).catch(() => null);
    if (v) out.set(n, v);
  }
  return out;
}

interface Rec {
  type: "dir" | "symlink" | "other";
  /** The entry hash, or for a directory its tree digest. */
  digest?: Digest;
  linkname?: string;
}

/** A ref's files as BuildKit's checksum tree sees them, read from its mount on demand. */
class Tree {
  private readonly stats = new Map<string, Promise<Stats | undefined>>();
  private readonly digests = new Map<string, Promise<Digest>>();
  private readonly headers = new Map<string, Promise<Digest>>();

  constructor(
    private readonly signal: AbortSignal,
    private readonly root: string,
    /** Entry hashes known up front (a transferred tree); undefined for a snapshot scanned from disk. */
    private readonly known: ReadonlyMap<string, string> | undefined,
  ) {}

  private abs(p: string): string {
    return path.join(this.root, p);
  }

  stat(p: string): Promise<Stats | undefined> {
    let s = this.stats.get(p);
    if (!s) {
      s = lstat(this.abs(p)).catch(() => undefined);
      this.stats.set(p, s);
    }
    return s;
  }

  async record(p: string): Promise<Rec | undefined> {
    const st = await this.stat(p);
    if (!st) return undefined;
    if (st.isDirectory()) return { type: "dir" };
    if (st.isSymbolicLink()) return { type: "symlink", linkname: await readlink(this.abs(p)) };
    return { type: "other" };
  }

  /** Header hash of a directory (no content). */
  dirHeader(p: string): Promise<Digest> {
    let d = this.headers.get(p);
    if (!d) {
      d = (async () => {
        if (p === "" && this.known) return emptyDigest;
        const st = await this.stat(p);
        if (!st) throw new Error(`${p}: not found`);
        return digestOfHash(entryHash(headerFromStat(st, undefined, await readXattrs(this.abs(p)))));
      })();
      this.headers.set(p, d);
    }
    return d;
  }

  /** The digest of the entry at `p` without following it: a file's entry hash, a directory's tree digest. */
  digest(p: string): Promise<Digest> {
    let d = this.digests.get(p);
    if (!d) {
      d = this.compute(p);
      this.digests.set(p, d);
    }
    return d;
  }

  private async compute(p: string): Promise<Digest> {
    throwIfAborted(this.signal);
    const st = await this.stat(p);
    if (!st) throw new Error(`${p}: not found`);
    if (st.isDirectory()) {
      const names = await this.children(p);
      const childDigests = await mapLimit(names, 16, (n) => this.digest(`${p}/${n}`));
      const h = createHash("sha256");
      h.update("\0");
      h.update(await this.dirHeader(p));
      names.forEach((n, i) => {
        h.update("\0");
        h.update(n);
        h.update(childDigests[i]!);
      });
      return digestOfHash(h);
    }
    const known = this.known?.get(p);
    if (known?.startsWith("sha256:") && st.isFile()) return known as Digest;
    const abs = this.abs(p);
    const link = st.isSymbolicLink() ? await readlink(abs) : undefined;
    const header = headerFromStat(st, link, st.isSymbolicLink() ? undefined : await readXattrs(abs));
    const h = entryHash(header);
    if (header.type === "file" && st.size > 0) await hashFileInto(h, abs);
    return digestOfHash(h);
  }

  /** A directory's entries in byte order of their names (the order of BuildKit's radix tree). */
  async children(p: string): Promise<string[]> {
    const names = await readdir(this.abs(p));
    return names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }

  /**
   * Resolves symlinks in the parent components of `p` (as BuildKit's getFollowLinks), and in the
   * last one too when `followLast`. Returns the path inside the tree and its record.
   */
  async resolve(p: string, followLast: boolean): Promise<{ path: string; rec: Rec } | undefined> {
    let cur = keyPath(p);
    for (let hops = 0; hops <= 255; hops++) {
      const found = await this.resolveParents(cur);
      if (!found) return undefined;
      if (found.rec.type === "symlink" && followLast) {
        const link = found.rec.linkname ?? "";
        cur = keyPath(path.posix.isAbsolute(link) ? link : path.posix.join(path.posix.dirname(found.path || "/"), link));
        continue;
      }
      return found;
    }
    throw new Error(`too many symlinks: ${p}`);
  }

  private async resolveParents(p: string): Promise<{ path: string; rec: Rec } | undefined> {
    if (p === "") return { path: "", rec: { type: "dir" } };
    const parts = p.split("/").filter(Boolean);
    let cur = "";
    for (let i = 0, hops = 0; i < parts.length; i++) {
      const next = `${cur}/${parts[i]}`;
      const rec = await this.record(next);
      if (!rec) return undefined;
      if (i === parts.length - 1) return { path: next, rec };
      if (rec.type === "symlink") {
        if (++hops > 255) throw new Error(`too many links: ${p}`);
        const target = cleanLink(next, rec.linkname ?? "");
        const rest = parts.slice(i + 1).join("/");
        return this.resolveParents(keyPath(`${target}/${rest}`));
      }
      cur = next;
    }
    return undefined;
  }

  /** Every entry under `p` (which is a directory), as BuildKit's radix tree lists it: a dir, then its header, then what is inside. */
  async *walk(p: string): AsyncGenerator<{ path: string; header: boolean; type: Rec["type"] }> {
    const names = await this.children(p);
    for (const n of names) {
      throwIfAborted(this.signal);
      const c = `${p}/${n}`;
      const st = await this.stat(c);
      if (!st) continue;
      if (st.isDirectory()) {
        yield { path: c, header: false, type: "dir" };
        yield { path: c, header: true, type: "dir" };
        yield* this.walk(c);
      } else yield { path: c, header: false, type: st.isSymbolicLink() ? "symlink" : "other" };
    }
  }
}

/** "/a/b" for "a/b", "/a/b/", "./a/b"; "" for the root. */
function keyPath(p: string): string {
  const j = path.posix.join("/", p);
  return j === "/" ? "" : j;
}

function cleanLink(linkPath: string, linkname: string): string {
  const dir = path.posix.dirname(linkPath);
  const link = path.posix.normalize(linkname);
  if (path.posix.isAbsolute(link)) return link;
  return path.posix.join("/", dir, link);
}

/**
 * The checksum of `selector` in `ref`, as BuildKit's contenthash.Checksum computes it. A path
 * that does not exist gives a digest no real content has, so the step runs and reports it.
 */
export async function checksumPath(signal: AbortSignal, db: MetadataDB, ref: ImmutableRef | undefined, selector: string, opts: ChecksumOptions): Promise<Digest> {
  const p = path.posix.join("/", selector);
  if (!ref) return p === "/" ? emptyDigest : (`sha256:${createHash("sha256").update(`missing\0${p}`).digest("hex")}` as Digest);
  const filtered = opts.wildcard || opts.include || opts.exclude;
  // Matchers are functions: a memo is only safe without them.
  const memoKey = filtered && (opts.include || opts.exclude) ? undefined : `${ref.id}\0bk1\0${selector}\0${opts.followLinks ? 1 : 0}${opts.wildcard ? 1 : 0}`;
  const memo = memoKey ? db.getKV("contenthash", memoKey) : undefined;
  if (memo) return memo as Digest;
  const knownJSON = db.getKV(fileDigestsBucket, ref.id);
  const known = knownJSON ? new Map(Object.entries(JSON.parse(knownJSON) as Record<string, string>)) : undefined;
  await using mnt = await ref.mount(signal);
  const tree = new Tree(signal, mnt.path, known);
  let d: Digest;
  try {
    d = filtered ? await checksumIncluded(tree, selector, opts) : await checksumFollow(tree, p, opts.followLinks);
  } catch (err) {
    if (signal.aborted) throw err;
    if (!/not found/.test((err as Error).message)) throw err;
    d = `sha256:${createHash("sha256").update(`missing\0${p}`).digest("hex")}` as Digest;
  }
  if (memoKey) db.setKV("contenthash", memoKey, d);
  return d;
}

async function checksumFollow(tree: Tree, p: string, follow: boolean): Promise<Digest> {
  const found = await tree.resolve(p, follow);
  if (!found) throw new Error(`${JSON.stringify(p)}: not found`);
  return tree.digest(found.path);
}

interface Included {
  path: string;
  digest?: Digest;
  type: Rec["type"];
  included: boolean;
}

/** BuildKit's includedPaths: the matching entries (files, symlinks, directory headers) in tree order. */
async function checksumIncluded(tree: Tree, selector: string, opts: ChecksumOptions): Promise<Digest> {
  const endsInSep = selector.endsWith("/");
  const p = keyPath(selector);
  let origPrefix = "";
  let resolvedPrefix = "";
  let start: string | undefined;
  if (opts.wildcard) {
    const prefix = keyPath(splitWildcards(p));
    if (prefix !== "") {
      const found = await tree.resolve(prefix, true);
      origPrefix = prefix;
      resolvedPrefix = found?.path ?? prefix;
      start = found && found.rec.type === "dir" ? found.path : undefined;
      if (!found || found.rec.type !== "dir") return emptyDigest;
    } else start = "";
  } else {
    const found = await tree.resolve(p, true);
    // BuildKit lists what is inside the selected path: a file alone gives nothing.
    if (!found || found.rec.type !== "dir") return emptyDigest;
    origPrefix = p;
    resolvedPrefix = found.path;
    start = found.path;
  }
  const included: Included[] = [];
  const parents: Included[] = [];
  let lastMatchedDir = "";
  const visit = async (e: { path: string; header: boolean; type: Rec["type"] }): Promise<void> => {
    let fn = e.path;
    if (resolvedPrefix && fn.startsWith(resolvedPrefix)) fn = origPrefix + fn.slice(resolvedPrefix.length);
    while (parents.length > 0 && !fn.startsWith(parents[parents.length - 1]!.path + "/")) parents.pop();
    if (e.header && fn === p && endsInSep) return;
    let candidate: string;
    if (opts.wildcard) {
      if (p !== "" && (lastMatchedDir === "" || !fn.startsWith(lastMatchedDir + "/"))) {
        if (!pathMatch(p, fn)) return;
        lastMatchedDir = fn;
      }
      candidate = trimSlash((fn + "/").startsWith(lastMatchedDir + "/") ? (fn + "/").slice(lastMatchedDir.length + 1) : fn + "/");
    } else {
      candidate = trimSlash((fn + "/").slice(p.length + 1));
    }
    const shouldInclude = passes(opts, candidate);
    if (!shouldInclude && !e.header) return;
    // Directory records (whole subtrees) never count: only headers and files, so exclusions inside hold.
    if (e.type === "dir" && !e.header) return;
    const item: Included = { path: fn, type: e.type, included: false, digest: e.header ? await tree.dirHeader(e.path) : await tree.digest(e.path) };
    if (shouldInclude) {
      for (const pd of parents) {
        if (!pd.included) {
          included.push(pd);
          pd.included = true;
        }
      }
      included.push(item);
      item.included = true;
    }
    if (e.header) parents.push(item);
  };
  if (start !== undefined) {
    // The directory's own header sorts before its contents.
    await visit({ path: start, header: true, type: "dir" });
    for await (const e of tree.walk(start)) await visit(e);
  }
  return finish(tree, p, included, opts);
}

async function finish(tree: Tree, p: string, included: Included[], opts: ChecksumOptions): Promise<Digest> {
  if (opts.followLinks) {
    for (const w of included) if (w.type === "symlink") w.digest = await checksumFollow(tree, w.path, true);
  }
  if (included.length === 0) return emptyDigest;
  const base = (s: string) => path.posix.basename(s || "/");
  if (included.length === 1 && base(p) === base(included[0]!.path)) return included[0]!.digest!;
  const h = createHash("sha256");
  included.forEach((w, i) => {
    if (i !== 0) h.update("\0");
    h.update(base(w.path));
    h.update(w.digest!);
  });
  return digestOfHash(h);
}

function passes(opts: ChecksumOptions, candidate: string): boolean {
  if (opts.include && !opts.include(candidate)) return false;
  if (opts.exclude?.(candidate)) return false;
  return true;
}

function trimSlash(s: string): string {
  return s.endsWith("/") ? s.slice(0, -1) : s;
}

/** The part of a pattern before its first element with a wildcard. */
function splitWildcards(p: string): string {
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (hasGoWildcard(part)) break;
    out.push(part);
  }
  return out.join("/") || "/";
}

/** Go's path.Match, as BuildKit's contenthash matches wildcard selectors. */
export const pathMatch = goMatch;

const chunk = 1 << 16;

async function hashFileInto(h: Hash, file: string): Promise<void> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.allocUnsafe(chunk);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, chunk, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
}

/** sha256 hex of a file's bytes, read in chunks (never the whole file in memory). */
export async function fileDigest(file: string): Promise<string> {
  const h = createHash("sha256");
  await hashFileInto(h, file);
  return h.digest("hex");
}
