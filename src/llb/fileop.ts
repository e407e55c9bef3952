// The file vertex: a chain of mkdir/mkfile/rm/copy actions bound to one State, marshalled into a
// FileOp with Go's input numbering (relative results at numInputs + action index, last output 0).
import { create } from "@bufbuild/protobuf";
import { FileActionCopySchema, FileActionMkDirSchema, FileActionMkFileSchema, FileActionRmSchema, FileActionSchema, FileOpSchema } from "../api/index.js";
import type { FileAction as PbFileAction } from "../api/index.js";
import { KilnError } from "../util/index.js";
import {
  chownToProto,
  cleanPath,
  constraintsMetadata,
  finishOp,
  isAbs,
  joinPath,
  opEnvelope,
  protoInputs,
  toInput,
  type Constraints,
  type LLBPlatform,
  type MarshalContext,
  type MarshalledOp,
  type Output,
  type OwnerSpec,
  type Vertex,
} from "./core.js";

/** Unix time in nanoseconds as on the wire (e.g. `BigInt(epochSeconds) * 1_000_000_000n`), or a Date. */
export type Timestamp = number | bigint | Date;

export interface CopyOptions {
  owner?: OwnerSpec;
  /** Permission bits for the copied files; default keeps the source's (-1 on the wire). */
  mode?: number;
  followSymlinks?: boolean;
  copyDirContentsOnly?: boolean;
  attemptUnpack?: boolean;
  createDestPath?: boolean;
  allowWildcard?: boolean;
  allowEmptyWildcard?: boolean;
  timestamp?: Timestamp;
  includePatterns?: string[];
  excludePatterns?: string[];
}

export interface MkdirOptions {
  makeParents?: boolean;
  owner?: OwnerSpec;
  timestamp?: Timestamp;
}

export interface MkfileOptions {
  owner?: OwnerSpec;
  timestamp?: Timestamp;
}

export interface RmOptions {
  allowNotFound?: boolean;
  allowWildcard?: boolean;
}

/** The part of a State a file action needs: its result and its working directory. */
export interface StateRef {
  out: Output | undefined;
  dir: string;
  platform: LLBPlatform | undefined;
}

export type ActionSpec =
  | { kind: "mkdir"; path: string; mode: number; opts: MkdirOptions }
  | { kind: "mkfile"; path: string; mode: number; data: Uint8Array; opts: MkfileOptions }
  | { kind: "rm"; path: string; opts: RmOptions }
  | { kind: "copy"; src: StateRef; srcPath: string; destPath: string; opts: CopyOptions };

/** One action of a chain after State.file bound it to the State it runs on. */
export interface BoundAction {
  prev: BoundAction | undefined;
  spec: ActionSpec;
  state: StateRef;
}

export function timestampToNs(t: Timestamp | undefined): bigint {
  if (t === undefined) return -1n;
  if (typeof t === "bigint") return t;
  if (t instanceof Date) return BigInt(t.getTime()) * 1_000_000n;
  // Above 2^53 a number has already lost precision in the caller's hands; bigint avoids that.
  if (!Number.isInteger(t)) throw new KilnError("KILN_LLB", `timestamp ${t} is not an integer number of nanoseconds`);
  return BigInt(t);
}

/** Go's normalizePath: relative paths resolve against the state's dir; copy dests keep `/` and `/.`. */
function normalizePath(parent: string, p: string, keepSlash: boolean): string {
  let out = cleanPath(p);
  if (!isAbs(out)) out = joinPath("/", parent, out);
  if (keepSlash) {
    if (p.endsWith("/") && !out.endsWith("/")) out += "/";
    else if (p.endsWith("/.")) {
      if (out !== "/") out += "/";
      out += ".";
    }
  }
  return out;
}

function copySourcePath(src: StateRef, p: string): string {
  const c = cleanPath(p);
  return isAbs(c) ? c : joinPath("/", src.dir, c);
}

interface ActionState {
  base: number;
  input: number;
  inputRelative: number | undefined;
  input2: number;
  input2Relative: number | undefined;
  target: number;
  action: BoundAction;
}

class FileOutput implements Output {
  readonly platform = undefined;
  constructor(readonly vertex: FileVertex) {}
  index(): number {
    return 0;
  }
}

export class FileVertex implements Vertex {
  readonly output: Output = new FileOutput(this);

  constructor(
    private readonly last: BoundAction,
    private readonly constraints: Constraints,
  ) {}

