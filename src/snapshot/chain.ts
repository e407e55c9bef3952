// Walks a snapshot's parent chain through the Snapshotter interface (works for any implementation).
import { KilnError } from "../util/index.js";
import type { SnapshotInfo, Snapshotter } from "./types.js";

export async function statOrThrow(snapshotter: Snapshotter, id: string): Promise<SnapshotInfo> {
  const info = await snapshotter.stat(id);
  if (!info) throw new KilnError("KILN_SNAPSHOT_NOT_FOUND", `snapshot ${id} not found`);
  return info;
}

/** Upper dirs of the snapshot's ancestors, nearest parent first. */
export async function parentUpperDirs(snapshotter: Snapshotter, info: SnapshotInfo): Promise<string[]> {
  const out: string[] = [];
  const seen = new Set<string>([info.id]);
  let parent = info.parent;
  while (parent !== undefined) {
    if (seen.has(parent)) throw new KilnError("KILN_SNAPSHOT_CORRUPT", `snapshot ${info.id} has a cyclic parent chain`);
    seen.add(parent);
    const p = await statOrThrow(snapshotter, parent);
    out.push(snapshotter.upperDir(parent));
    parent = p.parent;
  }
  return out;
}
