// In-process LocalDirs for daemonless builds: the named directories are read straight from disk.
import { lstat, readdir, readlink, mkdir, copyFile, symlink, lchown, chmod, lutimes, utimes, link } from "node:fs/promises";
import path from "node:path";
import { constants } from "node:fs";
import { KilnError, mapLimit, throwIfAborted } from "../util/index.js";
import { compilePatterns, type PatternMatcher } from "./patterns.js";
import { followLinks } from "./followlinks.js";
import type { LocalBase, LocalDirs, LocalEntry, SyncOptions } from "./types.js";

export class DiskLocalDirs implements LocalDirs {
  constructor(private readonly dirs: Record<string, string>) {}

  async list(signal: AbortSignal, name: string, opts: SyncOptions): Promise<LocalEntry[] | undefined> {
    const root = this.dirs[name];
    if (root === undefined) return undefined;
    const excludes = compilePatterns(opts.excludePatterns ?? []);
    let includePatterns = opts.includePatterns;
    // Only what COPY/ADD can read travels: followpaths (and symlink targets on their way) become includes.
    if (opts.followPaths && opts.followPaths.length > 0) {
      const followed = await followLinks(root, opts.followPaths);
      if (followed) includePatterns = [...new Set([...(includePatterns ?? []), ...followed])];
    }
    const includes = includePatterns && includePatterns.length > 0 ? compilePatterns(includePatterns) : undefined;
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
  const paths = names.map((n) => (rel === "" ? n : `${rel}/${n}`));
  // lstat a directory's children together; subdirectories are walked concurrently into their own
  // lists and spliced back in order, so the result stays sorted, parents first.
  const stats = await mapLimit(paths, 64, (p) => lstat(path.join(root, p)));
  const subtrees = new Map<number, Promise<LocalEntry[]>>();
  const entries: (LocalEntry | undefined)[] = [];
  const flags: { excluded: boolean; included: boolean; descend: boolean }[] = [];
  for (let i = 0; i < paths.length; i++) {
    const p = paths[i]!;
    const st = stats[i]!;
    const isDir = st.isDirectory();
    const excluded = excludes.matches(p);
    if (excluded && !(isDir && excludes.mayMatchInside(p))) {
      entries.push(undefined);
      flags.push({ excluded, included: false, descend: false });
      continue;
    }
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
    const descend = isDir && (includes === undefined || included || includes.mayMatchInside(p));
    if (descend) {
      subtrees.set(
        i,
        (async () => {
          const sub: LocalEntry[] = [];
          await walk(signal, root, p, excludes, includes, sub);
          return sub;
        })(),
      );
    }
    entries.push(entry);
    flags.push({ excluded, included, descend });
  }
  await mapLimit(
    entries.map((e, i) => [e, i] as const).filter(([e]) => e?.type === "symlink"),
    64,
    async ([e]) => {
      e!.linkname = await readlink(path.join(root, e!.path));
    },
  );
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    if (!entry) continue;
    const { excluded, included } = flags[i]!;
    if (entry.type === "dir") {
      const sub = (await subtrees.get(i)) ?? [];
      // A directory excluded itself but holding re-included files still has to exist.
      if ((!excluded && included) || sub.length > 0) out.push(entry);
      for (const s of sub) out.push(s);
    } else if (!excluded && included && entry.type !== "other") {
      out.push(entry);
    }
  }
}
