// The filesystem work of FileOp actions — copy, mkdir, mkfile, rm — on mounted snapshots, with
// every path resolved inside its root so nothing (`..`, absolute symlinks) can escape it.
import { lstat, mkdir, readdir, readlink, symlink, chmod, lchown, lutimes, copyFile, rm, writeFile, link, stat } from "node:fs/promises";
import type { Stats } from "node:fs";
import { constants } from "node:fs";
import path from "node:path";
import { KilnError, mapLimit, secureJoin, throwIfAborted } from "../util/index.js";

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
  /** Mode bits to set on everything copied; undefined keeps the source's. */
  mode?: number;
  followSymlink: boolean;
  dirCopyContents: boolean;
  createDestPath: boolean;
  allowWildcard: boolean;
  allowEmptyWildcard: boolean;
  /** Seconds since the epoch for every copied entry's mtime; undefined keeps the source's. */
  timestamp?: number;
  includePatterns?: string[];
  excludePatterns?: string[];
}

function notFound(p: string, cause?: unknown): KilnError {
  return new KilnError("KILN_COPY_NOT_FOUND", `failed to compute cache key: failed to calculate checksum of ref: "${p}": not found`, { cause });
}

const wildcardChars = /[*?[\\]/;

/** Go's filepath.Match for one path element. */
export function matchSegment(pattern: string, name: string): boolean {
  let re = "^";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "\\" && i + 1 < pattern.length) re += escapeRe(pattern[++i]!);
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) return false;
      let cls = pattern.slice(i + 1, end);
      if (cls.startsWith("^")) cls = "!" + cls.slice(1);
      re += "[" + (cls.startsWith("!") ? "^" + cls.slice(1) : cls).replace(/\\/g, "\\\\") + "]";
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(re + "$", "s").test(name);
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** Expands a wildcard path inside root into the matching paths (relative, cleaned). */
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

export async function copy(signal: AbortSignal, srcRoot: string, destRoot: string, spec: CopySpec): Promise<void> {
  let sources: string[];
  if (spec.allowWildcard && wildcardChars.test(spec.src)) {
    sources = await expandWildcard(srcRoot, spec.src);
    if (sources.length === 0) {
      if (spec.allowEmptyWildcard) return;
      throw notFound(spec.src);
    }
  } else {
    sources = [path.posix.normalize("/" + spec.src)];
  }
  const destIsDirHint = spec.dest.endsWith("/") || spec.dest.endsWith("/.") || sources.length > 1;
  const destClean = path.posix.normalize("/" + spec.dest);
  const hardlinks = new Map<string, Promise<string>>();
  for (const src of sources) {
    const srcPath = await secureJoin(srcRoot, src, spec.followSymlink);
    let st: Stats;
    try {
      st = await lstat(srcPath);
    } catch (err) {
      throw notFound(src, err);
    }
    let destPath = await secureJoin(destRoot, destClean);
    let destStat: Stats | undefined;
    try {
      destStat = await stat(destPath);
    } catch {
      destStat = undefined;
    }
    if (st.isDirectory() && spec.dirCopyContents) {
      // Copy the directory's contents into dest (dest becomes the directory).
      await ensureDir(destRoot, destClean, spec);
      await copyTree(signal, srcPath, destPath, spec, hardlinks, true);
      continue;
    }
    if (destIsDirHint || destStat?.isDirectory()) {
      await ensureDir(destRoot, destClean, spec);
      destPath = await secureJoin(destRoot, path.posix.join(destClean, path.posix.basename(src) || "/"), false);
    } else {
      const parent = path.posix.dirname(destClean);
      if (spec.createDestPath) await ensureDir(destRoot, parent, spec);
      destPath = await secureJoin(destRoot, destClean, false);
    }
    if (st.isDirectory()) await copyTree(signal, srcPath, destPath, spec, hardlinks, false);
    else await copyEntry(srcPath, destPath, st, spec, hardlinks);
  }
}

async function ensureDir(root: string, rel: string, spec: CopySpec): Promise<void> {
  const segs = rel.split("/").filter(Boolean);
  let cur = "";
  for (const s of segs) {
    cur += "/" + s;
    const p = await secureJoin(root, cur);
    try {
      const st = await stat(p);
      if (!st.isDirectory()) throw new KilnError("KILN_COPY", `cannot copy to ${rel}: ${cur} is not a directory`);
    } catch (err) {
      if (err instanceof KilnError) throw err;
      await mkdir(p, { mode: 0o755 });
      if (spec.owner) await lchown(p, spec.owner.uid, spec.owner.gid);
    }
  }
}

