// Internals shared by the LLB builder: the vertex/output graph, per-marshal context, constraints
// and the small Go-compatible helpers (path cleaning, byte-order sorting) that digests depend on.
import { create, toBinary } from "@bufbuild/protobuf";
import { ChownOptSchema, InputSchema, OpMetadataSchema, OpSchema, UserOptSchema } from "../api/index.js";
import type { ChownOpt, Input, NetMode, Op, OpMetadata, SecurityMode, UserOpt } from "../api/index.js";
import { digestOf, hostPlatform, normalizePlatform } from "../util/index.js";

export interface LLBPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

/** `input` names the op input whose /etc/passwd or /etc/group resolves the name; default: the action's own base. */
export type UserSpec = { name: string; input?: number } | { id: number };
export type OwnerSpec = { user?: UserSpec; group?: UserSpec };

export interface SourceRangeSpec {
  start: { line: number; character: number };
  end: { line: number; character: number };
}

export interface Constraints {
  platform?: LLBPlatform;
  customName?: string;
  ignoreCache?: boolean;
  description?: Record<string, string>;
  progressGroup?: { id: string; name: string; weak?: boolean };
  /** `sourceIndex` points into the `sources` given to `marshal`. */
  sourceLocation?: { sourceIndex: number; ranges: SourceRangeSpec[] };
  /** Worker selection filters (containerd-style), written to `Op.constraints`. */
  workerConstraints?: string[];
}

export type NetworkMode = "sandbox" | "host" | "none";
export type SecurityModeName = "sandbox" | "insecure";

/** Metadata carried by a State; Go keeps the same values in its State's key/value chain. */
export interface StateData {
  out: Output | undefined;
  env: ReadonlyArray<readonly [string, string]>;
  dir: string;
  user: string;
  hostname: string;
  platform: LLBPlatform | undefined;
  network: NetMode;
  security: SecurityMode;
}

/** Everything that may differ between two marshals of the same graph. */
export interface MarshalContext {
  platform: LLBPlatform;
  caps: ReadonlySet<string> | undefined;
  localUniqueId: string;
  cache: Map<Vertex, MarshalledOp>;
}

export interface MarshalledOp {
  digest: string;
  bytes: Uint8Array;
  metadata: MetadataAcc;
  location: Constraints["sourceLocation"];
}

export interface Vertex {
  /** Outputs this vertex reads, in the order their ops are emitted before it. */
  inputs(): Output[];
  marshal(ctx: MarshalContext): MarshalledOp;
}

export interface Output {
  readonly vertex: Vertex;
  /** Platform a State built on this output adopts (Go's `output.platform`). */
  readonly platform: LLBPlatform | undefined;
  /** Output index inside the vertex; throws for outputs that cannot be used as a parent. */
  index(): number;
}

export function toInput(o: Output, ctx: MarshalContext): { digest: string; index: number } {
  const index = o.index();
  return { digest: o.vertex.marshal(ctx).digest, index };
}

/** Mutable OpMetadata under construction; converted to the generated type with sorted maps. */
export interface MetadataAcc {
  ignoreCache: boolean;
  description: Map<string, string>;
  caps: Set<string>;
  progressGroup: { id: string; name: string; weak: boolean } | undefined;
  exportCache: boolean | undefined;
}

export function newMetadata(): MetadataAcc {
  return { ignoreCache: false, description: new Map(), caps: new Set(), progressGroup: undefined, exportCache: undefined };
}

export function constraintsMetadata(c: Constraints | undefined, caps: Iterable<string> = []): MetadataAcc {
  const m = newMetadata();
  if (c?.ignoreCache) m.ignoreCache = true;
  for (const [k, v] of Object.entries(c?.description ?? {})) m.description.set(k, v);
  if (c?.customName !== undefined) m.description.set("llb.customname", c.customName);
  if (c?.progressGroup) m.progressGroup = { id: c.progressGroup.id, name: c.progressGroup.name, weak: c.progressGroup.weak ?? false };
  for (const cap of caps) m.caps.add(cap);
  return m;
}

/** Go's mergeMetadata: later values win, caps accumulate. */
export function mergeMetadata(into: MetadataAcc, from: MetadataAcc): MetadataAcc {
  if (from.ignoreCache) into.ignoreCache = true;
  for (const [k, v] of from.description) into.description.set(k, v);
  if (from.exportCache !== undefined) into.exportCache = from.exportCache;
  for (const cap of from.caps) into.caps.add(cap);
  if (from.progressGroup) into.progressGroup = from.progressGroup;
  return into;
}

export function metadataToProto(m: MetadataAcc): OpMetadata {
  return create(OpMetadataSchema, {
    ignoreCache: m.ignoreCache,
    description: sortedRecord(m.description),
    exportCache: m.exportCache === undefined ? undefined : { Value: m.exportCache },
    caps: sortedRecord(new Map([...m.caps].map((c) => [c, true] as const))),
    progressGroup: m.progressGroup,
  });
}

