// Path joins that can never leave their root, even through symlinks already on disk.
import { lstat, readlink } from "node:fs/promises";
import path from "node:path";

/**
 * Lexically joins `rel` under `root`, treating `rel` as if `root` were `/`:
 * `..` cannot climb above root.
 */
export function lexicalJoin(root: string, rel: string): string {
  const cleaned = path.posix.normalize("/" + rel);
  return cleaned === "/" ? root : path.join(root, cleaned);
}

/**
 * Resolves `rel` inside `root` following symlinks as a chroot would: every symlink met on the
 * way is resolved relative to root, so absolute link targets and `..` stay inside it.
 * The last component is followed only when `followFinal` is true.
 */
export async function secureJoin(root: string, rel: string, followFinal = true): Promise<string> {
  const parts = path.posix.normalize("/" + rel).split("/").filter((p) => p !== "");
  let resolved: string[] = [];
  let hops = 0;
  while (parts.length > 0) {
    const part = parts.shift()!;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    if (part === ".") continue;
    const candidate = path.join(root, ...resolved, part);
    const isFinal = parts.length === 0;
    if (isFinal && !followFinal) {
      resolved.push(part);
      break;
    }
    let st;
    try {
      st = await lstat(candidate);
    } catch {
      resolved.push(part);
      continue;
    }
    if (!st.isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++hops > 255) throw new Error(`too many levels of symbolic links resolving ${rel}`);
    const target = await readlink(candidate);
    if (target.startsWith("/")) resolved = [];
    parts.unshift(...target.split("/").filter((p) => p !== ""));
  }
  return path.join(root, ...resolved);
}

/** True when `p` is `root` or lies beneath it (lexically). */
export function isWithin(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}
