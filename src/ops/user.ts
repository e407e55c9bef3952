// Resolves user and group names through a root filesystem's /etc/passwd and /etc/group, for
// file ops' owners (`COPY --chown=name:group`).
import { readFile } from "node:fs/promises";
import { secureJoin } from "../util/index.js";

async function readDb(root: string, file: string): Promise<string[][]> {
  try {
    const text = await readFile(await secureJoin(root, file), "utf8");
    return text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(":"));
  } catch {
    return [];
  }
}

/**
 * The uid and primary gid of `name`; undefined when the file or the entry is missing. BuildKit's
 * file op then keeps root's ids rather than failing (unlike RUN's USER), and so does kiln.
 */
export async function lookupUid(root: string | undefined, name: string): Promise<{ uid: number; gid: number } | undefined> {
  const row = root ? (await readDb(root, "/etc/passwd")).find((r) => r[0] === name) : undefined;
  return row ? { uid: Number(row[2]), gid: Number(row[3]) } : undefined;
}

/** The gid of group `name`; undefined when missing (the caller keeps the user's gid, as BuildKit). */
export async function lookupGid(root: string | undefined, name: string): Promise<number | undefined> {
  const row = root ? (await readDb(root, "/etc/group")).find((r) => r[0] === name) : undefined;
  return row ? Number(row[2]) : undefined;
}
