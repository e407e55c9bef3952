// The per-stage state the converter carries while lowering instructions (BuildKit's
// dispatchState), the options every dispatch shares, and the step names shown in progress.
import type { Constraints, LLBPlatform, ProxyEnvOpt, State } from "../../../llb/index.js";
import { KilnError, type Platform, type SourceLocation } from "../../../util/index.js";
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
}

export function llbPlatform(p: Platform): LLBPlatform {
  return p.variant ? { os: p.os, architecture: p.architecture, variant: p.variant } : { os: p.os, architecture: p.architecture };
}

export function stateEnv(d: DispatchState): EnvGetter {
  return envsFromSlice(d.state.env());
}

/** `[stage 2/5] RUN …`: steps that make LLB count toward the stage's total. */
export function prefixCommand(d: DispatchState, text: string): string {
  if (d.cmdTotal === 0) return text;
  d.cmdIndex++;
  const width = Math.floor(1 + Math.log10(d.cmdTotal));
  return `[${d.stageName ? `${d.stageName} ` : ""}${String(d.cmdIndex).padStart(width)}/${d.cmdTotal}] ${text}`;
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
