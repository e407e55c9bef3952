// The CacheMap digests BuildKit v0.11.6 gives its ops: Go's encoding/json of the op (struct field
// order, the protobuf structs' json tags and omitempty, enums as numbers, []byte as base64, HTML
// escaping) with what must not change the key cleared. Equal digests make kiln's cache records
// BuildKit's, so a cache exported by either imports into the other.
import type { ChownOpt, ExecOp, FileAction, FileOp, MergeOp, Mount, UserOpt } from "../api/index.js";
import { MountType } from "../api/index.js";
import { digestOf, type Digest, type Platform } from "../util/index.js";

/** A value for goJSON: objects keep their key order; undefined members are left out (omitempty). */
type GoValue = string | number | bigint | boolean | null | Uint8Array | GoValue[] | { [k: string]: GoValue | undefined };

/** Go's json.Marshal of `v` (int64 fields stay exact as bigint). */
export function goJSON(v: GoValue): string {
  if (v === null) return "null";
  if (typeof v === "string") return JSON.stringify(v).replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return String(v);
  if (v instanceof Uint8Array) return `"${Buffer.from(v).toString("base64")}"`;
  if (Array.isArray(v)) return `[${v.map(goJSON).join(",")}]`;
  const parts: string[] = [];
  for (const [k, x] of Object.entries(v)) if (x !== undefined) parts.push(`${goJSON(k)}:${goJSON(x)}`);
  return `{${parts.join(",")}}`;
}

// omitempty helpers: Go leaves out zero values of tagged fields.
const str = (s: string): string | undefined => (s === "" ? undefined : s);
const num = (n: number | bigint): number | bigint | undefined => (n === 0 || n === 0n ? undefined : n);
const bool = (b: boolean): true | undefined => (b ? true : undefined);
const list = <T>(xs: readonly T[], f: (x: T) => GoValue): GoValue[] | undefined => (xs.length === 0 ? undefined : xs.map(f));

function mountJSON(m: Mount): GoValue {
  return {
    input: m.input,
    selector: str(m.selector),
    dest: str(m.dest),
    output: m.output,
    readonly: bool(m.readonly),
    mountType: num(m.mountType),
    TmpfsOpt: m.TmpfsOpt ? { size: num(m.TmpfsOpt.size) } : undefined,
    cacheOpt: m.cacheOpt ? { ID: str(m.cacheOpt.ID), sharing: num(m.cacheOpt.sharing) } : undefined,
    secretOpt: m.secretOpt ? { ID: str(m.secretOpt.ID), uid: num(m.secretOpt.uid), gid: num(m.secretOpt.gid), mode: num(m.secretOpt.mode), optional: bool(m.secretOpt.optional) } : undefined,
    SSHOpt: m.SSHOpt ? { ID: str(m.SSHOpt.ID), uid: num(m.SSHOpt.uid), gid: num(m.SSHOpt.gid), mode: num(m.SSHOpt.mode), optional: bool(m.SSHOpt.optional) } : undefined,
    resultID: str(m.resultID),
  };
}

/**
 * An exec's digest: the op without mount selectors, extra hosts' addresses and proxy settings,
 * plus the platform it runs for. A lone plain rootfs mount is left out, as BuildKit keeps keys of
 * releases that forgot mounts.
 */
export function execCacheDigest(op: ExecOp, platform: Platform): Digest {
  let mounts = op.mounts.map((m) => ({ ...m, selector: "" }) as Mount);
  const only = mounts.length === 1 ? mounts[0]! : undefined;
  if (only && only.dest === "/" && !only.readonly && only.mountType === MountType.BIND && !only.cacheOpt && !only.SSHOpt && !only.secretOpt && only.resultID === "") mounts = [];
  const meta = op.meta;
  const exec: GoValue = {
    meta: meta
      ? {
          args: list(meta.args, (a) => a),
          env: list(meta.env, (e) => e),
          cwd: str(meta.cwd),
          user: str(meta.user),
          extraHosts: list(meta.extraHosts, (h) => ({ Host: str(h.Host) })),
          hostname: str(meta.hostname),
          ulimit: list(meta.ulimit, (u) => ({ Name: str(u.Name), Soft: num(u.Soft), Hard: num(u.Hard) })),
          cgroupParent: str(meta.cgroupParent),
          removeMountStubsRecursive: bool(meta.removeMountStubsRecursive),
        }
      : undefined,
    mounts: list(mounts, mountJSON),
    network: num(op.network),
    security: num(op.security),
    secretenv: list(op.secretenv, (s) => ({ ID: str(s.ID), name: str(s.name), optional: bool(s.optional) })),
  };
  return digestOf(goJSON({ Type: "buildkit.exec.v0", Exec: exec, OS: platform.os, Arch: platform.architecture, Variant: platform.variant || undefined }));
}

