// Dockerfile → LLB, as BuildKit's dockerfile2llb does it: stages reachable from the target become
// LLB states; the target's image config (env, cmd, history, …) comes back beside the state.
import path from "node:path";
import { State, FileAction, image as imageSource, local, ownerFromString, type LLBPlatform, type Constraints, type MountOpt, type SourceMapInput } from "../../../llb/index.js";
import type { ContainerConfig, HistoryEntry, ImageConfig } from "../../../api/oci.js";
import { KilnError, formatPlatform, normalizePlatform, parsePlatform, type Platform, type SourceLocation } from "../../../util/index.js";
import { parse } from "../parser/index.js";
import { ShellLex, envsFromSlice } from "../shell/index.js";
import { expandCommand, parseStages, findStage } from "../instructions/index.js";
import type { ArgCommand, Command, CopyCommand, AddCommand, RunCommand, Stage, ShellDependantCmdLine } from "../instructions/index.js";

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
  sessionId: string;
  excludePatterns: string[];
  noCache: boolean;
  resolveImageConfig(ref: string, platform: Platform): Promise<{ ref: string; digest: string; config: Uint8Array }>;
}

export interface ConvertResult {
  state: State;
  image: Partial<ImageConfig>;
  source: SourceMapInput;
}

const defaultShell = ["/bin/sh", "-c"];
const defaultPathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const historyComment = "buildkit.dockerfile.v0";

interface StageState {
  index: number;
  stage: Stage;
  name: string;
  state: State;
  image: Partial<ImageConfig> & { config: ContainerConfig };
  /** Build args declared in this stage, in order, with their values. */
  args: Map<string, string | undefined>;
  cmdSet: boolean;
  platform: Platform;
  deps: Set<number>;
  dispatched: boolean;
  /** Step numbering for progress names: FROM is 1. */
  total: number;
}

function llbPlatform(p: Platform): LLBPlatform {
  return p.variant ? { os: p.os, architecture: p.architecture, variant: p.variant } : { os: p.os, architecture: p.architecture };
}

function platformArgs(build: Platform, target: Platform): Record<string, string> {
  return {
    BUILDPLATFORM: formatPlatform(build),
    BUILDOS: build.os,
    BUILDARCH: build.architecture,
    BUILDVARIANT: build.variant ?? "",
    TARGETPLATFORM: formatPlatform(target),
    TARGETOS: target.os,
    TARGETARCH: target.architecture,
    TARGETVARIANT: target.variant ?? "",
  };
}

function errAt(location: SourceLocation, message: string, cause?: unknown): KilnError {
  return new KilnError("KILN_DOCKERFILE", message, { location, cause });
}

