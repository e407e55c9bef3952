// Dockerfile → LLB, as BuildKit's dockerfile2llb does it: stages (and images named by COPY --from
// or RUN --mount from=) reachable from the target become LLB states; the target's image config
// (env, cmd, history, …) comes back beside the state.
import { State, FileAction, image as imageSource, local, ownerFromString, parseNormalizedNamed, tagNameOnly, withDigest, formatRef, type Constraints, type Output, type SourceMapInput, type Vertex } from "../../../llb/index.js";
import type { ImageConfig } from "../../../api/oci.js";
import { KilnError, formatPlatform, normalizePlatform, parsePlatform, type Platform, type SourceLocation } from "../../../util/index.js";
import { parse, type ParseWarning } from "../parser/index.js";
import { ShellLex, envsFromSlice } from "../shell/index.js";
import { expandCommand, parseCommand, parseMount, parseStages, suggest } from "../instructions/index.js";
import type { Command, CopyCommand, Stage } from "../instructions/index.js";
import { dispatchCopy } from "./dispatch-copy.js";
import { dispatchRun, withShell } from "./dispatch-run.js";
import { dfCmd, displayName, errAt, llbPlatform, prefixCommand, stateEnv, type BuildArg, type DispatchCommand, type DispatchOpt, type DispatchState } from "./dispatchstate.js";
import { isHTTPSource } from "./gitref.js";
import {
  cloneImage,
  commitToHistory,
  defaultPathFor,
  emptyImage,
  envKey,
  goDuration,
  goQuoteList,
  goQuoteRune,
  imageFromConfig,
  setEnv,
  splitEnv,
  validSignal,
} from "./image.js";

export interface ConvertOptions {
  dockerfile: string;
  filename: string;
  target?: string;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  buildPlatform: Platform;
  targetPlatform: Platform;
  /** The local source name of the build context ("context"). */
  contextName: string;
  /** The build context when it isn't the client's directory (a git repository, a URL's files). */
  buildContext?: State;
  sessionId: string;
  excludePatterns: string[];
  /** Stages that skip the build cache: true for all, or their names (case-insensitive). */
  noCache: boolean | readonly string[];
  /** The sandbox hostname of every RUN (the `hostname` attr or BUILDKIT_SANDBOX_HOSTNAME). */
  hostname?: string;
  /** Bytes of the /dev/shm tmpfs each RUN gets (`shm-size`); 0 keeps the runtime's. */
  shmSize?: number;
  /** Resource limits of every RUN (`ulimit`). */
  ulimits?: { name: string; soft: number; hard: number }[];
  /**
   * BuildKit's named contexts (`context:NAME=…`): what stands in for a stage or image name, on a
   * platform; undefined when the build names none for it.
   */
  contextByName?: (name: string, platform: Platform) => Promise<NamedContext | undefined>;
  /** A multi-platform build: step names lead with their platform, as BuildKit's PrefixPlatform. */
  prefixPlatform?: boolean;
  resolveImageConfig(ref: string, platform: Platform): Promise<{ ref: string; digest: string; config: Uint8Array }>;
}

export interface NamedContext {
  state: State;
  /** The image config when the context is an image; its env, dir and user are already on `state`. */
  image?: Partial<ImageConfig>;
}

export interface ConvertResult {
  state: State;
  image: Partial<ImageConfig>;
  source: SourceMapInput;
  /** The parser's warnings (empty continuation lines), for the frontend to show. */
  warnings: ParseWarning[];
  /** What an SBOM scan looks at: the image, and the context and stages opted in by BUILDKIT_SBOM_SCAN_*. */
  sbom: { core: State; extras: Record<string, State>; ignoreCache: boolean };
}

const emptyImageName = "scratch";
/** Build args that never become environment variables of RUN steps. */
const nonEnvArgs = new Set(["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"]);
const commonImageNames = ["alpine", "busybox", "centos", "debian", "golang", "ubuntu", "fedora"].flatMap((n) => [n, `docker.io/library${n}`, `${n}:latest`, `docker.io/library${n}:latest`]);

