// A local source's followpaths (the context paths COPY and ADD read) as include patterns, with the
// targets of symlinks met along each path added too, as fsutil's FollowLinks resolves them: a
// COPY that follows a symlink must find its target in what was sent.
import { lstat, readdir, readlink } from "node:fs/promises";
import path from "node:path";
import { goMatch as matchSegment, hasGoWildcard as hasWildcard } from "../util/index.js";

export { matchSegment };

/**
 * The followpaths plus every symlink target on their way, relative to root and deduplicated
 * (a path under another is dropped); undefined when one of them is the root itself.
 */
export async function followLinks(root: string, paths: readonly string[]): Promise<string[] | undefined> {
  const resolved = new Set<string>();
  const readSymlink = async (p: string, allowWildcard: boolean): Promise<string[] | undefined> => {
    const real = path.join(root, p);
    const base = path.posix.basename(p);
    if (allowWildcard && hasWildcard(base)) {
      let names: string[];
      try {
        names = await readdir(path.dirname(real));
      } catch {
        return undefined;
      }
      let out: string[] | undefined;
      for (const n of names) {
        if (!matchSegment(base, n)) continue;
        const t = await readSymlink(path.posix.join(path.posix.dirname(p), n), false);
        if (t) out = [...(out ?? []), ...t];
      }
      return out;
    }
    const st = await lstat(real).catch(() => undefined);
    if (!st?.isSymbolicLink()) return undefined;
    const link = path.posix.normalize(await readlink(real));
    return [link.startsWith("/") ? link : path.posix.join("/", path.posix.dirname(p), link)];
  };
  const append = async (p0: string): Promise<void> => {
    let rest = path.posix.normalize(p0).replace(/^\/+/, "");
    if (rest === "" || rest === ".") {
      resolved.add(".");
      return;
    }
    let current = "";
    for (;;) {
      const slash = rest.indexOf("/");
      const part = slash < 0 ? rest : rest.slice(0, slash);
      rest = slash < 0 ? "" : rest.slice(slash + 1);
      current = current === "" ? part : `${current}/${part}`;
      const targets = await readSymlink(current, true);
      if ((rest === "" || targets) && resolved.has(current)) return;
      if (targets) {
        resolved.add(current);
        for (const t of targets) await append(path.posix.join(t, rest));
        return;
      }
      if (rest === "") {
        resolved.add(current);
        return;
      }
    }
  };
  for (const p of paths) await append(p);
  const sorted = [...resolved].sort();
  if (sorted.includes(".")) return undefined;
  const out: string[] = [];
  let last: string | undefined;
  for (const s of sorted) {
    if (last !== undefined && s.startsWith(`${last}/`)) continue;
    out.push(s);
    last = s;
  }
  return out;
}