export async function convertDockerfile(_signal: AbortSignal, opts: ConvertOptions): Promise<ConvertResult> {
  const parsed = parse(opts.dockerfile, opts.filename);
  const { metaArgs, stages } = parseStages(parsed, parsed.source);
  if (stages.length === 0) throw new KilnError("KILN_DOCKERFILE", "the Dockerfile has no build stages (no FROM instruction)");
  const lex = new ShellLex(parsed.escapeToken);
  const source: SourceMapInput = { filename: opts.filename, data: opts.dockerfile };
  const locOf = (loc: SourceLocation): Constraints["sourceLocation"] => ({
    sourceIndex: 0,
    ranges: [{ start: { line: loc.startLine, character: 0 }, end: { line: loc.endLine, character: 0 } }],
  });

  // Global args: defaults, overridden by --build-arg; the platform args are always there.
  const platArgs = platformArgs(opts.buildPlatform, opts.targetPlatform);
  const globalArgs = new Map<string, string | undefined>();
  for (const [k, v] of Object.entries(platArgs)) globalArgs.set(k, v);
  for (const cmd of metaArgs) {
    for (const a of cmd.args) {
      const env = argEnv(globalArgs);
      let v = a.value === undefined ? undefined : lex.processWord(a.value, env);
      if (opts.buildArgs[a.key] !== undefined) v = opts.buildArgs[a.key];
      globalArgs.set(a.key, v);
    }
  }

  // Pick the target stage.
  let targetIndex = stages.length - 1;
  if (opts.target) {
    targetIndex = findStage(stages, opts.target.toLowerCase());
    if (targetIndex < 0) throw new KilnError("KILN_DOCKERFILE_TARGET", `failed to reach build target ${opts.target} in Dockerfile`);
  }

  const states: StageState[] = stages.map((stage, index) => ({
    index,
    stage,
    name: stage.name ?? `stage-${index}`,
    state: State.scratch(),
    image: emptyImage(opts.targetPlatform),
    args: new Map(),
    cmdSet: false,
    platform: opts.targetPlatform,
    deps: new Set(),
    dispatched: false,
    total: stage.commands.length + 1,
  }));
  const stageByName = (name: string, before: number): number => {
    const lower = name.toLowerCase();
    for (let i = 0; i < before; i++) if (stages[i]!.name === lower) return i;
    if (/^\d+$/.test(name)) {
      const n = Number(name);
      if (n < before) return n;
    }
    return -1;
  };

  // Resolve base names and dependencies, then walk only what the target needs.
  const baseNames: string[] = [];
  for (const st of states) {
    const env = argEnv(globalArgs);
    let base: string;
    try {
      base = lex.processWord(st.stage.baseName, env);
    } catch (err) {
      throw errAt(st.stage.location, (err as Error).message, err);
    }
    if (base === "") throw errAt(st.stage.location, "base name (" + st.stage.baseName + ") should not be blank");
    baseNames.push(base);
    if (st.stage.platform) {
      const p = lex.processWord(st.stage.platform, env);
      try {
        st.platform = normalizePlatform(parsePlatform(p));
      } catch (err) {
        throw errAt(st.stage.location, `failed to parse platform ${p}: ${(err as Error).message}`, err);
      }
    }
    const dep = stageByName(base, st.index);
    if (dep >= 0) st.deps.add(dep);
    for (const cmd of st.stage.commands) {
      if (cmd.kind === "copy" && cmd.from) {
        const d = stageByName(cmd.from, st.index);
        if (d >= 0) st.deps.add(d);
        else if (stageByName(cmd.from, stages.length) >= 0) throw errAt(cmd.location, `failed to resolve stage ${cmd.from}: the stage is defined later in the Dockerfile`);
      }
      if (cmd.kind === "run") {
        for (const spec of cmd.mountSpecs) {
          const m = /(?:^|,)from=([^,]+)/.exec(spec);
          if (m) {
            const d = stageByName(m[1]!, st.index);
            if (d >= 0) st.deps.add(d);
          }
        }
      }
    }
  }
  const needed = new Set<number>();
  const visit = (i: number) => {
    if (needed.has(i)) return;
    needed.add(i);
    for (const d of states[i]!.deps) visit(d);
  };
  visit(targetIndex);

  // Resolve the base images of the needed stages concurrently.
  const images = new Map<number, Promise<{ ref: string; digest: string; config: Partial<ImageConfig> } | undefined>>();
  for (const i of needed) {
    const st = states[i]!;
    const base = baseNames[i]!;
    if (stageByName(base, i) >= 0 || base === "scratch") continue;
    images.set(
      i,
      opts.resolveImageConfig(base, st.platform).then((r) => ({ ref: r.ref, digest: r.digest, config: JSON.parse(Buffer.from(r.config).toString("utf8")) as Partial<ImageConfig> })),
    );
  }
  // Surface a failed resolve only if it matters, with the FROM line.
  for (const [i, p] of images) {
    p.catch(() => {});
    images.set(
      i,
      p.catch((err: unknown) => {
        throw errAt(states[i]!.stage.location, err instanceof Error ? err.message : String(err), err);
      }),
    );
  }

  const contextSource = local(opts.contextName, {
    sessionId: opts.sessionId,
    sharedKeyHint: opts.contextName,
    excludePatterns: opts.excludePatterns.length > 0 ? opts.excludePatterns : undefined,
    customName: `[internal] load build context`,
  });

  const order = [...needed].sort((a, b) => a - b);
  for (const i of order) {
    const st = states[i]!;
    const base = baseNames[i]!;
    const depIndex = stageByName(base, i);
    const prefix = (step: number) => `[${st.name} ${step}/${st.total}]`;
    if (depIndex >= 0) {
      const dep = states[depIndex]!;
      st.state = dep.state;
      st.image = cloneImage(dep.image);
      st.cmdSet = dep.cmdSet;
    } else if (base === "scratch") {
      st.state = State.scratch().platform(llbPlatform(st.platform));
    } else {
      const img = (await images.get(i))!;
      if (!img) throw errAt(st.stage.location, `failed to resolve ${base}`);
      const cfg = img.config;
      st.image = { ...cloneImage(withConfig(cfg)), architecture: cfg.architecture ?? st.platform.architecture, os: cfg.os ?? st.platform.os };
      st.state = imageSource(img.ref.includes("@") ? img.ref.slice(0, img.ref.indexOf("@")) : base, {
        platform: llbPlatform(st.platform),
        resolvedDigest: img.digest,
        customName: `${prefix(1)} FROM ${img.ref}`,
        sourceLocation: locOf(st.stage.location),
      });
      st.cmdSet = false;
    }
    if (depIndex < 0) {
      // A fresh base: the state starts from the image's env and working dir (scratch has a PATH).
      if (!(st.image.config.Env ?? []).some((e) => e.startsWith("PATH="))) st.image.config.Env = [defaultPathEnv, ...(st.image.config.Env ?? [])];
      let s = st.state;
      for (const e of st.image.config.Env ?? []) {
        const eq = e.indexOf("=");
        s = eq < 0 ? s.addEnv(e, "") : s.addEnv(e.slice(0, eq), e.slice(eq + 1));
      }
      if (st.image.config.WorkingDir) s = s.dir(st.image.config.WorkingDir);
      st.state = s.platform(llbPlatform(st.platform));
    }

    for (const [ci, raw] of st.stage.commands.entries()) {
      const step = ci + 2;
      const env = stageEnv(st, globalArgs, platArgs);
      const expand = (w: string) => lex.processWord(w, env);
      let cmd: Command;
      try {
        cmd = raw.kind === "arg" ? raw : expandCommand(raw, expand);
      } catch (err) {
        throw errAt(raw.location, (err as Error).message, err);
      }
      const c: Constraints = { customName: `${prefix(step)} ${raw.code}`, sourceLocation: locOf(raw.location), ignoreCache: opts.noCache || undefined };
      try {
        dispatch(st, cmd, c, { states, stageByName, contextSource, opts, lex, env, globalArgs, platArgs, locOf });
      } catch (err) {
        if (err instanceof KilnError && err.location) throw err;
        throw errAt(raw.location, (err as Error).message, err);
      }
    }
    st.dispatched = true;
  }

  const target = states[targetIndex]!;
  const img = target.image;
  for (const [k, v] of Object.entries(opts.labels)) (img.config.Labels ??= {})[k] = v;
  img.architecture = target.platform.architecture;
  img.os = target.platform.os;
  if (target.platform.variant) img.variant = target.platform.variant;
  else delete img.variant;
  return { state: target.state, image: img, source };
}

