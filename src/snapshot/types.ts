// The snapshotter's boundary: layered directories, mounted with overlayfs.

/** A mount as the kernel (and an OCI runtime spec) sees it. */
export interface MountSpec {
  type: string; // "overlay" | "bind" | "tmpfs" ...
  source: string;
  options: string[];
}

/** A mounted directory that unmounts (and is released) when disposed. */
export interface ActiveMount extends AsyncDisposable {
  readonly path: string;
}

export interface SnapshotInfo {
  id: string;
  parent: string | undefined;
  kind: "active" | "committed";
}

export interface Snapshotter {
  readonly root: string;
  /** Creates a writable snapshot on top of `parent` (undefined = empty). */
  prepare(id: string, parent: string | undefined): Promise<void>;
  /** Freezes an active snapshot: it becomes immutable and may be a parent. */
  commit(id: string): Promise<void>;
  /** Removes a snapshot (must have no children). */
  remove(id: string): Promise<void>;
  stat(id: string): Promise<SnapshotInfo | undefined>;
  /** The mounts that present a snapshot's full filesystem (read-write for active ones). */
  mounts(id: string, readonly?: boolean): Promise<MountSpec[]>;
  /** Mounts the snapshot at a fresh private directory. */
  mount(signal: AbortSignal, id: string, readonly?: boolean): Promise<ActiveMount>;
  /** The directory holding only this snapshot's own changes (overlay upper dir). */
  upperDir(id: string): string;
  /** Size in bytes of this snapshot's own changes. */
  usage(id: string): Promise<number>;
}