function platformArgs(build: Platform, target: Platform): BuildArg[] {
  return Object.entries({
    BUILDPLATFORM: formatPlatform(build),
    BUILDOS: build.os,
    BUILDARCH: build.architecture,
    BUILDVARIANT: build.variant ?? "",
    TARGETPLATFORM: formatPlatform(target),
    TARGETOS: target.os,
    TARGETARCH: target.architecture,
    TARGETVARIANT: target.variant ?? "",
  }).map(([key, value]) => ({ key, value }));
}

function metaArgsEnv(args: readonly BuildArg[]) {
  return envsFromSlice(args.map((a) => `${a.key}=${a.value ?? ""}`));
}

/** The proxy variables BuildKit hands to every RUN without putting them in the env or history. */
function proxyEnvFromBuildArgs(args: Record<string, string>): DispatchOpt["proxyEnv"] {
  const pe: NonNullable<DispatchOpt["proxyEnv"]> = {};
  let set = false;
  for (const [k, v] of Object.entries(args)) {
    const key = k.toLowerCase();
    if (key === "http_proxy") pe.httpProxy = v;
    else if (key === "https_proxy") pe.httpsProxy = v;
    else if (key === "ftp_proxy") pe.ftpProxy = v;
    else if (key === "no_proxy") pe.noProxy = v;
    else if (key === "all_proxy") pe.allProxy = v;
    else continue;
    set = true;
  }
  return set ? pe : undefined;
}

/** A State input whose op is chosen after dispatch (the context, once its followpaths are known). */
class DeferredOutput implements Output {
  readonly platform = undefined;
  target: Output | undefined;
  get vertex(): Vertex {
    if (!this.target) throw new KilnError("KILN_LLB", "build context used before it was defined");
    return this.target.vertex;
  }
  index(): number {
    return this.target?.index() ?? 0;
  }
}

function newState(stage: Stage, baseName: string, unregistered: boolean): DispatchState {
  return {
    stage,
    baseName,
    stageName: "",
    platform: undefined,
    base: undefined,
    deps: new Set(),
    unregistered,
    commands: [],
    state: State.scratch(),
    image: { config: {} },
    buildArgs: [],
    ctxPaths: new Set(),
    cmdSet: false,
    cmdIndex: 0,
    cmdTotal: 0,
    ignoreCache: false,
    resolving: undefined,
  };
}

