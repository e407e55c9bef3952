// fsutil's DiffCopy packet protocol (send.go / receive.go): the sender lists STATs in walk order
// and an empty STAT, answers each REQ with DATA chunks and an empty DATA, and a FIN from the
// receiver is echoed to finish; the receiver validates the order, asks for the contents it needs
// and writes the tree.
import { linkSync, mkdirSync } from "node:fs";
import { chmod, lchown, lstat, lutimes, open, rm, symlink, writeFile, type FileHandle } from "node:fs/promises";
import { setImmediate as nextTurn } from "node:timers/promises";
import { spawn } from "node:child_process";
import path from "node:path";
import { setAttribute } from "@napi-rs/xattr";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { fsutil } from "./api.js";
import { KilnError, errorMessage, throwIfAborted } from "../util/index.js";
import type { MessageConn } from "./msgstream.js";
import { goModeKind, goPerm, isGoRegular } from "./fsmode.js";
import type { WalkEntry } from "./fswalk.js";
import { comparePath, compareUtf8 } from "./pathorder.js";

export type Packet = fsutil.Packet;
export type PacketInit = MessageInitShape<typeof fsutil.PacketSchema>;
export type PacketConn = MessageConn<Packet, PacketInit>;
export type Stat = NonNullable<Packet["stat"]>;

const { PACKET_STAT, PACKET_REQ, PACKET_DATA, PACKET_FIN, PACKET_ERR } = fsutil.Packet_PacketType;
const chunkSize = 32 << 10;
/** Files up to this size are collected in memory and written in one go. */
const bufferedFileMax = 1 << 20;
/** Files being closed and stamped at once before the reader waits for them. */
const maxFinishing = 64;
const sendWorkers = 4;
/** Entries created between two turns of the event loop. */
const entriesPerTurn = 256;

