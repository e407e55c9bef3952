// FileOp: a chain of copy/mkdir/mkfile/rm actions applied to snapshots of the op's inputs.
import type { FileOp, FileAction, ChownOpt, UserOpt } from "../api/index.js";
import { checksumPath, type CacheManager, type MutableRef, type ImmutableRef } from "../cache/index.js";
import { fileCacheDigest } from "./cachekeys.js";
import type { ActiveMount } from "../snapshot/types.js";
import type { CacheMap, CacheMapDep, Op, OpContext, Result } from "../solver/types.js";
import { PatternMatcher, noMatchInfo } from "../session/index.js";
import { KilnError, digestOf, hasGoWildcard } from "../util/index.js";
import { copy, mkdirAction, mkfileAction, rmAction, type Owner } from "./fsops.js";
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
    private readonly op: FileOp,
    private readonly numInputs: number,
  ) {
    let max = -1;
    for (const a of op.actions) max = Math.max(max, Number(a.output));
    this.outputs = max + 1;
  }

  /**
   * Keyed as BuildKit keys it: the actions' JSON, and for each input only read (a copy's source,
   * a chown's passwd and group files) its selected paths and their content, so equal files copied
   * from anywhere hit the cache.
   */
  async cacheMap(): Promise<CacheMap> {
    const selectors = new Map<number, Selector[]>();
    const invalid = new Set<number>();
    const add = (i: number, s: Selector) => {
      if (i < 0 || i >= this.numInputs) return;
      const list = selectors.get(i) ?? [];
      list.push(s);
      selectors.set(i, list);
    };
    const owner = (o: ChownOpt | undefined) => {
      for (const [u, file] of [
        [o?.user, "/etc/passwd"],
        [o?.group, "/etc/group"],
      ] as const) {
        if (u?.user.case === "byName" && u.user.value.input >= 0n) add(Number(u.user.value.input), { path: file, followLinks: true, wildcard: false });
      }
    };
    for (const a of this.op.actions) {
      const inp = Number(a.input);
      if (inp !== -1) invalid.add(inp);
      const x = a.action;
      if (x.case === "copy" || x.case === "mkdir" || x.case === "mkfile") owner(x.value.owner);
      if (x.case === "copy") {
        const c = x.value;
        const sec = Number(a.secondaryInput);
        if (sec !== -1 && sec < this.numInputs) {
          add(sec, { path: c.src, followLinks: c.followSymlink, wildcard: c.allowWildcard && hasGoWildcard(c.src), include: c.includePatterns, exclude: c.excludePatterns });
        }
      }
    }
    const deps: CacheMapDep[] = Array.from({ length: this.numInputs }, () => ({}));
    for (const [i, sels] of selectors) {
      if (invalid.has(i)) continue;
      const paths = sels.map((s) => s.path).sort((a, b) => Buffer.compare(Buffer.from(b), Buffer.from(a)));
      const forSum = dedupeSelectors(sels);
      deps[i] = {
        selector: paths.join("\0"),
        computeDigest: async (signal, res) => {
          const sums = await Promise.all(
            forSum.map((s) =>
              checksumPath(signal, this.deps.mgr.db, res as ImmutableRef, s.path, {
                followLinks: s.followLinks,
                wildcard: s.wildcard,
                include: s.include?.length ? patternMatcher(s.include) : undefined,
                exclude: s.exclude?.length ? patternMatcher(s.exclude) : undefined,
              }),
            ),
          );
          return digestOf(sums.join("\0"));
        },
      };
    }
    return { digest: fileCacheDigest(this.op, this.numInputs), deps };
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

interface Selector {
  path: string;
  followLinks: boolean;
  wildcard: boolean;
  include?: string[];
  exclude?: string[];
}

const filtered = (s: Selector) => s.wildcard || (s.include?.length ?? 0) > 0 || (s.exclude?.length ?? 0) > 0;

/** Plain paths without those inside another (per follow setting), filtered ones as they are, by path (BuildKit's dedupeSelectors). */
function dedupeSelectors(sels: Selector[]): Selector[] {
  const nested = (paths: string[]) => {
    const unique = [...new Set(paths)];
    return unique.filter((p1) => !unique.some((p2) => p1 !== p2 && p1.startsWith(p2 + "/"))).sort();
  };
  const plain = nested(sels.filter((s) => !filtered(s) && !s.followLinks).map((s) => s.path)).map((p) => ({ path: p, followLinks: false, wildcard: false }));
  const follow = nested(sels.filter((s) => !filtered(s) && s.followLinks).map((s) => s.path)).map((p) => ({ path: p, followLinks: true, wildcard: false }));
  const out: Selector[] = [...plain, ...follow, ...sels.filter(filtered)];
  // Go's sort.Slice is not stable, but equal paths here are rare and hash alike.
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Matches a path relative to the copied one against Docker-style patterns (the last matching one decides, `!` negates). */
/** BuildKit's checksum filter: patternmatcher's rules, a pattern that matches a directory matching what is inside it. */
function patternMatcher(patterns: string[]): (rel: string) => boolean {
  const pm = new PatternMatcher(patterns);
  return (rel) => pm.matchesUsingParentResults(rel, noMatchInfo).matched;
}