export async function convertDockerfile(_signal: AbortSignal, opts: ConvertOptions): Promise<ConvertResult> {
  if (opts.dockerfile.length === 0) throw new KilnError("KILN_DOCKERFILE", "the Dockerfile cannot be empty");
  const parsed = parse(opts.dockerfile, opts.filename);
  const { metaArgs, stages } = parseStages(parsed, parsed.source);
  if (stages.length === 0) throw new KilnError("KILN_DOCKERFILE", "the Dockerfile has no build stages (no FROM instruction)");
  const lex = new ShellLex(parsed.escapeToken);
  const source: SourceMapInput = { filename: opts.filename, data: opts.dockerfile };
  // A range per line, as BuildKit's parser locates an instruction continued over several lines.
  const locOf = (loc: SourceLocation): Constraints["sourceLocation"] => ({
    sourceIndex: 0,
    ranges: Array.from({ length: Math.max(loc.endLine - loc.startLine, 0) + 1 }, (_, i) => ({ start: { line: loc.startLine + i, character: 0 }, end: { line: loc.startLine + i, character: 0 } })),
  });

  // Global args: the platform args, then the ARGs before the first FROM; --build-arg overrides both.
  const optMetaArgs = platformArgs(opts.buildPlatform, opts.targetPlatform).map((a) => ({ key: a.key, value: opts.buildArgs[a.key] ?? a.value }));
  for (const cmd of metaArgs) {
    for (const a of cmd.args) {
      let value = a.value;
      if (opts.buildArgs[a.key] !== undefined) value = opts.buildArgs[a.key];
      else if (value !== undefined) {
        try {
          value = lex.processWord(value, metaArgsEnv(optMetaArgs));
        } catch {
          // BuildKit drops the expansion error and keeps an empty value.
          value = "";
        }
      }
      optMetaArgs.push({ key: a.key, value });
    }
  }

  const states: DispatchState[] = [];
  const byName = new Map<string, DispatchState>();
  const addState = (d: DispatchState) => {
    states.push(d);
    const base = byName.get(d.baseName);
    if (base) d.base = base;
    if (d.stage.name) byName.set(d.stage.name.toLowerCase(), d);
  };
  for (const [i, st] of stages.entries()) {
    let baseName: string;
    try {
      baseName = lex.processWord(st.baseName, metaArgsEnv(optMetaArgs));
    } catch (err) {
      throw errAt(st.location, (err as Error).message, err);
    }
    if (baseName === "") throw errAt(st.location, `base name (${st.baseName}) should not be blank`);
    const d = newState(st, baseName, false);
    if (st.platform) {
      let p = st.platform;
      try {
        p = lex.processWord(st.platform, metaArgsEnv(optMetaArgs));
        d.platform = normalizePlatform(parsePlatform(p));
      } catch (err) {
        throw errAt(st.location, `failed to parse platform ${p}: ${(err as Error).message}`, err);
      }
    }
    d.stageName = st.name ?? `stage-${i}`;
    const nc = st.name ? await namedContext(opts, st.name, d.platform) : undefined;
    if (nc) {
      d.noinit = true;
      d.state = nc.state;
      d.image = nc.image ? imageFromConfig(nc.image) : emptyImage(opts.targetPlatform);
      if (nc.image?.architecture && nc.image.os) d.platform = { os: nc.image.os, architecture: nc.image.architecture, ...(nc.image.variant ? { variant: nc.image.variant } : {}) };
      addState(d);
      d.base = undefined;
      continue;
    }
    addState(d);
    let total = baseName !== emptyImageName && !d.base ? 1 : 0;
    for (const c of st.commands) if (c.kind === "add" || c.kind === "copy" || c.kind === "run" || c.kind === "workdir") total++;
    d.cmdTotal = total;
    d.ignoreCache = typeof opts.noCache === "boolean" ? opts.noCache : st.name !== undefined && opts.noCache.some((n) => n.toLowerCase() === st.name!.toLowerCase());
  }
  if (opts.prefixPlatform) for (const d of states) d.prefixPlatform = { target: opts.targetPlatform };

  let target = states[states.length - 1]!;
  if (opts.target) {
    const t = byName.get(opts.target.toLowerCase());
    if (!t) throw new KilnError("KILN_DOCKERFILE_TARGET", `target stage ${opts.target} could not be found`);
    target = t;
  }

  const findByName = (name: string) => byName.get(name.toLowerCase());
  const toCommand = (cmd: Command, location: SourceLocation): DispatchCommand => {
    const out: DispatchCommand = { cmd, sources: [] };
    const unregistered = (baseName: string) => {
      const d = newState({ name: undefined, baseName, platform: undefined, commands: [], location, code: "", origCmd: "", comments: [], docComment: "" }, baseName, true);
      addState(d);
      if (opts.prefixPlatform) d.prefixPlatform = { target: opts.targetPlatform };
      return d;
    };
    if (cmd.kind === "copy" && cmd.from !== "") {
      let src: DispatchState | undefined;
      if (/^[+-]?\d+$/.test(cmd.from)) {
        const n = Number(cmd.from);
        src = n >= 0 && n < states.length ? states[n] : undefined;
        if (!src) throw errAt(location, `invalid stage index ${n}`);
      } else {
        src = findByName(cmd.from) ?? unregistered(cmd.from);
      }
      out.sources = [src];
    }
    if (cmd.kind === "run") {
      out.sources = cmd.mountSpecs.map((spec) => {
        let from = "";
        try {
          from = parseMount(spec, (w) => w).from;
        } catch {
          // a spec that only parses once expanded has no from= (from= allows no variables)
        }
        return findByName(from || emptyImageName) ?? unregistered(from || emptyImageName);
      });
    }
    return out;
  };
  for (const d of [...states]) {
    if (d.noinit) continue;
    d.commands = d.stage.commands.map((c) => {
      const dc = toCommand(c, c.location);
      for (const s of dc.sources) if (s) d.deps.add(s);
      return dc;
    });
  }
  const cycle = findCycle(states);
  if (cycle) throw new KilnError("KILN_DOCKERFILE", `circular dependency detected on stage: ${cycle.stageName}`);
  if (states.length === 1) states[0]!.stageName = "";
  const allStageNames = states.map((s) => s.stageName).filter((n) => n !== "");

  const reachable = new Set<DispatchState>();
  const visit = (d: DispatchState | undefined) => {
    if (!d || reachable.has(d)) return;
    reachable.add(d);
    visit(d.base);
    for (const dep of d.deps) visit(dep);
  };
  visit(target);

  // Base images of every reachable stage resolve concurrently, before anything is dispatched.
  const ensureResolved = (d: DispatchState): Promise<void> => {
    // A named context already is the stage's result.
    if (d.noinit) return Promise.resolve();
    d.resolving ??= resolveBase(d, opts, allStageNames, locOf);
    return d.resolving;
  };
  const pending = states.filter((d) => reachable.has(d) && !d.base && !d.noinit).map((d) => ensureResolved(d));
  // Surface the first failure, after every resolve has settled.
  const settled = await Promise.allSettled(pending);
  for (const s of settled) if (s.status === "rejected") throw s.reason;

  const buildContext = new DeferredOutput();
  const dopt: DispatchOpt = {
    ensureResolved,
    metaArgs: optMetaArgs,
    buildArgValues: opts.buildArgs,
    lex,
    buildContext: State.fromOutput(buildContext),
    proxyEnv: proxyEnvFromBuildArgs(opts.buildArgs),
    cacheIdNamespace: opts.buildArgs.BUILDKIT_CACHE_MOUNT_NS ?? "",
    locOf,
    hostname: opts.hostname ?? "",
    shmSize: opts.shmSize ?? 0,
    ulimits: opts.ulimits ?? [],
  };
  const ctxPaths = new Set<string>();
  for (const d of [...states]) {
    if (!reachable.has(d) || d.noinit) continue;
    await initStage(d, dopt, toCommand);
    for (const c of d.commands) {
      try {
        await dispatch(d, c, dopt);
      } catch (err) {
        if (err instanceof KilnError && err.location) throw err;
        throw errAt(c.cmd.location, (err as Error).message, err);
      }
    }
    for (const p of d.ctxPaths) ctxPaths.add(p);
  }

  const img = target.image;
  // SOURCE_DATE_EPOCH dates the history this build wrote (the image's creation time follows from
  // it), as BuildKit's frontend does even when the exporter is told to ignore the epoch.
  const epoch = sourceDateEpoch(opts.buildArgs.SOURCE_DATE_EPOCH);
  if (epoch !== undefined) for (const h of img.history ?? []) h.created ??= epoch;
  if (Object.keys(opts.labels).length > 0) img.config.Labels ??= {};
  for (const [k, v] of Object.entries(opts.labels)) img.config.Labels![k] = v;
  const followPaths = contextPaths(ctxPaths);
  buildContext.target = opts.buildContext ? opts.buildContext.output() : local(opts.contextName, {
    sessionId: opts.sessionId,
    excludePatterns: opts.excludePatterns.length > 0 ? opts.excludePatterns : undefined,
    sharedKeyHint: opts.contextName,
    customName: "[internal] load build context",
    ...(followPaths ? { followPaths } : {}),
  }).output();
  img.architecture = opts.targetPlatform.architecture;
  img.os = opts.targetPlatform.os;
  if (opts.targetPlatform.variant) img.variant = opts.targetPlatform.variant;
  else delete img.variant;
  return { state: target.state, image: img, source, warnings: parsed.warnings, sbom: sbomTargets(target, reachable, optMetaArgs, dopt.buildContext) };
}

