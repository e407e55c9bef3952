// Refs: immutable (committed, shareable, cached) and mutable (being written by one op) handles
// to snapshots, recorded in the metadata database.
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { decompressLayer } from "../content/decompress.js";
import type { ContentStore } from "../content/types.js";
import { applyLayer } from "../snapshot/apply.js";
import type { ActiveMount, MountSpec, Snapshotter } from "../snapshot/types.js";
import { Flight, KilnError, processIsAlive, type Digest } from "../util/index.js";
import type { MetadataDB, RefRecord } from "./db.js";

export interface LayerBlob {
  digest: Digest;
  mediaType: string;
  size: number;
  diffId: Digest;
}

/** A layer known by its blob, for a lazy ref. */
export interface LazyLayer extends LayerBlob {
  /** When the layer was made (the exporting build's time), for image history. */
  createdAt?: number;
}

/** Brings a blob into the content store (verified), from wherever it lives (a registry, a cache directory, S3). */
export type BlobProvider = (signal: AbortSignal, blob: LayerBlob) => Promise<void>;

/**
 * Where this process may fetch the blobs of lazy refs from, for as long as the scope is open (one
 * solve: its session's credentials are what the providers use).
 */
export interface BlobProviderScope extends Disposable {
  add(digest: string, provider: BlobProvider): void;
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
  /** Where lazy refs' blobs are kept; without it, lazy refs can't be made. */
  content?: ContentStore;
}

