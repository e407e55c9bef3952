// The filesystem work of FileOp actions — copy, mkdir, mkfile, rm — on mounted snapshots, with
// every path resolved inside its root so nothing (`..`, absolute symlinks) can escape it.
import { spawn } from "node:child_process";
import { lstat, mkdir, readdir, readlink, symlink, chmod, lchown, lutimes, utimes, copyFile, rm, writeFile, link, stat } from "node:fs/promises";
import type { Stats } from "node:fs";
import { constants } from "node:fs";
import path from "node:path";
import { PatternMatcher, mayMatchBelow, matchSegment, noMatchInfo, type MatchInfo } from "../session/index.js";
import { KilnError, mapLimit, secureJoin, throwIfAborted } from "../util/index.js";
import { archiveKind, mknod, unpackArchive } from "./unpack.js";

const euid = process.geteuid?.() ?? 0;
const egid = process.getegid?.() ?? 0;

export interface Owner {
  uid: number;
  gid: number;
}

export interface CopySpec {
  src: string;
  dest: string;
  owner?: Owner;
  /** Permission bits (0777) for everything copied; undefined keeps the source's. */
  mode?: number;
  followSymlink: boolean;
  dirCopyContents: boolean;
  createDestPath: boolean;
  allowWildcard: boolean;
  allowEmptyWildcard: boolean;
  /** ADD: a local tar archive is extracted into the destination instead of copied. */
  attemptUnpack?: boolean;
  /** Seconds since the epoch for every copied entry's times; undefined keeps the source's. */
  timestamp?: number;
  /** Only entries these patterns select (relative to the source), with the directories above them. */
  includePatterns?: string[];
  excludePatterns?: string[];
}

function notFound(p: string, cause?: unknown): KilnError {
  return new KilnError("KILN_COPY_NOT_FOUND", `failed to compute cache key: failed to calculate checksum of ref: "${p}": not found`, { cause });
}

