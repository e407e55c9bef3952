// The overlayfs snapshotter: one directory per snapshot (`fs` = overlay upper dir, `work`,
// `meta.json`), named by a short hash of the caller's id so stacked lowerdir lists stay short.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { KilnError, throwIfAborted, writeFileAtomic } from "../util/index.js";
import type { ActiveMount, MountSpec, SnapshotInfo, Snapshotter } from "./types.js";
import { mountAll, overlayBaseOptions, unmount } from "./mount.js";
import { diskUsage } from "./usage.js";

export interface OverlaySnapshotterOptions {
  /** Where `mount()` creates its mount points; defaults to `<root>/mounts`. */
  mountRoot?: string;
}

interface Meta {
  id: string;
  parent: string | undefined;
  kind: "active" | "committed";
}

/** Hex digits of sha256(id) naming a snapshot's directory: 48 bits, collisions are detected. */
const KEY_LENGTH = 12;

/**
 * Layout under `root`:
 *   snapshots/<key>/{fs,work,meta.json,children/}   key = first 12 hex digits of sha256(id)
 *   mounts/<random>/                                 mount points made by mount()
 *   trash/                                           snapshots being deleted
 * `children/` holds one empty marker per child so remove() can refuse to orphan one.
 *
 * Layer limit: mounts() lists absolute paths; mount() (via mountAll) rewrites them relative to
 * `snapshots/` when a page (4 KiB) of options would overflow. Each layer then costs 16 bytes
 * ("<12 hex>/fs:"), so about 240 layers stack (the kernel's own cap is 500; Docker images stop at 127).
 */
export class OverlaySnapshotter implements Snapshotter {
  readonly root: string;
  private readonly snapshotsDir: string;
  private readonly mountRoot: string;
  private readonly trashDir: string;
  /** Committed snapshots never change, so their metadata is cached. */
  private readonly committed = new Map<string, Meta>();

  constructor(root: string, opts: OverlaySnapshotterOptions = {}) {
    this.root = path.resolve(root);
    this.snapshotsDir = path.join(this.root, "snapshots");
    this.mountRoot = opts.mountRoot ?? path.join(this.root, "mounts");
    this.trashDir = path.join(this.root, "trash");
  }

  private key(id: string): string {
    return createHash("sha256").update(id).digest("hex").slice(0, KEY_LENGTH);
  }

  private dir(id: string): string {
    return path.join(this.snapshotsDir, this.key(id));
  }

  upperDir(id: string): string {
    return path.join(this.dir(id), "fs");
  }

  private workDir(id: string): string {
    return path.join(this.dir(id), "work");
  }

