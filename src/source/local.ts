// local://NAME: a directory the client offers (the build context), copied into a snapshot.
// Keyed on the selected files' metadata, so an unchanged context is not copied again; the copies
// made from it are keyed on content (see the file op), so a `touch` still hits their cache.
import path from "node:path";
import { fileEntryDigest, fileDigestsBucket, type CacheManager, type ImmutableRef } from "../cache/index.js";
import type { LocalBase, LocalDirs, LocalEntry, SyncOptions } from "../session/types.js";
import type { CacheMap, Op, OpContext, Result } from "../solver/types.js";
import { KilnError, digestOf, mapLimit } from "../util/index.js";

const lastLocalBucket = "local.last";
const lastLocalEntriesBucket = "local.entries";

export interface LocalSourceDeps {
  mgr: CacheManager;
  localDirs: LocalDirs;
}

export class LocalSourceOp implements Op {
  readonly outputs = 1;
  private entries: LocalEntry[] | undefined;

  constructor(
    private readonly deps: LocalSourceDeps,
    private readonly name: string,
    private readonly opts: SyncOptions,
    private readonly sharedKey: string,
  ) {}

  private async list(signal: AbortSignal): Promise<LocalEntry[]> {
    if (!this.entries) {
      const entries = await this.deps.localDirs.list(signal, this.name, this.opts);
      if (!entries) throw new KilnError("KILN_LOCAL_NOT_FOUND", `no local directory named ${JSON.stringify(this.name)} was provided to the build`);
      this.entries = entries;
    }
    return this.entries;
  }

  async cacheMap(signal: AbortSignal): Promise<CacheMap> {
    const entries = await this.list(signal);
    const meta = entries.map((e) => `${e.path}\0${e.type}\0${e.mode}\0${e.uid}\0${e.gid}\0${e.size}\0${e.mtimeMs}\0${e.linkname ?? ""}`).join("\n");
    // The client's directory is part of the key: two clients' contexts whose files agree in
    // name, size and mtime (written in the same millisecond, or with normalised times) are
    // still different contexts, and must not share a result.
    const dir = this.deps.localDirs.sharedKey?.(this.name) ?? "";
    return { digest: digestOf(`local:${this.sharedKey}:${this.name}:${dir}\n${meta}`), deps: [] };
  }

  async exec(signal: AbortSignal, _ctx: OpContext): Promise<Result[]> {
    const entries = await this.list(signal);
    const mgr = this.deps.mgr;
    // The last snapshot made of this same directory: unchanged files are linked from it, so a
    // one-file edit in a large context moves one file, as BuildKit's incremental file sync does.
    const dirKey = this.deps.localDirs.sharedKey?.(this.name);
    const lastKey = dirKey === undefined ? undefined : digestOf(`${this.sharedKey}\0${this.name}\0${dirKey}`);
    let last: ImmutableRef | undefined;
    let base: LocalBase | undefined;
    if (lastKey) {
      const id = mgr.db.getKV(lastLocalBucket, lastKey);
      last = id ? mgr.tryGet(id) : undefined;
      const prev = last ? mgr.db.getKV(lastLocalEntriesBucket, last.id) : undefined;
      if (last && prev) {
        const list = JSON.parse(prev) as LocalEntry[];
        base = { dir: mgr.snapshotter.upperDir(last.id), entries: new Map(list.map((e) => [e.path, e])) };
      }
    }
    try {
      const mut = await mgr.newMutable(undefined, `local source for ${this.name}`, "source.local");
      try {
        await this.deps.localDirs.copyTo(signal, this.name, entries, mut.upperDir(), base);
      } catch (err) {
        await mut.discard();
        throw err;
      }
      // The files' entry hashes (BuildKit's contenthash of header and bytes, as its file transfer
      // records them), for the copies' cache keys: unchanged files keep the hash the last snapshot
      // recorded, so only what changed is read.
      const prevDigests = last ? mgr.db.getKV(fileDigestsBucket, last.id) : undefined;
      const prev = prevDigests ? (JSON.parse(prevDigests) as Record<string, string>) : {};
      const digests: Record<string, string> = {};
      const upper = mut.upperDir();
      await mapLimit(
        entries.filter((e) => e.type === "file"),
        16,
        async (e) => {
          const p = `/${e.path}`;
          const b = base?.entries.get(e.path);
          const same = b && b.type === e.type && b.mode === e.mode && b.size === e.size && b.mtimeMs === e.mtimeMs && b.uid === e.uid && b.gid === e.gid;
          const known = same ? prev[p] : undefined;
          digests[p] = known?.startsWith("sha256:") ? known : await fileEntryDigest(path.join(upper, e.path), { mode: e.mode, uid: e.uid, gid: e.gid, type: "file", size: e.size });
        },
      );
      const ref = await mut.commit();
      mgr.db.setKV(fileDigestsBucket, ref.id, JSON.stringify(digests));
      if (lastKey) {
        mgr.db.setKV(lastLocalEntriesBucket, ref.id, JSON.stringify(entries));
        mgr.db.setKV(lastLocalBucket, lastKey, ref.id);
      }
      return [ref];
    } finally {
      await last?.release();
    }
  }
}