async function copyTree(signal: AbortSignal, src: string, dest: string, spec: CopySpec, hardlinks: Map<string, Promise<string>>, merge: boolean): Promise<void> {
  throwIfAborted(signal);
  const st = await lstat(src);
  let exists = false;
  try {
    exists = (await lstat(dest)).isDirectory();
  } catch {
    exists = false;
  }
  if (!exists) await mkdir(dest);
  // A directory's entries are copied concurrently: thousands of small files are bound by
  // syscall round trips, not bandwidth.
  const names = (await readdir(src)).sort();
  await mapLimit(names, 32, async (name) => {
    const s = path.join(src, name);
    const d = path.join(dest, name);
    const cst = await lstat(s);
    if (cst.isDirectory()) await copyTree(signal, s, d, spec, hardlinks, false);
    else await copyEntry(s, d, cst, spec, hardlinks, !exists);
  });
  // A merge into an existing destination keeps that directory's own metadata, as BuildKit does.
  if (!merge || !exists) await applyMeta(dest, st, spec, false);
}

async function copyEntry(src: string, dest: string, st: Stats, spec: CopySpec, hardlinks: Map<string, Promise<string>>, freshDir = false): Promise<void> {
  // In a directory this copy just created there is nothing to replace.
  if (!freshDir) {
    try {
      const old = await lstat(dest);
      if (old.isDirectory() && !st.isDirectory()) await rm(dest, { recursive: true });
      else if (!old.isDirectory()) await rm(dest);
    } catch {
      // nothing there
    }
  }
  if (st.nlink > 1 && !st.isDirectory()) {
    const key = `${st.dev}:${st.ino}`;
    const first = hardlinks.get(key);
    if (first) {
      // Entries are copied concurrently: wait for the first link of the inode to exist.
      await link(await first, dest);
      return;
    }
    let done!: (p: string) => void;
    hardlinks.set(key, new Promise<string>((r) => (done = r)));
    try {
      await copyOne(src, dest, st, spec);
    } finally {
      done(dest);
    }
    return;
  }
  await copyOne(src, dest, st, spec);
}

async function copyOne(src: string, dest: string, st: Stats, spec: CopySpec): Promise<void> {
  if (st.isSymbolicLink()) {
    await symlink(await readlink(src), dest);
  } else if (st.isFile()) {
    await copyFile(src, dest, constants.COPYFILE_FICLONE);
  } else {
    // Devices, fifos and sockets: recreate with mknod, which Node cannot do itself.
    const { execFile } = await import("node:child_process");
    const { promisify } = await import("node:util");
    const type = st.isFIFO() ? "p" : st.isCharacterDevice() ? "c" : st.isBlockDevice() ? "b" : undefined;
    if (!type) return;
    const args = [dest, type];
    if (type !== "p") args.push(String(Math.floor(st.rdev / 256) & 0xfff), String((st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)));
    await promisify(execFile)("mknod", args);
  }
  await applyMeta(dest, st, spec, st.isSymbolicLink(), st.isFile());
}

async function applyMeta(p: string, st: Stats, spec: CopySpec, isLink: boolean, copiedFile = false): Promise<void> {
  const owner = spec.owner ?? { uid: st.uid, gid: st.gid };
  // New files belong to us (root); chown only to someone else. chown clears setuid bits, so
  // it comes before the mode.
  if (owner.uid !== euid || owner.gid !== egid) await lchown(p, owner.uid, owner.gid);
  // copyFile already gave a file its source's mode bits.
  if (!isLink && !(copiedFile && spec.mode === undefined && (owner.uid === euid && owner.gid === egid))) await chmod(p, spec.mode ?? st.mode & 0o7777);
  const t = spec.timestamp ?? st.mtimeMs / 1000;
  await lutimes(p, spec.timestamp ?? st.atimeMs / 1000, t);
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
      if (last && !makeParents) throw new KilnError("KILN_FILEOP", `mkdir ${clean}: file exists`);
      continue;
    } catch (err) {
      if (err instanceof KilnError) throw err;
    }
    if (!last && !makeParents) throw new KilnError("KILN_FILEOP", `mkdir ${clean}: parent ${cur} does not exist`);
    await mkdir(target, { mode: last ? mode : 0o755 });
    await chmod(target, last ? mode : 0o755);
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
