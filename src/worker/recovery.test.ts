// Start-up recovery on a real root: what a killed process left is removed (half-made snapshots,
// temp dirs, partial blobs, mounts, locks, refs without snapshots); what a live process sharing
// the root is writing stays.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { MetadataDB } from "../cache/index.js";
import { LocalContentStore } from "../content/index.js";
import { RuncExecutor } from "../executor/index.js";
import { OverlaySnapshotter, mountAll, unmount } from "../snapshot/index.js";
import { processStartTime } from "../util/index.js";
import { recover } from "./recovery.js";

const signal = new AbortController().signal;

async function sleeper(): Promise<{ pid: number; start: string; kill(): Promise<void> }> {
  const child = spawn("sleep", ["120"], { stdio: "ignore" });
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

async function mountedUnder(dir: string): Promise<string[]> {
  return (await readFile("/proc/self/mountinfo", "utf8"))
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(dir + "/"));
}

test("recovery removes a dead process's leftovers and keeps a live one's work", async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-recovery-"));
  const live = await sleeper();
  const dead = await sleeper();
  await dead.kill();
  const db = new MetadataDB(path.join(root, "metadata.db"));
  const snapshotter = new OverlaySnapshotter(path.join(root, "snapshots"));
  const content = new LocalContentStore(root);
  const executor = new RuncExecutor({ root: path.join(root, "executor") });
  const mine = path.join(root, "snapshots", "mounts", `m-${process.pid}-keep`);
  try {
    // A complete ref.
    await snapshotter.prepare("ok", undefined);
    await snapshotter.commit("ok");
    const now = Date.now();
    const row = { createdAt: now, lastUsedAt: now, description: "", size: 0, blobDigest: null, blobMediaType: null, blobSize: null, diffId: null, meta: null, recordType: "regular", usageCount: 1 };
    db.insertRef({ id: "ok", parent: null, ...row });
    // Refs whose snapshot never made it (and a child of one).
    db.insertRef({ id: "lost", parent: null, ...row });
    db.insertRef({ id: "lost-child", parent: "lost", ...row });
    // The dead process: a lease on a snapshot it was writing, a committed snapshot it never
    // recorded, a half-made prepare, a partial blob, a mount and a lock.
    db.insertLease({ id: "dead", pid: dead.pid, start: dead.start, createdAt: now });
    db.addLeaseResource("dead", "snapshot", "dead-active");
    await snapshotter.prepare("dead-active", "ok");
    await snapshotter.prepare("dead-committed", undefined);
    await snapshotter.commit("dead-committed");
    await mkdir(path.join(root, "snapshots", "snapshots", `.tmp-abcdef012345-${dead.pid}-x1`), { recursive: true });
    await mkdir(path.join(root, "content", "ingest"), { recursive: true });
    await writeFile(path.join(root, "content", "ingest", `${now}-${dead.pid}-0011223344556677`), "partial");
    const stale = path.join(root, "snapshots", "mounts", `m-${dead.pid}-abc`);
    await mkdir(stale, { recursive: true });
    await mountAll(signal, [{ type: "tmpfs", source: "tmpfs", options: ["size=1m"] }], stale);
    await mkdir(path.join(root, "locks"), { recursive: true });
    await writeFile(path.join(root, "locks", "sha256-dead"), `${dead.pid} ${dead.start}`);
    // A live process: its lease covers the snapshot it is writing, its temp files and mounts stay.
    db.insertLease({ id: "live", pid: live.pid, start: live.start, createdAt: now });
    db.addLeaseResource("live", "snapshot", "live-active");
    await snapshotter.prepare("live-active", "ok");
    await writeFile(path.join(root, "content", "ingest", `${now}-${live.pid}-8899aabbccddeeff`), "in progress");
    await writeFile(path.join(root, "locks", "sha256-live"), `${live.pid} ${live.start}`);
    await mkdir(mine, { recursive: true });
    await mountAll(signal, [{ type: "tmpfs", source: "tmpfs", options: ["size=1m"] }], mine);

    const report = await recover({ root, db, snapshotter, content, executor });
    assert.deepEqual(
      { ...report },
      { deadLeases: 1, snapshots: 2, refs: 2, tempDirs: 1, mounts: 1, containers: 0, ingests: 1, locks: 1 },
    );
    assert.deepEqual(db.allRefs().map((r) => r.id), ["ok"]);
    assert.deepEqual((await snapshotter.list()).map((s) => s.id).sort(), ["live-active", "ok"]);
    assert.deepEqual(await mountedUnder(root), [mine]);
    assert.deepEqual((await readdir(path.join(root, "content", "ingest"))).map((n) => n.split("-")[1]), [String(live.pid)]);
    assert.deepEqual(await readdir(path.join(root, "locks")), ["sha256-live"]);
    assert.deepEqual(db.allLeases().map((l) => l.id), ["live"]);
    assert.equal(db.isClean(), true);

    // Nothing crashed since: the next start skips the scan.
    assert.equal((await recover({ root, db, snapshotter, content, executor })).snapshots, 0);
    // The live process dies too; its snapshot goes at the next start.
    await live.kill();
    const again = await recover({ root, db, snapshotter, content, executor });
    assert.equal(again.deadLeases, 1);
    assert.deepEqual((await snapshotter.list()).map((s) => s.id), ["ok"]);
  } finally {
    await live.kill();
    await unmount(mine).catch(() => undefined);
    for (const m of await mountedUnder(root)) await unmount(m).catch(() => undefined);
    db.close();
    await rm(root, { recursive: true, force: true });
  }
});
