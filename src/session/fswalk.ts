// fsutil's Walk, the sender's listing: Go filepath.Walk order (names sorted by bytes, a directory
// before its contents), include/exclude patterns with fsutil's directory-skipping rules,
// followpaths turned into includes, parents of included entries sent lazily, hard links
// recorded against the first path of each inode, and Go os.FileMode bits.
//
// The file system is read synchronously: a listing is thousands of lstat/llistxattr calls of a
// few microseconds each, and a promise per call through the thread pool costs many times the
// calls themselves (a 5,000-file context: ~300 ms against ~50 ms). The caller's event loop gets a
// turn every few hundred entries, and whenever the consumer's sends wait.
import { lstatSync, readdirSync, readlinkSync, type BigIntStats } from "node:fs";
import { realpath, stat as statFile } from "node:fs/promises";
import { setImmediate as nextTurn } from "node:timers/promises";
import { listAttributesSync, getAttributeSync } from "@napi-rs/xattr";
import { KilnError, throwIfAborted } from "../util/index.js";
import { followLinks } from "./followlinks.js";
import { toGoMode, goMode } from "./fsmode.js";
import { compareUtf8 } from "./pathorder.js";
import { PatternMatcher, noMatchInfo, withoutTrailingGlob, type MatchInfo } from "./patternmatcher.js";

/** One entry of the listing, shaped as fsutil.types.Stat. */
export interface WalkStat {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  size: bigint;
  modTime: bigint;
  linkname: string;
  devmajor: bigint;
  devminor: bigint;
  xattrs: Record<string, Uint8Array>;
}

export interface WalkOptions {
  includePatterns?: string[] | undefined;
  excludePatterns?: string[] | undefined;
  followPaths?: string[] | undefined;
  /** Rewrites each stat before it is sent (buildctl resets owners to root); false drops the entry. */
  map?: (st: WalkStat) => boolean;
}

export interface WalkEntry {
  stat: WalkStat;
  /** Where the entry is on this machine. */
  abs: string;
}

const patternChars = "*[]?^\\";
/** Entries listed between two turns of the event loop. */
const entriesPerTurn = 512;

/** fsutil's dedupePaths, on the include list as the walker builds it (unsorted). */
function dedupePaths(paths: string[]): string[] | undefined {
  const out: string[] = [];
  let last = "";
  for (const s of paths) {
    if (s === ".") return undefined;
    if (s.startsWith(last + "/")) continue;
    out.push(s);
    last = s;
  }
  return out;
}

function major(rdev: bigint): bigint {
  return (rdev >> 8n) & 0xfffn;
}
function minor(rdev: bigint): bigint {
  return (rdev & 0xffn) | ((rdev >> 12n) & 0xfff00n);
}

function xattrsOf(p: string): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  let names: string[];
  try {
    names = listAttributesSync(p);
  } catch {
    // Filesystems without xattr support: fsutil ignores ENOTSUP the same way.
    return out;
  }
  for (const n of names.sort()) {
    try {
      const v = getAttributeSync(p, n);
      if (v) out[n] = new Uint8Array(v);
    } catch {
      // A value that vanished or cannot be read is skipped, as fsutil skips it.
    }
  }
  return out;
}

/** fsutil's mkstat: `seen` maps inode → first path, so later links of it name that path. */
function mkstat(abs: string, rel: string, st: BigIntStats, xattrs: Record<string, Uint8Array>, seen: Map<string, string>): WalkStat {
  const stat: WalkStat = {
    path: rel,
    mode: toGoMode(Number(st.mode)),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: 0n,
    modTime: st.mtimeNs,
    linkname: "",
    devmajor: 0n,
    devminor: 0n,
    xattrs: {},
  };
  if (!st.isDirectory()) {
    if (st.isBlockDevice() || st.isCharacterDevice()) {
      stat.devmajor = major(st.rdev);
      stat.devminor = minor(st.rdev);
    }
    const ino = `${st.dev}:${st.ino}`;
    const first = st.nlink > 1n ? seen.get(ino) : undefined;
    if (first !== undefined) stat.linkname = first;
    else seen.set(ino, rel);
    // fsutil overwrites the size after the hard-link check, so links carry their real size.
    stat.size = st.size;
    if (st.isSymbolicLink()) stat.linkname = readlinkSync(abs);
  }
  stat.xattrs = xattrs;
  stat.mode = (stat.mode & ~goMode.socket) >>> 0;
  return stat;
}

interface VisitedDir {
  st: BigIntStats;
  xattrs: Record<string, Uint8Array>;
  rel: string;
  abs: string;
  withSep: string;
  include: MatchInfo;
  exclude: MatchInfo;
  called: boolean;
}

