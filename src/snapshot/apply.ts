// Layer apply: unpacks an (uncompressed) OCI layer tar straight into an active snapshot's upper
// dir, turning OCI whiteouts into overlay ones and never writing outside the upper dir.
import { createHash } from "node:crypto";
import { spawn } from "node:child_process";
import { constants as fsc, type BigIntStats } from "node:fs";
import { chmod, link, lchown, lutimes, mkdir, open, rm, symlink } from "node:fs/promises";
import { listAttributes, getAttribute, setAttribute } from "@napi-rs/xattr";
import type { Readable } from "node:stream";
import { CanceledError, KilnError, throwIfAborted, type Digest } from "../util/index.js";
import type { Snapshotter } from "./types.js";
import { parentUpperDirs, statOrThrow } from "./chain.js";
import { isWhiteout, joinPath, LayerView, lstatMaybe, relName, utf8Path, type Components } from "./layerview.js";
import { readTar, TypeCont, type TarEntryHeader, type TarTime } from "./tarreader.js";
import { TypeBlock, TypeChar, TypeDir, TypeFifo, TypeLink, TypeReg, TypeSymlink } from "./tarwriter.js";

export interface ApplyLayerResult {
  /** sha256 of the uncompressed tar stream, every byte of it. */
  diffId: Digest;
  /** Length of the uncompressed tar stream. */
  size: number;
}

export class UnsafeLayerError extends KilnError {
  constructor(message: string) {
    super("KILN_LAYER_UNSAFE", message, { hint: "the layer tar tries to write outside its directory or through a symlink" });
    this.name = "UnsafeLayerError";
  }
}

const WH = ".wh.";
const WH_OPAQUE = ".wh..wh..opq";
const WH_META = ".wh..wh.";
const NODE_BATCH = 4096;
/** Files up to this size are buffered and written in the background, MAX_INFLIGHT at a time. */
const SMALL_FILE = 1 << 20;
const MAX_INFLIGHT = 16;

/**
 * Applies `tar` to the active snapshot `snapshotId` and returns its diffID. Entries whose path
 * contains `..`, or whose parent (or hardlink target's parent) is a symlink, are rejected.
 * Sockets, global PAX headers and `trusted.*` xattrs are ignored, as containerd does.
 */
export async function applyLayer(
  signal: AbortSignal,
  snapshotter: Snapshotter,
  snapshotId: string,
  tar: Readable | AsyncIterable<Uint8Array>,
): Promise<ApplyLayerResult> {
  let finished = false;
  let applier: Applier | undefined;
  try {
    throwIfAborted(signal);
    const info = await statOrThrow(snapshotter, snapshotId);
    if (info.kind !== "active") throw new KilnError("KILN_SNAPSHOT_COMMITTED", `snapshot ${snapshotId} is committed; layers apply to active snapshots only`);
    const base = new LayerView((await parentUpperDirs(snapshotter, info)).map((p) => Buffer.from(p)));
    applier = new Applier(signal, Buffer.from(snapshotter.upperDir(snapshotId)), base);

    const hash = createHash("sha256");
    let size = 0;
    const counted = (async function* () {
      for await (const chunk of tar as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        size += chunk.byteLength;
        yield chunk;
      }
    })();
    for await (const entry of readTar(counted)) {
      if (signal.aborted) throw new CanceledError(signal.reason);
      await applier.entry(entry.header, entry.body());
    }
    await applier.finish();
    finished = true;
    return { diffId: `sha256:${hash.digest("hex")}`, size };
  } finally {
    if (!finished) {
      // Background writes must be over before the caller discards the snapshot.
      await applier?.drain().catch(() => {});
      if ("destroy" in tar && typeof tar.destroy === "function") tar.destroy();
    }
  }
}

interface PendingNode {
  comps: Buffer[];
  kind: "c" | "b" | "p";
  major: number;
  minor: number;
  hdr: TarEntryHeader | undefined; // undefined for whiteouts
  uid: number;
  gid: number;
}