/**
 * Builds the Op envelope every vertex shares (Go's MarshalConstraints): the platform falls back
 * to the marshal-wide one, worker constraints are always present (an empty message on the wire).
 */
export function opEnvelope(ctx: MarshalContext, platform: LLBPlatform | undefined, c: Constraints | undefined): Op {
  const p = platform ?? ctx.platform;
  return create(OpSchema, {
    platform: { OS: p.os, Architecture: p.architecture, Variant: p.variant ?? "" },
    constraints: { filter: [...(c?.workerConstraints ?? [])] },
  });
}

export function finishOp(op: Op, metadata: MetadataAcc, c: Constraints | undefined): MarshalledOp {
  const bytes = toBinary(OpSchema, op);
  return { digest: digestOf(bytes), bytes, metadata, location: c?.sourceLocation };
}

export function protoInputs(inputs: { digest: string; index: number }[]): Input[] {
  return inputs.map((i) => create(InputSchema, { digest: i.digest, index: BigInt(i.index) }));
}

export function normalizeLLBPlatform(p: LLBPlatform): LLBPlatform {
  const n = normalizePlatform(p);
  return n.variant ? { os: n.os, architecture: n.architecture, variant: n.variant } : { os: n.os, architecture: n.architecture };
}

export function defaultPlatform(): LLBPlatform {
  return normalizeLLBPlatform(hostPlatform());
}

export function defaultPathEnv(os: string): string {
  return os === "windows" ? "c:\\Windows\\System32;c:\\Windows" : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

// ---- owners ----------------------------------------------------------------------------------

function userOpt(u: UserSpec, base: number): UserOpt {
  if ("name" in u) return create(UserOptSchema, { user: { case: "byName", value: { name: u.name, input: BigInt(u.input ?? base) } } });
  return create(UserOptSchema, { user: { case: "byID", value: u.id >>> 0 } });
}

export function chownToProto(o: OwnerSpec | undefined, base: number): ChownOpt | undefined {
  if (!o) return undefined;
  return create(ChownOptSchema, {
    user: o.user ? userOpt(o.user, base) : undefined,
    group: o.group ? userOpt(o.group, base) : undefined,
  });
}

/**
 * Parses `user[:group]` the way Go's `llb.WithUser` does: numbers (and `root`) become ids,
 * anything else a name resolved inside the image.
 */
export function ownerFromString(chown: string): OwnerSpec {
  const parse = (s: string): UserSpec => {
    if (s === "root") return { id: 0 };
    if (/^[+-]?\d+$/.test(s)) {
      const n = Number(s);
      if (n >= -(2 ** 31) && n < 2 ** 31) return { id: n };
    }
    return { name: s };
  };
  const i = chown.indexOf(":");
  if (i < 0) return { user: parse(chown) };
  return { user: parse(chown.slice(0, i)), group: parse(chown.slice(i + 1)) };
}

// ---- Go-compatible helpers -------------------------------------------------------------------

const encoder = new TextEncoder();

/** Orders strings as Go does: by UTF-8 bytes, which differs from UTF-16 order only above U+FFFF. */
export function compareGo(a: string, b: string): number {
  if (a === b) return 0;
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/**
 * A record whose keys were inserted in Go's sorted order, so protobuf-es writes map entries the
 * way gogo's stable marshaler does. (JS puts integer-like keys first whatever the insertion order;
 * no LLB map uses such keys.)
 */
export function sortedRecord<V>(entries: Map<string, V> | Record<string, V>): Record<string, V> {
  const list = entries instanceof Map ? [...entries] : Object.entries(entries);
  list.sort((a, b) => compareGo(a[0], b[0]));
  const out: Record<string, V> = {};
  for (const [k, v] of list) out[k] = v;
  return out;
}

/** Go's path.Clean: lexical, keeps a leading slash, drops trailing ones, "" becomes ".". */
export function cleanPath(p: string): string {
  if (p === "") return ".";
  const rooted = p.startsWith("/");
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!rooted) out.push("..");
      continue;
    }
    out.push(part);
  }
  const s = out.join("/");
  if (rooted) return "/" + s;
  return s === "" ? "." : s;
}

/** Go's path.Join: empty elements are skipped, the result is cleaned, all-empty gives "". */
export function joinPath(...parts: string[]): string {
  const kept = parts.filter((p) => p !== "");
  return kept.length === 0 ? "" : cleanPath(kept.join("/"));
}

export function isAbs(p: string): boolean {
  return p.startsWith("/");
}

/** A random id in the shape of BuildKit's identity.NewID (25 base-36 characters). */
export function newUniqueId(): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  let n = 0n;
  for (const x of b) n = (n << 8n) | BigInt(x);
  return n.toString(36).padStart(25, "0");
}
