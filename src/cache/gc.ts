// Disk usage and garbage collection of the build cache, with buildkitd.toml's policies.
//
// Unlike BuildKit, which collects only after builds (so bursts of concurrent builds overshoot the
// cap), the cap is enforced before each commit: a snapshot that would take the store past
// maxUsedSpace first makes room, and only what running builds hold can exceed the cap. Holds
// are visible across processes (leases in the database), so several `kiln build`s and a `kiln
// prune` can share one root.
import { lstat, readdir, rm, stat, statfs } from "node:fs/promises";
import path from "node:path";
import type { ContentStore } from "../content/types.js";
import { diskUsage } from "../snapshot/index.js";
import { diskSpaceBytes, processIsAlive, type Digest, type DiskSpace } from "../util/index.js";
import { KeyLocks } from "./keylock.js";
import { fileDigestsBucket } from "./contenthash.js";
import { parseFilters, type Filter } from "./filters.js";
import type { MetadataDB, RefRecord } from "./db.js";
import type { CacheManager } from "./refs.js";

export interface GCPolicy {
  all: boolean;
  filters: string[];
  /** Keep records used within this many milliseconds. */
  keepDurationMs: number;
  reservedSpace: DiskSpace;
  maxUsedSpace: DiskSpace;
  minFreeSpace: DiskSpace;
}

/** One record as `buildctl du` shows it. */
export interface UsageInfo {
  id: string;
  parents: string[];
  mutable: boolean;
  inUse: boolean;
  size: number;
  createdAt: Date;
  lastUsedAt: Date | undefined;
  usageCount: number;
  description: string;
  recordType: string;
  shared: boolean;
}

export interface PruneOptions {
  all?: boolean;
  filters?: string[];
  keepDurationMs?: number;
  /** buildctl's --keep-storage: the same as maxUsedSpace. */
  keepBytes?: number;
  reservedSpace?: number;
  maxUsedSpace?: number;
  minFreeSpace?: number;
}

const noSpace: DiskSpace = { bytes: 0, percentage: 0 };
const zero = (d?: Partial<DiskSpace>): DiskSpace => ({ ...noSpace, ...d });

/** BuildKit's default policies (v0.17+ form), with the first one's type filter meant as "any of". */
export function defaultGCPolicies(cfg: { reservedSpace?: DiskSpace; maxUsedSpace?: DiskSpace; minFreeSpace?: DiskSpace }): GCPolicy[] {
  let reservedSpace = cfg.reservedSpace ?? zero();
  let maxUsedSpace = cfg.maxUsedSpace ?? zero();
  let minFreeSpace = cfg.minFreeSpace ?? zero();
  const unset = (d: DiskSpace) => d.bytes === 0 && d.percentage === 0;
  if (unset(reservedSpace) && unset(maxUsedSpace) && unset(minFreeSpace)) {
    // BuildKit: reserve 10% (at most 10 GB), keep 20% free, use at most 80% (at most 100 GB).
    reservedSpace = { bytes: 0, percentage: 10, capBytes: 10e9 };
    minFreeSpace = { bytes: 0, percentage: 20 };
    maxUsedSpace = { bytes: 0, percentage: 80, capBytes: 100e9 };
  }
  const limits = { reservedSpace, maxUsedSpace, minFreeSpace };
  return [
    // BuildKit writes these as one comma-joined filter, which containerd reads as "all of" and so
    // never matches; three filters ("any of") is what the policy means.
    { all: false, filters: ["type==source.local", "type==exec.cachemount", "type==source.git.checkout"], keepDurationMs: 48 * 3600_000, reservedSpace: zero(), maxUsedSpace: zero({ bytes: 512e6 }), minFreeSpace: zero() },
    { all: false, filters: [], keepDurationMs: 60 * 24 * 3600_000, ...limits },
    { all: false, filters: [], keepDurationMs: 0, ...limits },
    { all: true, filters: [], keepDurationMs: 0, ...limits },
  ];
}

