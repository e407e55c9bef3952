// Source vertices and their constructors: image (docker-image://), local (local://), http(s).
import { create } from "@bufbuild/protobuf";
import { SourceOpSchema } from "../api/index.js";
import { KilnError } from "../util/index.js";
import {
  constraintsMetadata,
  finishOp,
  opEnvelope,
  sortedRecord,
  type Constraints,
  type LLBPlatform,
  type MarshalContext,
  type MarshalledOp,
  type Output,
  type Vertex,
} from "./core.js";
import { formatRef, parseNormalizedNamed, tagNameOnly, withDigest } from "./reference.js";
import { State } from "./state.js";

class SourceOutput implements Output {
  constructor(
    readonly vertex: SourceVertex,
    readonly platform: LLBPlatform | undefined,
  ) {}
  index(): number {
    return 0;
  }
}

export class SourceVertex implements Vertex {
  readonly output: Output;

  constructor(
    readonly identifier: string,
    private readonly attrs: ReadonlyMap<string, string>,
    private readonly constraints: Constraints,
    private readonly caps: string[],
    private readonly err?: Error,
  ) {
    this.output = new SourceOutput(this, constraints.platform);
  }

  inputs(): Output[] {
    return [];
  }

  marshal(ctx: MarshalContext): MarshalledOp {
    const cached = ctx.cache.get(this);
    if (cached) return cached;
    if (this.err) throw this.err;
    if (this.identifier === "") throw new KilnError("KILN_LLB", "source identifier can't be empty");
    const attrs = new Map(this.attrs);
    const caps = [...this.caps];
    // Without a session the daemon cannot tell clients apart; Go pins the source to this marshal.
    if (this.identifier.startsWith("local://") && !attrs.has("local.session")) {
      attrs.set("local.unique", ctx.localUniqueId);
      caps.push("source.local.unique");
    }
    const op = opEnvelope(ctx, this.constraints.platform, this.constraints);
    if (!this.identifier.startsWith("docker-image://") && !this.identifier.startsWith("oci-layout://")) op.platform = undefined;
    op.op = { case: "source", value: create(SourceOpSchema, { identifier: this.identifier, attrs: sortedRecord(attrs) }) };
    const res = finishOp(op, constraintsMetadata(this.constraints, caps), this.constraints);
    ctx.cache.set(this, res);
    return res;
  }
}

export interface ImageOptions extends Constraints {
  resolveMode?: "default" | "pull" | "local";
  /** Pins the image: the identifier becomes `<name>[:tag]@<digest>` (Go's reference.WithDigest). */
  resolvedDigest?: string;
  /** `image.recordtype`, e.g. "internal". */
  recordType?: string;
  layerLimit?: number;
}

/** `docker-image://` source; refs normalise as BuildKit does (`alpine` → `docker.io/library/alpine:latest`). */
export function image(ref: string, opts: ImageOptions = {}): State {
  let id = ref;
  let err: Error | undefined;
  try {
    let r = parseNormalizedNamed(ref);
    if (opts.resolvedDigest) r = withDigest(r, opts.resolvedDigest);
    id = formatRef(tagNameOnly(r));
  } catch (e) {
    // Go reports a bad reference when the graph is marshalled, not when the State is built.
    err = new KilnError("KILN_LLB", `failed to parse image reference ${JSON.stringify(ref)}: ${(e as Error).message}`, { cause: e });
  }
  const caps = ["source.image"];
  const attrs = new Map<string, string>();
  const mode = opts.resolveMode ?? "default";
  if (mode !== "default") {
    attrs.set("image.resolvemode", mode);
    if (mode === "pull") caps.push("source.image.resolvemode");
  }
  if (opts.recordType) attrs.set("image.recordtype", opts.recordType);
  if (opts.layerLimit !== undefined) {
    attrs.set("image.layerlimit", String(Math.trunc(opts.layerLimit)));
    caps.push("source.image.layerlimit");
  }
  return State.fromOutput(new SourceVertex(`docker-image://${id}`, attrs, opts, caps, err).output);
}

export interface OCILayoutOptions extends Constraints {
  /** The client session whose content store holds the layout, and the store's id. */
  sessionId: string;
  storeId: string;
}

/** `oci-layout://NAME@DIGEST` source (Go's llb.OCILayout): an image in one of the client's OCI layouts. */
export function ociLayout(ref: string, opts: OCILayoutOptions): State {
  const attrs = new Map<string, string>([
    ["oci.session", opts.sessionId],
    ["oci.store", opts.storeId],
  ]);
  return State.fromOutput(new SourceVertex(`oci-layout://${ref}`, attrs, opts, ["source.ocilayout"]).output);
}

export interface LocalOptions extends Constraints {
  includePatterns?: string[];
  excludePatterns?: string[];
  followPaths?: string[];
  sharedKeyHint?: string;
  sessionId?: string;
  /** `local.differ`: "none" or "metadata". */
  differ?: string;
  /** Require the daemon to support `local.differ` (adds the cap). */
  differRequired?: boolean;
}

