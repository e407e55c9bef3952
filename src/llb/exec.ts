// The exec vertex: turns a State plus RunOptions into an ExecOp the way Go's llb.ExecOp does
// (root mount first, mounts sorted by dest, output indexes only for writable bind mounts).
import { create } from "@bufbuild/protobuf";
import { CacheSharingOpt, ExecOpSchema, MountSchema, MountType } from "../api/index.js";
import type { Mount } from "../api/index.js";
import { KilnError } from "../util/index.js";
import {
  compareGo,
  constraintsMetadata,
  defaultPathEnv,
  finishOp,
  opEnvelope,
  protoInputs,
  toInput,
  type Constraints,
  type LLBPlatform,
  type MarshalContext,
  type MarshalledOp,
  type Output,
  type StateData,
  type Vertex,
} from "./core.js";

export interface SecretMountOpt {
  id: string;
  uid?: number;
  gid?: number;
  mode?: number;
  optional?: boolean;
}

export interface ExecMountSpec {
  dest: string;
  /** Output mounted here; undefined (or a scratch State) mounts an empty directory. */
  source?: Output | undefined;
  selector?: string;
  readonly?: boolean;
  type?: "bind" | "cache" | "tmpfs" | "secret" | "ssh";
  /** Cache mounts: defaults to `dest`. */
  cacheId?: string;
  sharing?: "shared" | "private" | "locked";
  tmpfsSize?: number;
  /** A writable mount whose changes are thrown away (Go's ForceNoOutput). */
  noOutput?: boolean;
  /** Secret mounts: mode defaults to 0400. */
  secret?: SecretMountOpt;
  /** SSH agent sockets: mode defaults to 0600; an empty dest becomes /run/buildkit/ssh_agent.N. */
  ssh?: SecretMountOpt;
}

export interface ProxyEnvOpt {
  httpProxy?: string;
  httpsProxy?: string;
  ftpProxy?: string;
  noProxy?: string;
  allProxy?: string;
}

export interface ExecSpec {
  base: StateData;
  args: string[];
  mounts: ExecMountSpec[];
  extraHosts: { host: string; ip: string }[];
  secretEnv: { id: string; name: string; optional?: boolean }[];
  proxyEnv: ProxyEnvOpt | undefined;
  ulimits: { name: string; soft: number; hard: number }[];
  constraints: Constraints;
}

interface MountEntry {
  target: string;
  source: Output | undefined;
  readonly: boolean;
  selector: string;
  cacheId: string;
  sharing: CacheSharingOpt;
  tmpfs: boolean;
  tmpfsSize: number;
  noOutput: boolean;
  output: Output | undefined;
}

interface SideMount {
  target: string;
  id: string;
  uid: number;
  gid: number;
  mode: number;
  optional: boolean;
}

const sharingModes: Record<string, CacheSharingOpt> = {
  shared: CacheSharingOpt.SHARED,
  private: CacheSharingOpt.PRIVATE,
  locked: CacheSharingOpt.LOCKED,
};

class ExecOutput implements Output {
  constructor(
    readonly vertex: ExecVertex,
    private readonly mount: MountEntry,
    readonly platform: LLBPlatform | undefined,
  ) {}
  index(): number {
    return this.vertex.outputIndexOf(this.mount);
  }
}

class FailedOutput implements Output {
  readonly platform = undefined;
  constructor(
    readonly vertex: Vertex,
    private readonly message: string,
  ) {}
  index(): number {
    throw new KilnError("KILN_LLB", this.message);
  }
}

export class ExecVertex implements Vertex {
  private readonly mounts: MountEntry[] = [];
  private readonly secrets: SideMount[] = [];
  private readonly ssh: SideMount[] = [];
  readonly root: Output | undefined;

