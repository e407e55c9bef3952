// Refs: immutable (committed, shareable, cached) and mutable (being written by one op) handles
// to snapshots, recorded in the metadata database.
import { randomBytes } from "node:crypto";
import type { ActiveMount, MountSpec, Snapshotter } from "../snapshot/types.js";
import type { Digest } from "../util/index.js";
import type { MetadataDB, RefRecord } from "./db.js";

export interface LayerBlob {
  digest: Digest;
  mediaType: string;
  size: number;
  diffId: Digest;
}

export interface CacheManagerOptions {
  /** This process's lease: what it holds is recorded there so other processes spare it. */
  leaseId?: string;
  /**
   * Called before a snapshot of `bytes` is committed as ref `id`: makes room first when the
   * store would cross its cap (GC before the cap is crossed, not after) and records the bytes
   * as reserved until the ref row exists.
   */
  reserve?: (signal: AbortSignal, id: string, bytes: number) => Promise<void>;
}

export class CacheManager {
  private readonly counts = new Map<string, number>();

  constructor(
    readonly db: MetadataDB,
    readonly snapshotter: Snapshotter,
    readonly opts: CacheManagerOptions = {},
  ) {}

  /** A new handle to a committed ref; throws when it is not there. */
  get(id: string): ImmutableRef {
    const rec = this.db.getRef(id);
    if (!rec) throw new Error(`ref ${id} not found`);
    return this.handle(rec);
  }

  tryGet(id: string): ImmutableRef | undefined {
    // Looking the ref up and recording the hold are one transaction, so a collector in another
    // process either sees the hold or has already deleted the ref.
    return this.db.transaction(() => {
      const rec = this.db.getRef(id);
      return rec ? this.handle(rec) : undefined;
    });
  }

  /** A writable snapshot on top of `parent` (or empty). Commit it or discard it. */
  async newMutable(parent: ImmutableRef | undefined, description: string, recordType = "regular"): Promise<MutableRef> {
    const id = newRefId();
    this.lease("snapshot", id, true);
    try {
      await this.snapshotter.prepare(id, parent?.id);
    } catch (err) {
      this.lease("snapshot", id, false);
      throw err;
    }
    return new MutableRef(this, id, parent?.clone(), description, recordType);
  }

  /** @internal Records (or drops) a resource under this process's lease. */
  lease(kind: "ref" | "snapshot", id: string, held: boolean): void {
    const lease = this.opts.leaseId;
    if (!lease) return;
    if (held) this.db.addLeaseResource(lease, kind, id);
    else this.db.removeLeaseResource(lease, kind, id);
  }

  private readonly resourceCounts = new Map<string, number>();

  /** Holds another kind of resource (a cache mount directory) under this process's lease until released. */
  holdResource(kind: string, id: string): () => void {
    const k = `${kind}\0${id}`;
    const n = (this.resourceCounts.get(k) ?? 0) + 1;
    this.resourceCounts.set(k, n);
    if (n === 1 && this.opts.leaseId) this.db.addLeaseResource(this.opts.leaseId, kind, id);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.resourceCounts.get(k) ?? 1) - 1;
      if (left > 0) return void this.resourceCounts.set(k, left);
      this.resourceCounts.delete(k);
      if (this.opts.leaseId) this.db.removeLeaseResource(this.opts.leaseId, kind, id);
    };
  }

  /** Ids of a resource kind this process holds. */
  heldResources(kind: string): Set<string> {
    const out = new Set<string>();
    for (const k of this.resourceCounts.keys()) if (k.startsWith(`${kind}\0`)) out.add(k.slice(kind.length + 1));
    return out;
  }

  /** Finds an already unpacked layer with this blob on this parent, so layers unpack once. */
  findLayer(blobDigest: string, parent: ImmutableRef | undefined): ImmutableRef | undefined {
    const rec = this.db.findByBlob(blobDigest, parent?.id ?? null);
    return rec ? this.handle(rec) : undefined;
  }

  /** @internal */
  handle(rec: RefRecord): ImmutableRef {
    const n = (this.counts.get(rec.id) ?? 0) + 1;
    this.counts.set(rec.id, n);
    if (n === 1) this.lease("ref", rec.id, true);
    return new ImmutableRef(this, rec);
  }

  /** @internal */
  releaseHandle(id: string): void {
    const n = (this.counts.get(id) ?? 1) - 1;
    if (n <= 0) {
      this.counts.delete(id);
      this.lease("ref", id, false);
    } else this.counts.set(id, n);
  }

  /** Ids of refs some build currently holds (GC must keep them and their parents). */
  heldIds(): Set<string> {
    return new Set(this.counts.keys());
  }
}

