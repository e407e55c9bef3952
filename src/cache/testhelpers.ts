// Helpers for this folder's tests: a real cache (SQLite, overlay snapshots, content store) in a
// temp root, and processes to stand in for other `kiln` processes sharing it.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { once } from "node:events";
import os from "node:os";
import path from "node:path";
import { LocalContentStore } from "../content/index.js";
import { OverlaySnapshotter } from "../snapshot/index.js";
import { processStartTime } from "../util/index.js";
import { MetadataDB } from "./db.js";
import { GarbageCollector, type GCPolicy } from "./gc.js";
import { CacheManager, type ImmutableRef } from "./refs.js";

export interface CacheEnv extends AsyncDisposable {
  root: string;
  db: MetadataDB;
  mgr: CacheManager;
  gc: GarbageCollector;
  content: LocalContentStore;
  snapshotter: OverlaySnapshotter;
  leaseId: string;
}

/** One "process" on a root: its own database connection, lease, manager and collector. */
export async function openCache(root: string, policies: GCPolicy[], opts: { enabled?: boolean } = {}): Promise<CacheEnv> {
  const db = new MetadataDB(path.join(root, "metadata.db"));
  const leaseId = `test-${randomBytes(4).toString("hex")}`;
  db.insertLease({ id: leaseId, pid: process.pid, start: (await processStartTime(process.pid)) ?? "", createdAt: Date.now() });
  const snapshotter = new OverlaySnapshotter(path.join(root, "snapshots"));
  const content = new LocalContentStore(root);
  const late: { gc?: GarbageCollector } = {};
  const mgr = new CacheManager(db, snapshotter, { leaseId, content, reserve: (signal, id, bytes) => late.gc!.reserve(signal, id, bytes) });
  const gc = (late.gc = new GarbageCollector({ mgr, content, root, cacheMountRoot: path.join(root, "cachemounts"), policies, enabled: opts.enabled ?? true, leaseId }));
  return {
    root,
    db,
    mgr,
    gc,
    content,
    snapshotter,
    leaseId,
    async [Symbol.asyncDispose]() {
      db.deleteLease(leaseId);
      db.close();
    },
  };
}

export async function tempRoot(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-cache-"));
  return {
    path: dir,
    async [Symbol.asyncDispose]() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Commits a ref on `parent` holding one file of `bytes` random bytes. */
export async function commitRef(mgr: CacheManager, parent: ImmutableRef | undefined, bytes: number, description = "test"): Promise<ImmutableRef> {
  const mut = await mgr.newMutable(parent, description);
  try {
    await writeFile(path.join(mut.upperDir(), `f-${randomBytes(4).toString("hex")}`), randomBytes(bytes));
  } catch (err) {
    await mut.discard();
    throw err;
  }
  return mut.commit();
}

/** A real other process (sleeping) with its pid and start time, for leases of "another kiln". */
export async function otherProcess(): Promise<{ pid: number; start: string; kill(): Promise<void> }> {
  const child: ChildProcess = spawn("sleep", ["120"], { stdio: "ignore" });
  await once(child, "spawn");
  const pid = child.pid!;
  const start = (await processStartTime(pid))!;
  return {
    pid,
    start,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
    },
  };
}