/**
 * BuildKit's SBOMTargets: a stage scans itself when BUILDKIT_SBOM_SCAN_STAGE (a global ARG or one
 * of its own) is true or lists its name; the context is scanned when the target's
 * BUILDKIT_SBOM_SCAN_CONTEXT says so.
 */
function sbomTargets(target: DispatchState, reachable: Set<DispatchState>, metaArgs: BuildArg[], buildContext: State): ConvertResult["sbom"] {
  const flags = (d: DispatchState) => {
    let stage = false;
    let context = false;
    for (const a of [...metaArgs, ...d.buildArgs]) {
      if (a.key === "BUILDKIT_SBOM_SCAN_STAGE") stage = enabledForStage(d.stageName, a.value ?? "");
      else if (a.key === "BUILDKIT_SBOM_SCAN_CONTEXT") context = enabledForStage(d.stageName, a.value ?? "");
    }
    return { stage, context };
  };
  const extras: Record<string, State> = {};
  if (flags(target).context) extras.context = buildContext;
  let ignoreCache = target.ignoreCache;
  for (const d of reachable) {
    if (d === target || d.noinit || !flags(d).stage) continue;
    extras[d.stageName] = d.state;
    ignoreCache ||= d.ignoreCache;
  }
  return { core: target.state, extras, ignoreCache };
}