function nameComps(name: Buffer, what: string): Buffer[] {
  const comps: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= name.length; i++) {
    if (i === name.length || name[i] === 0x2f) {
      const c = name.subarray(start, i);
      start = i + 1;
      if (c.length === 0 || (c.length === 1 && c[0] === 0x2e)) continue;
      if (c.length === 2 && c[0] === 0x2e && c[1] === 0x2e) throw new UnsafeLayerError(`${what} ${JSON.stringify(name.toString())} contains '..'`);
      comps.push(c);
    }
  }
  return comps;
}

function key(comps: Components): string {
  return relName(comps).toString("latin1");
}

function timeSeconds(t: TarTime): number {
  return t.sec + t.nsec / 1e9;
}

function errno(err: unknown): number | undefined {
  const m = /\(os error (\d+)\)/.exec(err instanceof Error ? err.message : String(err));
  return m ? Number(m[1]) : undefined;
}
const EPERM = 1;
const ENOTSUP = 95;

class Applier {
  /** Relative paths known to be real directories inside the upper dir (not symlinks). */
  private readonly knownDirs = new Set<string>([""]);
  /** Directories this run created: everything in them is in `written`, so no lstat is needed. */
  private readonly freshDirs = new Set<string>();
  /** Every path this run created (it may still be in flight). */
  private readonly written = new Set<string>();
  /** Small-file writes running in the background (file creation is syscall-bound, not CPU-bound). */
  private readonly inflight = new Set<Promise<void>>();
  private failure: unknown;
  private pending: PendingNode[] = [];
  private readonly pendingKeys = new Set<string>();
  private readonly dirTimes: { comps: Buffer[]; atime: number; mtime: number }[] = [];

  constructor(
    private readonly signal: AbortSignal,
    private readonly upper: Buffer,
    private readonly base: LayerView,
  ) {}

  private path(comps: Components): Buffer {
    return joinPath(this.upper, comps);
  }

