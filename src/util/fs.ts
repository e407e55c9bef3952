// Filesystem helpers: atomic writes and temp dirs that clean up after themselves.
import { mkdtemp, open, rename, rm, mkdir } from "node:fs/promises";
import path from "node:path";
import { randomBytes } from "node:crypto";

/** Writes `data` to `file` atomically: temp file in the same dir, fsync, rename. */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${randomBytes(6).toString("hex")}`;
  const fh = await open(tmp, "wx", mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export interface TempDir extends AsyncDisposable {
  readonly path: string;
}

export async function makeTempDir(parent: string, prefix: string): Promise<TempDir> {
  await mkdir(parent, { recursive: true });
  const dir = await mkdtemp(path.join(parent, prefix));
  return {
    path: dir,
    async [Symbol.asyncDispose]() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}