export interface GarbageCollectorOptions {
  mgr: CacheManager;
  content: ContentStore;
  root: string;
  cacheMountRoot: string;
  policies: GCPolicy[];
  /** `[worker.oci] gc = false` turns automatic collection off (prune still works). */
  enabled: boolean;
  /** Unreferenced blobs younger than this may belong to a pull or export in progress. */
  blobGraceMs?: number;
}

interface DiskStat {
  total: number;
  free: number;
}

export class GarbageCollector {
  private readonly db: MetadataDB;
  private readonly locks: KeyLocks;
  private readonly deadLeases = new Set<string>();
  private running: Promise<void> | undefined;

  constructor(private readonly opts: GarbageCollectorOptions) {
    this.db = opts.mgr.db;
    this.locks = new KeyLocks(path.join(opts.root, "locks"));
  }

  /** Leases whose process is gone: dropped, so what they held is free. Returns the dead ids. */
  async reapLeases(): Promise<Set<string>> {
    for (const l of this.db.allLeases()) {
      if (this.deadLeases.has(l.id)) continue;
      if (!(await processIsAlive(l.pid, l.start))) {
        this.deadLeases.add(l.id);
        this.db.deleteLease(l.id);
      }
    }
    return this.deadLeases;
  }

  private async diskStat(): Promise<DiskStat> {
    try {
      const s = await statfs(this.opts.root);
      return { total: s.blocks * s.bsize, free: s.bavail * s.bsize };
    } catch {
      return { total: 0, free: 0 };
    }
  }

  /** Held by this process or by a live lease of another. */
  private heldSets(): { refs: Set<string>; cacheMounts: Set<string> } {
    const live = this.db.allLeases().filter((l) => !this.deadLeases.has(l.id)).map((l) => l.id);
    const refs = new Set([...this.opts.mgr.heldIds(), ...this.db.leasedIds("ref", live), ...this.db.leasedIds("snapshot", live)]);
    const cacheMounts = new Set([...this.opts.mgr.heldResources("cachemount"), ...this.db.leasedIds("cachemount", live)]);
    return { refs, cacheMounts };
  }

  /** Every record, as `buildctl du` lists them (refs, then cache mounts). */
  async usage(): Promise<UsageInfo[]> {
    await this.reapLeases();
    const held = this.heldSets();
    const refs = this.db.allRefs();
    const blobOwners = new Map<string, number>();
    for (const r of refs) if (r.blobDigest) blobOwners.set(r.blobDigest, (blobOwners.get(r.blobDigest) ?? 0) + 1);
    const out: UsageInfo[] = refs.map((r) => ({
      id: r.id,
      parents: r.parent ? [r.parent] : [],
      mutable: false,
      inUse: held.refs.has(r.id),
      // A record's size is its snapshot plus its layer blob, as in BuildKit.
      size: (r.size ?? 0) + (r.blobDigest && r.blobSize ? Math.round(r.blobSize / (blobOwners.get(r.blobDigest) ?? 1)) : 0),
      createdAt: new Date(r.createdAt),
      lastUsedAt: new Date(r.lastUsedAt),
      usageCount: r.usageCount,
      description: r.description,
      recordType: r.recordType,
      shared: false,
    }));
    for (const name of await readdir(this.opts.cacheMountRoot).catch(() => [] as string[])) {
      const dir = path.join(this.opts.cacheMountRoot, name);
      const st = await stat(dir).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      const meta = this.db.getKV("cachemount", name);
      const desc = meta ? (JSON.parse(meta) as { id: string }).id : name;
      out.push({
        id: name,
        parents: [],
        mutable: true,
        inUse: held.cacheMounts.has(name),
        size: await this.cacheMountSize(name, dir, st.mtimeMs),
        createdAt: st.birthtime.getTime() > 0 ? st.birthtime : st.ctime,
        lastUsedAt: st.mtime,
        usageCount: Number(this.db.getKV("cachemount.uses", name) ?? "1"),
        description: `cached mount with id ${desc}`,
        recordType: "exec.cachemount",
        shared: false,
      });
    }
    return out;
  }

