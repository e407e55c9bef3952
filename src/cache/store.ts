// The solver's CacheStore on top of the metadata DB: cache keys map to committed refs.
import type { CacheStore, Result } from "../solver/types.js";
import type { Digest } from "../util/index.js";
import { ImmutableRef, type CacheManager } from "./refs.js";

/** kv bucket: definition keys an imported cache matched (see CacheStore.vouch). */
const vouchedBucket = "cache.vouched";

export class RefCacheStore implements CacheStore {
  constructor(private readonly mgr: CacheManager) {}

  async load(_signal: AbortSignal, key: Digest, outputs: number): Promise<Result[] | undefined> {
    const ids = this.mgr.db.lookupCache(key, outputs);
    if (!ids) return undefined;
    const refs = ids.map((id) => this.mgr.tryGet(id));
    // A lazy ref whose blobs are neither here nor fetchable (its import was another solve's) can't be served.
    const servable = refs.every((r) => r !== undefined) && (await Promise.all(refs.map((r) => this.mgr.canServe(r!)))).every(Boolean);
    if (!servable) {
      await Promise.all(refs.map((r) => r?.release()));
      return undefined;
    }
    this.mgr.db.touchRefs(ids);
    return refs as ImmutableRef[];
  }

  vouch(key: Digest): void {
    this.mgr.db.setKV(vouchedBucket, key, "1");
  }

  isVouched(key: Digest): boolean {
    return this.mgr.db.getKV(vouchedBucket, key) !== undefined;
  }

  async save(_signal: AbortSignal, key: Digest, results: Result[]): Promise<void> {
    if (!results.every((r) => r instanceof ImmutableRef)) return;
    this.mgr.db.saveCache(key, results.map((r) => r.id));
  }
}
