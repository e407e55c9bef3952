// Start-up recovery: after a crash (kill -9 at any moment) the root holds half-made things —
// snapshots no ref points at, temp files, mounts, containers. They are removed here, leaving only
// complete refs, unless another live process sharing the root is still working on them.
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import type { MetadataDB } from "../cache/index.js";
import type { LocalContentStore } from "../content/index.js";
import type { RuncExecutor } from "../executor/index.js";
import type { OverlaySnapshotter } from "../snapshot/index.js";
import { processIsAlive, processStartTime } from "../util/index.js";

export interface RecoveryReport {
  deadLeases: number;
  snapshots: number;
  refs: number;
  tempDirs: number;
  mounts: number;
  containers: number;
  ingests: number;
  locks: number;
}

export interface RecoveryDeps {
  root: string;
  db: MetadataDB;
  snapshotter: OverlaySnapshotter;
  content: LocalContentStore;
  executor: RuncExecutor;
}

/** A pid whose process no longer exists (names of temp files and mounts carry only the pid). */
async function pidIsDead(pid: number): Promise<boolean> {
  if (pid === process.pid) return false;
  return (await processStartTime(pid)) === undefined;
}

export async function recover(d: RecoveryDeps): Promise<RecoveryReport> {
  const report: RecoveryReport = { deadLeases: 0, snapshots: 0, refs: 0, tempDirs: 0, mounts: 0, containers: 0, ingests: 0, locks: 0 };
  // Containers first: they hold mounts of snapshots.
  report.containers = await d.executor.cleanupStale(pidIsDead);
  const stale = await d.snapshotter.cleanupStale(pidIsDead);
  report.tempDirs = stale.tmp;
  report.mounts = stale.mounts;
  report.ingests = await d.content.cleanupStale(pidIsDead);

  // Dead leases: what they held is free now. A lease reaped since the last full scan (by another
  // process's collector) marked the root unclean, so the scan below still runs.
  for (const l of d.db.allLeases()) {
    if (!(await processIsAlive(l.pid, l.start))) {
      d.db.reapLease(l.id);
      report.deadLeases++;
    }
  }
  // A crash noticed after this point (epoch moves on) leaves the root unclean for the next start.
  const epoch = d.db.recoveryEpoch();
  // Every process holds a lease until it exits cleanly: without a dead lease or a leftover of a
  // dead process, nothing crashed and the (slow, per-ref) consistency scan is skipped.
  const crashed = report.deadLeases + report.containers + report.tempDirs + report.mounts + report.ingests > 0 || !d.db.isClean();
  if (!crashed) return report;

  // The disk is listed before the database is read: a process takes its lease on a snapshot
  // before creating it and drops it only once the ref row exists (or the snapshot is gone), so a
  // snapshot listed here that is neither a ref nor leased below is an orphan.
  const onDisk = await d.snapshotter.list();

  // Refs whose snapshot is gone (or never finished) can't be served: drop them and their descendants.
  const refs = d.db.allRefs();
  const missing = new Set<string>();
  for (const r of refs) {
    // A lazy ref has no snapshot yet (its extraction repairs what a crash left of one).
    if (r.lazy) continue;
    const info = await d.snapshotter.stat(r.id);
    if (!info || info.kind !== "committed") missing.add(r.id);
  }
  let grew = true;
  while (grew) {
    grew = false;
    for (const r of refs) {
      if (!missing.has(r.id) && r.parent && missing.has(r.parent)) {
        missing.add(r.id);
        grew = true;
      }
    }
  }
  if (missing.size > 0) {
    // Children before parents (the parent column is a foreign key).
    const order = refs.filter((r) => missing.has(r.id)).sort((a, b) => depth(refs, b.id) - depth(refs, a.id));
    d.db.transaction(() => order.forEach((r) => d.db.deleteRef(r.id)));
    report.refs = order.length;
  }

  // Snapshots no ref records (a crash between prepare and commit, or mid-delete): removed,
  // children first, unless a live process holds them.
  const { known, held } = d.db.transaction(() => {
    const live = d.db.allLeases().map((l) => l.id);
    return {
      known: new Set(d.db.allRefs().map((r) => r.id)),
      held: new Set([...d.db.leasedIds("snapshot", live), ...d.db.leasedIds("ref", live)]),
    };
  });
  let orphans = onDisk.filter((s) => !known.has(s.id) && !held.has(s.id));
  for (let pass = 0; orphans.length > 0 && pass < 64; pass++) {
    const next: typeof orphans = [];
    for (const s of orphans) {
      try {
        await d.snapshotter.remove(s.id);
        report.snapshots++;
      } catch (err) {
        // Gone already (its owner discarded it meanwhile), or it still has a child: next pass.
        if ((err as { code?: string }).code !== "KILN_SNAPSHOT_NOT_FOUND") next.push(s);
      }
    }
    if (next.length === orphans.length) break;
    orphans = next;
  }

  d.db.markClean(epoch);

  // Key locks left by dead processes would only be taken over later; clear them now.
  const lockDir = path.join(d.root, "locks");
  for (const name of await readdir(lockDir).catch(() => [] as string[])) {
    const text = await readFile(path.join(lockDir, name), "utf8").catch(() => undefined);
    const [pid, start] = (text ?? "").split(" ");
    if (pid && start && !(await processIsAlive(Number(pid), start))) {
      await rm(path.join(lockDir, name), { force: true });
      report.locks++;
    }
  }
  return report;
}

function depth(refs: { id: string; parent: string | null }[], id: string): number {
  const byId = new Map(refs.map((r) => [r.id, r.parent]));
  let n = 0;
  for (let cur = byId.get(id); cur; cur = byId.get(cur)) n++;
  return n;
}