/** A queue whose consumers wait; closing it lets them drain and stop. */
class WorkQueue<T> {
  private items: T[] = [];
  private waiters: ((v: T | undefined) => void)[] = [];
  private closed = false;
  push(v: T): void {
    const w = this.waiters.shift();
    if (w) w(v);
    else this.items.push(v);
  }
  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w(undefined);
  }
  async take(): Promise<T | undefined> {
    if (this.items.length > 0) return this.items.shift();
    if (this.closed) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

/**
 * Sends the entries as the fsutil sender and returns once the receiver's FIN was answered. A walk
 * error is reported to the receiver as ERR before it is thrown.
 */
export async function sendTree(signal: AbortSignal, conn: PacketConn, entries: AsyncIterable<WalkEntry>): Promise<void> {
  const files = new Map<number, string>();
  const queue = new WorkQueue<{ id: number; abs: string }>();
  const ac = new AbortController();
  const inner = AbortSignal.any([signal, ac.signal]);

  const walk = async () => {
    let i = 0;
    try {
      for await (const e of entries) {
        throwIfAborted(inner);
        if (isGoRegular(e.stat.mode)) files.set(i, e.abs);
        i++;
        await conn.send({ type: PACKET_STAT, stat: e.stat });
      }
    } catch (err) {
      await conn.send({ type: PACKET_ERR, data: Buffer.from(errorMessage(err)) }).catch(() => undefined);
      throw err;
    }
    await conn.send({ type: PACKET_STAT });
  };

  const sendFile = async (id: number, abs: string) => {
    let fh: FileHandle | undefined;
    try {
      fh = await open(abs, "r");
    } catch {
      // fsutil sends an empty file when it cannot open one (vanished, a socket).
    }
    if (fh) {
      try {
        for (;;) {
          throwIfAborted(inner);
          // A fresh buffer per chunk: the packet may still be queued when the next read lands.
          const buf = Buffer.allocUnsafe(chunkSize);
          const { bytesRead } = await fh.read(buf, 0, chunkSize, null);
          if (bytesRead === 0) break;
          await conn.send({ type: PACKET_DATA, ID: id, data: buf.subarray(0, bytesRead) });
        }
      } finally {
        await fh.close();
      }
    }
    await conn.send({ type: PACKET_DATA, ID: id });
  };

  const worker = async () => {
    for (;;) {
      const h = await queue.take();
      if (!h) return;
      throwIfAborted(inner);
      await sendFile(h.id, h.abs);
    }
  };

  const receive = async () => {
    try {
      for (;;) {
        const p = await conn.recv();
        if (!p) throw new KilnError("KILN_FILESYNC", "filesync: receiver closed the stream without FIN");
        switch (p.type) {
          case PACKET_ERR:
            throw new KilnError("KILN_FILESYNC", `error from receiver: ${Buffer.from(p.data).toString()}`);
          case PACKET_REQ: {
            const abs = files.get(p.ID);
            if (abs === undefined) throw new KilnError("KILN_FILESYNC", `invalid file id ${p.ID}`);
            files.delete(p.ID);
            queue.push({ id: p.ID, abs });
            break;
          }
          case PACKET_FIN:
            await conn.send({ type: PACKET_FIN });
            return;
          default:
            break;
        }
      }
    } finally {
      queue.close();
    }
  };

  const tasks = [walk(), receive(), ...Array.from({ length: sendWorkers }, worker)];
  // The first failure stops the rest (as Go's errgroup cancels its context); all settle before we return.
  tasks.forEach((t) => t.catch(() => ac.abort()));
  const settled = await Promise.allSettled(tasks);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw failed.reason;
}

/** One entry of a received listing with its packet ID (the index every STAT increments). */
export interface ListedStat {
  id: number;
  stat: Stat;
}

/** fsutil's Validator: clean relative paths, parents first, siblings in byte order. */
export class OrderValidator {
  private parents: { dir: string; last: string }[] = [{ dir: "", last: "" }];

  check(p: string, isDir: boolean): void {
    const bad = (op: string) => new KilnError("KILN_FILESYNC", `${op} ${JSON.stringify(p)}: invalid argument`);
    if (p !== path.posix.normalize(p) || p.endsWith("/") || p === "." || p === "") throw bad("unclean path");
    if (p.startsWith("/")) throw bad("absolute path");
    const slash = p.lastIndexOf("/");
    const dir = slash < 0 ? "" : p.slice(0, slash);
    const base = slash < 0 ? p : p.slice(slash + 1);
    if (dir === ".." || p.startsWith("../") || p === "..") throw bad("escape check");
    const n = this.parents.length;
    let k = 0;
    while (k < n && comparePath(this.parents[n - 1 - k]!.dir, dir) > 0) k++;
    const i = n - 1 - k;
    if (i < 0) throw new KilnError("KILN_FILESYNC", `changes out of order: ${JSON.stringify(p)}`);
    if (i !== n - 1) this.parents.length = i + 1;
    const top = this.parents[this.parents.length - 1]!;
    const at = this.parents[i]!;
    if (dir !== top.dir || compareUtf8(at.last, base) >= 0) {
      throw new KilnError("KILN_FILESYNC", `changes out of order: ${JSON.stringify(p)} ${JSON.stringify(path.posix.join(at.dir, at.last))}`);
    }
    at.last = base;
    if (isDir) this.parents.push({ dir: p, last: "" });
  }
}

/** Reads STATs up to the empty one that ends the listing, checking order and hard-link targets. */
export async function receiveListing(signal: AbortSignal, conn: PacketConn): Promise<ListedStat[]> {
  const out: ListedStat[] = [];
  const order = new OrderValidator();
  const seenFiles = new Set<string>();
  let i = 0;
  for (;;) {
    throwIfAborted(signal);
    const p = await conn.recv();
    if (!p) throw new KilnError("KILN_FILESYNC", "filesync: sender closed the stream before the end of its listing");
    switch (p.type) {
      case PACKET_ERR:
        throw new KilnError("KILN_FILESYNC", `error from sender: ${Buffer.from(p.data).toString()}`);
      case PACKET_STAT: {
        if (!p.stat) return out;
        const st = p.stat;
        const kind = goModeKind(st.mode);
        order.check(st.path, kind === "dir");
        if (kind === "file") {
          if (st.linkname !== "") {
            if (!seenFiles.has(st.linkname)) throw new KilnError("KILN_FILESYNC", `invalid link ${st.path} to unknown path: ${JSON.stringify(st.linkname)}`);
          } else seenFiles.add(st.path);
        }
        out.push({ id: i++, stat: st });
        break;
      }
      default:
        throw new KilnError("KILN_FILESYNC", `filesync: unexpected packet ${p.type} during the listing`);
    }
  }
}

export interface WriteOptions {
  /** Into an existing tree: entries already there are replaced, directories kept (the local exporter). */
  merge?: boolean;
  /** Owner for every entry instead of the listed one (a client writes exports as itself). */
  owner?: { uid: number; gid: number };
  /**
   * Where an unchanged regular file may be hard-linked from instead of being transferred
   * (an earlier immutable snapshot of the same directory).
   */
  reuse?: (st: Stat) => string | undefined;
}

/** `mknod`: Node cannot make device nodes or fifos itself. */
function mknod(signal: AbortSignal, dest: string, st: Stat): Promise<void> {
  const kind = goModeKind(st.mode);
  const args = ["-m", (goPerm(st.mode) & 0o777).toString(8), dest];
  if (kind === "fifo") args.push("p");
  else args.push(st.mode & (1 << 21) ? "c" : "b", String(st.devmajor), String(st.devminor));
  return new Promise((resolve, reject) => {
    const child = spawn("mknod", args, { stdio: ["ignore", "ignore", "pipe"], signal });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new KilnError("KILN_FILESYNC", `mknod ${args.join(" ")}: ${stderr.trim()}`))));
  });
}