interface DispatchCtx {
  states: StageState[];
  stageByName(name: string, before: number): number;
  contextSource: State;
  opts: ConvertOptions;
  lex: ShellLex;
  env: ReturnType<typeof envsFromSlice>;
  globalArgs: Map<string, string | undefined>;
  platArgs: Record<string, string>;
  locOf(loc: SourceLocation): Constraints["sourceLocation"];
}

function dispatch(st: StageState, cmd: Command, c: Constraints, ctx: DispatchCtx): void {
  const cfg = st.image.config;
  switch (cmd.kind) {
    case "env": {
      for (const kv of cmd.env) {
        st.state = st.state.addEnv(kv.key, kv.value);
        setEnv(cfg, kv.key, kv.value);
      }
      history(st, `ENV ${cmd.env.map((kv) => `${kv.key}=${kv.value}`).join(" ")}`, false);
      return;
    }
    case "arg": {
      for (const a of cmd.args) {
        let v: string | undefined;
        if (a.value !== undefined) v = ctx.lex.processWord(a.value, ctx.env);
        if (ctx.opts.buildArgs[a.key] !== undefined) v = ctx.opts.buildArgs[a.key];
        else if (v === undefined && ctx.globalArgs.has(a.key)) v = ctx.globalArgs.get(a.key);
        st.args.set(a.key, v);
      }
      history(st, `ARG ${cmd.args.map((a) => (a.value === undefined ? a.key : `${a.key}=${a.value}`)).join(" ")}`, false);
      return;
    }
    case "label": {
      cfg.Labels ??= {};
      for (const kv of cmd.labels) cfg.Labels[kv.key] = kv.value;
      history(st, `LABEL ${cmd.labels.map((kv) => `${kv.key}=${kv.value}`).join(" ")}`, false);
      return;
    }
    case "maintainer":
      st.image.author = cmd.maintainer;
      history(st, `MAINTAINER ${cmd.maintainer}`, false);
      return;
    case "workdir": {
      const wd = joinDir(st.state.getDir(), cmd.path);
      st.state = st.state.dir(wd);
      cfg.WorkingDir = wd;
      if (wd !== "/") {
        const owner = cfg.User ? ownerFromString(cfg.User) : undefined;
        st.state = st.state.file(FileAction.mkdir(wd, 0o755, { makeParents: true, owner }), c);
      }
      history(st, `WORKDIR ${wd}`, wd !== "/");
      return;
    }
    case "user":
      st.state = st.state.user(cmd.user);
      cfg.User = cmd.user;
      history(st, `USER ${cmd.user}`, false);
      return;
    case "expose": {
      cfg.ExposedPorts ??= {};
      const ports: string[] = [];
      for (const p of cmd.ports) {
        for (const word of ctx.lex.processWords(p, ctx.env)) {
          // docker/go-connections' ParsePortSpecs: a range stands for each port in it.
          const [num, proto = "tcp"] = word.toLowerCase().split("/") as [string, string | undefined];
          const range = /^(\d+)-(\d+)$/.exec(num);
          const nums = range ? Array.from({ length: Math.max(0, Number(range[2]) - Number(range[1]) + 1) }, (_, i) => String(Number(range[1]) + i)) : [num];
          for (const n of nums) {
            cfg.ExposedPorts[`${n}/${proto}`] = {};
            ports.push(`${n}/${proto}`);
          }
        }
      }
      // Go prints the map sorted by key.
      history(st, `EXPOSE map[${[...new Set(ports)].sort().map((p) => `${p}:{}`).join(" ")}]`, false);
      return;
    }
    case "cmd": {
      cfg.Cmd = commandArgs(cmd, cfg);
      cfg.ArgsEscaped = true;
      st.cmdSet = true;
      history(st, `CMD ${goQuoteList(cfg.Cmd)}`, false);
      return;
    }
    case "entrypoint": {
      cfg.Entrypoint = commandArgs(cmd, cfg);
      if (!st.cmdSet) cfg.Cmd = null;
      history(st, `ENTRYPOINT ${goQuoteList(cfg.Entrypoint)}`, false);
      return;
    }
    case "shell":
      cfg.Shell = cmd.shell;
      history(st, `SHELL [${cmd.shell.join(" ")}]`, false);
      return;
    case "stopsignal":
      cfg.StopSignal = cmd.signal;
      history(st, `STOPSIGNAL ${cmd.signal}`, false);
      return;
    case "volume":
      cfg.Volumes ??= {};
      for (const v of cmd.volumes) cfg.Volumes[v] = {};
      history(st, `VOLUME [${cmd.volumes.join(" ")}]`, false);
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
      history(st, `HEALTHCHECK &{${goQuoteList(h.test)} ${JSON.stringify(goDuration(h.interval ?? 0))} ${JSON.stringify(goDuration(h.timeout ?? 0))} ${JSON.stringify(goDuration(h.startPeriod ?? 0))} ${goQuoteRune(h.retries ?? 0)}}`, false);
      return;
    }
    case "onbuild":
      // BuildKit records ONBUILD in the config only, not in the history.
      (cfg.OnBuild ??= []).push(cmd.expression);
      return;
    case "run":
      return dispatchRun(st, cmd, c, ctx);
    case "copy":
    case "add":
      return dispatchCopy(st, cmd, c, ctx);
  }
}

