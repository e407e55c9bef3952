// Resolves user and group names through a root filesystem's /etc/passwd and /etc/group.
import { readFile } from "node:fs/promises";
import { KilnError, secureJoin } from "../util/index.js";

async function readDb(root: string, file: string): Promise<string[][]> {
  try {
    const text = await readFile(await secureJoin(root, file), "utf8");
    return text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(":"));
  } catch {
    return [];
  }
}

export async function lookupUid(root: string | undefined, name: string): Promise<{ uid: number; gid: number }> {
  if (/^\d+$/.test(name)) {
    const uid = Number(name);
    const row = root ? (await readDb(root, "/etc/passwd")).find((r) => Number(r[2]) === uid) : undefined;
    return { uid, gid: row ? Number(row[3]) : uid };
  }
  const row = root ? (await readDb(root, "/etc/passwd")).find((r) => r[0] === name) : undefined;
  if (!row) throw new KilnError("KILN_USER", `unable to find user ${name}: no matching entries in passwd file`);
  return { uid: Number(row[2]), gid: Number(row[3]) };
}

export async function lookupGid(root: string | undefined, name: string): Promise<number> {
  if (/^\d+$/.test(name)) return Number(name);
  const row = root ? (await readDb(root, "/etc/group")).find((r) => r[0] === name) : undefined;
  if (!row) throw new KilnError("KILN_USER", `unable to find group ${name}: no matching entries in group file`);
  return Number(row[2]);
}