  async entry(hdr: TarEntryHeader, body: AsyncIterable<Buffer>): Promise<void> {
    const comps = nameComps(hdr.name, "entry");
    if (comps.length === 0) return; // the layer's root: containerd ignores it too
    const base = comps.at(-1)!.toString("latin1");
    const parent = comps.slice(0, -1);

    if (base.startsWith(WH)) {
      if (base === WH_OPAQUE) {
        await this.ensureParents(comps);
        await setXattrStrict(this.path(parent), "trusted.overlay.opaque", Buffer.from("y"));
      } else if (!base.startsWith(WH_META)) {
        const orig = comps.at(-1)!.subarray(WH.length);
        if (orig.length === 0 || orig.equals(Buffer.from(".")) || orig.equals(Buffer.from(".."))) {
          throw new UnsafeLayerError(`invalid whiteout ${JSON.stringify(hdr.name.toString())}`);
        }
        const target = [...parent, orig];
        await this.ensureParents(target);
        await this.flushIfPending(target);
        if ((await this.existing(target)) !== undefined) await this.removeExisting(target);
        this.written.add(key(target));
        this.queueNode({ comps: target, kind: "c", major: 0, minor: 0, hdr: undefined, uid: hdr.uid, gid: hdr.gid });
      }
      return;
    }

    await this.ensureParents(comps);
    await this.flushIfPending(comps);
    const p = this.path(comps);
    const k = key(comps);
    const existing = await this.existing(comps);
    const isDir = hdr.typeflag === TypeDir;
    const replacedWhiteout = existing !== undefined && isWhiteout(existing);
    if (existing !== undefined && !(existing.isDirectory() && isDir)) await this.removeExisting(comps);
    this.written.add(k);
    const mode = hdr.mode & 0o7777;

    switch (hdr.typeflag) {
      case TypeDir: {
        if (!existing?.isDirectory()) {
          await mkdir(p, 0o700);
          this.freshDirs.add(k);
        }
        this.knownDirs.add(k);
        await lchown(p, hdr.uid, hdr.gid);
        await applyXattrs(p, hdr, "dir");
        await chmod(p, mode);
        // A directory replacing a whiteout must not show what the whiteout hid.
        if (replacedWhiteout) await setXattrStrict(p, "trusted.overlay.opaque", Buffer.from("y"));
        this.dirTimes.push({ comps, atime: atimeOf(hdr), mtime: timeSeconds(hdr.mtime) });
        return;
      }
      case TypeReg:
      case TypeCont: {
        if (hdr.size <= SMALL_FILE) {
          const chunks: Buffer[] = [];
          for await (const chunk of body) chunks.push(chunk);
          const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
          await this.background(() => writeFile(p, hdr, data));
        } else {
          await writeFile(p, hdr, body, this.signal);
        }
        return;
      }
      case TypeSymlink: {
        await symlink(hdr.linkname, p);
        await lchown(p, hdr.uid, hdr.gid);
        await applyXattrs(p, hdr, "symlink");
        await lutimes(p, atimeOf(hdr), timeSeconds(hdr.mtime));
        return;
      }
      case TypeLink: {
        await this.drain(); // the target may still be being written
        const target = nameComps(hdr.linkname, "hardlink target");
        if (target.length === 0) throw new UnsafeLayerError(`hardlink ${JSON.stringify(hdr.name.toString())} points at the layer root`);
        await this.checkRealParents(target, hdr);
        await this.flushIfPending(target);
        const tp = this.path(target);
        const tst = await lstatMaybe(tp);
        if (tst === undefined || tst.isDirectory()) {
          throw new KilnError("KILN_LAYER_HARDLINK", `hardlink ${JSON.stringify(hdr.name.toString())} → ${JSON.stringify(hdr.linkname.toString())}: target is not a file of this layer`);
        }
        await link(tp, p);
        await lchown(p, hdr.uid, hdr.gid);
        await applyXattrs(p, hdr, tst.isSymbolicLink() ? "symlink" : "file");
        if (!tst.isSymbolicLink()) await chmod(p, mode);
        await lutimes(p, atimeOf(hdr), timeSeconds(hdr.mtime));
        return;
      }
      case TypeChar:
      case TypeBlock:
      case TypeFifo: {
        const kind = hdr.typeflag === TypeChar ? "c" : hdr.typeflag === TypeBlock ? "b" : "p";
        if (hdr.devmajor < 0 || hdr.devminor < 0 || hdr.devmajor > 0xffffffff || hdr.devminor > 0xffffffff) {
          throw new KilnError("KILN_LAYER_DEVICE", `device ${JSON.stringify(hdr.name.toString())}: number ${hdr.devmajor}:${hdr.devminor} out of range`);
        }
        this.queueNode({ comps, kind, major: hdr.devmajor, minor: hdr.devminor, hdr, uid: hdr.uid, gid: hdr.gid });
        if (this.pending.length >= NODE_BATCH) await this.flush();
        return;
      }
      default:
        throw new KilnError("KILN_LAYER_ENTRY_TYPE", `entry ${JSON.stringify(hdr.name.toString())}: unhandled tar type ${JSON.stringify(String.fromCharCode(hdr.typeflag))}`);
    }
  }

  /** Runs `task` without waiting for it, with at most MAX_INFLIGHT running; failures surface at the next drain. */
  private async background(task: () => Promise<void>): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    while (this.inflight.size >= MAX_INFLIGHT) await Promise.race(this.inflight);
    if (this.failure !== undefined) throw this.failure;
    const p: Promise<void> = task()
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  /** Waits for every background write; rethrows the first failure. */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all(this.inflight);
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * What is at `comps` now. Paths this run wrote may still be in flight, so wait for them; paths
   * in directories this run created cannot exist unless this run wrote them.
   */
  private async existing(comps: Components): Promise<BigIntStats | undefined> {
    const k = key(comps);
    if (this.written.has(k)) await this.drain();
    else if (this.freshDirs.has(key(comps.slice(0, -1)))) return undefined;
    return lstatMaybe(this.path(comps));
  }

  async finish(): Promise<void> {
    await this.drain();
    await this.flush();
    for (const d of this.dirTimes) {
      const p = this.path(d.comps);
      const st = await lstatMaybe(p);
      if (st?.isDirectory()) await lutimes(p, d.atime, d.mtime);
    }
  }

