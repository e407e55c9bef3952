// Garbage collection on a real cache (SQLite, overlayfs snapshots, content store): BuildKit's
// default policies and keep-bytes arithmetic, deletion order, what must survive, and the cap
// holding before commits when two "processes" commit at once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { parseFilters } from "./filters.js";
import { MetadataDB } from "./db.js";
import { calculateKeepBytes, defaultGCPolicies, sortDeleteRecords, type UsageInfo } from "./gc.js";
import { commitRef, openCache, otherProcess, tempRoot } from "./testhelpers.js";
import { diskSpaceBytes } from "../util/index.js";

const signal = new AbortController().signal;
const KB = 1024;

test("default policies are BuildKit's: reproducible data first, then the cap, then everything", () => {
  const p = defaultGCPolicies({});
  assert.equal(p.length, 4);
  // The first policy matches local sources, cache mounts and git checkouts, not regular records.
  const first = parseFilters(p[0]!.filters);
  const typed = (t: string) => (f: string): [string, boolean] => (f === "type" ? [t, true] : ["", false]);
  for (const t of ["source.local", "exec.cachemount", "source.git.checkout"]) assert.ok(first.matches(typed(t)), t);
  assert.ok(!first.matches(typed("regular")));
  assert.equal(p[0]!.keepDurationMs, 48 * 3600_000);
  assert.equal(diskSpaceBytes(p[0]!.maxUsedSpace, 1e12), 512e6);
  assert.equal(p[1]!.keepDurationMs, 60 * 24 * 3600_000);
  assert.deepEqual([p[2]!.all, p[2]!.keepDurationMs, p[3]!.all], [false, 0, true]);
  // On a 1 TB disk: reserve 10% capped at 10 GB, use at most 80% capped at 100 GB, keep 20% free.
  const tb = 1e12;
  assert.equal(diskSpaceBytes(p[3]!.reservedSpace, tb), 10e9);
  assert.equal(diskSpaceBytes(p[3]!.maxUsedSpace, tb), 100e9);
  assert.equal(diskSpaceBytes(p[3]!.minFreeSpace, tb), 187e9);
  // On a 20 GiB disk the percentages win, rounded up to whole GB as BuildKit does.
  const small = 20 * 2 ** 30;
  assert.equal(diskSpaceBytes(p[3]!.reservedSpace, small), 3e9);
  assert.equal(diskSpaceBytes(p[3]!.maxUsedSpace, small), 17e9);
  // Unknown disk size: BuildKit's 2 GB fallback.
  assert.equal(diskSpaceBytes(p[3]!.maxUsedSpace, 0), 2e9);

  // Any configured limit replaces the detected ones; gckeepstorage stands in only when none is set.
  const capped = defaultGCPolicies({ maxUsedSpace: { bytes: 30e6, percentage: 0 } });
  assert.deepEqual([capped[3]!.maxUsedSpace.bytes, capped[3]!.reservedSpace.bytes, capped[3]!.minFreeSpace.percentage], [30e6, 0, 0]);
  const old = defaultGCPolicies({ keepStorage: { bytes: 5e9, percentage: 0 } });
  assert.deepEqual([old[2]!.reservedSpace.bytes, old[2]!.maxUsedSpace.bytes, old[2]!.minFreeSpace.bytes], [5e9, 0, 0]);
});

test("keep bytes as BuildKit calculates them (its own table)", () => {
  const cases: [string, number, { total: number; free: number }, { maxUsed?: number; reserved?: number; minFree?: number }, number][] = [
    ["empty", 1000, { total: 10000, free: 9000 }, {}, 0],
    ["only max", 1000, { total: 10000, free: 9000 }, { maxUsed: 2000 }, 2000],
    ["only free", 7000, { total: 10000, free: 3000 }, { minFree: 5000 }, 5000],
    ["only free with min", 7000, { total: 10000, free: 3000 }, { minFree: 5000, reserved: 6000 }, 6000],
    ["only free all", 7000, { total: 10000, free: 3000 }, { minFree: 5000, reserved: 2000, maxUsed: 4000 }, 4000],
    ["mixed max", 4000, { total: 10000, free: 2000 }, { maxUsed: 2000 }, 2000],
    ["mixed free", 4000, { total: 10000, free: 2000 }, { minFree: 5000 }, 1000],
    ["mixed free with min", 4000, { total: 10000, free: 2000 }, { minFree: 5000, reserved: 2000 }, 2000],
    ["mixed free all", 4000, { total: 10000, free: 2000 }, { minFree: 5000, reserved: 2000, maxUsed: 4000 }, 2000],
  ];
  for (const [name, total, ds, o, want] of cases) {
    assert.equal(calculateKeepBytes(total, ds, { maxUsed: o.maxUsed ?? 0, reserved: o.reserved ?? 0, minFree: o.minFree ?? 0 }), want, name);
  }
});