/** Walks `dir` as fsutil.Walk does, yielding what a sender lists, in order. */
export async function* walkTree(signal: AbortSignal, dir: string, opts: WalkOptions): AsyncGenerator<WalkEntry> {
  let root: string;
  try {
    root = await realpath(dir);
  } catch (err) {
    throw new KilnError("KILN_LOCAL_NOT_FOUND", `resolve ${dir}: ${(err as Error).message}`, { cause: err });
  }
  if (!(await statFile(root)).isDirectory()) throw new KilnError("KILN_LOCAL_NOT_FOUND", `walk ${root}: not a directory`);

  let includePatterns = opts.includePatterns ? [...opts.includePatterns] : undefined;
  if (opts.followPaths) {
    const targets = await followLinks(dir, opts.followPaths);
    if (targets) includePatterns = dedupePaths([...(includePatterns ?? []), ...targets]);
  }
  let include: PatternMatcher | undefined;
  let onlyPrefixIncludes = true;
  if (includePatterns && includePatterns.length > 0) {
    include = new PatternMatcher(includePatterns);
    onlyPrefixIncludes = !include.patterns.some((p) => !p.exclusion && [...withoutTrailingGlob(p)].some((c) => patternChars.includes(c)));
  }
  let exclude: PatternMatcher | undefined;
  let onlyPrefixExcludeExceptions = true;
  if (opts.excludePatterns) {
    exclude = new PatternMatcher(opts.excludePatterns);
    onlyPrefixExcludeExceptions = !exclude.patterns.some((p) => p.exclusion && [...withoutTrailingGlob(p)].some((c) => patternChars.includes(c)));
  }

  const parentDirs: VisitedDir[] = [];
  const seen = new Map<string, string>();

  const emit = (abs: string, rel: string, st: BigIntStats, xattrs: Record<string, Uint8Array>): WalkEntry | undefined => {
    const stat = mkstat(abs, rel, st, xattrs, seen);
    if (opts.map && !opts.map(stat)) return undefined;
    return { stat, abs };
  };

  // Returns "skipdir" to prune a directory (Go's filepath.SkipDir), "skipped" when the entry is
  // not sent itself but its contents may be.
  function* visit(abs: string, rel: string, st: BigIntStats, xattrs: Record<string, Uint8Array>): Generator<WalkEntry, "skipdir" | "skipped" | undefined> {
    const isDir = st.isDirectory();
    if (include || exclude) {
      while (parentDirs.length > 0 && !rel.startsWith(parentDirs[parentDirs.length - 1]!.withSep)) parentDirs.pop();
    }
    const dir: VisitedDir = { st, xattrs, rel, abs, withSep: rel + "/", include: noMatchInfo, exclude: noMatchInfo, called: false };
    let skip = false;
    if (include) {
      const parent = parentDirs.length > 0 ? parentDirs[parentDirs.length - 1]!.include : noMatchInfo;
      const { matched, info } = include.matchesUsingParentResults(rel, parent);
      if (isDir) dir.include = info;
      if (!matched) {
        if (isDir && onlyPrefixIncludes) {
          const prefix = include.patterns.some((p) => !p.exclusion && (withoutTrailingGlob(p) + "/").startsWith(dir.withSep));
          if (!prefix) return "skipdir";
        }
        skip = true;
      }
    }
    if (exclude) {
      const parent = parentDirs.length > 0 ? parentDirs[parentDirs.length - 1]!.exclude : noMatchInfo;
      const { matched, info } = exclude.matchesUsingParentResults(rel, parent);
      if (isDir) dir.exclude = info;
      if (matched) {
        if (isDir && onlyPrefixExcludeExceptions) {
          if (!exclude.exclusions) return "skipdir";
          const prefix = exclude.patterns.some((p) => p.exclusion && (withoutTrailingGlob(p) + "/").startsWith(dir.withSep));
          if (!prefix) return "skipdir";
        }
        skip = true;
      }
    }
    try {
      if (skip) return "skipped";
      dir.called = true;
      const entry = emit(abs, rel, st, xattrs);
      if (!entry) return undefined;
      for (const parent of parentDirs) {
        if (parent.called) continue;
        const pe = emit(parent.abs, parent.rel, parent.st, parent.xattrs);
        if (!pe) continue;
        yield pe;
        parent.called = true;
      }
      yield entry;
      return undefined;
    } finally {
      if ((include || exclude) && isDir) parentDirs.push(dir);
    }
  }

  function* walkDir(abs: string, rel: string, skipped = false): Generator<WalkEntry> {
    throwIfAborted(signal);
    let names: string[];
    try {
      names = readdirSync(abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return;
      // fsutil tolerates an unreadable directory only when the patterns leave it out.
      if (skipped && (code === "EACCES" || code === "EPERM")) return;
      throw err;
    }
    names.sort(compareUtf8);
    for (const name of names) {
      // What path.join makes of a clean directory and a name readdir gave, without its normalising.
      const childAbs = abs.endsWith("/") ? abs + name : `${abs}/${name}`;
      // Vanished since readdir: fsutil turns not-exist errors into a skip.
      const st = lstatSync(childAbs, { bigint: true, throwIfNoEntry: false });
      if (!st) continue;
      const childRel = rel === "" ? name : `${rel}/${name}`;
      const res = yield* visit(childAbs, childRel, st, xattrsOf(childAbs));
      if (res === "skipdir") continue;
      if (st.isDirectory()) yield* walkDir(childAbs, childRel, res === "skipped");
    }
  }

  let sinceTurn = 0;
  for (const entry of walkDir(root, "")) {
    yield entry;
    if (++sinceTurn >= entriesPerTurn) {
      sinceTurn = 0;
      await nextTurn();
    }
  }
}