function dispatchRun(st: StageState, cmd: RunCommand, c: Constraints, ctx: DispatchCtx): void {
  const cfg = st.image.config;
  if (cmd.files.length > 0) throw new KilnError("KILN_UNSUPPORTED", "RUN with heredocs is not supported yet");
  const args = cmd.prependShell ? [...(cfg.Shell ?? defaultShell), cmd.cmdLine.join(" ")] : cmd.cmdLine;
  // Declared build args reach the process as env, unless ENV already defines them.
  const envNames = new Set(st.state.env().map((e) => e.slice(0, e.indexOf("="))));
  const argPairs: string[] = [];
  for (const [k, v] of st.args) if (v !== undefined && !envNames.has(k)) argPairs.push(`${k}=${v}`);
  const env = [...st.state.env(), ...argPairs];
  const mounts = runMounts(st, cmd, c, ctx);
  const network = cmd.network === "none" ? "none" : cmd.network === "host" ? "host" : undefined;
  if (cmd.network === "host" || cmd.security === "insecure") {
    throw new KilnError("KILN_ENTITLEMENT", `RUN --${cmd.network === "host" ? "network=host" : "security=insecure"} requires an entitlement that is not granted`);
  }
  const exec = st.state.run({ ...c, args, env, user: cfg.User ?? "", mounts, ...(network ? { network } : {}) });
  st.state = exec.root();
  const prefix = argPairs.length > 0 ? `|${argPairs.length} ${argPairs.join(" ")} ` : "";
  history(st, `RUN ${prefix}${args.join(" ")} # buildkit`, true);
}

