// In-process LocalDirs for daemonless builds: the named directories are read straight from disk.
import { lstat, mkdir, copyFile, symlink, lchown, chmod, lutimes, utimes, link } from "node:fs/promises";
import path from "node:path";
import { constants } from "node:fs";
import { KilnError, mapLimit, throwIfAborted } from "../util/index.js";
import { walkTree } from "./fswalk.js";
import { fromGoMode, goModeKind } from "./fsmode.js";
import type { LocalBase, LocalDirs, LocalEntry, SyncOptions } from "./types.js";

export class DiskLocalDirs implements LocalDirs {
  constructor(private readonly dirs: Record<string, string>) {}

  async list(signal: AbortSignal, name: string, opts: SyncOptions): Promise<LocalEntry[] | undefined> {
    const root = this.dirs[name];
    if (root === undefined) return undefined;
    // The same listing a remote client's sender makes (fsutil's walk: its pattern rules, followpaths
    // as includes, parents of included entries), so a build selects the same files in-process and
    // through a daemon.
    const out: LocalEntry[] = [];
    try {
      for await (const { stat } of walkTree(signal, root, opts)) {
        const kind = goModeKind(stat.mode);
        if (kind !== "dir" && kind !== "file" && kind !== "symlink") continue;
        out.push({
          path: stat.path,
          type: kind,
          mode: fromGoMode(stat.mode),
          // Clients send their files as root-owned, as buildctl's file sync does.
          uid: 0,
          gid: 0,
          size: Number(stat.size),
          mtimeMs: Number(stat.modTime / 1_000_000n),
          ...(kind === "symlink" ? { linkname: stat.linkname } : {}),
        });
      }
    } catch (err) {
      if (err instanceof KilnError && err.code === "KILN_LOCAL_NOT_FOUND") {
        throw new KilnError("KILN_LOCAL_NOT_FOUND", `local directory ${JSON.stringify(name)} not found: ${root}`, { cause: err });
      }
      throw err;
    }
    return out;
  }

  async copyTo(signal: AbortSignal, name: string, entries: LocalEntry[], dest: string, base?: LocalBase): Promise<void> {
    const root = this.dirs[name];
    if (root === undefined) throw new KilnError("KILN_LOCAL_NOT_FOUND", `no local directory named ${JSON.stringify(name)}`);
    await copyEntries(signal, root, entries, dest, base);
  }

  sharedKey(name: string): string | undefined {
    return this.dirs[name];
  }
}

// Root-owned files are what copying as root creates; chown only when the entry says otherwise.
const euid = process.geteuid?.() ?? 0;
const egid = process.getegid?.() ?? 0;

/**
 * Copies `entries` from `root` into the empty directory `dest`, keeping mode, owner and times.
 * A file unchanged since `base` (same type, mode, size, mtime) is hard-linked from the earlier
 * snapshot instead of copied: snapshots are immutable, so sharing the inode is safe and an
 * unchanged context costs a link per file rather than its bytes.
 */
export async function copyEntries(signal: AbortSignal, root: string, entries: LocalEntry[], dest: string, base?: LocalBase): Promise<void> {
  const dirs = entries.filter((e) => e.type === "dir");
  // Parents come before children, so plain mkdir in order works.
  for (const d of dirs) {
    throwIfAborted(signal);
    await mkdir(path.join(dest, d.path), { recursive: true });
  }
  const others = entries.filter((e) => e.type === "file" || e.type === "symlink");
  await mapLimit(others, 32, async (e) => {
    throwIfAborted(signal);
    const target = path.join(dest, e.path);
    const prev = base?.entries.get(e.path);
    if (prev && e.type === "file" && sameFile(prev, e)) {
      try {
        await link(path.join(base!.dir, e.path), target);
        return;
      } catch {
        // The earlier snapshot lost the file (or sits on another filesystem): copy instead.
      }
    }
    if (e.type === "file") {
      // copyFile also copies the mode bits.
      await copyFile(path.join(root, e.path), target, constants.COPYFILE_FICLONE);
      if ((e.mode & 0o7777) !== ((await lstat(target)).mode & 0o7777)) await chmod(target, e.mode & 0o7777);
    } else {
      await symlink(e.linkname ?? "", target);
    }
    if (e.uid !== euid || e.gid !== egid) await lchown(target, e.uid, e.gid);
    await lutimes(target, e.mtimeMs / 1000, e.mtimeMs / 1000);
  });
  // Directory times last: writing children changes them. Deepest first.
  await mapLimit([...dirs].reverse(), 32, async (d) => {
    const target = path.join(dest, d.path);
    if (d.uid !== euid || d.gid !== egid) await lchown(target, d.uid, d.gid);
    await chmod(target, d.mode & 0o7777);
    await utimes(target, d.mtimeMs / 1000, d.mtimeMs / 1000);
  });
}

function sameFile(a: LocalEntry, b: LocalEntry): boolean {
  return a.type === b.type && a.mode === b.mode && a.size === b.size && a.mtimeMs === b.mtimeMs && a.uid === b.uid && a.gid === b.gid;
}