/** `local://<name>` source, the files a client session serves. */
export function local(name: string, opts: LocalOptions = {}): State {
  const caps: string[] = [];
  const attrs = new Map<string, string>();
  if (opts.sessionId) {
    attrs.set("local.session", opts.sessionId);
    caps.push("source.local.sessionid");
  }
  if (opts.includePatterns?.length) {
    attrs.set("local.includepattern", goJSON(opts.includePatterns));
    caps.push("source.local.includepatterns");
  }
  if (opts.followPaths?.length) {
    attrs.set("local.followpaths", goJSON(opts.followPaths));
    caps.push("source.local.followpaths");
  }
  if (opts.excludePatterns?.length) {
    attrs.set("local.excludepatterns", goJSON(opts.excludePatterns));
    caps.push("source.local.excludepatterns");
  }
  if (opts.sharedKeyHint) {
    attrs.set("local.sharedkeyhint", opts.sharedKeyHint);
    caps.push("source.local.sharedkeyhint");
  }
  if (opts.differ) {
    attrs.set("local.differ", opts.differ);
    if (opts.differRequired) caps.push("source.local.differ");
  }
  caps.push("source.local");
  return State.fromOutput(new SourceVertex(`local://${name}`, attrs, opts, caps).output);
}

export interface HttpOptions extends Constraints {
  checksum?: string;
  filename?: string;
  /** Permission bits of the downloaded file. */
  perm?: number;
  uid?: number;
  gid?: number;
}

/** `http://` / `https://` source: one downloaded file. */
export function http(url: string, opts: HttpOptions = {}): State {
  const caps: string[] = [];
  const attrs = new Map<string, string>();
  if (opts.checksum) {
    attrs.set("http.checksum", opts.checksum);
    caps.push("source.http.checksum");
  }
  if (opts.filename) attrs.set("http.filename", opts.filename);
  if (opts.perm) {
    attrs.set("http.perm", "0" + opts.perm.toString(8));
    caps.push("source.http.perm");
  }
  if (opts.uid) {
    attrs.set("http.uid", String(opts.uid));
    caps.push("soruce.http.uidgid");
  }
  if (opts.gid) {
    attrs.set("http.gid", String(opts.gid));
    caps.push("soruce.http.uidgid");
  }
  caps.push("source.http");
  return State.fromOutput(new SourceVertex(url, attrs, opts, caps).output);
}

export interface GitOptions extends Constraints {
  keepGitDir?: boolean;
  /** Secret names for http(s) auth; default GIT_AUTH_TOKEN / GIT_AUTH_HEADER, as Go's llb.Git. */
  authTokenSecret?: string;
  authHeaderSecret?: string;
  knownSSHHosts?: string;
  /** SSH agent id for ssh remotes; default "default". */
  mountSSHSock?: string;
}

/**
 * `git://<remote without scheme>#<ref>` source (Go's llb.Git): `git.fullurl` keeps the real URL
 * (https:// assumed without a scheme); ssh remotes ask for an agent socket.
 */
export function git(remote: string, ref: string, opts: GitOptions = {}): State {
  let url = remote.split("#")[0]!;
  const { remote: bare, protocol } = parseGitProtocol(remote);
  let id = bare;
  if (protocol === "ssh") {
    const i = bare.indexOf(":");
    if (i >= 0) id = `${bare.slice(0, i)}/${bare.slice(i + 1)}`;
  }
  if (protocol === "unknown") url = "https://" + url;
  if (ref !== "") id += "#" + ref;
  const attrs = new Map<string, string>();
  const caps: string[] = [];
  if (opts.keepGitDir) {
    attrs.set("git.keepgitdir", "true");
    caps.push("source.git.keepgitdir");
  }
  if (url !== "") {
    attrs.set("git.fullurl", url);
    caps.push("source.git.fullurl");
  }
  const token = opts.authTokenSecret ?? "GIT_AUTH_TOKEN";
  const header = opts.authHeaderSecret ?? "GIT_AUTH_HEADER";
  if (token !== "") attrs.set("git.authtokensecret", token);
  if (header !== "") attrs.set("git.authheadersecret", header);
  if (protocol === "ssh") {
    if (opts.knownSSHHosts) attrs.set("git.knownsshhosts", opts.knownSSHHosts);
    caps.push("source.git.knownsshhosts");
    attrs.set("git.mountsshsock", opts.mountSSHSock || "default");
    caps.push("source.git.mountsshsock");
  }
  caps.push("source.git");
  return State.fromOutput(new SourceVertex(`git://${id}`, attrs, opts, caps).output);
}

/** gitutil.ParseProtocol: strips the scheme (and an ssh user) and names the protocol. */
export function parseGitProtocol(remote: string): { remote: string; protocol: "http" | "https" | "git" | "ssh" | "unknown" } {
  let protocol: "http" | "https" | "git" | "ssh" | "unknown" = "unknown";
  for (const [prefix, p] of [["http://", "http"], ["https://", "https"], ["git://", "git"], ["ssh://", "ssh"]] as const) {
    if (remote.startsWith(prefix)) {
      remote = remote.slice(prefix.length);
      protocol = p;
    }
  }
  if (protocol === "unknown" && /^[a-zA-Z0-9_-]+@[a-zA-Z0-9.-]+:/.test(remote)) protocol = "ssh";
  if (protocol === "ssh") {
    const at = remote.indexOf("@");
    if (at >= 0) remote = remote.slice(at + 1);
  }
  return { remote, protocol };
}

/** json.Marshal of a string list: Go escapes <, > and & (and U+2028/9) where JSON.stringify does not. */
function goJSON(v: string[]): string {
  return JSON.stringify(v).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