  constructor(private readonly spec: ExecSpec) {
    const platform = spec.constraints.platform;
    const rootMount = this.entry({ dest: "/", source: spec.base.out });
    this.mounts.push(rootMount);
    rootMount.output = new ExecOutput(this, rootMount, platform);
    this.root = rootMount.output;
    for (const m of spec.mounts) {
      if (m.type === "secret") {
        const s = m.secret ?? { id: m.dest };
        this.secrets.push({ target: m.dest, id: s.id, uid: s.uid ?? 0, gid: s.gid ?? 0, mode: s.mode ?? 0o400, optional: s.optional ?? false });
        continue;
      }
      if (m.type === "ssh") {
        const s = m.ssh ?? { id: "" };
        this.ssh.push({ target: m.dest, id: s.id, uid: s.uid ?? 0, gid: s.gid ?? 0, mode: s.mode ?? 0o600, optional: s.optional ?? false });
        continue;
      }
      const e = this.entry(m);
      if (e.readonly) e.output = e.source;
      else if (e.tmpfs) e.output = new FailedOutput(this, `tmpfs mount for ${e.target} can't be used as a parent`);
      else if (e.noOutput) e.output = new FailedOutput(this, `mount marked no-output and ${e.target} can't be used as a parent`);
      else e.output = new ExecOutput(this, e, platform);
      this.mounts.push(e);
    }
    this.mounts.sort((a, b) => compareGo(a.target, b.target));
    this.ssh.forEach((s, i) => {
      if (s.target === "") s.target = `/run/buildkit/ssh_agent.${i}`;
    });
  }

  private entry(m: ExecMountSpec): MountEntry {
    const type = m.type ?? "bind";
    return {
      target: m.dest,
      source: m.source,
      readonly: m.readonly ?? false,
      selector: m.selector ?? "",
      cacheId: type === "cache" ? m.cacheId || m.dest : "",
      sharing: sharingModes[m.sharing ?? "shared"] ?? CacheSharingOpt.SHARED,
      tmpfs: type === "tmpfs",
      tmpfsSize: m.tmpfsSize ?? 0,
      noOutput: m.noOutput ?? false,
      output: undefined,
    };
  }

  /** The State output for a mount point, or undefined when the mount exposes scratch. */
  mountOutput(dest: string): Output | undefined {
    const m = this.mounts.find((x) => x.target === dest);
    if (!m) throw new KilnError("KILN_LLB", `no mount at ${dest}`);
    return m.output;
  }

  outputIndexOf(m: MountEntry): number {
    let i = 0;
    for (const m2 of this.mounts) {
      if (m2.noOutput || m2.readonly || m2.tmpfs || m2.cacheId !== "") continue;
      if (m2 === m) return i;
      i++;
    }
    throw new KilnError("KILN_LLB", `invalid mount: ${m.target}`);
  }

  inputs(): Output[] {
    const seen = new Set<Output>();
    for (const m of this.mounts) if (m.source) seen.add(m.source);
    return [...seen];
  }

