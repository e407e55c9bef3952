// Content checksums of paths inside a ref: what a COPY keys on. Path, type, mode, owner, content
// and link target count; times never do. Refs are immutable, so results are remembered per ref.
import { lstat, readdir, readlink } from "node:fs/promises";
import { createReadStream } from "node:fs";
import { createHash, type Hash } from "node:crypto";
import path from "node:path";
import { digestOf, secureJoin, throwIfAborted, type Digest } from "../util/index.js";
import type { ImmutableRef } from "./refs.js";
import type { MetadataDB } from "./db.js";

export interface ChecksumOptions {
  followLinks: boolean;
  /** Expand `*`, `?` and `[..]` in the selector (Go's filepath.Match). */
  wildcard: boolean;
  expand?: (root: string, pattern: string) => Promise<string[]>;
}

export async function checksumPath(signal: AbortSignal, db: MetadataDB, ref: ImmutableRef | undefined, selector: string, opts: ChecksumOptions): Promise<Digest> {
  if (!ref) return digestOf(`empty:${selector}`);
  const memoKey = `${ref.id}\0${selector}\0${opts.followLinks ? 1 : 0}${opts.wildcard ? 1 : 0}`;
  const memo = db.getKV("contenthash", memoKey);
  if (memo) return memo as Digest;
  await using mnt = await ref.mount(signal);
  const h = createHash("sha256");
  const targets = opts.wildcard && /[*?[\\]/.test(selector) && opts.expand ? await opts.expand(mnt.path, selector) : [path.posix.normalize("/" + selector)];
  for (const t of targets) {
    h.update(`target:${t}\0`);
    const resolved = await secureJoin(mnt.path, t, opts.followLinks);
    await hashTree(signal, resolved, "", h);
  }
  const d = `sha256:${h.digest("hex")}` as Digest;
  db.setKV("contenthash", memoKey, d);
  return d;
}

async function hashTree(signal: AbortSignal, abs: string, rel: string, h: Hash): Promise<void> {
  throwIfAborted(signal);
  let st;
  try {
    st = await lstat(abs);
  } catch {
    h.update(`missing:${rel}\0`);
    return;
  }
  const type = st.isDirectory() ? "d" : st.isFile() ? "f" : st.isSymbolicLink() ? "l" : "o";
  h.update(`${type}:${rel}:${st.mode & 0o7777}:${st.uid}:${st.gid}\0`);
  if (type === "l") h.update(`link:${await readlink(abs)}\0`);
  else if (type === "o") h.update(`rdev:${st.rdev}\0`);
  else if (type === "f") {
    h.update(`size:${st.size}\0`);
    for await (const chunk of createReadStream(abs)) h.update(chunk as Buffer);
  } else {
    for (const name of (await readdir(abs)).sort()) await hashTree(signal, path.join(abs, name), `${rel}/${name}`, h);
  }
}
