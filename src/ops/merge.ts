// MergeOp: layers its inputs in order. The result is the first input's layer chain with every
// layer of the later inputs stacked on top, each as a snapshot of its own, so an overlay mount
// sees the later inputs' files over the earlier ones' and the image keeps one layer per layer.
import { spawn } from "node:child_process";
import type { MergeOp } from "../api/index.js";
import type { CacheManager, ImmutableRef } from "../cache/index.js";
import type { CacheMap, Op, OpContext, Result } from "../solver/types.js";
import { KilnError, digestOf, throwIfAborted, type Digest } from "../util/index.js";

export interface MergeOpDeps {
  mgr: CacheManager;
}

export class MergeOpRunner implements Op {
  readonly outputs = 1;

  constructor(
    private readonly deps: MergeOpDeps,
    private readonly opDigest: Digest,
    private readonly op: MergeOp,
  ) {}

  async cacheMap(): Promise<CacheMap> {
    return { digest: digestOf(`merge:${this.opDigest}`), deps: this.op.inputs.map(() => ({})) };
  }

  async exec(signal: AbortSignal, _ctx: OpContext, inputs: Result[]): Promise<Result[]> {
    const refs = this.op.inputs.map((i) => inputs[Number(i.input)] as ImmutableRef | undefined);
    const present = refs.filter((r): r is ImmutableRef => r !== undefined);
    if (present.length === 0) {
      const empty = await this.deps.mgr.newMutable(undefined, "merge of nothing");
      return [await empty.commit()];
    }
    const { mgr } = this.deps;
    let top: ImmutableRef = present[0]!.clone();
    try {
      for (const ref of present.slice(1)) {
        for (const layer of ref.chain()) {
          throwIfAborted(signal);
          const mut = await mgr.newMutable(top, `merged ${layer.description}`);
          try {
            await copyTree(signal, mgr.snapshotter.upperDir(layer.id), mut.upperDir());
          } catch (err) {
            await mut.discard();
            throw err;
          }
          const next = await mut.commit({}, signal);
          await top.release();
          top = next;
        }
      }
      return [top];
    } catch (err) {
      await top.release();
      throw err;
    }
  }
}

/** `cp -a` of a layer's own directory: owners, modes, times, xattrs, hard links, devices and whiteouts kept. */
function copyTree(signal: AbortSignal, from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("cp", ["-a", "--reflink=auto", `${from}/.`, `${to}/`], { stdio: ["ignore", "ignore", "pipe"], signal });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new KilnError("KILN_MERGE", `merging layer failed: ${stderr.trim() || `cp exited with ${code}`}`))));
  });
}
