// MergeOp: layers its inputs in order. The result is the first input's layer chain with every
// layer of the later inputs stacked on top, each as a snapshot of its own, so an overlay mount
// sees the later inputs' files over the earlier ones' and the image keeps one layer per layer.
import type { MergeOp } from "../api/index.js";
import type { CacheManager, ImmutableRef } from "../cache/index.js";
import type { CacheMap, Op, OpContext, Result } from "../solver/types.js";
import { throwIfAborted } from "../util/index.js";
import { mergeCacheDigest } from "./cachekeys.js";
import { copyAll } from "./fsops.js";

export interface MergeOpDeps {
  mgr: CacheManager;
}

export class MergeOpRunner implements Op {
  readonly outputs = 1;

  constructor(
    private readonly deps: MergeOpDeps,
    private readonly op: MergeOp,
  ) {}

  async cacheMap(): Promise<CacheMap> {
    return { digest: mergeCacheDigest(this.op), deps: this.op.inputs.map(() => ({})) };
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
        // Layers are copied from their directories: a lazy (imported) input is unpacked first.
        await ref.extract(signal);
        for (const layer of ref.chain()) {
          throwIfAborted(signal);
          const mut = await mgr.newMutable(top, `merged ${layer.description}`);
          try {
            await copyAll(signal, mgr.snapshotter.upperDir(layer.id), mut.upperDir());
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