/** A boolean as Go's strconv.ParseBool reads it, or else a comma-separated list of stage names. */
function enabledForStage(stage: string, value: string): boolean {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(value)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(value)) return false;
  return value.split(",").includes(stage);
}

/** SOURCE_DATE_EPOCH (seconds) as Go's time JSON; undefined when unset. */
function sourceDateEpoch(v: string | undefined): string | undefined {
  if (v === undefined || v === "") return undefined;
  if (!/^[+-]?\d+$/.test(v)) throw new KilnError("KILN_DOCKERFILE", `invalid SOURCE_DATE_EPOCH: ${v}`);
  return new Date(Number(v) * 1000).toISOString().replace(/\.000Z$/, "Z");
}

/** Context paths as the local source's followpaths; none when the whole context is needed. */
function contextPaths(paths: Set<string>): string[] | undefined {
  const out: string[] = [];
  for (const p of paths) {
    if (p === "/") return undefined;
    out.push(p.replace(/^\/+/, ""));
  }
  return out.sort();
}

function findCycle(states: DispatchState[]): DispatchState | undefined {
  const visited = new Set<DispatchState>();
  const onPath = new Set<DispatchState>();
  const visit = (d: DispatchState): boolean => {
    if (visited.has(d)) return false;
    visited.add(d);
    onPath.add(d);
    for (const dep of d.deps) if (onPath.has(dep) || visit(dep)) return true;
    onPath.delete(d);
    return false;
  };
  return states.find((d) => visit(d));
}

/** The named context for a stage or image name; `scratch` and `context` are never replaced. */
async function namedContext(opts: ConvertOptions, name: string, platform: Platform | undefined): Promise<NamedContext | undefined> {
  if (!opts.contextByName || /^(scratch|context)$/i.test(name)) return undefined;
  return opts.contextByName(name, platform ?? opts.targetPlatform);
}

