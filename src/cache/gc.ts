// Disk usage and garbage collection of the build cache, with buildkitd.toml's policies.
//
// Unlike BuildKit, which collects only after builds (so bursts of concurrent builds overshoot the
// cap), the cap is enforced before each commit: a commit first reserves its bytes in the
// database; when they don't fit under the cap, the policies run first, as if the new snapshot
// were already there. Reserving is one SQLite write transaction, so processes sharing a root
// can't both take the last room, and only what running builds hold can exceed the cap. Holds are
// visible across processes (leases in the database), so several `kiln build`s and a `kiln prune`
// can share one root.
import { lstat, readdir, readFile, rm, stat, statfs } from "node:fs/promises";
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

/** One prune pass, as BuildKit's PruneInfo (sizes in bytes, already resolved from percentages). */
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

const zero = (d?: Partial<DiskSpace>): DiskSpace => ({ bytes: 0, percentage: 0, ...d });
const isUnset = (d: DiskSpace) => d.bytes === 0 && d.percentage === 0;

/**
 * BuildKit's default policies (cmd/buildkitd/config/gcpolicy.go): when none of reservedSpace,
 * maxUsedSpace and minFreeSpace is configured (gckeepstorage standing in for reservedSpace),
 * reserve 10% of the disk (at most 10 GB), keep 20% free and use at most 80% (at most 100 GB).
 */