export class ImmutableRef {
  private released = false;

  constructor(
    private readonly mgr: CacheManager,
    private rec: RefRecord,
  ) {}

  get id(): string {
    return this.rec.id;
  }

  get record(): RefRecord {
    return this.rec;
  }

  get description(): string {
    return this.rec.description;
  }

  clone(): ImmutableRef {
    return this.mgr.handle(this.rec);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.mgr.releaseHandle(this.rec.id);
  }

  /** Records of this ref's layer chain, base first. */
  chain(): RefRecord[] {
    const out: RefRecord[] = [];
    let cur: RefRecord | undefined = this.mgr.db.getRef(this.rec.id);
    while (cur) {
      out.push(cur);
      cur = cur.parent ? this.mgr.db.getRef(cur.parent) : undefined;
    }
    return out.reverse();
  }

  blob(): LayerBlob | undefined {
    const r = this.mgr.db.getRef(this.rec.id) ?? this.rec;
    if (!r.blobDigest || !r.blobMediaType || r.blobSize === null || !r.diffId) return undefined;
    return { digest: r.blobDigest as Digest, mediaType: r.blobMediaType, size: r.blobSize, diffId: r.diffId as Digest };
  }

  setBlob(blob: LayerBlob): void {
    this.mgr.db.updateRef(this.rec.id, { blobDigest: blob.digest, blobMediaType: blob.mediaType, blobSize: blob.size, diffId: blob.diffId });
  }

  mounts(readonly = true): Promise<MountSpec[]> {
    return this.mgr.snapshotter.mounts(this.rec.id, readonly);
  }

  mount(signal: AbortSignal): Promise<ActiveMount> {
    return this.mgr.snapshotter.mount(signal, this.rec.id, true);
  }
}

export class MutableRef {
  private done = false;

  constructor(
    private readonly mgr: CacheManager,
    readonly id: string,
    private readonly parent: ImmutableRef | undefined,
    private readonly description: string,
    private readonly recordType: string,
  ) {}

  mounts(): Promise<MountSpec[]> {
    return this.mgr.snapshotter.mounts(this.id, false);
  }

  mount(signal: AbortSignal): Promise<ActiveMount> {
    return this.mgr.snapshotter.mount(signal, this.id, false);
  }

  /** The directory that receives this ref's own changes (for writing a layer directly). */
  upperDir(): string {
    return this.mgr.snapshotter.upperDir(this.id);
  }

  /**
   * Freezes the snapshot; the ref is recorded only once its content is complete. Its size (and
   * its layer blob's, when no other ref has that blob yet) is reserved against the store's cap
   * first, so collection makes room before the store grows, not after.
   */
  async commit(
    extra: Partial<Pick<RefRecord, "blobDigest" | "blobMediaType" | "blobSize" | "diffId" | "meta">> = {},
    signal: AbortSignal = new AbortController().signal,
  ): Promise<ImmutableRef> {
    if (this.done) throw new Error(`ref ${this.id} already finished`);
    this.done = true;
    const db = this.mgr.db;
    try {
      const size = await this.mgr.snapshotter.usage(this.id);
      const newBlob = extra.blobDigest && extra.blobSize && !db.blobInUse(extra.blobDigest) ? extra.blobSize : 0;
      await this.mgr.opts.reserve?.(signal, this.id, size + newBlob);
      await this.mgr.snapshotter.commit(this.id);
      const now = Date.now();
      const rec: RefRecord = {
        id: this.id,
        parent: this.parent?.id ?? null,
        createdAt: now,
        lastUsedAt: now,
        description: this.description,
        size,
        blobDigest: extra.blobDigest ?? null,
        blobMediaType: extra.blobMediaType ?? null,
        blobSize: extra.blobSize ?? null,
        diffId: extra.diffId ?? null,
        meta: extra.meta ?? null,
        recordType: this.recordType,
        usageCount: 1,
      };
      // The row and the hold go in before the snapshot's lease is dropped (finally), so no other
      // process ever sees this snapshot unowned.
      db.commitRef(rec);
      return this.mgr.handle(rec);
    } catch (err) {
      db.releaseReservation(this.id);
      await this.mgr.snapshotter.remove(this.id).catch(() => {});
      throw err;
    } finally {
      this.mgr.lease("snapshot", this.id, false);
      await this.parent?.release();
    }
  }

  /** Throws the snapshot away (on error or cancel). */
  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    try {
      await this.mgr.snapshotter.remove(this.id);
    } finally {
      this.mgr.lease("snapshot", this.id, false);
      await this.parent?.release();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.discard();
  }
}

function newRefId(): string {
  return randomBytes(12).toString("hex");
}