/** RUN --mount=…: bind, cache and tmpfs mounts lowered to LLB as BuildKit's dockerfile2llb does. */
function runMounts(st: StageState, cmd: RunCommand, c: Constraints, ctx: DispatchCtx): MountOpt[] {
  const out: MountOpt[] = [];
  for (const m of cmd.mounts) {
    if (m.type === "secret" || m.type === "ssh") throw new KilnError("KILN_UNSUPPORTED", `RUN --mount=type=${m.type} is not supported yet`);
    let src: State | undefined;
    // A cache mount without from= starts empty; a bind without from= shows the build context.
    if (m.from) {
      const i = ctx.stageByName(m.from, st.index);
      src = i >= 0 ? ctx.states[i]!.state : imageSource(m.from, { platform: llbPlatform(st.platform) });
    } else if (m.type === "bind") src = ctx.contextSource;
    else src = State.scratch();
    const opt: MountOpt = { dest: "", type: m.type === "tmpfs" ? "tmpfs" : m.type === "cache" ? "cache" : "bind" };
    if (m.type === "tmpfs") {
      src = undefined;
      if (m.sizeLimit > 0) opt.tmpfsSize = m.sizeLimit;
    }
    if (m.readOnly) opt.readonly = true;
    else if (m.type === "bind") opt.noOutput = true;
    if (m.type === "cache") {
      const id = m.cacheId || path.posix.normalize(m.target);
      opt.cacheId = `${ctx.opts.buildArgs.BUILDKIT_CACHE_MOUNT_NS ?? ""}/${id}`;
      opt.sharing = m.cacheSharing ?? "shared";
    }
    const target = m.target.startsWith("/") ? path.posix.normalize(m.target) : path.posix.join("/", st.state.getDir(), m.target);
    if (target === "/") throw new KilnError("KILN_DOCKERFILE", `invalid mount target "${m.target}"`);
    opt.dest = target;
    const selector = path.posix.join("/", m.source);
    if (selector !== "/") opt.selector = selector;
    else if (m.uid !== undefined || m.gid !== undefined || m.mode !== undefined) {
      // Ownership and mode of a mount's root come from a small directory made for it.
      src = (src ?? State.scratch()).file(FileAction.mkdir("/cache", m.mode ?? 0o755, { owner: { user: { id: m.uid ?? 0 }, group: { id: m.gid ?? 0 } } }), {
        customName: "[internal] settings cache mount permissions",
        ...(c.ignoreCache ? { ignoreCache: true } : {}),
      });
      opt.selector = "/cache";
    }
    if (src) opt.source = src;
    out.push(opt);
  }
  return out;
}