  /**
   * Makes every parent of `comps` a real directory in the upper dir. Missing ones are created
   * with the attributes the parents' merged view shows there (as containerd's mkparent does);
   * a symlink on the way is refused rather than followed.
   */
  private async ensureParents(comps: Components): Promise<void> {
    for (let i = 1; i < comps.length; i++) {
      const prefix = comps.slice(0, i);
      const k = key(prefix);
      if (this.knownDirs.has(k)) continue;
      if (this.pendingKeys.has(k)) await this.flush();
      const p = this.path(prefix);
      const st = await this.existing(prefix);
      if (st === undefined) {
        await mkdir(p, 0o755);
        await this.copyDirInfo(prefix, p);
        this.freshDirs.add(k);
        this.written.add(k);
      } else if (st.isSymbolicLink()) {
        throw new UnsafeLayerError(`${JSON.stringify(relName(comps).toString())} would be written through the symlink ${JSON.stringify(relName(prefix).toString())}`);
      } else if (isWhiteout(st)) {
        // Deleted, then written below: the directory is new, so nothing beneath may show through.
        await rm(p);
        await mkdir(p, 0o755);
        await setXattrStrict(p, "trusted.overlay.opaque", Buffer.from("y"));
        this.freshDirs.add(k);
        this.written.add(k);
      } else if (!st.isDirectory()) {
        throw new KilnError("KILN_LAYER_NOTDIR", `${JSON.stringify(relName(comps).toString())}: parent ${JSON.stringify(relName(prefix).toString())} is not a directory`);
      }
      this.knownDirs.add(k);
    }
  }

  /** Hardlink targets must sit under real directories of this layer; nothing is created. */
  private async checkRealParents(comps: Components, hdr: TarEntryHeader): Promise<void> {
    for (let i = 1; i < comps.length; i++) {
      const prefix = comps.slice(0, i);
      if (this.knownDirs.has(key(prefix))) continue;
      const st = await lstatMaybe(this.path(prefix));
      if (st?.isSymbolicLink()) {
        throw new UnsafeLayerError(`hardlink ${JSON.stringify(hdr.name.toString())} → ${JSON.stringify(hdr.linkname.toString())} goes through a symlink`);
      }
    }
  }

  private async copyDirInfo(comps: Components, p: Buffer): Promise<void> {
    const below = await this.base.lookup(comps);
    if (below === undefined || !below.stat.isDirectory()) return;
    const st = below.stat;
    await lchown(p, Number(st.uid), Number(st.gid));
    await chmod(p, Number(st.mode & 0o7777n));
    await lutimes(p, Number(st.atimeNs) / 1e9, Number(st.mtimeNs) / 1e9);
    const src = utf8Path(below.path);
    const dst = utf8Path(p);
    if (src === undefined || dst === undefined) return;
    for (const name of await listAttributes(src)) {
      if (name.startsWith("trusted.")) continue;
      const v = await getAttribute(src, name);
      if (v) await setAttribute(dst, name, v);
    }
  }

  /** Removes what is at `comps` (rare: duplicate entries, whiteouts over this layer's own files). */
  private async removeExisting(comps: Components): Promise<void> {
    await this.drain();
    await this.flush();
    await rm(this.path(comps), { recursive: true, force: true });
    const k = key(comps);
    for (const set of [this.knownDirs, this.freshDirs]) {
      for (const d of set) if (d === k || d.startsWith(k + "/")) set.delete(d);
    }
  }

  private queueNode(n: PendingNode): void {
    this.pending.push(n);
    this.pendingKeys.add(key(n.comps));
  }

  private async flushIfPending(comps: Components): Promise<void> {
    if (this.pendingKeys.size === 0) return;
    for (let i = 1; i <= comps.length; i++) {
      if (this.pendingKeys.has(key(comps.slice(0, i)))) return this.flush();
    }
  }