async function resolveBase(d: DispatchState, opts: ConvertOptions, allStageNames: string[], locOf: (loc: SourceLocation) => Constraints["sourceLocation"]): Promise<void> {
  if (d.baseName === emptyImageName) {
    // BuildKit leaves `FROM --platform=… scratch` without a platform, so its RUN steps get the
    // target's; Kiln keeps the one asked for (and refuses it early when it cannot run it).
    d.state = d.platform ? State.scratch().platform(llbPlatform(d.platform)) : State.scratch();
    d.image = emptyImage(opts.targetPlatform);
    return;
  }
  const origName = d.baseName;
  let ref;
  try {
    ref = tagNameOnly(parseNormalizedNamed(d.baseName));
  } catch (err) {
    throw errAt(d.stage.location, `failed to parse stage name ${JSON.stringify(d.baseName)}: ${(err as Error).message}`, err);
  }
  const platform = d.platform ?? opts.targetPlatform;
  const nc = await namedContext(opts, formatRef(ref), platform);
  if (nc) {
    d.image = nc.image ? imageFromConfig(nc.image) : emptyImage(opts.targetPlatform);
    d.state = nc.state.platform(llbPlatform(platform));
    d.platform = platform;
    return;
  }
  let resolved: { ref: string; digest: string; config: Uint8Array };
  try {
    resolved = await opts.resolveImageConfig(formatRef(ref), platform);
  } catch (err) {
    const msg = `${origName}: ${(err as Error).message}`;
    const match = suggest(origName, [...allStageNames, ...commonImageNames], true);
    throw errAt(d.stage.location, match ? `${msg} (did you mean ${match}?)` : msg, err);
  }
  const cfg = JSON.parse(Buffer.from(resolved.config).toString("utf8")) as Partial<ImageConfig>;
  if (resolved.digest) ref = withDigest(ref, resolved.digest);
  const baseName = formatRef(ref);
  // An image with no layers (and no history of any) is scratch.
  const isScratch = (cfg.rootfs?.diff_ids ?? []).length === 0 && (cfg.history ?? []).every((h) => h.empty_layer);
  d.image = imageFromConfig(cfg);
  d.state = isScratch
    ? State.scratch()
    : imageSource(baseName, {
        platform: llbPlatform(platform),
        customName: prefixCommand(d, `FROM ${baseName}`, { platform }),
        sourceLocation: d.unregistered ? undefined : locOf(d.stage.location),
        description: dfCmd(d.stage.code),
      });
  d.platform = platform;
}

/** A stage's starting point: its base's state and config, the image's env, dir and user, ONBUILD triggers. */
async function initStage(d: DispatchState, opt: DispatchOpt, toCommand: (cmd: Command, loc: SourceLocation) => DispatchCommand): Promise<void> {
  if (d.base) {
    d.state = d.base.state;
    d.platform = d.base.platform;
    d.image = cloneImage(d.base.image);
  }
  const cfg = d.image.config;
  if (!(cfg.Env ?? []).some((e) => envKey(e) === "PATH")) cfg.Env = [...(cfg.Env ?? []), defaultPathFor(d.platform?.os)];
  for (const e of cfg.Env ?? []) {
    const [k, v] = splitEnv(e);
    d.state = d.state.addEnv(k, v);
  }
  if (opt.hostname) d.state = d.state.hostname(opt.hostname);
  if (cfg.WorkingDir) {
    d.state = d.state.dir(cfg.WorkingDir);
    cfg.WorkingDir = absDir(cfg.WorkingDir, "/");
  }
  if (cfg.User) d.state = d.state.user(cfg.User);
  const triggers = cfg.OnBuild ?? [];
  for (const trigger of triggers) {
    const ast = parse(trigger, "ONBUILD");
    if (ast.ast.children.length !== 1) throw errAt(d.stage.location, "onbuild trigger should be a single expression");
    let cmd: Command;
    try {
      cmd = parseCommand(ast.ast.children[0]!, ast.source);
    } catch (err) {
      throw errAt(d.stage.location, (err as Error).message, err);
    }
    const dc = toCommand(cmd, d.stage.location);
    for (const s of dc.sources) if (s) await opt.ensureResolved(s);
    try {
      await dispatch(d, dc, opt);
    } catch (err) {
      throw errAt(d.stage.location, (err as Error).message, err);
    }
  }
  cfg.OnBuild = null;
}

function absDir(p: string, cwd: string): string {
  const joined = p.startsWith("/") ? p : `${cwd.replace(/\/$/, "")}/${p}`;
  const parts: string[] = [];
  for (const seg of joined.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") parts.pop();
    else parts.push(seg);
  }
  return "/" + parts.join("/");
}

