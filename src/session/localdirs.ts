// In-process LocalDirs for daemonless builds: the named directories are read straight from disk.
import { lstat, readdir, readlink, mkdir, copyFile, symlink, lchown, chmod, lutimes, utimes } from "node:fs/promises";
import path from "node:path";
import { constants } from "node:fs";
import { KilnError, throwIfAborted } from "../util/index.js";
import { compilePatterns, type PatternMatcher } from "./patterns.js";
import type { LocalDirs, LocalEntry, SyncOptions } from "./types.js";

export class DiskLocalDirs implements LocalDirs {
  constructor(private readonly dirs: Record<string, string>) {}

  async list(signal: AbortSignal, name: string, opts: SyncOptions): Promise<LocalEntry[] | undefined> {
    const root = this.dirs[name];
    if (root === undefined) return undefined;
    const excludes = compilePatterns(opts.excludePatterns ?? []);
    const includes = opts.includePatterns && opts.includePatterns.length > 0 ? compilePatterns(opts.includePatterns) : undefined;
    const out: LocalEntry[] = [];
    try {
      await walk(signal, root, "", excludes, includes, out);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new KilnError("KILN_LOCAL_NOT_FOUND", `local directory ${JSON.stringify(name)} not found: ${root}`, { cause: err });
      }
      throw err;
    }
    return out;
  }

  async copyTo(signal: AbortSignal, name: string, entries: LocalEntry[], dest: string): Promise<void> {
    const root = this.dirs[name];
    if (root === undefined) throw new KilnError("KILN_LOCAL_NOT_FOUND", `no local directory named ${JSON.stringify(name)}`);
    const dirs: LocalEntry[] = [];
    let i = 0;
    for (const e of entries) {
      if ((++i & 255) === 0) throwIfAborted(signal);
      const target = path.join(dest, e.path);
      const src = path.join(root, e.path);
      switch (e.type) {
        case "dir":
          await mkdir(target, { recursive: true });
          dirs.push(e);
          continue;
        case "file":
          await copyFile(src, target, constants.COPYFILE_FICLONE);
          break;
        case "symlink":
          await symlink(e.linkname ?? "", target);
          break;
        default:
          continue;
      }
      await lchown(target, e.uid, e.gid);
      if (e.type !== "symlink") await chmod(target, e.mode & 0o7777);
      await lutimes(target, e.mtimeMs / 1000, e.mtimeMs / 1000);
    }
    // Directory times last: writing children changes them.
    for (const d of dirs.reverse()) {
      const target = path.join(dest, d.path);
      await lchown(target, d.uid, d.gid);
      await chmod(target, d.mode & 0o7777);
      await utimes(target, d.mtimeMs / 1000, d.mtimeMs / 1000);
    }
  }
}

async function walk(
  signal: AbortSignal,
  root: string,
  rel: string,
  excludes: PatternMatcher,
  includes: PatternMatcher | undefined,
  out: LocalEntry[],
): Promise<void> {
  throwIfAborted(signal);
  const names = (await readdir(path.join(root, rel))).sort();
  for (const n of names) {
    const p = rel === "" ? n : `${rel}/${n}`;
    const st = await lstat(path.join(root, p));
    const isDir = st.isDirectory();
    if (excludes.matches(p) && !(isDir && excludes.mayMatchInside(p))) continue;
    const excluded = excludes.matches(p);
    const included = includes === undefined || includes.matches(p) || includes.matchesParent(p);
    const entry: LocalEntry = {
      path: p,
      type: isDir ? "dir" : st.isFile() ? "file" : st.isSymbolicLink() ? "symlink" : "other",
      mode: st.mode,
      // Clients send their files as root-owned, as buildctl's file sync does.
      uid: 0,
      gid: 0,
      size: st.size,
      mtimeMs: Math.trunc(st.mtimeMs),
    };
    if (entry.type === "symlink") entry.linkname = await readlink(path.join(root, p));
    if (isDir) {
      const mark = out.length;
      if (!excluded && included) out.push(entry);
      if (includes === undefined || included || includes.mayMatchInside(p)) {
        await walk(signal, root, p, excludes, includes, out);
      }
      // A directory excluded itself but holding re-included files still has to exist.
      if ((excluded || !included) && out.length > mark) out.splice(mark, 0, entry);
    } else if (!excluded && included && entry.type !== "other") {
      out.push(entry);
    }
  }
}