function dispatchCopy(st: StageState, cmd: CopyCommand | AddCommand, c: Constraints, ctx: DispatchCtx): void {
  const cfg = st.image.config;
  let src = ctx.contextSource;
  if (cmd.kind === "copy" && cmd.from) {
    const i = ctx.stageByName(cmd.from, st.index);
    if (i >= 0) src = ctx.states[i]!.state;
    else src = imageSource(cmd.from, { platform: llbPlatform(st.platform) });
  }
  for (const p of cmd.sourcePaths) {
    if (cmd.kind === "add" && /^(https?:\/\/|git@)/.test(p)) throw new KilnError("KILN_UNSUPPORTED", `ADD of remote URLs is not supported yet: ${p}`);
  }
  if (cmd.sourceContents.length > 0) throw new KilnError("KILN_UNSUPPORTED", `${cmd.kind.toUpperCase()} from heredocs is not supported yet`);
  if (cmd.sourcePaths.length === 0) throw new KilnError("KILN_DOCKERFILE", `${cmd.kind.toUpperCase()} requires at least two arguments`);
  let mode: number | undefined;
  if (cmd.chmod) {
    if (!/^[0-7]{1,4}$/.test(cmd.chmod)) throw new KilnError("KILN_DOCKERFILE", `invalid chmod parameter ${cmd.chmod}; it should be an octal mode`);
    mode = parseInt(cmd.chmod, 8);
  }
  let dest = joinDir(st.state.getDir(), cmd.destPath);
  if (cmd.destPath === "." || cmd.destPath === "" || cmd.destPath.endsWith("/")) dest = dest === "/" ? "/" : `${dest}/`;
  const owner = cmd.chown ? ownerFromString(cmd.chown) : undefined;
  let action: FileAction | undefined;
  for (const p of cmd.sourcePaths) {
    const opts = {
      owner,
      mode,
      followSymlinks: true,
      copyDirContentsOnly: true,
      attemptUnpack: cmd.kind === "add",
      createDestPath: true,
      allowWildcard: true,
      allowEmptyWildcard: true,
      excludePatterns: cmd.excludePatterns.length > 0 ? cmd.excludePatterns : undefined,
    };
    const srcPath = "/" + p.replace(/^\/+/, "");
    action = action ? action.copy(src, srcPath, dest, opts) : FileAction.copy(src, srcPath, dest, opts);
  }
  st.state = st.state.file(action!, c);
  void cfg;
  // As BuildKit: the instruction, its (expanded) sources and destination, no flags.
  history(st, `${cmd.kind.toUpperCase()} ${[...cmd.sourcePaths, cmd.destPath].join(" ")} # buildkit`, true);
}

function commandArgs(cmd: ShellDependantCmdLine, cfg: ContainerConfig): string[] {
  return cmd.prependShell ? [...(cfg.Shell ?? defaultShell), cmd.cmdLine.join(" ")] : [...cmd.cmdLine];
}