function userJSON(u: UserOpt | undefined): GoValue | undefined {
  if (!u) return undefined;
  const v = u.user;
  const inner: GoValue = v.case === "byName" ? { byName: { name: str(v.value.name), input: v.value.input } } : v.case === "byID" ? { byID: num(v.value) } : null;
  return { User: inner };
}

function chownJSON(o: ChownOpt | undefined): GoValue | undefined {
  return o ? { user: userJSON(o.user), group: userJSON(o.group) } : undefined;
}

/** One action's JSON as BuildKit's file op keys it; `src` is the copy source as given (its base name for a real input). */
function actionJSON(a: FileAction, src?: string): string {
  const x = a.action;
  switch (x.case) {
    case "copy": {
      const c = x.value;
      return goJSON({
        src: str(src ?? c.src),
        dest: str(c.dest),
        owner: chownJSON(c.owner),
        mode: num(c.mode),
        followSymlink: bool(c.followSymlink),
        dirCopyContents: bool(c.dirCopyContents),
        attemptUnpackDockerCompatibility: bool(c.attemptUnpackDockerCompatibility),
        createDestPath: bool(c.createDestPath),
        allowWildcard: bool(c.allowWildcard),
        allowEmptyWildcard: bool(c.allowEmptyWildcard),
        timestamp: num(c.timestamp),
        include_patterns: list(c.includePatterns, (p) => p),
        exclude_patterns: list(c.excludePatterns, (p) => p),
      });
    }
    case "mkfile": {
      const m = x.value;
      return goJSON({ path: str(m.path), mode: num(m.mode), data: m.data.length > 0 ? m.data : undefined, owner: chownJSON(m.owner), timestamp: num(m.timestamp) });
    }
    case "mkdir": {
      const m = x.value;
      return goJSON({ path: str(m.path), mode: num(m.mode), makeParents: bool(m.makeParents), owner: chownJSON(m.owner), timestamp: num(m.timestamp) });
    }
    case "rm": {
      const r = x.value;
      return goJSON({ path: str(r.path), allowNotFound: bool(r.allowNotFound), allowWildcard: bool(r.allowWildcard) });
    }
    default:
      return "null";
  }
}

/** The usual chain (each action on the previous one's result, only the last an output): BuildKit keeps its older keys for it. */
function isDefaultIndexes(idxs: number[][]): boolean {
  if (idxs.length === 0) return false;
  return idxs.every(([input, secondary, output], i) => {
    if (i === 0 && input !== 0) return false;
    if (i !== 0 && input !== idxs.length + (i - 1)) return false;
    if (secondary !== -1 && secondary !== 1) return false;
    if (i === idxs.length - 1 ? output !== 0 : output !== -1) return false;
    return true;
  });
}

/** A file op's digest: its actions' JSON, a copy from a real input naming only its source's base name. */
export function fileCacheDigest(op: FileOp, numInputs: number): Digest {
  const actions: string[] = [];
  const indexes: number[][] = [];
  for (const a of op.actions) {
    const sec = Number(a.secondaryInput);
    const src = a.action.case === "copy" && sec !== -1 && sec < numInputs ? basename(a.action.value.src) : undefined;
    actions.push(Buffer.from(actionJSON(a, src)).toString("base64"));
    indexes.push([Number(a.input), sec, Number(a.output)]);
  }
  const body: GoValue = { Type: "buildkit.file.v0", Actions: actions, indexes: isDefaultIndexes(indexes) ? undefined : indexes };
  return digestOf(goJSON(body));
}

/** Go's path.Base. */
function basename(p: string): string {
  if (p === "") return ".";
  const t = p.replace(/\/+$/, "");
  if (t === "") return "/";
  return t.slice(t.lastIndexOf("/") + 1);
}

/** A merge's "digest" is the JSON text itself, not a hash of it (BuildKit hashes it only into the record key). */
export function mergeCacheDigest(op: MergeOp): Digest {
  return goJSON({ Type: "buildkit.merge.v0", Merge: { inputs: list(op.inputs, (i) => ({ input: i.input })) } }) as Digest;
}