async function dispatch(d: DispatchState, dc: DispatchCommand, opt: DispatchOpt): Promise<void> {
  const env = stateEnv(d);
  const cmd = expandCommand(dc.cmd, (w) => opt.lex.processWord(w, env), (w) => new ShellLex("\\", { skipProcessQuotes: true }).processWord(w, env));
  const cfg = d.image.config;
  switch (cmd.kind) {
    case "env": {
      for (const kv of cmd.env) {
        d.state = d.state.addEnv(kv.key, kv.value);
        setEnv(cfg, kv.key, kv.value);
      }
      commitToHistory(d.image, `ENV ${cmd.env.map((kv) => `${kv.key}=${kv.value}`).join(" ")}`, false, false);
      return;
    }
    case "arg":
      return dispatchArg(d, cmd, opt);
    case "label":
      cfg.Labels ??= {};
      for (const kv of cmd.labels) cfg.Labels[kv.key] = kv.value;
      commitToHistory(d.image, `LABEL ${cmd.labels.map((kv) => `${kv.key}=${kv.value}`).join(" ")}`, false, false);
      return;
    case "maintainer":
      d.image.author = cmd.maintainer;
      commitToHistory(d.image, `MAINTAINER ${cmd.maintainer}`, false, false);
      return;
    case "workdir": {
      d.state = d.state.dir(cmd.path);
      const wd = absDir(cmd.path, cfg.WorkingDir ?? "/");
      cfg.WorkingDir = wd;
      if (wd !== "/") {
        const owner = cfg.User ? ownerFromString(cfg.User) : undefined;
        d.state = d.state.file(FileAction.mkdir(wd, 0o755, { makeParents: true, owner }), {
          customName: prefixCommand(d, displayName(opt.lex, cmd.code, stateEnv(d), false), { env: d.state.env() }),
          sourceLocation: opt.locOf(cmd.location),
        });
      }
      commitToHistory(d.image, `WORKDIR ${wd}`, wd !== "/", false);
      return;
    }
    case "user":
      d.state = d.state.user(cmd.user);
      cfg.User = cmd.user;
      commitToHistory(d.image, `USER ${cmd.user}`, false, false);
      return;
    case "expose":
      return dispatchExpose(d, cmd.ports, opt);
    case "cmd": {
      const args = cmd.prependShell ? withShell(d, cmd.cmdLine) : [...cmd.cmdLine];
      cfg.Cmd = args;
      cfg.ArgsEscaped = true;
      d.cmdSet = true;
      commitToHistory(d.image, `CMD ${goQuoteList(args)}`, false, false);
      return;
    }
    case "entrypoint": {
      const args = cmd.prependShell ? withShell(d, cmd.cmdLine) : [...cmd.cmdLine];
      cfg.Entrypoint = args;
      if (!d.cmdSet) delete cfg.Cmd;
      commitToHistory(d.image, `ENTRYPOINT ${goQuoteList(args)}`, false, false);
      return;
    }
    case "shell":
      cfg.Shell = cmd.shell;
      commitToHistory(d.image, `SHELL [${cmd.shell.join(" ")}]`, false, false);
      return;
    case "stopsignal":
      if (!validSignal(cmd.signal)) throw new KilnError("KILN_DOCKERFILE", `Invalid signal: ${cmd.signal}`);
      cfg.StopSignal = cmd.signal;
      commitToHistory(d.image, `STOPSIGNAL ${cmd.signal}`, false, false);
      return;
    case "volume":
      cfg.Volumes ??= {};
      for (const v of cmd.volumes) {
        if (v === "") throw new KilnError("KILN_DOCKERFILE", "VOLUME specified can not be an empty string");
        cfg.Volumes[v] = {};
      }
      commitToHistory(d.image, `VOLUME [${cmd.volumes.join(" ")}]`, false, false);
      return;
    case "healthcheck": {
      const h = cmd.health;
      cfg.Healthcheck = { Test: h.test };
      if (h.interval) cfg.Healthcheck.Interval = h.interval;
      if (h.timeout) cfg.Healthcheck.Timeout = h.timeout;
      if (h.startPeriod) cfg.Healthcheck.StartPeriod = h.startPeriod;
      if (h.startInterval) cfg.Healthcheck.StartInterval = h.startInterval;
      if (h.retries) cfg.Healthcheck.Retries = h.retries;
      // Go's %q of the *HealthConfig: &{Test Interval Timeout StartPeriod Retries}.
      commitToHistory(d.image, `HEALTHCHECK &{${goQuoteList(h.test)} ${JSON.stringify(goDuration(h.interval))} ${JSON.stringify(goDuration(h.timeout))} ${JSON.stringify(goDuration(h.startPeriod))} ${goQuoteRune(h.retries)}}`, false, false);
      return;
    }
    case "onbuild":
      // Recorded in the config only; BuildKit writes no history entry for it.
      (cfg.OnBuild ??= []).push(cmd.expression);
      return;
    case "run":
      for (const s of dc.sources) if (s) await opt.ensureResolved(s);
      return dispatchRun(d, cmd, dc.sources, opt);
    case "add":
      dispatchCopy(d, cmd, opt.buildContext, opt);
      for (const src of cmd.sourcePaths) if (!isHTTPSource(src)) d.ctxPaths.add(cleanAbs(src));
      return;
    case "copy":
      return dispatchCopyFrom(d, cmd, dc, opt);
  }
}