function joinDir(cwd: string, p: string): string {
  const joined = p.startsWith("/") ? p : `${cwd.replace(/\/$/, "")}/${p}`;
  const parts: string[] = [];
  for (const seg of joined.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") parts.pop();
    else parts.push(seg);
  }
  return "/" + parts.join("/");
}

function setEnv(cfg: ContainerConfig, k: string, v: string): void {
  const env = (cfg.Env ??= []);
  const i = env.findIndex((e) => e.slice(0, e.indexOf("=") < 0 ? e.length : e.indexOf("=")) === k);
  if (i >= 0) env[i] = `${k}=${v}`;
  else env.push(`${k}=${v}`);
}

function history(st: StageState, createdBy: string, withLayer: boolean): void {
  const h: HistoryEntry = { created_by: createdBy, comment: historyComment };
  if (!withLayer) h.empty_layer = true;
  (st.image.history ??= []).push(h);
}

/** Go's `%q` of a string slice: ["a" "b"]. */
function goQuoteList(xs: string[] | null | undefined): string {
  return `[${(xs ?? []).map((x) => JSON.stringify(x)).join(" ")}]`;
}

function argEnv(args: Map<string, string | undefined>) {
  const list: string[] = [];
  for (const [k, v] of args) if (v !== undefined) list.push(`${k}=${v}`);
  return envsFromSlice(list);
}

function stageEnv(st: StageState, globalArgs: Map<string, string | undefined>, platArgs: Record<string, string>) {
  void globalArgs;
  void platArgs;
  // ENV always wins over ARG of the same name.
  const list: string[] = [];
  for (const [k, v] of st.args) if (v !== undefined) list.push(`${k}=${v}`);
  list.push(...st.state.env());
  return envsFromSlice(list);
}

function emptyImage(p: Platform): StageState["image"] {
  const img: StageState["image"] = { architecture: p.architecture, os: p.os, config: { Env: [defaultPathEnv], WorkingDir: "/" }, rootfs: { type: "layers", diff_ids: [] } };
  if (p.variant) img.variant = p.variant;
  return img;
}

function withConfig(cfg: Partial<ImageConfig>): StageState["image"] {
  return { ...cfg, config: cfg.config ?? {} } as StageState["image"];
}

function cloneImage(img: StageState["image"]): StageState["image"] {
  const c = structuredClone(img);
  delete c.rootfs;
  delete (c as Record<string, unknown>).created;
  return c;
}

export type { ArgCommand };

/** Go's time.Duration String() for a count of nanoseconds: "5s", "1m30s", "1.5s", "0s". */
function goDuration(ns: number): string {
  if (ns === 0) return "0s";
  const neg = ns < 0;
  let u = Math.abs(ns);
  let out: string;
  if (u < 1e9) {
    out = u < 1e3 ? `${u}ns` : u < 1e6 ? `${trimZeros(u / 1e3)}µs` : `${trimZeros(u / 1e6)}ms`;
  } else {
    const h = Math.floor(u / 3600e9);
    u -= h * 3600e9;
    const m = Math.floor(u / 60e9);
    u -= m * 60e9;
    out = `${h > 0 ? `${h}h` : ""}${h > 0 || m > 0 ? `${m}m` : ""}${trimZeros(u / 1e9)}s`;
  }
  return neg ? `-${out}` : out;
}

function trimZeros(n: number): string {
  return n.toFixed(9).replace(/\.?0+$/, "");
}

/** Go's %q of an integer: a quoted character literal ('\x04', 'A'). */
function goQuoteRune(n: number): string {
  const named: Record<number, string> = { 7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 39: "\\'", 92: "\\\\" };
  if (named[n]) return `'${named[n]}'`;
  if (n >= 32 && n < 127) return `'${String.fromCharCode(n)}'`;
  if (n < 128) return `'\\x${n.toString(16).padStart(2, "0")}'`;
  return `'${String.fromCodePoint(n)}'`;
}
