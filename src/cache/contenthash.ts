// Content checksums of paths inside a ref: what a COPY keys on. Path, type, mode, owner, content
// and link target count; times never do. Refs are immutable, so results are remembered per ref.
//
// Files are hashed concurrently and each file's digest is folded into its directory's hash in
// name order, so the result doesn't depend on timing. A ref may come with its files' digests
// already known (a local context remembers them for files that didn't change since the last
// sync), and then unchanged files are not read at all.
import { lstat, readdir, readlink, open } from "node:fs/promises";
import { createHash, type Hash } from "node:crypto";
import path from "node:path";
import { digestOf, mapLimit, secureJoin, throwIfAborted, type Digest } from "../util/index.js";
import type { ImmutableRef } from "./refs.js";
import type { MetadataDB } from "./db.js";

export interface ChecksumOptions {
  followLinks: boolean;
  /** Expand `*`, `?` and `[..]` in the selector (Go's filepath.Match). */
  wildcard: boolean;
  expand?: (root: string, pattern: string) => Promise<string[]>;
}

/** kv bucket: per ref, JSON `{ "/path": "<sha256 hex of content>" }` for files known up front. */
export const fileDigestsBucket = "contenthash.files";

export async function checksumPath(signal: AbortSignal, db: MetadataDB, ref: ImmutableRef | undefined, selector: string, opts: ChecksumOptions): Promise<Digest> {
  if (!ref) return digestOf(`empty:${selector}`);
  const memoKey = `${ref.id}\0${selector}\0${opts.followLinks ? 1 : 0}${opts.wildcard ? 1 : 0}`;
  const memo = db.getKV("contenthash", memoKey);
  if (memo) return memo as Digest;
  const known = db.getKV(fileDigestsBucket, ref.id);
  const fileDigests = known ? new Map(Object.entries(JSON.parse(known) as Record<string, string>)) : undefined;
  await using mnt = await ref.mount(signal);
  const h = createHash("sha256");
  const targets = opts.wildcard && /[*?[\\]/.test(selector) && opts.expand ? await opts.expand(mnt.path, selector) : [path.posix.normalize("/" + selector)];
  for (const t of targets) {
    h.update(`target:${t}\0`);
    const resolved = await secureJoin(mnt.path, t, opts.followLinks);
    // The path inside the ref, for looking up known file digests.
    const inRef = "/" + path.relative(mnt.path, resolved).split(path.sep).filter(Boolean).join("/");
    h.update(await hashTree(signal, resolved, "", inRef, fileDigests));
  }
  const d = `sha256:${h.digest("hex")}` as Digest;
  db.setKV("contenthash", memoKey, d);
  return d;
}

/** The digest of one entry (a directory: of its whole subtree), as bytes to fold into a parent. */
async function hashTree(signal: AbortSignal, abs: string, rel: string, inRef: string, known: Map<string, string> | undefined): Promise<string> {
  throwIfAborted(signal);
  let st;
  try {
    st = await lstat(abs);
  } catch {
    return `missing:${rel}\0`;
  }
  const type = st.isDirectory() ? "d" : st.isFile() ? "f" : st.isSymbolicLink() ? "l" : "o";
  let out = `${type}:${rel}:${st.mode & 0o7777}:${st.uid}:${st.gid}\0`;
  if (type === "l") out += `link:${await readlink(abs)}\0`;
  else if (type === "o") out += `rdev:${st.rdev}\0`;
  else if (type === "f") out += `size:${st.size}\0content:${known?.get(inRef) ?? (await fileDigest(abs))}\0`;
  else {
    const names = (await readdir(abs)).sort();
    const parts = await mapLimit(names, 16, (name) => hashTree(signal, path.join(abs, name), `${rel}/${name}`, inRef === "/" ? `/${name}` : `${inRef}/${name}`, known));
    const h = createHash("sha256");
    for (const p of parts) h.update(p);
    out += `tree:${h.digest("hex")}\0`;
  }
  return out;
}

const chunk = 1 << 16;

/** sha256 hex of a file's bytes, read in chunks (never the whole file in memory). */
export async function fileDigest(file: string): Promise<string> {
  const h: Hash = createHash("sha256");
  const fh = await open(file, "r");
  try {
    const buf = Buffer.allocUnsafe(chunk);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, chunk, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest("hex");
}
