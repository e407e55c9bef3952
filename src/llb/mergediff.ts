// Merge and diff vertices: layer several results in order, or take what `upper` adds over `lower`.
import { create } from "@bufbuild/protobuf";
import { DiffOpSchema, MergeOpSchema } from "../api/index.js";
import {
  constraintsMetadata,
  finishOp,
  opEnvelope,
  protoInputs,
  toInput,
  type Constraints,
  type MarshalContext,
  type MarshalledOp,
  type Output,
  type Vertex,
} from "./core.js";
import { State } from "./state.js";

class SingleOutput implements Output {
  readonly platform = undefined;
  constructor(readonly vertex: Vertex) {}
  index(): number {
    return 0;
  }
}

class MergeVertex implements Vertex {
  readonly output: Output = new SingleOutput(this);
  constructor(
    private readonly ins: Output[],
    private readonly c: Constraints,
  ) {}
  inputs(): Output[] {
    return this.ins;
  }
  marshal(ctx: MarshalContext): MarshalledOp {
    const cached = ctx.cache.get(this);
    if (cached) return cached;
    const op = opEnvelope(ctx, undefined, this.c);
    op.platform = undefined;
    op.inputs = protoInputs(this.ins.map((o) => toInput(o, ctx)));
    op.op = { case: "merge", value: create(MergeOpSchema, { inputs: this.ins.map((_, i) => ({ input: BigInt(i) })) }) };
    const res = finishOp(op, constraintsMetadata(this.c, ["mergeop"]), this.c);
    ctx.cache.set(this, res);
    return res;
  }
}

class DiffVertex implements Vertex {
  readonly output: Output = new SingleOutput(this);
  constructor(
    private readonly lower: Output,
    private readonly upper: Output | undefined,
    private readonly c: Constraints,
  ) {}
  inputs(): Output[] {
    return this.upper ? [this.lower, this.upper] : [this.lower];
  }
  marshal(ctx: MarshalContext): MarshalledOp {
    const cached = ctx.cache.get(this);
    if (cached) return cached;
    const op = opEnvelope(ctx, undefined, this.c);
    op.platform = undefined;
    const inputs = [toInput(this.lower, ctx)];
    if (this.upper) inputs.push(toInput(this.upper, ctx));
    op.inputs = protoInputs(inputs);
    op.op = { case: "diff", value: create(DiffOpSchema, { lower: { input: 0n }, upper: { input: this.upper ? 1n : -1n } }) };
    // Go's Diff adds no cap of its own.
    const res = finishOp(op, constraintsMetadata(this.c), this.c);
    ctx.cache.set(this, res);
    return res;
  }
}

/** Layers the states in order; scratch inputs drop out, one remaining input is returned as is. */
export function merge(states: State[], c: Constraints = {}): State {
  const ins = states.filter((s) => !s.isScratch());
  if (ins.length === 0) return State.scratch();
  if (ins.length === 1) return ins[0]!;
  return State.fromOutput(new MergeVertex(ins.map((s) => s.output()!), c).output);
}

/** The changes `upper` makes over `lower`; a scratch lower yields `upper` itself. */
export function diff(lower: State, upper: State, c: Constraints = {}): State {
  const lo = lower.output();
  if (!lo) return upper.isScratch() ? State.scratch() : upper;
  return State.fromOutput(new DiffVertex(lo, upper.output(), c).output);
}
