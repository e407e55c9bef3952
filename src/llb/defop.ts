// A State on an already marshalled Definition (Go's llb.NewDefinitionOp): the ops are replayed
// byte for byte, so their digests — and the cache — are the ones the definition's author made.
import { fromBinary } from "@bufbuild/protobuf";
import { OpSchema, type Definition, type Op } from "../api/index.js";
import { KilnError, digestOf } from "../util/index.js";
import { newMetadata, type LLBPlatform, type MarshalContext, type MarshalledOp, type MetadataAcc, type Output, type Vertex } from "./core.js";
import { State } from "./state.js";

class RawOutput implements Output {
  constructor(
    readonly vertex: RawVertex,
    private readonly i: number,
    readonly platform: LLBPlatform | undefined,
  ) {}
  index(): number {
    return this.i;
  }
}

class RawVertex implements Vertex {
  ins: Output[] = [];
  constructor(
    readonly digest: string,
    readonly bytes: Uint8Array,
    readonly op: Op,
    private readonly meta: MetadataAcc,
  ) {}
  inputs(): Output[] {
    return this.ins;
  }
  marshal(_ctx: MarshalContext): MarshalledOp {
    return { digest: this.digest, bytes: this.bytes, metadata: this.meta, location: undefined };
  }
}

function platformOf(op: Op): LLBPlatform | undefined {
  const p = op.platform;
  if (!p) return undefined;
  return p.Variant ? { os: p.OS, architecture: p.Architecture, variant: p.Variant } : { os: p.OS, architecture: p.Architecture };
}

/**
 * The definition's result as a State; an empty definition is scratch. `undefined` (a nil
 * definition on the wire) is refused with BuildKit's message.
 */
export function definitionState(def: Definition | undefined): State {
  if (!def) throw new KilnError("KILN_LLB", "invalid nil input definition to definition op");
  const vertices = new Map<string, RawVertex>();
  let last: RawVertex | undefined;
  for (const bytes of def.def) {
    let op: Op;
    try {
      op = fromBinary(OpSchema, bytes);
    } catch (err) {
      throw new KilnError("KILN_LLB", "failed to parse llb proto op", { cause: err });
    }
    const digest = digestOf(bytes);
    const md = def.metadata[digest];
    const meta = newMetadata();
    if (md) {
      meta.ignoreCache = md.ignoreCache;
      for (const [k, v] of Object.entries(md.description)) meta.description.set(k, v);
      for (const [k, v] of Object.entries(md.caps)) if (v) meta.caps.add(k);
      if (md.progressGroup) meta.progressGroup = { id: md.progressGroup.id, name: md.progressGroup.name, weak: md.progressGroup.weak };
      if (md.exportCache) meta.exportCache = md.exportCache.Value;
    }
    last = new RawVertex(digest, bytes, op, meta);
    vertices.set(digest, last);
  }
  for (const v of vertices.values()) {
    v.ins = v.op.inputs.map((inp) => {
      const src = vertices.get(inp.digest);
      if (!src) throw new KilnError("KILN_LLB", `invalid definition: missing input ${inp.digest}`);
      return new RawOutput(src, Number(inp.index), platformOf(src.op));
    });
  }
  // The last op is the terminal one; what it returns is the result.
  const head = last?.ins[0];
  if (!head) return State.scratch();
  return State.fromOutput(head);
}