  inputs(): Output[] {
    const chain: BoundAction[] = [];
    for (let a: BoundAction | undefined = this.last; a; a = a.prev) chain.unshift(a);
    const seen = new Set<Output>();
    for (const a of chain) {
      if (a.state.out) seen.add(a.state.out);
      if (a.spec.kind === "copy" && a.spec.src.out) seen.add(a.spec.src.out);
    }
    return [...seen];
  }

  marshal(ctx: MarshalContext): MarshalledOp {
    const cached = ctx.cache.get(this);
    if (cached) return cached;
    const c = this.constraints;
    const inputs: { digest: string; index: number }[] = [];
    const states: ActionState[] = [];
    const addInput = (o: Output): number => {
      const inp = toInput(o, ctx);
      const i = inputs.findIndex((x) => x.digest === inp.digest && x.index === inp.index);
      if (i >= 0) return i;
      inputs.push(inp);
      return inputs.length - 1;
    };
    const add = (a: BoundAction): ActionState => {
      const prev = a.prev ? add(a.prev) : undefined;
      const st: ActionState = { base: -1, input: -1, inputRelative: undefined, input2: -1, input2Relative: undefined, target: 0, action: a };
      if (a.state.out) st.base = addInput(a.state.out);
      if (prev) st.inputRelative = prev.target;
      else st.input = st.base;
      if (a.spec.kind === "copy" && a.spec.src.out) st.input2 = addInput(a.spec.src.out);
      st.target = states.length;
      states.push(st);
      return st;
    };
    add(this.last);

    const op = opEnvelope(ctx, c.platform ?? this.last.state.platform, c);
    op.inputs = protoInputs(inputs);
    const n = inputs.length;
    const actions: PbFileAction[] = states.map((st, i) =>
      create(FileActionSchema, {
        input: BigInt(st.inputRelative !== undefined ? n + st.inputRelative : st.input),
        secondaryInput: BigInt(st.input2Relative !== undefined ? n + st.input2Relative : st.input2),
        output: i === states.length - 1 ? 0n : -1n,
        action: actionToProto(st.action, st.base),
      }),
    );
    op.op = { case: "file", value: create(FileOpSchema, { actions }) };
    // Go intends to add file.copy.includeexcludepatterns here but scans an empty list (v0.11.6), so only file.base is ever set.
    const res = finishOp(op, constraintsMetadata(c, ["file.base"]), c);
    ctx.cache.set(this, res);
    return res;
  }
}

function actionToProto(a: BoundAction, base: number): PbFileAction["action"] {
  const parent = a.state.dir;
  const s = a.spec;
  switch (s.kind) {
    case "mkdir":
      return {
        case: "mkdir",
        value: create(FileActionMkDirSchema, {
          path: normalizePath(parent, s.path, false),
          mode: s.mode & 0o777,
          makeParents: s.opts.makeParents ?? false,
          owner: chownToProto(s.opts.owner, base),
          timestamp: timestampToNs(s.opts.timestamp),
        }),
      };
    case "mkfile":
      return {
        case: "mkfile",
        value: create(FileActionMkFileSchema, {
          path: normalizePath(parent, s.path, false),
          mode: s.mode & 0o777,
          data: s.data,
          owner: chownToProto(s.opts.owner, base),
          timestamp: timestampToNs(s.opts.timestamp),
        }),
      };
    case "rm":
      return {
        case: "rm",
        value: create(FileActionRmSchema, {
          path: normalizePath(parent, s.path, false),
          allowNotFound: s.opts.allowNotFound ?? false,
          allowWildcard: s.opts.allowWildcard ?? false,
        }),
      };
    case "copy": {
      const o = s.opts;
      return {
        case: "copy",
        value: create(FileActionCopySchema, {
          src: copySourcePath(s.src, s.srcPath),
          dest: normalizePath(parent, s.destPath, true),
          owner: chownToProto(o.owner, base),
          mode: o.mode ?? -1,
          followSymlink: o.followSymlinks ?? false,
          dirCopyContents: o.copyDirContentsOnly ?? false,
          attemptUnpackDockerCompatibility: o.attemptUnpack ?? false,
          createDestPath: o.createDestPath ?? false,
          allowWildcard: o.allowWildcard ?? false,
          allowEmptyWildcard: o.allowEmptyWildcard ?? false,
          timestamp: timestampToNs(o.timestamp),
          includePatterns: [...(o.includePatterns ?? [])],
          excludePatterns: [...(o.excludePatterns ?? [])],
        }),
      };
    }
  }
}
