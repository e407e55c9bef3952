// The immutable State value (an output plus env, dir, user, platform, network metadata), the
// exec result ExecState, and the chainable FileAction — the public face of the LLB builder.
import { NetMode, SecurityMode } from "../api/index.js";
import {
  isAbs,
  joinPath,
  normalizeLLBPlatform,
  type Constraints,
  type LLBPlatform,
  type NetworkMode,
  type Output,
  type SecurityModeName,
  type StateData,
} from "./core.js";
import { marshalDefinition, type DefinitionBytes, type MarshalOptions } from "./definition.js";
import { ExecVertex, type ProxyEnvOpt, type SecretMountOpt } from "./exec.js";
import { FileVertex, type ActionSpec, type BoundAction, type CopyOptions, type MkdirOptions, type MkfileOptions, type RmOptions, type StateRef } from "./fileop.js";

export interface MountOpt {
  dest: string;
  /** Default: scratch. */
  source?: State;
  selector?: string;
  readonly?: boolean;
  type?: "bind" | "cache" | "tmpfs" | "secret" | "ssh";
  /** Cache mounts: defaults to `dest`. */
  cacheId?: string;
  sharing?: "shared" | "private" | "locked";
  tmpfsSize?: number;
  /** A writable mount whose changes are discarded (Go's ForceNoOutput). */
  noOutput?: boolean;
  secret?: SecretMountOpt;
  ssh?: SecretMountOpt;
}

export interface RunOptions extends Constraints {
  args: string[];
  /** Replaces the State's environment for this run (`K=V` entries); default: the State's. */
  env?: string[];
  /** Applied like State.dir (relative to the State's dir) for this run only. */
  cwd?: string;
  user?: string;
  network?: NetworkMode;
  security?: SecurityModeName;
  mounts?: MountOpt[];
  hostname?: string;
  extraHosts?: { host: string; ip: string }[];
  secretEnv?: { id: string; name: string; optional?: boolean }[];
  /** Proxy variables given to the process but kept out of the cache key. */
  proxyEnv?: ProxyEnvOpt;
  /** Resource limits of the process ("nofile", "nproc", …), as Go's llb.AddUlimit. */
  ulimits?: { name: string; soft: number; hard: number }[];
}

const netModes: Record<NetworkMode, NetMode> = { sandbox: NetMode.UNSET, host: NetMode.HOST, none: NetMode.NONE };
const netNames = new Map<NetMode, NetworkMode>([
  [NetMode.UNSET, "sandbox"],
  [NetMode.HOST, "host"],
  [NetMode.NONE, "none"],
]);
const securityModes: Record<SecurityModeName, SecurityMode> = { sandbox: SecurityMode.SANDBOX, insecure: SecurityMode.INSECURE };

export class State {
  protected constructor(protected readonly d: StateData) {}

  static scratch(): State {
    return State.fromOutput(undefined);
  }

  /** A fresh State on an op's output, as Go's NewState: dir `/`, no env, the output's platform. */
  static fromOutput(out: Output | undefined): State {
    const s = new State({ out, env: [], dir: "/", user: "", hostname: "", platform: undefined, network: NetMode.UNSET, security: SecurityMode.SANDBOX });
    return out?.platform ? s.platform(out.platform) : s;
  }

  protected with(patch: Partial<StateData>): State {
    return new State({ ...this.d, ...patch });
  }

  isScratch(): boolean {
    return this.d.out === undefined;
  }

  /** The op output this State stands for; undefined for scratch. */
  output(): Output | undefined {
    return this.d.out;
  }

  /** Same metadata on another output; adopts the output's platform when it has one. */
  withOutput(out: Output | undefined): State {
    const s = this.with({ out });
    return out?.platform ? s.platform(out.platform) : s;
  }

  addEnv(k: string, v: string): State {
    return this.with({ env: [...this.d.env.filter(([x]) => x !== k), [k, v] as const] });
  }

  getEnv(k: string): string | undefined {
    return this.d.env.find(([x]) => x === k)?.[1];
  }

  /** `K=V` entries in the order they were first set (a re-set moves the key to the end, as in Go). */
  env(): string[] {
    return this.d.env.map(([k, v]) => `${k}=${v}`);
  }

  /** Relative dirs resolve against the current one; absolute ones are kept verbatim, as in Go. */
  dir(d: string): State {
    if (isAbs(d)) return this.with({ dir: d });
    return this.with({ dir: joinPath(this.d.dir || "/", d) });
  }

  getDir(): string {
    return this.d.dir;
  }

  user(u: string): State {
    return this.with({ user: u });
  }

  getUser(): string {
    return this.d.user;
  }

  hostname(h: string): State {
    return this.with({ hostname: h });
  }

  getHostname(): string {
    return this.d.hostname;
  }

  platform(p: LLBPlatform): State {
    return this.with({ platform: normalizeLLBPlatform(p) });
  }

