// A read-only view of a stack of overlay layer dirs that answers lookups as overlayfs would
// (whiteouts, opaque dirs, non-dirs hiding what lies below), without mounting anything.
// Paths are raw bytes: layer contents need not be valid UTF-8.
import { lstat, readdir } from "node:fs/promises";
import type { BigIntStats } from "node:fs";
import { getAttribute } from "@napi-rs/xattr";

export type Components = readonly Buffer[];

const SLASH = Buffer.from("/");

/** Joins an absolute root with path components. */
export function joinPath(root: Buffer, comps: Components): Buffer {
  if (comps.length === 0) return root;
  const parts: Buffer[] = [root];
  for (const c of comps) parts.push(SLASH, c);
  return Buffer.concat(parts);
}

/** Components joined by '/', for names and map keys. */
export function relName(comps: Components): Buffer {
  const parts: Buffer[] = [];
  comps.forEach((c, i) => {
    if (i > 0) parts.push(SLASH);
    parts.push(c);
  });
  return Buffer.concat(parts);
}

export function isWhiteout(st: BigIntStats): boolean {
  return st.isCharacterDevice() && st.rdev === 0n;
}

export async function lstatMaybe(p: Buffer): Promise<BigIntStats | undefined> {
  try {
    return await lstat(p, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw err;
  }
}

/** The path as a string for APIs that only take strings, or undefined when it is not valid UTF-8. */
export function utf8Path(p: Buffer): string | undefined {
  const s = p.toString("utf8");
  return Buffer.from(s, "utf8").equals(p) ? s : undefined;
}

/** Reads an xattr without following symlinks; undefined when absent or unreadable by name. */
export async function readXattr(p: Buffer, name: string): Promise<Buffer | undefined> {
  const s = utf8Path(p);
  if (s === undefined) return undefined;
  const v = await getAttribute(s, name);
  return v ?? undefined;
}

export async function isOpaqueDir(p: Buffer): Promise<boolean> {
  for (const key of ["trusted.overlay.opaque", "user.overlay.opaque"]) {
    const v = await readXattr(p, key);
    if (v && v.length === 1 && v[0] === 0x79) return true;
  }
  return false;
}

export interface ViewEntry {
  /** Real path of the entry in the topmost layer holding it. */
  path: Buffer;
  stat: BigIntStats;
}

/**
 * Layers are listed top first. Lookups of directories are memoised: the view is meant for
 * layers that do not change while it is used (committed parents).
 */
export class LayerView {
  private readonly dirLayers = new Map<string, number[] | null>();

  constructor(readonly layers: readonly Buffer[]) {}

  get empty(): boolean {
    return this.layers.length === 0;
  }

  /** Indices of the layers that contribute to the merged directory `comps`, or null if it is not a directory. */
  private async contributors(comps: Components): Promise<number[] | null> {
    if (comps.length === 0) return this.layers.map((_, i) => i);
    const key = relName(comps).toString("latin1");
    const cached = this.dirLayers.get(key);
    if (cached !== undefined) return cached;
    const parent = await this.contributors(comps.slice(0, -1));
    let result: number[] | null = null;
    if (parent !== null) {
      const found = await this.resolveIn(parent, comps);
      result = found?.dirs ?? null;
    }
    this.dirLayers.set(key, result);
    return result;
  }

  /** Resolves the last component of `comps` among the parent's contributing layers. */
  private async resolveIn(candidates: number[], comps: Components): Promise<{ top: ViewEntry; dirs: number[] | null } | undefined> {
    let top: ViewEntry | undefined;
    const dirs: number[] = [];
    for (const idx of candidates) {
      const p = joinPath(this.layers[idx]!, comps);
      const st = await lstatMaybe(p);
      if (st === undefined) continue;
      if (isWhiteout(st)) break;
      if (top === undefined) {
        top = { path: p, stat: st };
        if (!st.isDirectory()) break;
      } else if (!st.isDirectory()) {
        break; // a lower non-directory under a directory is hidden, and so is everything below it
      }
      dirs.push(idx);
      if (await isOpaqueDir(p)) break;
    }
    if (top === undefined) return undefined;
    return { top, dirs: top.stat.isDirectory() ? dirs : null };
  }

  /** What the merged view shows at `comps` (not following symlinks), or undefined. */
  async lookup(comps: Components): Promise<ViewEntry | undefined> {
    if (this.layers.length === 0 || comps.length === 0) return undefined;
    const parent = await this.contributors(comps.slice(0, -1));
    if (parent === null) return undefined;
    return (await this.resolveIn(parent, comps))?.top;
  }

  /** Names in the merged directory `comps`, sorted bytewise; empty when it is not a directory. */
  async readdir(comps: Components): Promise<Buffer[]> {
    const layers = await this.contributors(comps);
    if (layers === null || this.layers.length === 0) return [];
    const seen = new Set<string>();
    const out: Buffer[] = [];
    for (const idx of layers) {
      const dir = joinPath(this.layers[idx]!, comps);
      let names: Buffer[];
      try {
        names = await readdir(dir, { encoding: "buffer" });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw err;
      }
      const fresh = names.filter((n) => !seen.has(n.toString("latin1")));
      const stats = await Promise.all(fresh.map((n) => lstatMaybe(joinPath(dir, [n]))));
      fresh.forEach((n, i) => {
        seen.add(n.toString("latin1"));
        const st = stats[i];
        if (st !== undefined && !isWhiteout(st)) out.push(n);
      });
    }
    return out.sort(Buffer.compare);
  }
}