test("size-limited collection deletes the least recently and least often used first", () => {
  const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
  const recs = [
    { id: "new-often", lastUsedAt: at(40), usageCount: 9 },
    { id: "old-once", lastUsedAt: at(10), usageCount: 1 },
    { id: "never", lastUsedAt: undefined, usageCount: 0 },
    { id: "old-often", lastUsedAt: at(10), usageCount: 9 },
    { id: "mid-once", lastUsedAt: at(20), usageCount: 1 },
  ];
  assert.deepEqual(
    sortDeleteRecords(recs).map((r) => r.id),
    ["never", "old-once", "mid-once", "old-often", "new-often"],
  );
});

test("prune spares refs held in-process and their parents; the rest goes with cache keys and blobs", async () => {
  await using root = await tempRoot();
  await using c = await openCache(root.path, defaultGCPolicies({}));
  const base = await commitRef(c.mgr, undefined, 64 * KB, "base");
  const mid = await commitRef(c.mgr, base, 64 * KB, "mid");
  const leaf = await commitRef(c.mgr, mid, 64 * KB, "leaf");
  const lone = await commitRef(c.mgr, undefined, 64 * KB, "lone");
  const loneChild = await commitRef(c.mgr, lone, 64 * KB, "lone child");
  // Layer blobs: one only `loneChild` has, one it shares with `leaf`.
  const own = await c.content.put(signal, "own layer");
  const shared = await c.content.put(signal, "shared layer");
  loneChild.setBlob({ digest: own.digest, mediaType: "application/vnd.oci.image.layer.v1.tar", size: own.size, diffId: own.digest });
  lone.setBlob({ digest: shared.digest, mediaType: "application/vnd.oci.image.layer.v1.tar", size: shared.size, diffId: shared.digest });
  leaf.setBlob({ digest: shared.digest, mediaType: "application/vnd.oci.image.layer.v1.tar", size: shared.size, diffId: shared.digest });
  c.db.saveCache("sha256:k1", [loneChild.id]);
  c.db.saveCache("sha256:k2", [leaf.id]);
  for (const r of [base, mid, lone, loneChild]) await r.release();

  const du = new Map((await c.gc.usage()).map((u) => [u.id, u]));
  assert.equal(du.get(leaf.id)!.inUse, true);
  assert.equal(du.get(base.id)!.inUse, true, "a parent of a held ref is in use, as in BuildKit");
  assert.equal(du.get(lone.id)!.inUse, false);
  assert.ok(du.get(loneChild.id)!.size >= 64 * KB + own.size);

  const removed = await c.gc.prune(signal, { all: true });
  assert.deepEqual(removed.map((r) => r.id).sort(), [lone.id, loneChild.id].sort());
  assert.deepEqual((await c.gc.usage()).map((u) => u.id).sort(), [base.id, mid.id, leaf.id].sort());
  assert.equal(c.db.lookupCache("sha256:k1", 1), undefined, "cache keys go with their ref");
  assert.deepEqual(c.db.lookupCache("sha256:k2", 1), [leaf.id]);
  assert.equal(await c.content.has(own.digest), false, "a blob no ref uses any more is deleted");
  assert.equal(await c.content.has(shared.digest), true, "a blob a remaining ref uses stays");

  await leaf.release();
  await c.gc.prune(signal, { all: true });
  assert.deepEqual(await c.gc.usage(), []);
  assert.deepEqual(await readdir(path.join(root.path, "snapshots", "snapshots")), []);
  assert.equal(await c.content.has(shared.digest), false);
});

test("a live lease of another process holds its refs; once that process dies they can go", async () => {
  await using root = await tempRoot();
  await using c = await openCache(root.path, defaultGCPolicies({}));
  const ref = await commitRef(c.mgr, undefined, 16 * KB);
  const child = await commitRef(c.mgr, ref, 16 * KB);
  const other = await otherProcess();
  try {
    // The other "kiln" records its hold in its own connection, as a separate process would.
    const db2 = new MetadataDB(path.join(root.path, "metadata.db"));
    try {
      db2.insertLease({ id: "other", pid: other.pid, start: other.start, createdAt: Date.now() });
      db2.addLeaseResource("other", "ref", child.id);
    } finally {
      db2.close();
    }
    await ref.release();
    await child.release();
    c.db.markClean(c.db.recoveryEpoch());
    assert.deepEqual(await c.gc.prune(signal, { all: true }), []);
    const du = await c.gc.usage();
    assert.ok(du.every((u) => u.inUse), "held through the other process's lease (the parent too)");
    await other.kill();
    const removed = await c.gc.prune(signal, { all: true });
    assert.equal(removed.length, 2);
    assert.ok(!c.db.allLeases().some((l) => l.id === "other"), "the dead lease is reaped");
    assert.equal(c.db.isClean(), false, "a reaped lease asks the next start for a full recovery scan");
  } finally {
    await other.kill();
  }
});

test("a lease whose pid was reused (start time differs) holds nothing", async () => {
  await using root = await tempRoot();
  await using c = await openCache(root.path, defaultGCPolicies({}));
  const ref = await commitRef(c.mgr, undefined, 16 * KB);
  c.db.insertLease({ id: "reused", pid: process.pid, start: "1", createdAt: Date.now() });
  c.db.addLeaseResource("reused", "ref", ref.id);
  await ref.release();
  assert.equal((await c.gc.prune(signal, { all: true })).length, 1);
});