const never = new AbortController().signal;

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

  /** A writable snapshot on top of `parent` (or empty); a lazy parent is extracted first. Commit it or discard it. */
  async newMutable(parent: ImmutableRef | undefined, description: string, recordType = "regular", signal: AbortSignal = never): Promise<MutableRef> {
    if (parent) await this.extract(signal, parent.id);
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

  // ---- lazy refs ----

  private readonly providers = new Map<string, BlobProvider[]>();
  private readonly extracting = new Flight<void>();
  private readonly fetching = new Flight<void>();
  private readonly adding = new Flight<string>();

  /** Opens a scope whose providers serve blobs until it is disposed. */
  providerScope(): BlobProviderScope {
    const added: [string, BlobProvider][] = [];
    return {
      add: (digest, provider) => {
        added.push([digest, provider]);
        this.providers.set(digest, [...(this.providers.get(digest) ?? []), provider]);
      },
      [Symbol.dispose]: () => {
        for (const [digest, p] of added.splice(0)) {
          const left = (this.providers.get(digest) ?? []).filter((x) => x !== p);
          if (left.length > 0) this.providers.set(digest, left);
          else this.providers.delete(digest);
        }
      },
    };
  }

  private content(): ContentStore {
    if (!this.opts.content) throw new Error("lazy refs need the cache manager's content store");
    return this.opts.content;
  }

  /**
   * A chain of refs for layers known only as blobs, base first: layers already recorded on the
   * same parent (extracted or lazy) are reused, the others are recorded lazily — no download, no
   * unpacking. Their blobs come from the content store or, on demand, from `provider` (which
   * the caller's scope holds). Undefined for no layers.
   */
  async lazyChain(signal: AbortSignal, layers: LazyLayer[], description: string, scope?: BlobProviderScope, provider?: BlobProvider): Promise<ImmutableRef | undefined> {
    return this.stackLayers(signal, layers, async (layer, parent) => {
      if (scope && provider) scope.add(layer.digest, provider);
      const parentId = parent?.id ?? null;
      return this.adding.run(`${layer.digest}|${parentId ?? ""}`, async () => {
        const found = this.db.findByBlob(layer.digest, parentId);
        if (found) return found.id;
        const id = newRefId();
        // The blob counts against the cap from now on (it is the ref's until the ref goes).
        if (!this.db.blobInUse(layer.digest)) await this.opts.reserve?.(signal, id, layer.size);
        const now = Date.now();
        this.db.commitRef({
          id,
          parent: parentId,
          createdAt: layer.createdAt ?? now,
          lastUsedAt: now,
          description,
          size: 0,
          blobDigest: layer.digest,
          blobMediaType: layer.mediaType,
          blobSize: layer.size,
          diffId: layer.diffId,
          meta: null,
          recordType: "regular",
          usageCount: 1,
          lazy: true,
        });
        return id;
      });
    });
  }

  /**
   * Refs for `layers` stacked base first: `refIdOn` finds or records each layer's ref on the one
   * below it and answers its id. Returns a handle to the top (undefined for no layers); the
   * handles below are let go along the way, and every handle on failure.
   */
  async stackLayers<L extends { digest: string }>(signal: AbortSignal, layers: readonly L[], refIdOn: (layer: L, parent: ImmutableRef | undefined, index: number) => Promise<string>): Promise<ImmutableRef | undefined> {
    let parent: ImmutableRef | undefined;
    try {
      for (const [i, layer] of layers.entries()) {
        signal.throwIfAborted();
        const id = await refIdOn(layer, parent, i);
        const next = this.tryGet(id);
        if (!next) throw new KilnError("KILN_CACHE_GONE", `layer ${layer.digest} was collected while it was being recorded`);
        await parent?.release();
        parent = next;
      }
      return parent;
    } catch (err) {
      await parent?.release();
      throw err;
    }
  }

  /** Whether every blob a ref's lazy layers need is here or can be fetched (a cache hit can be served). */
  async canServe(ref: ImmutableRef): Promise<boolean> {
    for (const rec of ref.chain()) {
      if (!rec.lazy || !rec.blobDigest) continue;
      if (this.providers.has(rec.blobDigest)) continue;
      if (!(await this.opts.content?.has(rec.blobDigest as Digest))) return false;
    }
    return true;
  }

  /** Makes a layer's blob present in the content store: already there, or fetched from a provider. */
  async ensureBlob(signal: AbortSignal, blob: LayerBlob, what: string): Promise<void> {
    const content = this.opts.content;
    if (await content?.has(blob.digest)) return;
    await this.fetching.run(blob.digest, async () => {
      if (await content?.has(blob.digest)) return;
      const providers = this.providers.get(blob.digest) ?? [];
      if (providers.length === 0) throw new KilnError("KILN_BLOB_MISSING", `layer blob ${blob.digest} (${what}) is not in the content store and no cache import provides it`);
      let last: unknown;
      for (const p of providers) {
        try {
          await p(signal, blob);
          return;
        } catch (err) {
          if (signal.aborted) throw err;
          last = err;
        }
      }
      throw last;
    });
  }

  /** Extracts ref `id` and its lazy ancestors into snapshots (no-op for a ref that has one). */
  async extract(signal: AbortSignal, id: string): Promise<void> {
    const chain: RefRecord[] = [];
    for (let cur = this.db.getRef(id); cur; cur = cur.parent ? this.db.getRef(cur.parent) : undefined) chain.push(cur);
    for (const rec of chain.reverse()) if (rec.lazy) await this.extracting.run(rec.id, () => this.extractOne(signal, rec));
  }

  private async extractOne(signal: AbortSignal, rec: RefRecord): Promise<void> {
    const lease = this.opts.leaseId;
    if (lease) {
      let delay = 20;
      for (;;) {
        const claim = this.db.claimExtraction(rec.id, lease);
        if (claim.state === "done") return;
        if (claim.state === "claimed") break;
        // A holder that died mid-extraction holds nothing: its lease goes (and the root is marked
        // for a recovery scan), and its half-made snapshot is removed below.
        if (!(await processIsAlive(claim.holder.pid, claim.holder.start))) {
          this.db.reapLease(claim.holder.id);
          continue;
        }
        await sleep(delay, undefined, { signal });
        delay = Math.min(delay * 2, 250);
      }
    } else if (!this.db.getRef(rec.id)?.lazy) return;
    try {
      const blob: LayerBlob = { digest: rec.blobDigest as Digest, mediaType: rec.blobMediaType ?? "", size: rec.blobSize ?? 0, diffId: rec.diffId as Digest };
      // A crash of an earlier extraction left its snapshot: finished (only the row missed it) or half-made.
      const left = await this.snapshotter.stat(rec.id);
      if (left?.kind === "committed") return this.db.markExtracted(rec.id, await this.snapshotter.usage(rec.id));
      if (left) await this.snapshotter.remove(rec.id);
      await this.ensureBlob(signal, blob, rec.description);
      this.lease("snapshot", rec.id, true);
      try {
        await this.snapshotter.prepare(rec.id, rec.parent ?? undefined);
        try {
          const res = await applyLayer(signal, this.snapshotter, rec.id, decompressLayer(this.content().createReadStream(blob.digest), blob.mediaType));
          if (blob.diffId && res.diffId !== blob.diffId) throw new KilnError("KILN_LAYER_DIGEST", `layer ${blob.digest} (${rec.description}): uncompressed digest ${res.diffId} does not match the recorded ${blob.diffId}`);
          const size = await this.snapshotter.usage(rec.id);
          await this.opts.reserve?.(signal, rec.id, size);
          await this.snapshotter.commit(rec.id);
          this.db.markExtracted(rec.id, size);
        } catch (err) {
          this.db.releaseReservation(rec.id);
          await this.snapshotter.remove(rec.id).catch(() => {});
          throw err;
        }
      } finally {
        this.lease("snapshot", rec.id, false);
      }
    } finally {
      if (lease) this.db.removeLeaseResource(lease, "extract", rec.id);
    }
  }

  /** Finds an already unpacked layer with this blob on this parent, so layers unpack once. */
  /**
   * A lazy one counts only while its blob is here or fetchable: one whose import is over and
   * whose blob never came is no use to a pull that has the blob at hand.
   */
  async findLayer(blobDigest: string, parent: ImmutableRef | undefined): Promise<ImmutableRef | undefined> {
    const ref = this.db.transaction(() => {
      const rec = this.db.findByBlob(blobDigest, parent?.id ?? null);
      return rec ? this.handle(rec) : undefined;
    });
    if (ref?.record.lazy && !(await this.canServe(ref))) {
      await ref.release();
      return undefined;
    }
    return ref;
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

  /** Whether the ref (or an ancestor) still has no snapshot: its content is only known as blobs. */
  get lazy(): boolean {
    return this.chain().some((r) => r.lazy === true);
  }

  /** Extracts the ref's lazy layers into snapshots, so its directories exist (mounting does this itself). */
  extract(signal: AbortSignal): Promise<void> {
    return this.mgr.extract(signal, this.rec.id);
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

  async mounts(readonly = true, signal: AbortSignal = never): Promise<MountSpec[]> {
    await this.mgr.extract(signal, this.rec.id);
    return this.mgr.snapshotter.mounts(this.rec.id, readonly);
  }

  /**
   * A read-only view of the ref's files. A ref of one layer (a local source, a base layer) is
   * viewed in its own directory: a bind mount would cost a mount(8) and an umount(8) process on
   * the path of every build that checksums its context. Readers never write through a view.
   */
  async mount(signal: AbortSignal): Promise<ActiveMount> {
    await this.mgr.extract(signal, this.rec.id);
    if (!this.rec.parent) return { path: this.mgr.snapshotter.upperDir(this.rec.id), [Symbol.asyncDispose]: () => Promise.resolve() };
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
