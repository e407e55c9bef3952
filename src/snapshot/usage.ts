// Disk usage of a directory tree as continuity's DiskUsage counts it: allocated blocks, each
// inode once however many hardlinks it has.
import { lstat, readdir } from "node:fs/promises";
import type { BigIntStats } from "node:fs";

const BATCH = 64;
const SLASH = Buffer.from("/");

export async function diskUsage(root: string): Promise<number> {
  const seen = new Set<bigint>();
  let total = 0;
  const count = (st: BigIntStats) => {
    if (!st.isDirectory() && st.nlink > 1n) {
      if (seen.has(st.ino)) return;
      seen.add(st.ino);
    }
    total += Number(st.blocks) * 512;
  };
  count(await lstat(root, { bigint: true }));
  // Names are raw bytes: a layer's file names need not be UTF-8.
  const dirs: Buffer[] = [Buffer.from(root)];
  while (dirs.length > 0) {
    const dir = dirs.pop()!;
    const names = await readdir(dir, { encoding: "buffer" });
    for (let i = 0; i < names.length; i += BATCH) {
      const batch = names.slice(i, i + BATCH).map((n) => Buffer.concat([dir, SLASH, n]));
      const stats = await Promise.all(batch.map((p) => lstat(p, { bigint: true }).catch(() => undefined)));
      stats.forEach((st, j) => {
        if (!st) return;
        count(st);
        if (st.isDirectory()) dirs.push(batch[j]!);
      });
    }
  }
  return total;
}