async function applyMetadata(p: string, st: Stat, owner: WriteOptions["owner"], isLink: boolean): Promise<void> {
  for (const [k, v] of Object.entries(st.xattrs)) {
    // fsutil ignores xattrs the destination refuses.
    await setAttribute(p, k, Buffer.from(v)).catch(() => undefined);
  }
  await lchown(p, owner?.uid ?? st.uid, owner?.gid ?? st.gid);
  // chown clears set-id bits, so the mode goes on after it.
  if (!isLink) await chmod(p, goPerm(st.mode));
  // Seconds as the nearest double (Node takes no nanoseconds): whole and fractional parts apart.
  const t = Number(st.modTime / 1_000_000_000n) + Number(st.modTime % 1_000_000_000n) / 1e9;
  await lutimes(p, t, t);
}

/**
 * Writes the listed entries under `dest` (which exists), asking the sender for the contents of
 * regular files, then answers FIN. Contents are read while entries are still being created, so
 * neither side waits on a full window. Directory metadata goes on last, deepest first, so writing
 * their children does not disturb it.
 */
export async function writeListing(signal: AbortSignal, conn: PacketConn, listing: readonly ListedStat[], dest: string, opts: WriteOptions = {}): Promise<void> {
  // Small files are gathered in memory and written whole beside the reader; a file outgrowing
  // that is opened and written chunk by chunk, which is the back-pressure on the sender. Only
  // the sender's few in-flight files hold descriptors, however many are requested.
  const pending = new Map<number, { path: string; st: Stat; created: boolean; fh: FileHandle | undefined; chunks: Uint8Array[]; buffered: number }>();
  const finishing = new Set<Promise<void>>();
  let finishFailure: unknown;
  const dirs: { path: string; st: Stat }[] = [];
  // Paths later entries hard-link to must exist before their contents arrive.
  const linkTargets = new Set(listing.filter((l) => l.stat.linkname !== "" && goModeKind(l.stat.mode) === "file").map((l) => l.stat.linkname));
  let creating = true;
  let finSent = false;
  let drained!: () => void;
  const drainedP = new Promise<void>((r) => (drained = r));

  const reader = (async () => {
    for (;;) {
      const p = await conn.recv();
      if (!p) {
        if (finSent) return;
        throw new KilnError("KILN_FILESYNC", "filesync: sender closed the stream before the transfer finished");
      }
      if (p.type === PACKET_ERR) throw new KilnError("KILN_FILESYNC", `error from sender: ${Buffer.from(p.data).toString()}`);
      if (p.type === PACKET_FIN) {
        if (finSent) return;
        continue;
      }
      if (p.type !== PACKET_DATA) continue;
      const f = pending.get(p.ID);
      if (!f) throw new KilnError("KILN_FILESYNC", `invalid file request ${p.ID}`);
      if (p.data.length > 0) {
        if (!f.fh && f.buffered + p.data.length <= bufferedFileMax) {
          f.chunks.push(p.data);
          f.buffered += p.data.length;
          continue;
        }
        if (!f.fh) {
          f.fh = await open(f.path, f.created ? "r+" : "wx", 0o600);
          f.created = true;
          for (const c of f.chunks.splice(0)) await f.fh.write(c);
        }
        await f.fh.write(p.data);
        continue;
      }
      pending.delete(p.ID);
      const done = (async () => {
        if (f.fh) await f.fh.close();
        else await writeFile(f.path, f.chunks, { flag: f.created ? "r+" : "wx", mode: 0o600 });
        await applyMetadata(f.path, f.st, opts.owner, false);
      })().catch((err: unknown) => void (finishFailure ??= err));
      finishing.add(done);
      void done.finally(() => finishing.delete(done));
      if (finishFailure !== undefined) throw finishFailure;
      if (finishing.size >= maxFinishing) await Promise.race(finishing);
      if (!creating && pending.size === 0) drained();
    }
  })();
  // The reader's failure must also end the creation loop below.
  const readerFailed = reader.then(
    () => new Promise<never>(() => undefined),
    (err: unknown) => Promise.reject(err instanceof Error ? err : new Error(String(err))),
  );
  readerFailed.catch(() => undefined);

  let failure: unknown;
  let sinceTurn = 0;
  try {
    for (const { id, stat: st } of listing) {
      throwIfAborted(signal);
      const target = path.join(dest, st.path);
      const kind = goModeKind(st.mode);
      if (opts.merge) {
        const old = await lstat(target).catch(() => undefined);
        if (old) {
          if (kind === "dir" && old.isDirectory()) {
            dirs.push({ path: target, st });
            continue;
          }
          await rm(target, { recursive: true, force: true });
        }
      }
      // A turn for the rest of the process now and then: most entries below are one quick
      // synchronous call (an unchanged file is a hard link from the last snapshot, ~10 µs; the
      // thread pool's round trip per call cost ten times that across a 5,000-file context).
      if (++sinceTurn >= entriesPerTurn) {
        sinceTurn = 0;
        await nextTurn();
      }
      switch (kind) {
        case "dir":
          mkdirSync(target, { mode: 0o700 });
          dirs.push({ path: target, st });
          break;
        case "symlink":
          await symlink(st.linkname, target);
          await applyMetadata(target, st, opts.owner, true);
          break;
        case "device":
        case "fifo":
          await mknod(signal, target, st);
          await applyMetadata(target, st, opts.owner, false);
          break;
        case "file": {
          if (st.linkname !== "") {
            linkSync(path.join(dest, st.linkname), target);
            break;
          }
          const from = opts.reuse?.(st);
          if (from !== undefined) {
            try {
              linkSync(from, target);
              break;
            } catch {
              // The earlier snapshot lost the file: transfer it after all.
            }
          }
          const created = st.size === 0n || linkTargets.has(st.path);
          if (created) await (await open(target, "wx", 0o600)).close();
          if (st.size === 0n) {
            await applyMetadata(target, st, opts.owner, false);
          } else {
            pending.set(id, { path: target, st, created, fh: undefined, chunks: [], buffered: 0 });
            await Promise.race([conn.send({ type: PACKET_REQ, ID: id }), readerFailed]);
          }
          break;
        }
        default:
          // Types fsutil never sends (sockets travel as regular files): nothing to create.
          break;
      }
    }
    creating = false;
    if (pending.size === 0) drained();
    await Promise.race([drainedP, readerFailed]);
    await Promise.all(finishing);
    if (finishFailure !== undefined) throw finishFailure;
    for (const { path: p, st } of dirs.reverse()) await applyMetadata(p, st, opts.owner, false);
    finSent = true;
    await conn.send({ type: PACKET_FIN });
    await reader;
  } catch (err) {
    failure = err;
    await conn.send({ type: PACKET_ERR, data: Buffer.from(errorMessage(err)) }).catch(() => undefined);
    throw err;
  } finally {
    for (const f of pending.values()) await f.fh?.close().catch(() => undefined);
    await Promise.all(finishing);
    // On failure the reader is left to the caller, whose cancelling of the call ends it.
    if (failure === undefined) conn.closeSend();
  }
}