test("keep-duration and filters limit what a prune takes; keep-storage deletes until under it", async () => {
  await using root = await tempRoot();
  await using c = await openCache(root.path, defaultGCPolicies({}));
  const refs = [];
  for (let i = 0; i < 4; i++) refs.push(await commitRef(c.mgr, undefined, 100 * KB, `r${i}`));
  for (const r of refs) await r.release();
  // Make r0 and r1 old, r0 the least used; r3 a local source.
  const old = Date.now() - 3 * 3600_000;
  c.db.updateRef(refs[0]!.id, { lastUsedAt: old, usageCount: 1 });
  c.db.updateRef(refs[1]!.id, { lastUsedAt: old + 1000, usageCount: 5 });
  c.db.updateRef(refs[3]!.id, { recordType: "source.local" });
  assert.deepEqual((await c.gc.prune(signal, { filters: ["type==source.local"], keepDurationMs: 3600_000 })).map((r) => r.id), []);
  const sizes = new Map((await c.gc.usage()).map((u) => [u.id, u.size]));
  const total = [...sizes.values()].reduce((a, b) => a + b, 0);
  // Keep everything but about one record: the oldest, least used one goes.
  const removed = await c.gc.prune(signal, { maxUsedSpace: total - 1 });
  assert.deepEqual(removed.map((r) => r.id), [refs[0]!.id]);
  assert.deepEqual((await c.gc.prune(signal, { keepDurationMs: 3600_000 })).map((r) => r.id), [refs[1]!.id]);
  assert.deepEqual((await c.gc.prune(signal, { filters: ["type==source.local"] })).map((r) => r.id), [refs[3]!.id]);
});

/** Bytes of committed refs (snapshots and distinct blobs), read through a separate connection. */
function committedBytes(root: string): number {
  const db = new MetadataDB(path.join(root, "metadata.db"));
  try {
    return db.accountedBytes() - db.reservedBytes();
  } finally {
    db.close();
  }
}

test("the cap holds before commits, with two processes committing at once", async () => {
  await using root = await tempRoot();
  const cap = 1024 * KB;
  const policies = defaultGCPolicies({ maxUsedSpace: { bytes: cap, percentage: 0 } });
  await using a = await openCache(root.path, policies);
  await using b = await openCache(root.path, policies);
  let peak = 0;
  const build = async (c: typeof a, n: number) => {
    for (let i = 0; i < n; i++) {
      const ref = await commitRef(c.mgr, undefined, 150 * KB, `step ${i}`);
      peak = Math.max(peak, committedBytes(root.path));
      await ref.release();
    }
  };
  await Promise.all([build(a, 12), build(b, 12)]);
  assert.ok(peak <= cap, `peak ${peak} > cap ${cap}`);
  const left = (await a.gc.usage()).length;
  assert.ok(left >= 4 && left <= 6, `${left} records kept under the cap`);
  assert.equal(a.db.reservedBytes(), 0, "reservations end with their commits");
});

test("only held data exceeds the cap; with gc = false nothing is collected", async () => {
  await using root = await tempRoot();
  const cap = 512 * KB;
  await using c = await openCache(root.path, defaultGCPolicies({ maxUsedSpace: { bytes: cap, percentage: 0 } }));
  const held = [];
  for (let i = 0; i < 5; i++) held.push(await commitRef(c.mgr, undefined, 150 * KB));
  const used = committedBytes(root.path);
  assert.ok(used > cap, "held refs may exceed the cap");
  assert.equal((await c.gc.usage()).length, 5, "nothing held was collected");
  for (const r of held) await r.release();
  // The next commit makes room first.
  const next = await commitRef(c.mgr, undefined, 150 * KB);
  assert.ok(committedBytes(root.path) <= cap);
  await next.release();

  await using off = await openCache(root.path, defaultGCPolicies({ maxUsedSpace: { bytes: cap, percentage: 0 } }), { enabled: false });
  for (let i = 0; i < 5; i++) await (await commitRef(off.mgr, undefined, 150 * KB)).release();
  assert.ok(committedBytes(root.path) > cap);
  assert.deepEqual(await off.gc.afterBuild(signal), []);
  // An explicit prune still works.
  assert.ok((await off.gc.prune(signal, { maxUsedSpace: cap })).length > 0);
  assert.ok(committedBytes(root.path) <= cap);
});

test("du lists records buildctl's way: sorted by size, plus the root's other bytes as one internal record", async () => {
  await using root = await tempRoot();
  await using c = await openCache(root.path, defaultGCPolicies({}));
  for (const n of [300, 100, 200]) await (await commitRef(c.mgr, undefined, n * KB)).release();
  const du: UsageInfo[] = await c.gc.diskUsage();
  const sizes = du.map((u) => u.size);
  assert.deepEqual(sizes, [...sizes].sort((x, y) => x - y));
  const internal = du.find((u) => u.id === "kiln-metadata")!;
  assert.equal(internal.recordType, "internal");
  assert.ok(internal.size > 0, "the database is counted");
  assert.deepEqual((await c.gc.diskUsage(["type==internal"])).map((u) => u.id), ["kiln-metadata"]);
});