const wildcardChars = /[*?[\\]/;

/** Expands a wildcard path inside root into the matching paths (absolute, cleaned), in lexical order. */
export async function expandWildcard(root: string, p: string): Promise<string[]> {
  const segs = path.posix.normalize("/" + p).split("/").filter(Boolean);
  let current = [""];
  for (const seg of segs) {
    const next: string[] = [];
    for (const base of current) {
      if (!wildcardChars.test(seg)) {
        next.push(base + "/" + seg);
        continue;
      }
      const dir = await secureJoin(root, base || "/");
      let names: string[];
      try {
        names = (await readdir(dir)).sort();
      } catch {
        continue;
      }
      for (const n of names) if (matchSegment(seg, n)) next.push(base + "/" + n);
    }
    current = next;
  }
  const out: string[] = [];
  for (const c of current) {
    try {
      await lstat(await secureJoin(root, c, false));
      out.push(c);
    } catch {
      // A literal segment after a wildcard may not exist under every match.
    }
  }
  return out;
}

/** BuildKit's cleanPath for copy paths: absolute and clean, keeping a trailing `/` or `/.`. */
function cleanKeepSlash(s: string): string {
  let out = path.posix.join("/", s);
  if (s.endsWith("/.")) {
    if (out !== "/") out += "/";
    out += ".";
  } else if (s.endsWith("/") && out !== "/") out += "/";
  return out;
}

/** Resolves `p` in root; the final element is followed only when asked (fsutil's rootPath). */
async function rootPath(root: string, p: string, followLinks: boolean): Promise<string> {
  const clean = path.posix.join("/", p);
  if (clean === "/") return root;
  if (followLinks) return secureJoin(root, clean);
  return path.join(await secureJoin(root, path.posix.dirname(clean)), path.posix.basename(clean));
}

/**
 * One file-op copy with fsutil's semantics: the destination's parents are made first (0755, the
 * chown user); a directory source lands at dest (its contents when dirCopyContents) or inside an
 * existing dest directory; wildcards expand in lexical order; include/exclude patterns filter
 * entries below the source; ADD unpacks local archives.
 */
export async function copy(signal: AbortSignal, srcRoot: string, destRoot: string, spec: CopySpec): Promise<void> {
  const srcPath = cleanKeepSlash(spec.src);
  const destPath = cleanKeepSlash(spec.dest);
  if (!spec.createDestPath) {
    const p = await secureJoin(destRoot, destPath);
    try {
      await lstat(path.dirname(p));
    } catch (err) {
      throw new KilnError("KILN_COPY", `failed to stat ${spec.dest}: no such file or directory`, { cause: err });
    }
  }
  let sources = [srcPath];
  if (spec.allowWildcard && wildcardChars.test(srcPath)) {
    sources = await expandWildcard(srcRoot, srcPath);
    if (sources.length === 0) {
      if (spec.allowEmptyWildcard) return;
      throw new KilnError("KILN_COPY_NOT_FOUND", `${srcPath} not found`);
    }
  }
  const copier = new Copier(signal, spec);
  for (const src of sources) {
    if (spec.attemptUnpack) {
      const file = await secureJoin(srcRoot, src);
      const kind = await archiveKind(signal, file);
      if (kind) {
        await unpackArchive(signal, file, kind, destRoot, destPath, spec.owner, spec.timestamp);
        continue;
      }
    }
    await copier.copyPath(srcRoot, src, destRoot, destPath);
  }
}

interface ParentDir {
  src: string;
  dst: string;
  copied: boolean;
}

class Copier {
  private readonly include: PatternMatcher | undefined;
  private readonly exclude: PatternMatcher | undefined;
  /** Hard links: the first copy of each source inode, by dev:ino. */
  private readonly inodes = new Map<string, Promise<string>>();
  /** With patterns a directory's fate depends on its children, so the walk stays in order. */
  private readonly sequential: boolean;

  constructor(
    private readonly signal: AbortSignal,
    private readonly spec: CopySpec,
  ) {
    this.include = spec.includePatterns?.length ? patternMatcher(spec.includePatterns, "includepatterns") : undefined;
    this.exclude = spec.excludePatterns?.length ? patternMatcher(spec.excludePatterns, "excludepatterns") : undefined;
    this.sequential = this.include !== undefined || this.exclude !== undefined;
  }

  async copyPath(srcRoot: string, src: string, destRoot: string, dst: string): Promise<void> {
    // The destination's parents (all of dst for `dir/` and `dir/.`).
    const base = path.posix.basename(dst);
    const ensure = dst.endsWith("/") || base === "." ? dst : path.posix.dirname(dst);
    await this.mkdirAll(await secureJoin(destRoot, ensure));
    const destAbs = await secureJoin(destRoot, path.posix.normalize(dst));
    const srcFollowed = await rootPath(srcRoot, src, this.spec.followSymlink);
    const target = await this.prepareTargetDir(srcFollowed, src, destAbs);
    await this.copy(srcFollowed, "", target, false, [], noMatchInfo, noMatchInfo);
  }

  private async prepareTargetDir(srcFollowed: string, src: string, destPath: string): Promise<string> {
    let fiSrc: Stats;
    try {
      fiSrc = await lstat(srcFollowed);
    } catch (err) {
      throw notFound(src, err);
    }
    const fiDest = await stat(destPath).catch(() => undefined);
    const contents = this.spec.dirCopyContents;
    if ((!contents && fiSrc.isDirectory() && fiDest) || (!fiSrc.isDirectory() && fiDest?.isDirectory())) {
      destPath = path.join(destPath, path.posix.basename(src) || "/");
    }
    const target = contents && fiSrc.isDirectory() && !fiDest ? destPath : path.dirname(destPath);
    await this.mkdirAll(target);
    return destPath;
  }

  /** os.MkdirAll with the chown user and timestamp on what it creates. */
  private async mkdirAll(p: string): Promise<void> {
    const st = await stat(p).catch(() => undefined);
    if (st) {
      if (!st.isDirectory()) throw new KilnError("KILN_COPY", `mkdir ${p}: not a directory`);
      return;
    }
    const parent = path.dirname(p);
    if (parent !== p) await this.mkdirAll(parent);
    try {
      await mkdir(p, { mode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST" && (await lstat(p)).isDirectory()) return;
      throw err;
    }
    const o = this.spec.owner;
    if (o && (o.uid !== euid || o.gid !== egid)) await lchown(p, o.uid, o.gid);
    if (this.spec.timestamp !== undefined) await utimes(p, this.spec.timestamp, this.spec.timestamp);
  }

  private async copy(src: string, comps: string, target: string, overwriteMeta: boolean, parents: ParentDir[], parentInclude: MatchInfo, parentExclude: MatchInfo): Promise<void> {
    throwIfAborted(this.signal);
    // fsutil's copy: each entry is matched with its parent directory's results, so a pattern that
    // selects a directory selects what is inside it (and `!` patterns can take entries back).
    let include = true;
    let excluded = false;
    let includeInfo = noMatchInfo;
    let excludeInfo = noMatchInfo;
    if (comps !== "") {
      if (this.include) ({ matched: include, info: includeInfo } = this.include.matchesUsingParentResults(comps, parentInclude));
      if (this.exclude) {
        ({ matched: excluded, info: excludeInfo } = this.exclude.matchesUsingParentResults(comps, parentExclude));
        if (excluded) include = false;
      }
    }
    const fi = await lstat(src);
    if (!include && fi.isDirectory() && !this.mayHoldSelected(comps, excluded)) return;
    const targetFi = await lstat(target).catch(() => undefined);
    if (include) await this.createParentDirs(parents);
    if (!fi.isDirectory()) {
      if (!include) return;
      if (targetFi?.isDirectory()) throw new KilnError("KILN_COPY", `cannot replace to directory ${target} with file`);
      if (targetFi) await rm(target);
    }
    let copyInfo = include;
    let restoreTime = false;
    if (fi.isDirectory()) {
      const created = await this.copyDirectory(src, comps, target, fi, overwriteMeta, include, parents, includeInfo, excludeInfo);
      if (!overwriteMeta) {
        copyInfo = created;
        restoreTime = !created;
      }
    } else if (fi.isFile()) {
      if (!(await this.linkOrCopyFile(src, target, fi))) return;
    } else if (fi.isSymbolicLink()) {
      await symlink(await readlink(src), target);
    } else {
      await makeNode(target, fi);
    }
    if (copyInfo) await this.copyFileInfo(fi, target);
    else if (restoreTime && targetFi) await this.copyTimes(fi, target);
  }

  /** Copies a regular file, or links it to the copy of an inode already copied; false when linked (metadata shared). */
  private async linkOrCopyFile(src: string, target: string, fi: Stats): Promise<boolean> {
    if (fi.nlink > 1) {
      const key = `${fi.dev}:${fi.ino}`;
      const first = this.inodes.get(key);
      if (first) {
        await link(await first, target);
        return false;
      }
      let done!: (p: string) => void;
      this.inodes.set(key, new Promise<string>((r) => (done = r)));
      try {
        await copyFile(src, target, constants.COPYFILE_FICLONE);
      } finally {
        done(target);
      }
      return true;
    }
    await copyFile(src, target, constants.COPYFILE_FICLONE);
    return true;
  }

  private async createParentDirs(parents: ParentDir[]): Promise<void> {
    for (const pd of parents) {
      if (pd.copied) continue;
      const fi = await stat(pd.src);
      if (!fi.isDirectory()) throw new KilnError("KILN_COPY", `${pd.src} is not a directory`);
      if (await copyDirectoryOnly(pd.dst, fi, false)) await this.copyFileInfo(fi, pd.dst);
      pd.copied = true;
    }
  }

  /**
   * Whether a directory left out by the patterns may still hold entries they select: fsutil reads
   * such directories (only an exclusion without `!` patterns prunes), and skipping the ones whose
   * contents no pattern can reach changes nothing but the time spent.
   */
  private mayHoldSelected(comps: string, excluded: boolean): boolean {
    if (excluded) return this.exclude!.exclusions && mayMatchBelow(this.exclude!, comps, true);
    return mayMatchBelow(this.include!, comps, false);
  }

  private async copyDirectory(src: string, comps: string, dst: string, fi: Stats, overwriteMeta: boolean, include: boolean, parents: ParentDir[], includeInfo: MatchInfo, excludeInfo: MatchInfo): Promise<boolean> {
    let created = false;
    const self: ParentDir = { src, dst, copied: false };
    if (include) {
      created = await copyDirectoryOnly(dst, fi, overwriteMeta);
      self.copied = true;
    }
    const chain = [...parents, self];
    const names = (await readdir(src)).sort();
    const one = (name: string) => this.copy(path.join(src, name), comps === "" ? name : `${comps}/${name}`, path.join(dst, name), true, chain, includeInfo, excludeInfo);
    if (this.sequential) for (const n of names) await one(n);
    // Thousands of small files are bound by syscall round trips, not bandwidth.
    else await mapLimit(names, 32, one);
    return created;
  }

  /** Owner (the chown user or the source's), mode and times, as fsutil's copyFileInfo. */
  private async copyFileInfo(fi: Stats, target: string): Promise<void> {
    const owner = this.spec.owner ?? { uid: fi.uid, gid: fi.gid };
    // New entries belong to us (root); chown only to someone else. chown clears setuid bits, so
    // it comes before the mode.
    if (owner.uid !== euid || owner.gid !== egid) await lchown(target, owner.uid, owner.gid);
    // copyFile gave a file its source's mode already, unless a chown cleared setuid bits.
    const modeKept = fi.isFile() && this.spec.mode === undefined && owner.uid === euid && owner.gid === egid;
    if (!fi.isSymbolicLink() && !modeKept) {
      const mode = this.spec.mode === undefined ? fi.mode & 0o7777 : (fi.mode & 0o7000) | (this.spec.mode & 0o777);
      await chmod(target, mode);
    }
    await this.copyTimes(fi, target);
  }

  private async copyTimes(fi: Stats, target: string): Promise<void> {
    const t = this.spec.timestamp;
    await lutimes(target, t ?? fi.atimeMs / 1000, t ?? fi.mtimeMs / 1000);
  }
}

/** mkdir with the source's mode; true when created, a chmod when it exists and overwriteMeta. */
async function copyDirectoryOnly(dst: string, fi: Stats, overwriteMeta: boolean): Promise<boolean> {
  const st = await lstat(dst).catch(() => undefined);
  if (!st) {
    await mkdir(dst, { mode: fi.mode & 0o7777 });
    return true;
  }
  if (!st.isDirectory()) throw new KilnError("KILN_COPY", `cannot copy to non-directory: ${dst}`);
  if (overwriteMeta) await chmod(dst, fi.mode & 0o7777);
  return false;
}

/** Devices, fifos and sockets: recreated with mknod, which Node cannot do itself. */
async function makeNode(dest: string, st: Stats): Promise<void> {
  const type = st.isFIFO() ? "p" : st.isCharacterDevice() ? "c" : st.isBlockDevice() ? "b" : undefined;
  if (!type) return;
  await mknod(dest, type, Math.floor(st.rdev / 256) & 0xfff, (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00));
}


export async function mkdirAction(root: string, p: string, mode: number, makeParents: boolean, owner: Owner | undefined, timestamp: number | undefined): Promise<void> {
  const clean = path.posix.normalize("/" + p);
  const segs = clean.split("/").filter(Boolean);
  let cur = "";
  for (let i = 0; i < segs.length; i++) {
    cur += "/" + segs[i];
    const target = await secureJoin(root, cur);
    const last = i === segs.length - 1;
    try {
      const st = await stat(target);
      if (!st.isDirectory()) throw new KilnError("KILN_FILEOP", `mkdir ${clean}: ${cur} exists and is not a directory`);
      // An existing directory is fine, with or without makeParents (BuildKit ignores EEXIST).
      continue;
    } catch (err) {
      if (err instanceof KilnError) throw err;
    }
    if (!last && !makeParents) throw new KilnError("KILN_FILEOP", `mkdir ${clean}: parent ${cur} does not exist`);
    // Like Go's MkdirAll, every directory it creates gets the action's mode and owner.
    await mkdir(target, { mode });
    await chmod(target, mode);
    if (owner) await lchown(target, owner.uid, owner.gid);
    if (timestamp !== undefined) await lutimes(target, timestamp, timestamp);
  }
}

export async function mkfileAction(root: string, p: string, mode: number, data: Uint8Array, owner: Owner | undefined, timestamp: number | undefined): Promise<void> {
  const clean = path.posix.normalize("/" + p);
  const target = await secureJoin(root, clean);
  await writeFile(target, data, { mode });
  await chmod(target, mode);
  if (owner) await lchown(target, owner.uid, owner.gid);
  if (timestamp !== undefined) await lutimes(target, timestamp, timestamp);
}

export async function rmAction(root: string, p: string, allowNotFound: boolean, allowWildcard: boolean): Promise<void> {
  const targets = allowWildcard && wildcardChars.test(p) ? await expandWildcard(root, p) : [path.posix.normalize("/" + p)];
  for (const t of targets) {
    const target = await secureJoin(root, t, false);
    try {
      await lstat(target);
    } catch (err) {
      if (allowNotFound) continue;
      throw new KilnError("KILN_FILEOP", `rm ${t}: not found`, { cause: err });
    }
    await rm(target, { recursive: true, force: true });
  }
}

/** `cp -a` of a directory's contents: owners, modes, times, xattrs, hard links, devices and whiteouts kept. */
export function copyAll(signal: AbortSignal, from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("cp", ["-a", "--reflink=auto", `${from}/.`, `${to}/`], { stdio: ["ignore", "ignore", "pipe"], signal });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new KilnError("KILN_COPY", `copying ${from} failed: ${stderr.trim() || `cp exited with ${code}`}`))));
  });
}

/** A pattern list as fsutil's copy compiles it; a malformed one fails the copy. */
function patternMatcher(patterns: string[], what: string): PatternMatcher {
  try {
    return new PatternMatcher(patterns);
  } catch (err) {
    throw new KilnError("KILN_COPY", `invalid ${what}: [${patterns.join(" ")}]: ${(err as Error).message}`, { cause: err });
  }
}