  marshal(ctx: MarshalContext): MarshalledOp {
    const cached = ctx.cache.get(this);
    if (cached) return cached;
    const { base, constraints: c } = this.spec;
    if (this.spec.args.length === 0) throw new KilnError("KILN_LLB", "arguments are required");
    if (base.dir === "") throw new KilnError("KILN_LLB", "working directory is required");

    const caps: string[] = ["exec.meta.base"];
    const env = base.env.map(([k, v]) => [k, v] as [string, string]);
    const has = (k: string) => env.some(([x]) => x === k);
    if (this.ssh.length > 0 && !has("SSH_AUTH_SOCK")) env.push(["SSH_AUTH_SOCK", this.ssh[0]!.target]);
    if (ctx.caps) {
      if (!ctx.caps.has("exec.meta.setsdefaultpath")) {
        if (!has("PATH")) env.push(["PATH", defaultPathEnv(ctx.platform.os)]);
      } else caps.push("exec.meta.setsdefaultpath");
    }
    if (base.network !== 0) caps.push("exec.meta.network");
    if (base.security !== 0) caps.push("exec.meta.security");
    const p = this.spec.proxyEnv;
    if (p) caps.push("exec.meta.proxyenv");
    if (this.spec.ulimits.length > 0) caps.push("exec.meta.ulimit");
    for (const m of this.mounts) {
      if (m.selector !== "") caps.push("exec.mount.selector");
      if (m.cacheId !== "") caps.push("exec.mount.cache", "exec.mount.cache.sharing");
      else if (m.tmpfs) {
        caps.push("exec.mount.tmpfs");
        if (m.tmpfsSize > 0) caps.push("exec.mount.tmpfs.size");
      } else if (m.source) caps.push("exec.mount.bind");
    }
    if (this.secrets.length > 0 || this.spec.secretEnv.length > 0) caps.push("exec.mount.secret");
    if (this.spec.secretEnv.length > 0) caps.push("exec.secretenv");
    if (this.ssh.length > 0) caps.push("exec.mount.ssh");

    const op = opEnvelope(ctx, c.platform ?? base.platform, c);
    const inputs: { digest: string; index: number }[] = [];
    const mounts: Mount[] = [];
    let outIndex = 0;
    for (const m of this.mounts) {
      let inputIndex = -1;
      if (m.source) {
        if (m.tmpfs) throw new KilnError("KILN_LLB", "tmpfs mounts must use scratch");
        const inp = toInput(m.source, ctx);
        inputIndex = inputs.findIndex((x) => x.digest === inp.digest && x.index === inp.index);
        if (inputIndex < 0) {
          inputIndex = inputs.length;
          inputs.push(inp);
        }
      }
      let outputIndex = -1;
      if (!m.noOutput && !m.readonly && m.cacheId === "" && !m.tmpfs) outputIndex = outIndex++;
      mounts.push(
        create(MountSchema, {
          input: BigInt(inputIndex),
          selector: m.selector,
          dest: m.target,
          output: BigInt(outputIndex),
          readonly: m.readonly,
          mountType: m.cacheId !== "" ? MountType.CACHE : m.tmpfs ? MountType.TMPFS : MountType.BIND,
          cacheOpt: m.cacheId !== "" ? { ID: m.cacheId, sharing: m.sharing } : undefined,
          TmpfsOpt: m.tmpfs ? { size: BigInt(m.tmpfsSize) } : undefined,
        }),
      );
    }
    // Secret and SSH mounts follow the sorted list and leave input/output at 0, as Go writes them.
    for (const s of this.secrets) {
      mounts.push(create(MountSchema, { dest: s.target, mountType: MountType.SECRET, secretOpt: { ID: s.id, uid: s.uid, gid: s.gid, mode: s.mode, optional: s.optional } }));
    }
    for (const s of this.ssh) {
      mounts.push(create(MountSchema, { dest: s.target, mountType: MountType.SSH, SSHOpt: { ID: s.id, uid: s.uid, gid: s.gid, mode: s.mode, optional: s.optional } }));
    }
    op.inputs = protoInputs(inputs);
    op.op = {
      case: "exec",
      value: create(ExecOpSchema, {
        meta: {
          args: [...this.spec.args],
          env: env.map(([k, v]) => `${k}=${v}`),
          cwd: base.dir,
          user: base.user,
          proxyEnv: p ? { httpProxy: p.httpProxy ?? "", httpsProxy: p.httpsProxy ?? "", ftpProxy: p.ftpProxy ?? "", noProxy: p.noProxy ?? "", allProxy: p.allProxy ?? "" } : undefined,
          extraHosts: this.spec.extraHosts.map((h) => ({ Host: h.host, IP: h.ip })),
          hostname: base.hostname,
          ulimit: this.spec.ulimits.map((u) => ({ Name: u.name, Soft: BigInt(u.soft), Hard: BigInt(u.hard) })),
          removeMountStubsRecursive: true,
        },
        mounts,
        network: base.network,
        security: base.security,
        secretenv: this.spec.secretEnv.map((s) => ({ ID: s.id, name: s.name, optional: s.optional ?? false })),
      }),
    };
    const res = finishOp(op, constraintsMetadata(c, caps), c);
    ctx.cache.set(this, res);
    return res;
  }
}