async function dispatchCopyFrom(d: DispatchState, cmd: CopyCommand, dc: DispatchCommand, opt: DispatchOpt): Promise<void> {
  const from = dc.sources[0];
  if (from) await opt.ensureResolved(from);
  dispatchCopy(d, cmd, from ? from.state : opt.buildContext, opt);
  if (!from) for (const src of cmd.sourcePaths) d.ctxPaths.add(cleanAbs(src));
}

function cleanAbs(p: string): string {
  return absDir(p, "/");
}

function dispatchArg(d: DispatchState, cmd: Extract<Command, { kind: "arg" }>, opt: DispatchOpt): void {
  const commit: string[] = [];
  for (const a of cmd.args) {
    commit.push(a.value === undefined ? a.key : `${a.key}=${a.value}`);
    let value = opt.buildArgValues[a.key] ?? a.value;
    if (value === undefined) {
      // An ARG without a value inherits the global one of the same name.
      for (const m of opt.metaArgs) if (m.key === a.key) value = m.value;
    }
    if (value !== undefined && !nonEnvArgs.has(a.key)) d.state = d.state.addEnv(a.key, value);
    d.buildArgs.push({ key: a.key, value });
  }
  commitToHistory(d.image, `ARG ${commit.join(" ")}`, false, false);
}

function dispatchExpose(d: DispatchState, ports: string[], opt: DispatchOpt): void {
  const cfg = d.image.config;
  cfg.ExposedPorts ??= {};
  const env = stateEnv(d);
  const all = new Set<string>();
  for (const p of ports) {
    for (const word of opt.lex.processWords(p, env)) {
      // docker/go-connections' ParsePortSpecs: a range stands for each port in it.
      const [num, proto = "tcp"] = word.toLowerCase().split("/") as [string, string | undefined];
      const range = /^(\d+)-(\d+)$/.exec(num);
      const nums = range ? Array.from({ length: Math.max(0, Number(range[2]) - Number(range[1]) + 1) }, (_, i) => String(Number(range[1]) + i)) : [num];
      for (const n of nums) {
        cfg.ExposedPorts[`${n}/${proto}`] = {};
        all.add(`${n}/${proto}`);
      }
    }
  }
  // Go prints the map sorted by key.
  commitToHistory(d.image, `EXPOSE map[${[...all].sort().map((p) => `${p}:{}`).join(" ")}]`, false, false);
}
