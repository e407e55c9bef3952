// pb.Definition on both sides: marshalling a graph the way Go's State.Marshal does (inputs first,
// duplicates once, a terminal op last, caps on its metadata) and loading one for the solver.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DefinitionSchema, LocationsSchema, OpSchema, SourceInfoSchema, SourceSchema } from "../api/index.js";
import type { Definition, Op, OpMetadata, Source } from "../api/index.js";
import { KilnError, digestOf } from "../util/index.js";
import {
  defaultPlatform,
  mergeMetadata,
  metadataToProto,
  newMetadata,
  newUniqueId,
  protoInputs,
  sortedRecord,
  toInput,
  type Constraints,
  type LLBPlatform,
  type MarshalContext,
  type MetadataAcc,
  type Output,
  type Vertex,
} from "./core.js";

export interface SourceMapInput {
  filename: string;
  data: Uint8Array | string;
  /** The LLB that produced the file (e.g. the local source the Dockerfile was read from). */
  definition?: DefinitionBytes;
}

export interface MarshalOptions {
  /** Platform for ops that set none; default: the host's, normalised (as Go's NewConstraints). */
  platform?: LLBPlatform;
  /**
   * LLB caps the target daemon supports (Go's llb.WithCaps). When given, execs either claim
   * `exec.meta.setsdefaultpath` or get a default PATH written into their env.
   */
  caps?: Iterable<string>;
  /** `local.unique` for local sources without a session; default: random per marshal, as in Go. */
  localUniqueId?: string;
  /** Source files that Constraints.sourceLocation.sourceIndex points into, in order. */
  sources?: SourceMapInput[];
  /** Shorthand for `sources: [source]`. */
  source?: SourceMapInput;
}

export interface DefinitionBytes {
  /** Marshalled ops, inputs before users; the last entry is the terminal op. */
  def: Uint8Array[];
  /** Keyed by op digest, in sorted order. */
  metadata: Record<string, OpMetadata>;
  source: Source | undefined;
  toProto(): Definition;
  toBinary(): Uint8Array;
}

function definitionBytes(def: Uint8Array[], metadata: Record<string, OpMetadata>, source: Source | undefined): DefinitionBytes {
  const toProto = () => create(DefinitionSchema, { def, metadata, Source: source });
  return { def, metadata, source, toProto, toBinary: () => toBinary(DefinitionSchema, toProto()) };
}

export function marshalDefinition(out: Output | undefined, opts: MarshalOptions): DefinitionBytes {
  // Go returns an empty definition (no terminal op, no Source) for scratch.
  if (!out) return definitionBytes([], {}, undefined);
  const ctx: MarshalContext = {
    platform: opts.platform ?? defaultPlatform(),
    caps: opts.caps ? new Set(opts.caps) : undefined,
    localUniqueId: opts.localUniqueId ?? newUniqueId(),
    cache: new Map(),
  };
  const def: Uint8Array[] = [];
  const metadata = new Map<string, MetadataAcc>();
  const locations = new Map<string, NonNullable<Constraints["sourceLocation"]>[]>();
  const emitted = new Set<string>();
  const visited = new Set<Vertex>();
  const visit = (v: Vertex): void => {
    if (visited.has(v)) return;
    for (const inp of v.inputs()) visit(inp.vertex);
    const m = v.marshal(ctx);
    visited.add(v);
    metadata.set(m.digest, mergeMetadata(metadata.get(m.digest) ?? newMetadata(), m.metadata));
    // Go records every op in the source map, so ops without a location get an empty entry.
    const locs = locations.get(m.digest) ?? [];
    if (m.location) locs.push(m.location);
    locations.set(m.digest, locs);
    if (emitted.has(m.digest)) return;
    emitted.add(m.digest);
    def.push(m.bytes);
  };
  visit(out.vertex);

  const terminal = toBinary(OpSchema, create(OpSchema, { inputs: protoInputs([toInput(out, ctx)]) }));
  def.push(terminal);
  const tdgst = digestOf(terminal);
  const tmeta = metadata.get(tdgst) ?? newMetadata();
  tmeta.caps.add("constraints").add("platform");
  for (const m of metadata.values()) {
    if (m.ignoreCache) tmeta.caps.add("meta.ignorecache");
    if (m.description.size > 0) tmeta.caps.add("meta.description");
    if (m.exportCache !== undefined) tmeta.caps.add("meta.exportcache");
  }
  metadata.set(tdgst, tmeta);

  const infos = [...(opts.sources ?? []), ...(opts.source ? [opts.source] : [])].map((s) =>
    create(SourceInfoSchema, {
      filename: s.filename,
      data: typeof s.data === "string" ? new TextEncoder().encode(s.data) : s.data,
      definition: s.definition?.toProto(),
    }),
  );
  const source = create(SourceSchema, {
    locations: sortedRecord(
      new Map(
        [...locations].map(([d, locs]) => [
          d,
          create(LocationsSchema, {
            locations: locs.map((l) => ({
              sourceIndex: l.sourceIndex,
              ranges: l.ranges.map((r) => ({ start: { line: r.start.line, character: r.start.character }, end: { line: r.end.line, character: r.end.character } })),
            })),
          }),
        ]),
      ),
    ),
    infos,
  });
  const md = sortedRecord(new Map([...metadata].map(([d, m]) => [d, metadataToProto(m)] as const)));
  return definitionBytes(def, md, source);
}

