// The worker's id, kept in `<root>/workerid` as BuildKit keeps it: 25 base-36 characters from
// 17 random bytes (high bit set so the length is fixed), made once and then read.
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";

export function newWorkerId(): string {
  const bytes = randomBytes(17);
  bytes[0]! |= 0x80;
  return BigInt(`0x${bytes.toString("hex")}`).toString(36).slice(1, 26);
}

export async function workerId(root: string): Promise<string> {
  const f = path.join(root, "workerid");
  try {
    return (await readFile(f, "utf8")).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  // Two processes may race to create it: whoever loses reads the winner's.
  await writeFile(f, newWorkerId(), { mode: 0o400, flag: "wx" }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
  });
  return (await readFile(f, "utf8")).trim();
}
