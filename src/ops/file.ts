// FileOp: a chain of copy/mkdir/mkfile/rm actions applied to snapshots of the op's inputs.
import type { FileOp, FileAction, ChownOpt, UserOpt } from "../api/index.js";
import { checksumPath, type CacheManager, type MutableRef, type ImmutableRef } from "../cache/index.js";
import type { ActiveMount } from "../snapshot/types.js";
import type { CacheMap, CacheMapDep, Op, OpContext, Result } from "../solver/types.js";
import { KilnError, digestOf, type Digest } from "../util/index.js";
import { copy, expandWildcard, mkdirAction, mkfileAction, rmAction, type Owner } from "./fsops.js";
import { lookupGid, lookupUid } from "./user.js";

export interface FileOpDeps {
  mgr: CacheManager;
}

interface ActionState {
  mut: MutableRef;
  mnt: ActiveMount;
}

export class FileOpRunner implements Op {
  readonly outputs: number;

  constructor(
    private readonly deps: FileOpDeps,
    private readonly opDigest: Digest,
    private readonly op: FileOp,
    private readonly numInputs: number,
  ) {
    let max = -1;
    for (const a of op.actions) max = Math.max(max, Number(a.output));
    this.outputs = max + 1;
  }

  async cacheMap(): Promise<CacheMap> {
    const deps: CacheMapDep[] = Array.from({ length: this.numInputs }, () => ({}));
    const selectors = new Map<number, { paths: string[]; follow: boolean; wildcard: boolean }>();
    let onlyCopySource = new Set<number>();
    for (const a of this.op.actions) {
      const sec = Number(a.secondaryInput);
      if (a.action.case === "copy" && sec >= 0 && sec < this.numInputs) {
        const s = selectors.get(sec) ?? { paths: [], follow: a.action.value.followSymlink, wildcard: a.action.value.allowWildcard };
        s.paths.push(a.action.value.src);
        selectors.set(sec, s);
        onlyCopySource.add(sec);
      }
    }
    for (const a of this.op.actions) {
      const inp = Number(a.input);
      if (inp >= 0 && inp < this.numInputs) onlyCopySource.delete(inp);
    }
    for (const [i, s] of selectors) {
      if (!onlyCopySource.has(i)) continue;
      deps[i] = {
        selector: s.paths.join("\0"),
        computeDigest: async (signal, res) => {
          const parts: string[] = [];
          for (const p of s.paths) {
            parts.push(await checksumPath(signal, this.deps.mgr.db, res as ImmutableRef, p, { followLinks: s.follow, wildcard: s.wildcard, expand: expandWildcard }));
          }
          return digestOf(parts.join(","));
        },
      };
    }
    onlyCopySource = new Set();
    return { digest: digestOf(`file:${this.opDigest}`), deps };
  }

  async exec(signal: AbortSignal, _ctx: OpContext, inputs: Result[]): Promise<Result[]> {
    const states: (ActionState | undefined)[] = [];
    const inputMounts = new Map<number, ActiveMount>();
    const all = new Set<ActionState>();
    let emptyDir: ActionState | undefined;
    const refAt = (i: number) => inputs[i] as ImmutableRef | undefined;
    const inputRoot = async (i: number): Promise<string> => {
      let m = inputMounts.get(i);
      if (!m) {
        const ref = refAt(i);
        if (!ref) throw new KilnError("KILN_LLB", `file op input ${i} missing`);
        m = await ref.mount(signal);
        inputMounts.set(i, m);
      }
      return m.path;
    };
    const rootOf = async (idx: bigint): Promise<string> => {
      const i = Number(idx);
      if (i < 0) {
        if (!emptyDir) {
          const mut = await this.deps.mgr.newMutable(undefined, "empty");
          emptyDir = { mut, mnt: await mut.mount(signal) };
          all.add(emptyDir);
        }
        return emptyDir.mnt.path;
      }
      if (i < this.numInputs) return inputRoot(i);
      const st = states[i - this.numInputs];
      if (!st) throw new KilnError("KILN_LLB", `file op refers to unknown action ${i - this.numInputs}`);
      return st.mnt.path;
    };
    const committed = new Map<ActionState, ImmutableRef>();
    try {
      for (const [idx, action] of this.op.actions.entries()) {
        const inp = Number(action.input);
        let st: ActionState;
        if (inp >= this.numInputs) {
          const prev = states[inp - this.numInputs];
          if (!prev) throw new KilnError("KILN_LLB", `file op refers to unknown action ${inp - this.numInputs}`);
          st = prev;
        } else {
          const mut = await this.deps.mgr.newMutable(inp >= 0 ? refAt(inp) : undefined, describe(action));
          st = { mut, mnt: await mut.mount(signal) };
          all.add(st);
        }
        states[idx] = st;
        await this.apply(signal, action, st.mnt.path, rootOf);
      }
      // Unmount before committing: the snapshot must be quiescent.
      const outs: Result[] = new Array(this.outputs);
      for (const [idx, action] of this.op.actions.entries()) {
        const out = Number(action.output);
        if (out < 0) continue;
        const st = states[idx]!;
        let ref = committed.get(st);
        if (!ref) {
          await st.mnt[Symbol.asyncDispose]();
          ref = await st.mut.commit();
          committed.set(st, ref);
        }
        outs[out] = ref.clone();
      }
      for (const r of committed.values()) await r.release();
      return outs;
    } finally {
      for (const st of all) {
        if (committed.has(st)) continue;
        await Promise.resolve(st.mnt[Symbol.asyncDispose]()).catch(() => {});
        await st.mut.discard().catch(() => {});
      }
      for (const m of inputMounts.values()) await Promise.resolve(m[Symbol.asyncDispose]()).catch(() => {});
    }
  }