// ---- loading ---------------------------------------------------------------------------------

export interface LoadedOp {
  digest: string;
  op: Op;
  metadata?: OpMetadata;
  inputs: { digest: string; index: number }[];
}

export interface LoadedDefinition {
  /** Ops reachable from the root, by digest. */
  ops: Map<string, LoadedOp>;
  /** undefined: the definition is empty and the result is scratch. */
  root: { digest: string; index: number } | undefined;
  source?: Source;
}

function invalid(msg: string, cause?: unknown): KilnError {
  return new KilnError("KILN_LLB", msg, cause === undefined ? {} : { cause });
}

/** Checks one op as BuildKit's opsutils.Validate does before it becomes a vertex. */
function validateOp(op: Op): void {
  const o = op.op;
  switch (o.case) {
    case "exec": {
      const meta = o.value.meta;
      if (!meta) throw invalid("invalid exec op with no meta");
      if (meta.args.length === 0) throw invalid("invalid exec op with no args");
      if (o.value.mounts.length === 0) throw invalid("invalid exec op with no mounts");
      if (!o.value.mounts.some((m) => m.dest === "/")) throw invalid("invalid exec op with no rootfs");
      break;
    }
    case "file":
      if (o.value.actions.length === 0) throw invalid("invalid file op with no actions");
      break;
    default:
      break;
  }
}

/**
 * Parses a Definition for solving. Op digests are computed over the exact bytes received, the
 * last entry is the terminal op, duplicate entries collapse, and every op reachable from the
 * root must exist and be well-formed.
 */
export function loadDefinition(input: Uint8Array | Definition): LoadedDefinition {
  let def: Definition;
  if (input instanceof Uint8Array) {
    try {
      def = fromBinary(DefinitionSchema, input);
    } catch (err) {
      throw invalid("failed to parse llb definition", err);
    }
  } else def = input;
  const source = def.Source;
  if (def.def.length === 0) return { ops: new Map(), root: undefined, ...(source ? { source } : {}) };

  const all = new Map<string, Op>();
  let last = "";
  for (const dt of def.def) {
    let op: Op;
    try {
      op = fromBinary(OpSchema, dt);
    } catch (err) {
      throw invalid("failed to parse llb proto op", err);
    }
    last = digestOf(dt);
    all.set(last, op);
  }
  if (all.size < 2) throw invalid(`invalid LLB with ${all.size} vertexes`);
  const terminal = all.get(last)!;
  all.delete(last);
  const head = terminal.inputs[0];
  if (!head) throw invalid("invalid LLB with no inputs on last vertex");

  const ops = new Map<string, LoadedOp>();
  const stack = [head.digest];
  while (stack.length > 0) {
    const dgst = stack.pop()!;
    if (ops.has(dgst)) continue;
    const op = all.get(dgst);
    if (!op) throw invalid(`invalid missing input digest ${dgst}`);
    validateOp(op);
    const loaded: LoadedOp = { digest: dgst, op, inputs: op.inputs.map((i) => ({ digest: i.digest, index: Number(i.index) })) };
    const md = def.metadata[dgst];
    if (md) loaded.metadata = md;
    ops.set(dgst, loaded);
    for (const i of loaded.inputs) if (!ops.has(i.digest)) stack.push(i.digest);
  }
  return { ops, root: { digest: head.digest, index: Number(head.index) }, ...(source ? { source } : {}) };
}