  /** Creates the queued device nodes, fifos and whiteouts with one `mknod` run per batch. */
  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const nodes = this.pending;
    this.pending = [];
    this.pendingKeys.clear();
    throwIfAborted(this.signal);
    const devs = nodes.filter((n) => n.kind !== "p");
    const fifos = nodes.filter((n) => n.kind === "p");
    const arg = (s: string | Buffer) => Buffer.concat([typeof s === "string" ? Buffer.from(s) : s, Buffer.from([0])]);
    if (devs.length > 0) {
      const input = devs.flatMap((n) => [arg("-m"), arg("0"), arg("--"), arg(this.path(n.comps)), arg(n.kind), arg(String(n.major)), arg(String(n.minor))]);
      await runXargs(["-0", "-r", "-n", "7", "mknod"], Buffer.concat(input));
    }
    if (fifos.length > 0) {
      const input = fifos.flatMap((n) => [arg("-m"), arg("0"), arg("--"), arg(this.path(n.comps)), arg("p")]);
      await runXargs(["-0", "-r", "-n", "5", "mknod"], Buffer.concat(input));
    }
    for (const n of nodes) {
      const p = this.path(n.comps);
      await lchown(p, n.uid, n.gid);
      if (n.hdr === undefined) continue; // whiteouts keep mode 0, as overlayfs makes them
      await applyXattrs(p, n.hdr, "special");
      await chmod(p, n.hdr.mode & 0o7777);
      await lutimes(p, atimeOf(n.hdr), timeSeconds(n.hdr.mtime));
    }
  }
}

/** Creates a regular file (never over an existing path or through a symlink) and sets its metadata. */
async function writeFile(p: Buffer, hdr: TarEntryHeader, data: Buffer | AsyncIterable<Buffer>, signal?: AbortSignal): Promise<void> {
  const fh = await open(p, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  try {
    if (Buffer.isBuffer(data)) {
      if (data.length > 0) await fh.write(data);
    } else {
      for await (const chunk of data) {
        if (signal?.aborted) throw new CanceledError(signal.reason);
        await fh.write(chunk);
      }
    }
    await fh.chown(hdr.uid, hdr.gid);
    await applyXattrs(p, hdr, "file");
    await fh.chmod(hdr.mode & 0o7777); // after chown, which clears setuid/setgid
    await fh.utimes(atimeOf(hdr), timeSeconds(hdr.mtime));
  } finally {
    await fh.close();
  }
}

function atimeOf(hdr: TarEntryHeader): number {
  const m = timeSeconds(hdr.mtime);
  return hdr.atime !== undefined ? Math.max(m, timeSeconds(hdr.atime)) : m;
}

async function setXattrStrict(p: Buffer, name: string, value: Buffer): Promise<void> {
  const s = utf8Path(p);
  if (s === undefined) throw new KilnError("KILN_LAYER_PATH", `cannot set ${name} on a path that is not UTF-8: ${JSON.stringify(p.toString())}`);
  await setAttribute(s, name, value);
}

/**
 * Sets the entry's xattrs on `p` without following symlinks. trusted.* never comes from a layer
 * (it would forge overlay whiteouts/opaque dirs); user.* on links and devices is refused by the
 * kernel and skipped, as are unsupported names. Paths that are not UTF-8 cannot be given to the
 * xattr binding, so their xattrs are dropped.
 */
async function applyXattrs(p: Buffer, hdr: TarEntryHeader, kind: "dir" | "file" | "symlink" | "special"): Promise<void> {
  if (hdr.xattrs.size === 0) return;
  const s = utf8Path(p);
  if (s === undefined) return;
  for (const [name, value] of hdr.xattrs) {
    if (name.startsWith("trusted.")) continue;
    try {
      await setAttribute(s, name, value);
    } catch (err) {
      const e = errno(err);
      if (e === ENOTSUP) continue;
      if (e === EPERM && name.startsWith("user.") && kind !== "dir" && kind !== "file") continue;
      throw new KilnError("KILN_LAYER_XATTR", `setting xattr ${name} on ${JSON.stringify(hdr.name.toString())}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
}

async function runXargs(args: string[], input: Buffer): Promise<void> {
  const child = spawn("xargs", args, { stdio: ["pipe", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
  child.stdin.on("error", () => {
    // reported through the exit status
  });
  child.stdin.end(input);
  const code = await exited;
  if (code !== 0) throw new KilnError("KILN_LAYER_MKNOD", `creating device nodes failed (exit ${code}): ${stderr.trim()}`);
}