  private async apply(signal: AbortSignal, action: FileAction, root: string, rootOf: (i: bigint) => Promise<string>): Promise<void> {
    const a = action.action;
    switch (a.case) {
      case "copy": {
        const c = a.value;
        const srcRoot = await rootOf(action.secondaryInput);
        await copy(signal, srcRoot, root, {
          src: c.src,
          dest: c.dest,
          owner: await resolveOwner(c.owner, rootOf, root),
          mode: c.mode >= 0 ? c.mode : undefined,
          followSymlink: c.followSymlink,
          dirCopyContents: c.dirCopyContents,
          createDestPath: c.createDestPath,
          allowWildcard: c.allowWildcard,
          allowEmptyWildcard: c.allowEmptyWildcard,
          attemptUnpack: c.attemptUnpackDockerCompatibility,
          timestamp: c.timestamp >= 0n ? Number(c.timestamp) / 1e9 : undefined,
          includePatterns: c.includePatterns,
          excludePatterns: c.excludePatterns,
        });
        return;
      }
      case "mkdir": {
        const m = a.value;
        await mkdirAction(root, m.path, m.mode, m.makeParents, await resolveOwner(m.owner, rootOf, root), m.timestamp >= 0n ? Number(m.timestamp) / 1e9 : undefined);
        return;
      }
      case "mkfile": {
        const m = a.value;
        await mkfileAction(root, m.path, m.mode, m.data, await resolveOwner(m.owner, rootOf, root), m.timestamp >= 0n ? Number(m.timestamp) / 1e9 : undefined);
        return;
      }
      case "rm":
        await rmAction(root, a.value.path, a.value.allowNotFound, a.value.allowWildcard);
        return;
      default:
        throw new KilnError("KILN_UNSUPPORTED", `file action ${String(a.case)} is not supported`);
    }
  }
}

function describe(a: FileAction): string {
  switch (a.action.case) {
    case "copy":
      return `copy ${a.action.value.src} ${a.action.value.dest}`;
    case "mkdir":
      return `mkdir ${a.action.value.path}`;
    case "mkfile":
      return `mkfile ${a.action.value.path}`;
    case "rm":
      return `rm ${a.action.value.path}`;
    default:
      return "file";
  }
}

async function resolveOwner(opt: ChownOpt | undefined, rootOf: (i: bigint) => Promise<string>, selfRoot: string): Promise<Owner | undefined> {
  if (!opt || (!opt.user && !opt.group)) return undefined;
  const userRoot = async (u: UserOpt): Promise<string | undefined> => (u.user.case === "byName" ? (u.user.value.input < 0n ? selfRoot : await rootOf(u.user.value.input)) : undefined);
  let uid = 0;
  let gid = 0;
  if (opt.user) {
    if (opt.user.user.case === "byID") {
      uid = opt.user.user.value;
      gid = uid;
    } else if (opt.user.user.case === "byName") {
      const r = await lookupUid(await userRoot(opt.user), opt.user.user.value.name);
      if (r) ({ uid, gid } = r);
    }
  }
  if (opt.group) {
    if (opt.group.user.case === "byID") gid = opt.group.user.value;
    else if (opt.group.user.case === "byName") gid = (await lookupGid(await userRoot(opt.group), opt.group.user.value.name)) ?? gid;
  }
  return { uid, gid };
}