  private async readMeta(id: string): Promise<Meta | undefined> {
    const cached = this.committed.get(id);
    if (cached) return cached;
    let raw: string;
    try {
      raw = await readFile(path.join(this.dir(id), "meta.json"), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    const m = JSON.parse(raw) as { id: string; parent?: string | null; kind: "active" | "committed" };
    // Another id hashing to the same key is a different snapshot: this one does not exist.
    if (m.id !== id) return undefined;
    const meta: Meta = { id: m.id, parent: m.parent ?? undefined, kind: m.kind };
    if (meta.kind === "committed") this.committed.set(id, meta);
    return meta;
  }

  private async metaOrThrow(id: string): Promise<Meta> {
    const m = await this.readMeta(id);
    if (!m) throw new KilnError("KILN_SNAPSHOT_NOT_FOUND", `snapshot ${id} not found`);
    return m;
  }

  private async writeMeta(dir: string, meta: Meta): Promise<void> {
    await writeFileAtomic(path.join(dir, "meta.json"), JSON.stringify({ id: meta.id, parent: meta.parent ?? null, kind: meta.kind }) + "\n");
  }

  async prepare(id: string, parent: string | undefined): Promise<void> {
    const dir = this.dir(id);
    if (parent !== undefined) {
      const p = await this.metaOrThrow(parent);
      if (p.kind !== "committed") throw new KilnError("KILN_SNAPSHOT_PARENT_ACTIVE", `parent snapshot ${parent} of ${id} is not committed`);
    }
    await mkdir(this.snapshotsDir, { recursive: true });
    // The pid in the name lets start-up recovery tell a crashed prepare from a running one.
    const tmp = await mkdtemp(path.join(this.snapshotsDir, `.tmp-${this.key(id)}-${process.pid}-`));
    try {
      await mkdir(path.join(tmp, "fs"), { mode: 0o755 });
      await mkdir(path.join(tmp, "work"), { mode: 0o700 });
      await mkdir(path.join(tmp, "children"));
      await this.writeMeta(tmp, { id, parent, kind: "active" });
      if (parent !== undefined) {
        await mkdir(path.join(this.dir(parent), "children"), { recursive: true });
        await writeFile(path.join(this.dir(parent), "children", this.key(id)), "");
      }
      try {
        await rename(tmp, dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EEXIST" || code === "ENOTEMPTY") {
          const other = await this.readMeta(id);
          throw new KilnError(
            other ? "KILN_SNAPSHOT_EXISTS" : "KILN_SNAPSHOT_KEY_COLLISION",
            other ? `snapshot ${id} already exists` : `snapshot ${id} collides with another snapshot's directory ${dir}`,
          );
        }
        throw err;
      }
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      if (parent !== undefined && !(err instanceof KilnError && err.code === "KILN_SNAPSHOT_EXISTS")) {
        await rm(path.join(this.dir(parent), "children", this.key(id)), { force: true });
      }
      throw err;
    }
  }

  async commit(id: string): Promise<void> {
    const m = await this.metaOrThrow(id);
    if (m.kind === "committed") throw new KilnError("KILN_SNAPSHOT_COMMITTED", `snapshot ${id} is already committed`);
    const meta: Meta = { ...m, kind: "committed" };
    await this.writeMeta(this.dir(id), meta);
    this.committed.set(id, meta);
  }

  async remove(id: string): Promise<void> {
    const m = await this.metaOrThrow(id);
    const dir = this.dir(id);
    const children = await this.liveChildren(id);
    if (children.length > 0) throw new KilnError("KILN_SNAPSHOT_HAS_CHILDREN", `snapshot ${id} still has ${children.length} child snapshot(s)`);
    await mkdir(this.trashDir, { recursive: true });
    const trash = path.join(this.trashDir, `${this.key(id)}-${randomBytes(4).toString("hex")}`);
    // Renaming first makes the removal atomic to readers; the slow delete happens out of sight.
    await rename(dir, trash);
    this.committed.delete(id);
    if (m.parent !== undefined) await rm(path.join(this.dir(m.parent), "children", this.key(id)), { force: true });
    await rm(trash, { recursive: true, force: true });
  }

  /** Child markers whose snapshot still exists (markers left by a crash are dropped). */
  private async liveChildren(id: string): Promise<string[]> {
    const childrenDir = path.join(this.dir(id), "children");
    let names: string[];
    try {
      names = await readdir(childrenDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const live: string[] = [];
    for (const n of names) {
      try {
        const raw = await readFile(path.join(this.snapshotsDir, n, "meta.json"), "utf8");
        const m = JSON.parse(raw) as { parent?: string | null };
        if (m.parent === id) {
          live.push(n);
          continue;
        }
      } catch {
        // the child is gone
      }
      await rm(path.join(childrenDir, n), { force: true });
    }
    return live;
  }

  /** Every snapshot on disk (complete ones; half-made `prepare` directories are not listed). */
  async list(): Promise<SnapshotInfo[]> {
    const names = await readdir(this.snapshotsDir).catch(() => [] as string[]);
    const out: SnapshotInfo[] = [];
    for (const n of names) {
      if (n.startsWith(".")) continue;
      try {
        const m = JSON.parse(await readFile(path.join(this.snapshotsDir, n, "meta.json"), "utf8")) as { id: string; parent?: string | null; kind: "active" | "committed" };
        out.push({ id: m.id, parent: m.parent ?? undefined, kind: m.kind });
      } catch {
        // a directory without readable metadata is not a snapshot
      }
    }
    return out;
  }

  /**
   * Removes what processes that died left behind: half-made snapshot directories, mount points
   * (unmounted first) and the trash. `isDead(pid)` decides whose leftovers they are.
   */
  async cleanupStale(isDead: (pid: number) => Promise<boolean>): Promise<{ tmp: number; mounts: number }> {
    let tmp = 0;
    let mounts = 0;
    for (const n of await readdir(this.snapshotsDir).catch(() => [] as string[])) {
      const pid = /^\.tmp-[0-9a-f]+-(\d+)-/.exec(n)?.[1];
      if (pid && (await isDead(Number(pid)))) {
        await rm(path.join(this.snapshotsDir, n), { recursive: true, force: true });
        tmp++;
      }
    }
    for (const n of await readdir(this.mountRoot).catch(() => [] as string[])) {
      const pid = /^m-(\d+)-/.exec(n)?.[1];
      if (!pid || !(await isDead(Number(pid)))) continue;
      const target = path.join(this.mountRoot, n);
      await unmount(target).catch(() => {});
      // Never recursive: if the unmount failed, removing through the mount would destroy a snapshot.
      await rmdir(target).catch(() => {});
      mounts++;
    }
    await rm(this.trashDir, { recursive: true, force: true });
    return { tmp, mounts };
  }

  async stat(id: string): Promise<SnapshotInfo | undefined> {
    const m = await this.readMeta(id);
    return m ? { id: m.id, parent: m.parent, kind: m.kind } : undefined;
  }

  /** Upper dirs of the snapshot and its ancestors, the snapshot's own first. */
  async layerDirs(id: string): Promise<string[]> {
    const out: string[] = [];
    let cur: string | undefined = id;
    while (cur !== undefined) {
      const m: Meta = await this.metaOrThrow(cur);
      out.push(this.upperDir(cur));
      cur = m.parent;
      if (out.length > 10_000) throw new KilnError("KILN_SNAPSHOT_CORRUPT", `snapshot ${id} has a cyclic parent chain`);
    }
    return out;
  }

  async mounts(id: string, readonly = false): Promise<MountSpec[]> {
    const m = await this.metaOrThrow(id);
    const layers = await this.layerDirs(id);
    const base = await overlayBaseOptions();
    if (m.kind === "active" && !readonly) {
      if (layers.length === 1) return [{ type: "bind", source: layers[0]!, options: ["rbind", "rw"] }];
      return [
        {
          type: "overlay",
          source: "overlay",
          options: [...base, `workdir=${this.workDir(id)}`, `upperdir=${layers[0]}`, `lowerdir=${layers.slice(1).join(":")}`],
        },
      ];
    }
    // overlayfs needs two lowerdirs when it has no upper dir; one layer is just a read-only bind.
    if (layers.length === 1) return [{ type: "bind", source: layers[0]!, options: ["rbind", "ro"] }];
    return [{ type: "overlay", source: "overlay", options: [...base, `lowerdir=${layers.join(":")}`] }];
  }

  async mount(signal: AbortSignal, id: string, readonly = false): Promise<ActiveMount> {
    throwIfAborted(signal);
    const specs = await this.mounts(id, readonly);
    await mkdir(this.mountRoot, { recursive: true });
    const target = await mkdtemp(path.join(this.mountRoot, `m-${process.pid}-`));
    try {
      await mountAll(signal, specs, target);
    } catch (err) {
      await rmdir(target).catch(() => {});
      throw err;
    }
    let disposed: Promise<void> | undefined;
    return {
      path: target,
      [Symbol.asyncDispose]: () => {
        disposed ??= (async () => {
          await unmount(target);
          await rmdir(target);
        })();
        return disposed;
      },
    };
  }

  async usage(id: string): Promise<number> {
    await this.metaOrThrow(id);
    return diskUsage(this.upperDir(id));
  }
}