export function defaultGCPolicies(cfg: { reservedSpace?: DiskSpace; maxUsedSpace?: DiskSpace; minFreeSpace?: DiskSpace; keepStorage?: DiskSpace }): GCPolicy[] {
  let reservedSpace = cfg.reservedSpace ?? zero();
  let maxUsedSpace = cfg.maxUsedSpace ?? zero();
  let minFreeSpace = cfg.minFreeSpace ?? zero();
  if (isUnset(reservedSpace) && isUnset(maxUsedSpace) && isUnset(minFreeSpace)) reservedSpace = cfg.keepStorage ?? zero();
  if (isUnset(reservedSpace) && isUnset(maxUsedSpace) && isUnset(minFreeSpace)) {
    reservedSpace = { bytes: 0, percentage: 10, capBytes: 10e9 };
    minFreeSpace = { bytes: 0, percentage: 20 };
    maxUsedSpace = { bytes: 0, percentage: 80, capBytes: 100e9 };
  }
  const limits = { reservedSpace, maxUsedSpace, minFreeSpace };
  return [
    // The most easily reproduced data, unused for 2 days, once the cache passes 512 MB.
    { all: false, filters: ["type==source.local", "type==exec.cachemount", "type==source.git.checkout"], keepDurationMs: 48 * 3600_000, reservedSpace: zero(), maxUsedSpace: zero({ bytes: 512e6 }), minFreeSpace: zero() },
    // Anything unused for 60 days.
    { all: false, filters: [], keepDurationMs: 60 * 24 * 3600_000, ...limits },
    // The cache under its cap.
    { all: false, filters: [], keepDurationMs: 0, ...limits },
    // And if that was not enough, internal and frontend records too.
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
  /** This process's lease (reservations are recorded under it). */
  leaseId?: string;
  /** Unreferenced blobs younger than this may belong to a pull or export in progress. */
  blobGraceMs?: number;
}

export interface DiskStat {
  total: number;
  free: number;
}

/** What a delete candidate is ranked by. */
export interface DeleteCandidate {
  lastUsedAt: Date | undefined;
  usageCount: number;
}

/**
 * BuildKit's order for size-limited collection: ranks by last use (never used first) and by
 * usage count, each rank scaled to [0,1], and deletes the lowest sum first. Stable for ties.
 */
export function sortDeleteRecords<T extends DeleteCandidate>(records: T[]): T[] {
  const byTime = records
    .map((r, i) => ({ r, i }))
    .sort((a, b) => (a.r.lastUsedAt === undefined ? -1 : b.r.lastUsedAt === undefined ? 1 : a.r.lastUsedAt.getTime() - b.r.lastUsedAt.getTime()) || a.i - b.i);
  const timeIndex = new Map<T, number>();
  let maxTime = 1;
  let latest = -Infinity;
  for (const { r } of byTime) {
    if (r.lastUsedAt && r.lastUsedAt.getTime() > latest) {
      latest = r.lastUsedAt.getTime();
      maxTime++;
    }
    timeIndex.set(r, maxTime);
  }
  const byCount = [...byTime].sort((a, b) => a.r.usageCount - b.r.usageCount || a.i - b.i);
  const countIndex = new Map<T, number>();
  let maxCount = 1;
  let count = 0;
  for (const { r } of byCount) {
    if (r.usageCount !== count) {
      count = r.usageCount;
      maxCount++;
    }
    countIndex.set(r, maxCount);
  }
  const score = (r: T) => timeIndex.get(r)! / maxTime + countIndex.get(r)! / maxCount;
  return byTime.sort((a, b) => score(a.r) - score(b.r) || a.i - b.i).map((x) => x.r);
}

/**
 * BuildKit's calculateKeepBytes: how many bytes a size-limited policy keeps (0 = no limit, prune
 * everything that matches).
 */
export function calculateKeepBytes(total: number, ds: DiskStat, o: { maxUsed: number; reserved: number; minFree: number }): number {
  if (o.maxUsed === 0 && o.reserved === 0 && o.minFree === 0) return 0;
  let keep = o.maxUsed;
  const excess = o.minFree - ds.free;
  if (excess > 0) keep = keep === 0 ? total - excess : Math.min(keep, total - excess);
  else if (o.minFree !== 0 && keep === 0) keep = total;
  return Math.max(keep, o.reserved);
}

export class GarbageCollector {
  private readonly db: MetadataDB;
  private readonly locks: KeyLocks;
  private readonly deadLeases = new Set<string>();

  constructor(private readonly opts: GarbageCollectorOptions) {
    this.db = opts.mgr.db;
    this.locks = new KeyLocks(path.join(opts.root, "locks"));
  }

  get policies(): readonly GCPolicy[] {
    return this.opts.policies;
  }

  /** Leases whose process is gone: dropped, so what they held is free. Returns the dead ids. */
  async reapLeases(): Promise<Set<string>> {
    for (const l of this.db.allLeases()) {
      if (this.deadLeases.has(l.id)) continue;
      if (!(await processIsAlive(l.pid, l.start))) {
        this.deadLeases.add(l.id);
        this.db.reapLease(l.id);
      }
    }
    return this.deadLeases;
  }

  async diskStat(): Promise<DiskStat> {
    try {
      const s = await statfs(this.opts.root);
      return { total: s.blocks * s.bsize, free: s.bavail * s.bsize };
    } catch {
      return { total: 0, free: 0 };
    }
  }

  /** Held by this process or by a live lease of another. */
  private heldSets(): { refs: Set<string>; cacheMounts: Set<string> } {
    const live = this.db
      .allLeases()
      .filter((l) => !this.deadLeases.has(l.id))
      .map((l) => l.id);
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
      // A record's size is its snapshot plus its layer blob (shared evenly when refs share one).
      size: (r.size ?? 0) + (r.blobDigest && r.blobSize ? Math.round(r.blobSize / (blobOwners.get(r.blobDigest) ?? 1)) : 0),
      createdAt: new Date(r.createdAt),
      lastUsedAt: new Date(r.lastUsedAt),
      usageCount: r.usageCount,
      description: r.description,
      recordType: r.recordType,
      shared: false,
    }));
    // As in BuildKit, a record a used record builds on is in use too.
    const byId = new Map(out.map((u) => [u.id, u]));
    for (const u of out) {
      if (!u.inUse) continue;
      for (let p = u.parents[0]; p !== undefined; ) {
        const pu = byId.get(p);
        if (!pu || pu.inUse) break;
        pu.inUse = true;
        p = pu.parents[0];
      }
    }
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

  /**
   * Walking a big cache mount on every commit would be slow: sizes are reused for a few seconds.
   * The last measurement is also stored, so reservations (one query) count cache mounts too.
   */
  private async cacheMountSize(name: string, dir: string, mtimeMs: number): Promise<number> {
    const m = this.mountSizes.get(name);
    if (m && m.mtimeMs === mtimeMs && Date.now() - m.at < 5000) return m.size;
    const size = await diskUsage(dir).catch(() => 0);
    this.mountSizes.set(name, { size, mtimeMs, at: Date.now() });
    if (this.db.getKV("cachemount.size", name) !== String(size)) this.db.setKV("cachemount.size", name, String(size));
    return size;
  }

  /**
   * `kiln du`'s records, sorted as buildctl sorts them (size, then id): every cache record, plus
   * one internal record for what the root holds outside them (database, unreferenced blobs,
   * locks, directories), so the total is what the root takes on disk.
   */
  async diskUsage(filters: string[] = []): Promise<UsageInfo[]> {
    const filter = parseFilters(filters);
    const records = await this.usage();
    this.db.checkpoint();
    const onDisk = await rootUsage(this.opts.root);
    const inRecords = records.reduce((a, r) => a + r.size, 0);
    const other: UsageInfo = {
      id: "kiln-metadata",
      parents: [],
      mutable: true,
      inUse: true,
      size: Math.max(0, onDisk.allocated - inRecords),
      createdAt: (await stat(this.opts.root).catch(() => undefined))?.birthtime ?? new Date(0),
      lastUsedAt: new Date(),
      usageCount: 0,
      description: "metadata database, content store and other state outside cache records",
      recordType: "internal",
      shared: false,
    };
    return [...records, other].filter((r) => filter.matches(fieldsOf(r))).sort((a, b) => a.size - b.size || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** One prune pass with explicit options (`kiln prune`); reports each removed record. */
  async prune(signal: AbortSignal, o: PruneOptions, onRemoved?: (u: UsageInfo) => void): Promise<UsageInfo[]> {
    const release = await this.locks.lock(signal, "gc");
    try {
      const removed = await this.pruneLocked(signal, o, 0, onRemoved);
      if (removed.length > 0) await this.collectBlobs(signal);
      return removed;
    } finally {
      await release();
    }
  }

  /**
   * BuildKit's prune: a size-limited pass deletes the best candidate one at a time until the
   * total is under what the policy keeps; an unlimited pass deletes everything that matches.
   * `extra` counts bytes about to be committed (reservations of every process count anyway).
   */
  private async pruneLocked(signal: AbortSignal, o: PruneOptions, extra: number, onRemoved?: (u: UsageInfo) => void): Promise<UsageInfo[]> {
    const filter = parseFilters(o.filters ?? []);
    const limits = { maxUsed: o.maxUsedSpace || o.keepBytes || 0, reserved: o.reservedSpace ?? 0, minFree: o.minFreeSpace ?? 0 };
    const limited = limits.maxUsed !== 0 || limits.reserved !== 0 || limits.minFree !== 0;
    const totalOf = (records: UsageInfo[]) => records.reduce((a, r) => a + (r.shared ? 0 : r.size), 0) + this.db.reservedBytes() + extra;
    let records = await this.usage();
    let ds: DiskStat = { total: 0, free: 0 };
    if (limits.minFree !== 0) {
      ds = await this.diskStat();
      ds.free -= extra;
    }
    const keepBytes = limited ? calculateKeepBytes(totalOf(records), ds, limits) : 0;
    const gcMode = keepBytes !== 0;
    const removed: UsageInfo[] = [];
    for (;;) {
      signal.throwIfAborted();
      if (gcMode && totalOf(records) < keepBytes) break;
      const candidates = pruneCandidates(records, o, filter);
      if (candidates.length === 0) break;
      const batch = gcMode ? sortDeleteRecords(candidates).slice(0, 1) : candidates;
      let progress = false;
      for (const r of batch) {
        if (await this.remove(r)) {
          removed.push(r);
          onRemoved?.(r);
          progress = true;
        }
      }
      if (!progress) break;
      records = await this.usage();
    }
    return removed;
  }

  /** Deletes one record unless someone took hold of it meanwhile. */
  private async remove(r: UsageInfo): Promise<boolean> {
    if (r.recordType === "exec.cachemount" && r.mutable) {
      if (this.heldSets().cacheMounts.has(r.id)) return false;
      await rm(path.join(this.opts.cacheMountRoot, r.id), { recursive: true, force: true });
      this.db.deleteKV("cachemount", r.id);
      this.db.deleteKV("cachemount.uses", r.id);
      this.db.deleteKV("cachemount.size", r.id);
      this.mountSizes.delete(r.id);
      return true;
    }
    const dead = [...this.deadLeases];
    // The check and the delete are one transaction, and taking a ref checks it exists in one too,
    // so a ref is never deleted under a process that has just taken it. Its cache keys go with it
    // (a foreign key cascade).
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
  private async collectBlobs(signal: AbortSignal): Promise<void> {
    const grace = this.opts.blobGraceMs ?? 10 * 60_000;
    const now = Date.now();
    for await (const b of this.opts.content.list()) {
      signal.throwIfAborted();
      if (this.db.blobInUse(b.digest)) continue;
      const st = await stat(this.opts.content.blobPath(b.digest)).catch(() => undefined);
      if (st && now - st.mtimeMs > grace) await this.opts.content.delete(b.digest);
    }
  }

  /** The policies' byte limits on a disk described by `ds`. */
  private resolve(p: GCPolicy, ds: DiskStat): PruneOptions {
    const bytes = (d: DiskSpace) => diskSpaceBytes(d, ds.total);
    return {
      all: p.all,
      filters: p.filters,
      keepDurationMs: p.keepDurationMs,
      reservedSpace: bytes(p.reservedSpace),
      maxUsedSpace: bytes(p.maxUsedSpace),
      minFreeSpace: bytes(p.minFreeSpace),
    };
  }

  /** Applies the configured policies in order, each until its limits hold. */
  async runPolicies(signal: AbortSignal): Promise<UsageInfo[]> {
    const release = await this.locks.lock(signal, "gc");
    try {
      const removed = await this.runPoliciesLocked(signal, 0);
      if (removed.length > 0) await this.collectBlobs(signal);
      return removed;
    } finally {
      await release();
    }
  }

  private async runPoliciesLocked(signal: AbortSignal, extra: number): Promise<UsageInfo[]> {
    const ds = await this.diskStat();
    const removed: UsageInfo[] = [];
    for (const p of this.opts.policies) removed.push(...(await this.pruneLocked(signal, this.resolve(p, ds), extra)));
    return removed;
  }

  /**
   * The hard cap in bytes for a store of `total` bytes about to grow by `extra` (0 = none): the
   * least any policy keeps that applies to every record at any age (no filters, no keepDuration)
   * — with BuildKit's defaults, maxUsedSpace or what minFreeSpace leaves.
   */
  capFor(total: number, extra: number, ds: DiskStat): number {
    let cap = 0;
    for (const p of this.opts.policies) {
      if (p.filters.length > 0 || p.keepDurationMs > 0) continue;
      const r = this.resolve(p, ds);
      const keep = calculateKeepBytes(total + extra, { total: ds.total, free: ds.free - extra }, { maxUsed: r.maxUsedSpace ?? 0, reserved: r.reservedSpace ?? 0, minFree: r.minFreeSpace ?? 0 });
      if (keep > 0 && (cap === 0 || keep < cap)) cap = keep;
    }
    return cap;
  }

  /**
   * Called before `bytes` are committed as ref `id`: reserves them, collecting first when they
   * would take the store past its cap. When what is left is all held by running builds, the
   * reservation is taken anyway: only that may exceed the cap.
   */
  async reserve(signal: AbortSignal, id: string, bytes: number): Promise<void> {
    const lease = this.opts.leaseId;
    if (!lease) return;
    if (!this.opts.enabled || this.opts.policies.length === 0) {
      this.db.tryReserve(id, lease, bytes, () => true, true);
      return;
    }
    let ds = await this.diskStat();
    const fits = (accounted: number) => {
      const cap = this.capFor(accounted, bytes, ds);
      return cap === 0 || accounted + bytes <= cap;
    };
    if (this.db.tryReserve(id, lease, bytes, fits)) return;
    const release = await this.locks.lock(signal, "gc");
    try {
      for (let round = 0; ; round++) {
        ds = await this.diskStat();
        const removed = await this.runPoliciesLocked(signal, bytes);
        // Another process may have taken the room meanwhile; try again while collecting helps.
        if (this.db.tryReserve(id, lease, bytes, fits, removed.length === 0 || round >= 8)) return;
      }
    } finally {
      await release();
    }
  }

  /** After a build, as BuildKit does: apply the policies when the cache is past any limit. */
  async afterBuild(signal: AbortSignal): Promise<UsageInfo[]> {
    if (!this.opts.enabled) return [];
    const ds = await this.diskStat();
    const records = await this.usage();
    const total = records.reduce((a, r) => a + (r.shared ? 0 : r.size), 0);
    const needed = this.opts.policies.some((p) => {
      const r = this.resolve(p, ds);
      const keep = calculateKeepBytes(total, ds, { maxUsed: r.maxUsedSpace ?? 0, reserved: r.reservedSpace ?? 0, minFree: r.minFreeSpace ?? 0 });
      // Without a size limit a policy deletes whatever matches (by age, filter): run it when
      // something does (most builds find nothing old enough, and skip the lock and the passes).
      if (keep === 0) return pruneCandidates(records, r, parseFilters(r.filters ?? [])).length > 0;
      return total >= keep;
    });
    return needed ? this.runPolicies(signal) : [];
  }
}

/** What an unlimited pass of `o` would delete now: unused, not under another record, old enough, matching. */
function pruneCandidates(records: UsageInfo[], o: PruneOptions, filter: ReturnType<typeof parseFilters>): UsageInfo[] {
  const cutoff = Date.now() - (o.keepDurationMs ?? 0);
  const parents = new Set(records.flatMap((r) => r.parents));
  return records.filter(
    (r) =>
      !r.inUse &&
      // A record others build on goes only after them (its snapshot is their lower layer).
      !parents.has(r.id) &&
      r.id !== "kiln-metadata" &&
      (o.all || (r.recordType !== "internal" && r.recordType !== "frontend" && !r.shared)) &&
      !(o.keepDurationMs && r.lastUsedAt && r.lastUsedAt.getTime() > cutoff) &&
      filter.matches(fieldsOf(r)),
  );
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

/** Mount points strictly under `root` (from /proc/self/mountinfo). */
export async function mountsUnder(root: string): Promise<string[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  const prefix = root.endsWith("/") ? root : `${root}/`;
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const field = line.split(" ")[4];
    if (!field) continue;
    const target = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (target.startsWith(prefix)) out.push(target);
  }
  return out;
}

/**
 * What a directory tree takes: `apparent` as `du -sb` counts it, `allocated` as `du -s -B1` does
 * (blocks, the measure records use); hard-linked inodes once. Mounts under it (a running build's
 * overlays) are not descended into: their data is already counted where it lives.
 */
export async function rootUsage(root: string): Promise<{ apparent: number; allocated: number }> {
  const skip = new Set(await mountsUnder(root));
  const seen = new Set<number>();
  let apparent = 0;
  let allocated = 0;
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p).catch(() => undefined);
    if (!st) return;
    if (!st.isDirectory() && st.nlink > 1) {
      if (seen.has(st.ino)) return;
      seen.add(st.ino);
    }
    apparent += st.size;
    allocated += st.blocks * 512;
    if (st.isDirectory() && !skip.has(p)) {
      const names = await readdir(p).catch(() => [] as string[]);
      for (let i = 0; i < names.length; i += 64) await Promise.all(names.slice(i, i + 64).map((n) => walk(path.join(p, n))));
    }
  };
  await walk(root);
  return { apparent, allocated };
}

export type { Filter };