  getPlatform(): LLBPlatform | undefined {
    return this.d.platform;
  }

  network(n: NetworkMode): State {
    return this.with({ network: netModes[n] });
  }

  getNetwork(): NetworkMode {
    return netNames.get(this.d.network) ?? "sandbox";
  }

  security(s: SecurityModeName): State {
    return this.with({ security: securityModes[s] });
  }

  getSecurity(): SecurityModeName {
    return this.d.security === SecurityMode.INSECURE ? "insecure" : "sandbox";
  }

  run(opts: RunOptions): ExecState {
    let s = this.with({});
    if (opts.env) s = s.with({ env: parseEnv(opts.env) });
    if (opts.cwd !== undefined) s = s.dir(opts.cwd);
    if (opts.user !== undefined) s = s.user(opts.user);
    if (opts.hostname !== undefined) s = s.hostname(opts.hostname);
    if (opts.network) s = s.network(opts.network);
    if (opts.security) s = s.security(opts.security);
    const v = new ExecVertex({
      base: s.d,
      args: [...opts.args],
      mounts: (opts.mounts ?? []).map((m) => ({ ...m, source: m.source?.output() })),
      extraHosts: opts.extraHosts ?? [],
      secretEnv: opts.secretEnv ?? [],
      proxyEnv: opts.proxyEnv,
      ulimits: opts.ulimits ?? [],
      constraints: opts,
    });
    // Like Go, the result keeps the State's own metadata, not the per-run overrides.
    return new ExecState(this.withOutput(v.root).d, v);
  }

  file(action: FileAction, c?: Constraints): State {
    const v = new FileVertex(action.bind(this.ref()), c ?? {});
    return this.withOutput(v.output);
  }

  /** @internal */
  ref(): StateRef {
    return { out: this.d.out, dir: this.d.dir, platform: this.d.platform };
  }

  /** Serialises the graph ending at this State into a pb.Definition, synchronously. */
  marshal(opts: MarshalOptions = {}): DefinitionBytes {
    return marshalDefinition(this.d.out, opts);
  }
}

function parseEnv(env: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (const e of env) {
    const i = e.indexOf("=");
    const k = i < 0 ? e : e.slice(0, i);
    const v = i < 0 ? "" : e.slice(i + 1);
    const j = out.findIndex(([x]) => x === k);
    if (j >= 0) out.splice(j, 1);
    out.push([k, v]);
  }
  return out;
}

/** The root filesystem after a run (it is itself that State), plus access to writable mounts. */
export class ExecState extends State {
  /** @internal */
  constructor(
    d: StateData,
    private readonly exec: ExecVertex,
  ) {
    super(d);
  }

  root(): State {
    return this.with({});
  }

  /** The State of a mount after the run: a fresh State (dir `/`, no env) like Go's GetMount. */
  getMount(dest: string): State {
    return State.fromOutput(this.exec.mountOutput(dest));
  }
}

/** A chain of file actions; nothing is bound to a State until State.file. */
export class FileAction {
  private constructor(
    private readonly prev: FileAction | undefined,
    private readonly spec: ActionSpec,
  ) {}

  static mkdir(path: string, mode: number, opts: MkdirOptions = {}): FileAction {
    return new FileAction(undefined, { kind: "mkdir", path, mode, opts });
  }

  static mkfile(path: string, mode: number, data: Uint8Array | string, opts: MkfileOptions = {}): FileAction {
    return new FileAction(undefined, { kind: "mkfile", path, mode, data: typeof data === "string" ? new TextEncoder().encode(data) : data, opts });
  }

  static rm(path: string, opts: RmOptions = {}): FileAction {
    return new FileAction(undefined, { kind: "rm", path, opts });
  }

  /** Copies `srcPath` of `src` (relative paths resolve against src's dir) to `destPath`. */
  static copy(src: State, srcPath: string, destPath: string, opts: CopyOptions = {}): FileAction {
    return new FileAction(undefined, { kind: "copy", src: src.ref(), srcPath, destPath, opts });
  }

  mkdir(path: string, mode: number, opts: MkdirOptions = {}): FileAction {
    return new FileAction(this, FileAction.mkdir(path, mode, opts).spec);
  }

  mkfile(path: string, mode: number, data: Uint8Array | string, opts: MkfileOptions = {}): FileAction {
    return new FileAction(this, FileAction.mkfile(path, mode, data, opts).spec);
  }

  rm(path: string, opts: RmOptions = {}): FileAction {
    return new FileAction(this, FileAction.rm(path, opts).spec);
  }

  copy(src: State, srcPath: string, destPath: string, opts: CopyOptions = {}): FileAction {
    return new FileAction(this, FileAction.copy(src, srcPath, destPath, opts).spec);
  }

  /** @internal Every action of the chain runs on `state` (its dir resolves relative paths). */
  bind(state: StateRef): BoundAction {
    return { prev: this.prev?.bind(state), spec: this.spec, state };
  }
}