  private readonly mountSizes = new Map<string, { size: number; mtimeMs: number; at: number }>();

  /** Walking a big cache mount on every commit would be slow: sizes are reused for a few seconds. */
  private async cacheMountSize(name: string, dir: string, mtimeMs: number): Promise<number> {
    const m = this.mountSizes.get(name);
    if (m && m.mtimeMs === mtimeMs && Date.now() - m.at < 5000) return m.size;
    const size = await diskUsage(dir);
    this.mountSizes.set(name, { size, mtimeMs, at: Date.now() });
    return size;
  }

  /**
   * `kiln du`'s records: every cache record, plus one internal record for what the root holds
   * outside them (database, unreferenced blobs, locks), so the total is the root's real size.
   */
  async diskUsage(filters: string[] = []): Promise<UsageInfo[]> {
    const filter = parseFilters(filters);
    const records = await this.usage();
    this.db.checkpoint();
    const rootBytes = await apparentSize(this.opts.root);
    const inRecords = records.reduce((a, r) => a + r.size, 0);
    const other: UsageInfo = {
      id: "kiln-metadata",
      parents: [],
      mutable: true,
      inUse: true,
      size: Math.max(0, rootBytes - inRecords),
      createdAt: new Date((await stat(this.opts.root).catch(() => undefined))?.birthtime ?? 0),
      lastUsedAt: new Date(),
      usageCount: 0,
      description: "metadata database, content store and other state outside cache records",
      recordType: "internal",
      shared: false,
    };
    return [...records, other].filter((r) => filter.matches(fieldsOf(r)));
  }

  /** Bytes the cache records use (what policies' limits are compared with). */
  async recordsSize(): Promise<number> {
    return (await this.usage()).reduce((a, r) => a + (r.shared ? 0 : r.size), 0);
  }

  /** One prune pass with explicit options (`kiln prune`); reports each removed record. */
  async prune(signal: AbortSignal, o: PruneOptions, onRemoved?: (u: UsageInfo) => void): Promise<UsageInfo[]> {
    const release = await this.locks.lock(signal, "sha256:gc" as Digest);
    try {
      return await this.pruneLocked(signal, o, onRemoved);
    } finally {
      await release();
    }
  }

  private async pruneLocked(signal: AbortSignal, o: PruneOptions, onRemoved?: (u: UsageInfo) => void): Promise<UsageInfo[]> {
    const filter = parseFilters(o.filters ?? []);
    const maxUsed = o.maxUsedSpace || o.keepBytes || 0;
    const limited = maxUsed !== 0 || (o.reservedSpace ?? 0) !== 0 || (o.minFreeSpace ?? 0) !== 0;
    const removed: UsageInfo[] = [];
    for (;;) {
      signal.throwIfAborted();
      const records = await this.usage();
      const total = records.reduce((a, r) => a + (r.shared ? 0 : r.size), 0);
      const keepBytes = limited ? calculateKeepBytes(total, await this.diskStat(), { maxUsed, reserved: o.reservedSpace ?? 0, minFree: o.minFreeSpace ?? 0 }) : 0;
      if (limited && total <= keepBytes) break;
      const cutoff = Date.now() - (o.keepDurationMs ?? 0);
      const parents = new Set(records.flatMap((r) => r.parents));
      const candidates = records.filter(
        (r) =>
          !r.inUse &&
          !parents.has(r.id) &&
          (o.all || (r.recordType !== "internal" && r.recordType !== "frontend" && !r.shared)) &&
          !(o.keepDurationMs && r.lastUsedAt && r.lastUsedAt.getTime() > cutoff) &&
          filter.matches(fieldsOf(r)),
      );
      if (candidates.length === 0) break;
      // Under a size limit, least recently (then least often) used goes first, one at a time;
      // without one, everything that matches goes.
      candidates.sort((a, b) => (a.lastUsedAt?.getTime() ?? 0) - (b.lastUsedAt?.getTime() ?? 0) || a.usageCount - b.usageCount);
      const batch = limited ? candidates.slice(0, 1) : candidates;
      let progress = false;
      for (const r of batch) {
        if (await this.remove(r)) {
          removed.push(r);
          onRemoved?.(r);
          progress = true;
        }
      }
      if (!progress) break;
    }
    if (removed.length > 0) await this.collectBlobs();
    return removed;
  }

