// The per-stage state the converter carries while lowering instructions (BuildKit's
// dispatchState), the options every dispatch shares, and the step names shown in progress.
import type { Constraints, LLBPlatform, ProxyEnvOpt, State } from "../../../llb/index.js";
import { KilnError, formatPlatform, normalizePlatform, parsePlatform, type Platform, type SourceLocation } from "../../../util/index.js";
import type { Command, Stage } from "../instructions/index.js";
import { ShellLex, envsFromSlice, type EnvGetter } from "../shell/index.js";
import type { StageImage } from "./image.js";

export interface BuildArg {
  key: string;
  value: string | undefined;
}

export interface DispatchCommand {
  cmd: Command;
  /** Stages (or images, unregistered) the command reads: COPY --from, RUN --mount from=. */
  sources: (DispatchState | undefined)[];
}

export interface DispatchState {
  stage: Stage;
  /** The base name after global-arg expansion (a stage name, an image or "scratch"). */
  baseName: string;
  /** "" when the Dockerfile has one stage (no stage shown in step names). */
  stageName: string;
  /** The stage's own platform (FROM --platform), or its base's once resolved. */
  platform: Platform | undefined;
  /** The stage this one is built FROM. */
  base: DispatchState | undefined;
  deps: Set<DispatchState>;
  /** An image named by COPY --from or RUN --mount from= rather than a stage. */
  unregistered: boolean;
  /** A named context stands in for the stage: its commands are not dispatched. */
  noinit?: boolean;
  commands: DispatchCommand[];
  state: State;
  image: StageImage;
  buildArgs: BuildArg[];
  /** Context paths the stage's COPY/ADD and mounts read (the context's followpaths). */
  ctxPaths: Set<string>;
  cmdSet: boolean;
  cmdIndex: number;
  cmdTotal: number;
  ignoreCache: boolean;
  /** The base image resolve, started once for every reachable stage. */
  resolving: Promise<void> | undefined;
  /** Set in a multi-platform build: step names start with the platform, `[linux/arm64 2/3]`. */
  prefixPlatform?: { target: Platform };
}

export interface DispatchOpt {
  /** Resolves a state's base image if not done yet (e.g. an image first named by an ONBUILD trigger). */
  ensureResolved(d: DispatchState): Promise<void>;
  metaArgs: BuildArg[];
  buildArgValues: Record<string, string>;
  lex: ShellLex;
  buildContext: State;
  proxyEnv: ProxyEnvOpt | undefined;
  cacheIdNamespace: string;
  locOf(loc: SourceLocation): Constraints["sourceLocation"];
  hostname: string;
  shmSize: number;
  ulimits: { name: string; soft: number; hard: number }[];
}

export function llbPlatform(p: Platform): LLBPlatform {
  return p.variant ? { os: p.os, architecture: p.architecture, variant: p.variant } : { os: p.os, architecture: p.architecture };
}

export function stateEnv(d: DispatchState): EnvGetter {
  return envsFromSlice(d.state.env());
}

/**
 * `[stage 2/5] RUN …`: steps that make LLB count toward the stage's total. In a multi-platform
 * build the platform the step runs on leads (`platform`: default the stage's, else the target's;
 * null for none), with `->arm64` when the stage declares a different TARGET platform in `env`,
 * so a cross-compiling step's name says what it builds for.
 */
export function prefixCommand(d: DispatchState, text: string, where: { platform?: Platform | null; env?: string[] } = {}): string {
  if (d.cmdTotal === 0) return text;
  let out = "[";
  const p = where.platform === undefined ? (d.platform ?? d.prefixPlatform?.target) : where.platform;
  if (d.prefixPlatform && p) out += formatPlatform(p) + formatTargetPlatform(p, platformFromEnv(where.env ?? [])) + " ";
  if (d.stageName) out += `${d.stageName} `;
  d.cmdIndex++;
  const width = Math.floor(1 + Math.log10(d.cmdTotal));
  return `${out}${String(d.cmdIndex).padStart(width)}/${d.cmdTotal}] ${text}`;
}

/** `->arch` (same OS) or `->os/arch` naming the target a step on `base` builds for, if another. */
function formatTargetPlatform(base: Platform, target: Partial<Platform> | undefined): string {
  if (!target) return "";
  const p = normalizePlatform({ os: target.os || base.os, architecture: target.architecture || base.architecture, variant: target.variant });
  if (p.os === base.os && p.architecture !== base.architecture) return `->${p.variant ? `${p.architecture}/${p.variant}` : p.architecture}`;
  if (p.os !== base.os) return `->${formatPlatform(p)}`;
  return "";
}

/** The target platform a stage's env declares (TARGETPLATFORM, or TARGETOS/TARGETARCH/TARGETVARIANT). */
function platformFromEnv(env: string[]): Partial<Platform> | undefined {
  const p: Partial<Platform> = {};
  let set = false;
  for (const e of env) {
    const i = e.indexOf("=");
    const k = i < 0 ? e : e.slice(0, i);
    const v = i < 0 ? "" : e.slice(i + 1);
    if (k === "TARGETPLATFORM") {
      try {
        return parsePlatform(v);
      } catch {
        continue;
      }
    }
    if (k === "TARGETOS") p.os = v;
    else if (k === "TARGETARCH") p.architecture = v;
    else if (k === "TARGETVARIANT") p.variant = v;
    else continue;
    set = true;
  }
  return set ? p : undefined;
}

/**
 * The instruction as progress shows it, keyword upper-cased and variables expanded: RUN keeps
 * quotes and unset variables as written, other instructions go through the stage's lexer.
 */
export function displayName(lex: ShellLex, code: string, env: EnvGetter, keepRaw: boolean): string {
  const l = keepRaw ? new ShellLex(lex.escapeToken, { rawQuotes: true, skipUnsetEnv: true }) : lex;
  let text = code;
  try {
    text = l.processWord(code, env);
  } catch {
    // shown as written
  }
  const sp = text.indexOf(" ");
  return sp < 0 ? text.toUpperCase() : text.slice(0, sp).toUpperCase() + text.slice(sp);
}

export function dfCmd(code: string): Record<string, string> {
  return { "com.docker.dockerfile.v1.command": code };
}

export function errAt(location: SourceLocation | undefined, message: string, cause?: unknown): KilnError {
  return new KilnError("KILN_DOCKERFILE", message, { location, cause });
}