  /** Deletes one record unless someone took hold of it meanwhile. */
  private async remove(r: UsageInfo): Promise<boolean> {
    if (r.recordType === "exec.cachemount" && r.mutable) {
      if (this.heldSets().cacheMounts.has(r.id)) return false;
      await rm(path.join(this.opts.cacheMountRoot, r.id), { recursive: true, force: true });
      this.db.deleteKV("cachemount", r.id);
      this.db.deleteKV("cachemount.uses", r.id);
      return true;
    }
    const dead = [...this.deadLeases];
    // The check and the delete are one transaction, and taking a ref checks it exists in one too,
    // so a ref is never deleted under a process that has just taken it.
    const rec: RefRecord | undefined = this.db.transaction(() => {
      const cur = this.db.getRef(r.id);
      if (!cur || this.db.childrenOf(r.id).length > 0) return undefined;
      if (this.opts.mgr.heldIds().has(r.id) || this.db.isLeased(r.id, dead)) return undefined;
      this.db.deleteRef(r.id);
      return cur;
    });
    if (!rec) return false;
    this.db.deleteKV("local.entries", r.id);
    this.db.deleteKV(fileDigestsBucket, r.id);
    this.db.deleteKVPrefix("contenthash", `${r.id}\0`);
    await this.opts.mgr.snapshotter.remove(r.id).catch(() => undefined);
    if (rec.blobDigest && !this.db.blobInUse(rec.blobDigest)) await this.opts.content.delete(rec.blobDigest as Digest);
    return true;
  }

  /** Blobs no record references and nothing has written for a while (manifests, configs, leftovers). */
  private async collectBlobs(): Promise<void> {
    const grace = this.opts.blobGraceMs ?? 10 * 60_000;
    const now = Date.now();
    for await (const b of this.opts.content.list()) {
      if (this.db.blobInUse(b.digest)) continue;
      const st = await stat(this.opts.content.blobPath(b.digest)).catch(() => undefined);
      if (st && now - st.mtimeMs > grace) await this.opts.content.delete(b.digest);
    }
  }

  /** Applies the configured policies in order, each until its limits hold. */
  async runPolicies(signal: AbortSignal): Promise<UsageInfo[]> {
    // One collection at a time in this process; others wait for it rather than pile on.
    while (this.running) await this.running.catch(() => undefined);
    let done!: () => void;
    this.running = new Promise<void>((r) => (done = r));
    try {
      const release = await this.locks.lock(signal, "sha256:gc" as Digest);
      try {
        const ds = await this.diskStat();
        const removed: UsageInfo[] = [];
        for (const p of this.opts.policies) {
          const bytes = (d: DiskSpace) => diskSpaceBytes(d, ds.total);
          removed.push(
            ...(await this.pruneLocked(signal, {
              all: p.all,
              filters: p.filters,
              keepDurationMs: p.keepDurationMs,
              reservedSpace: bytes(p.reservedSpace),
              maxUsedSpace: bytes(p.maxUsedSpace),
              minFreeSpace: bytes(p.minFreeSpace),
            })),
          );
        }
        return removed;
      } finally {
        await release();
      }
    } finally {
      this.running = undefined;
      done();
    }
  }

  /** The strictest maxUsedSpace among the policies, in bytes (0 = none). */
  async cap(): Promise<number> {
    const ds = await this.diskStat();
    let cap = 0;
    for (const p of this.opts.policies) {
      if (p.filters.length > 0) continue;
      // Older configs say only keepBytes (now reservedSpace): collection goes down to it, so it is the cap.
      const onlyReserved = diskSpaceBytes(p.maxUsedSpace, ds.total) === 0 && diskSpaceBytes(p.minFreeSpace, ds.total) === 0;
      const v = onlyReserved ? diskSpaceBytes(p.reservedSpace, ds.total) : diskSpaceBytes(p.maxUsedSpace, ds.total);
      if (v > 0 && (cap === 0 || v < cap)) cap = v;
    }
    return cap;
  }

  /** After a build, as BuildKit does: apply the policies if the cache has grown past any limit. */
  async afterBuild(signal: AbortSignal): Promise<UsageInfo[]> {
    if (!this.opts.enabled) return [];
    const ds = await this.diskStat();
    let threshold = Infinity;
    for (const p of this.opts.policies) {
      const b = Math.max(diskSpaceBytes(p.maxUsedSpace, ds.total), diskSpaceBytes(p.reservedSpace, ds.total));
      if (b > 0) threshold = Math.min(threshold, b);
      else if (diskSpaceBytes(p.minFreeSpace, ds.total) > ds.free) threshold = 0;
      else if (p.keepDurationMs > 0 && b === 0) threshold = 0;
    }
    if ((await this.recordsSize()) <= threshold) return [];
    return this.runPolicies(signal);
  }

  /**
   * Called before a snapshot of `bytes` is committed: if that would cross the cap, collect
   * first. What running builds hold can't be collected; only that may exceed the cap.
   */
  async beforeCommit(bytes: number, signal: AbortSignal = new AbortController().signal): Promise<void> {
    if (!this.opts.enabled) return;
    const cap = await this.cap();
    if (cap === 0) return;
    if ((await this.recordsSize()) + bytes <= cap) return;
    // Make room for the new snapshot: collect down to cap - bytes.
    await this.pruneToFit(signal, Math.max(0, cap - bytes));
  }

  private async pruneToFit(signal: AbortSignal, target: number): Promise<void> {
    const release = await this.locks.lock(signal, "sha256:gc" as Digest);
    try {
      await this.pruneLocked(signal, { all: false, maxUsedSpace: target });
      if ((await this.recordsSize()) > target) await this.pruneLocked(signal, { all: true, maxUsedSpace: target });
    } finally {
      await release();
    }
  }
}

function calculateKeepBytes(total: number, ds: DiskStat, o: { maxUsed: number; reserved: number; minFree: number }): number {
  let keep = o.maxUsed;
  const excess = o.minFree - ds.free;
  if (o.minFree !== 0 && excess > 0) keep = keep === 0 ? total - excess : Math.min(keep, total - excess);
  else if (o.minFree !== 0 && keep === 0) keep = total;
  return Math.max(keep, o.reserved);
}

function fieldsOf(r: UsageInfo): (field: string) => [string, boolean] {
  return (field) => {
    switch (field) {
      case "id":
        return [r.id, r.id !== ""];
      case "parents":
        return [r.parents.join(";"), r.parents.length > 0];
      case "description":
        return [r.description, r.description !== ""];
      case "inuse":
        return ["", r.inUse];
      case "mutable":
        return ["", r.mutable];
      case "immutable":
        return ["", !r.mutable];
      case "type":
        return [r.recordType, r.recordType !== ""];
      case "shared":
        return ["", r.shared];
      case "private":
        return ["", !r.shared];
      default:
        return ["", false];
    }
  };
}

/** What `du -sb` reports for a directory: apparent sizes, each hard-linked inode once. */
export async function apparentSize(root: string): Promise<number> {
  const seen = new Set<number>();
  let total = 0;
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p).catch(() => undefined);
    if (!st) return;
    if (!st.isDirectory() && st.nlink > 1) {
      if (seen.has(st.ino)) return;
      seen.add(st.ino);
    }
    total += st.size;
    if (st.isDirectory()) {
      const names = await readdir(p).catch(() => [] as string[]);
      for (let i = 0; i < names.length; i += 64) await Promise.all(names.slice(i, i + 64).map((n) => walk(path.join(p, n))));
    }
  };
  await walk(root);
  return total;
}

export type { Filter };
