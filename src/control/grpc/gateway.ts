// moby.buildkit.v1.frontend.LLBBridge for client-driven builds (buildctl build ≥ 0.11, buildx):
// the client sends Control.Solve with no definition and no frontend, then drives the build
// through LLBBridge calls that name it in the `buildkit-controlapi-buildid` metadata. Each such
// solve is a GatewayBuild: a Frontend the controller runs like any other, whose result is what
// the client hands to Return.
import * as grpc from "@grpc/grpc-js";
import { lstat, open, readdir, readlink } from "node:fs/promises";
import path from "node:path";
import { toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { gateway, grpcServiceDefinition, rpcstatus, type ServiceImpl, type fsutilstat, type pb, type workertypes } from "../../api/index.js";
import type { Frontend, FrontendBridge, FrontendOptions, FrontendResult, RefMount } from "../../frontend/index.js";
import { PatternMatcher, mayMatchBelow, noMatchInfo, toGoMode, type MatchInfo } from "../../session/index.js";
import type { ProgressWriter } from "../../solver/types.js";
import { CanceledError, KilnError, errorMessage, isAbortError, secureJoin, throwIfAborted, type Digest, type Platform } from "../../util/index.js";
import { frontendCaps, llbCaps } from "./gateway-caps.js";
import { GatewayRefs, definitionBytes } from "./gateway-refs.js";
import { withErrorDetails } from "./errdetails.js";
import { wireMessage } from "../step-error.js";
import { inputsOf, trackValuelessEntries } from "./nil-inputs.js";

/** The metadata key naming the Control.Solve an LLBBridge call belongs to (client/buildid). */
export const buildIdMetadataKey = "buildkit-controlapi-buildid";
/** How long an LLBBridge call waits for its Control.Solve to register (BuildKit: 3 s). */
export const buildLookupMs = 3000;

type StatInit = MessageInitShape<typeof fsutilstat.StatSchema>;

/** A client's Return{error}: the build fails with the client's status, code, message and details as sent. */
export class ReturnedError extends KilnError {
  constructor(readonly status: rpcstatus.Status) {
    super("KILN_GATEWAY_RETURN", status.message);
  }

  /** The status for the Control.Solve that ends with this error. */
  serviceError(): Partial<grpc.StatusObject> {
    const metadata = new grpc.Metadata();
    if (this.status.details.length > 0) metadata.set("grpc-status-details-bin", Buffer.from(toBinary(rpcstatus.StatusSchema, this.status)));
    return { code: this.status.code === grpc.status.OK ? grpc.status.UNKNOWN : (this.status.code as grpc.status), details: this.status.message, metadata };
  }
}

export interface GatewayBuildOptions {
  /** The solve's progress: warnings from Warn go here. */
  progress: ProgressWriter;
  /** Control.Solve's FrontendInputs, served by Inputs. */
  inputs?: Record<string, pb.Definition>;
}

/**
 * One client-driven build. As a Frontend it waits for the client's Return; meanwhile the
 * LLBBridge calls use the bridge and options the controller gave it.
 */
export class GatewayBuild implements Frontend {
  readonly refs = new GatewayRefs();
  private ctx: { bridge: FrontendBridge; opts: FrontendOptions; signal: AbortSignal } | undefined;
  private readonly ready: Promise<void>;
  private markReady!: () => void;
  private failReady!: (err: Error) => void;
  private returned: { result?: FrontendResult; error?: Error } | undefined;
  private onReturn: (() => void) | undefined;

  constructor(
    readonly id: string,
    private readonly frontends: Record<string, Frontend>,
    private readonly opts: GatewayBuildOptions,
  ) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.markReady = resolve;
      this.failReady = reject;
    });
    // Calls that never come must not leave an unhandled rejection behind.
    this.ready.catch(() => undefined);
  }

  /** Called by the controller: hands out the bridge, then waits for Return or cancellation. */
  async solve(signal: AbortSignal, bridge: FrontendBridge, opts: FrontendOptions): Promise<FrontendResult> {
    this.ctx = { bridge, opts, signal };
    this.markReady();
    await new Promise<void>((resolve, reject) => {
      if (this.returned) return resolve();
      const onAbort = () => reject(signal.reason as Error);
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.onReturn = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
    });
    const r = this.returned!;
    if (r.error) throw r.error;
    return r.result!;
  }

  /** The build ended (or never started its frontend): waiting calls fail with `err`. */
  close(err: Error): void {
    this.failReady(err);
  }

  /** The controller's bridge, once it has started this frontend; `signal` bounds the wait. */
  private async context(signal: AbortSignal) {
    if (!this.ctx) {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal.reason as Error);
        signal.addEventListener("abort", onAbort, { once: true });
        this.ready.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
      });
    }
    const ctx = this.ctx!;
    return { ...ctx, signal: AbortSignal.any([signal, ctx.signal]) };
  }

  async llbSolve(callSignal: AbortSignal, req: gateway.SolveRequest): Promise<MessageInitShape<typeof gateway.SolveResponseSchema>> {
    // Final is how clients without the `return` capability (before BuildKit 0.5) set the result.
    if (req.Final) throw new KilnError("KILN_UNIMPLEMENTED", "Solve with Final (clients without the return capability) is not supported by kilnd: use Return");
    const { bridge, opts, signal } = await this.context(callSignal);
    const def = definitionBytes(req.Definition);
    if (def && req.Frontend) throw new KilnError("KILN_FRONTEND", "cannot solve with both Definition and Frontend specified");
    let fr: FrontendResult;
    if (def) fr = { definition: def, metadata: {} };
    else if (req.Frontend) {
      const fe = this.frontends[req.Frontend];
      if (!fe) throw new KilnError("KILN_FRONTEND", `invalid frontend: ${req.Frontend}`);
      fr = await fe.solve(signal, bridge, { ...opts, attrs: { ...req.FrontendOpt }, ...(Object.keys(req.FrontendInputs).length > 0 ? { inputs: inputsOf(req, req.FrontendInputs) } : {}) });
    } else fr = { metadata: {} };
    if (fr.refs && !req.allowResultReturn) throw new KilnError("KILN_FRONTEND", "solve did not return default result");
    const result = this.refs.toResult(fr, req.allowResultArrayRef, def ? undefined : req.Frontend || undefined);
    if (req.Evaluate) {
      const ids = result.result.case === "ref" ? [result.result.value.id] : result.result.case === "refs" ? Object.values(result.result.value.refs).map((r) => r.id) : result.result.case === "refDeprecated" ? [result.result.value] : result.result.case === "refsDeprecated" ? Object.values(result.result.value.refs) : [];
      await Promise.all(ids.filter((id) => id !== "").map((id) => this.refs.evaluate(id, (d) => bridge.solve(signal, d))));
    }
    return { result, ref: req.allowResultReturn ? "" : result.result.case === "refDeprecated" ? result.result.value : "" };
  }

  /** Solves ref `id` if needed and mounts it; undefined for an empty result. */
  private async mount(callSignal: AbortSignal, id: string): Promise<{ m: RefMount | undefined; signal: AbortSignal }> {
    const { bridge, signal } = await this.context(callSignal);
    if (!this.refs.has(id)) throw new KilnError("KILN_NOT_FOUND", `no such ref: ${id}`);
    if (!bridge.openRef) throw new KilnError("KILN_UNIMPLEMENTED", "reading results is not supported by this engine");
    const handle = await this.refs.evaluate(id, (d) => bridge.solve(signal, d));
    return { m: await bridge.openRef(signal, handle), signal };
  }

  async readFile(callSignal: AbortSignal, req: gateway.ReadFileRequest): Promise<Uint8Array> {
    const { m } = await this.mount(callSignal, req.Ref);
    if (!m) throw new KilnError("KILN_NOT_FOUND", `open ${req.FilePath}: no such file or directory`);
    try {
      const fh = await open(await secureJoin(m.path, req.FilePath), "r");
      try {
        if (!req.Range) return await fh.readFile();
        const len = Number(req.Range.Length);
        const buf = Buffer.alloc(len);
        let n = 0;
        while (n < len) {
          const { bytesRead } = await fh.read(buf, n, len - n, Number(req.Range.Offset) + n);
          if (bytesRead === 0) break;
          n += bytesRead;
        }
        return buf.subarray(0, n);
      } finally {
        await fh.close();
      }
    } catch (err) {
      throw fsError(err, req.FilePath);
    } finally {
      await m[Symbol.asyncDispose]();
    }
  }

  async readDir(callSignal: AbortSignal, req: gateway.ReadDirRequest): Promise<StatInit[]> {
    const { m } = await this.mount(callSignal, req.Ref);
    if (!m) return [];
    try {
      const dir = await secureJoin(m.path, req.DirPath);
      const match = req.IncludePattern ? new PatternMatcher([req.IncludePattern]) : undefined;
      const names = (await readdir(dir)).sort();
      const out: StatInit[] = [];
      for (const name of names) {
        if (match && !(await selects(callSignal, match, path.join(dir, name), name, noMatchInfo))) continue;
        out.push(await fsStat(path.join(dir, name), name));
      }
      return out;
    } catch (err) {
      throw fsError(err, req.DirPath);
    } finally {
      await m[Symbol.asyncDispose]();
    }
  }

  async statFile(callSignal: AbortSignal, req: gateway.StatFileRequest): Promise<StatInit> {
    const { m } = await this.mount(callSignal, req.Ref);
    if (!m) throw new KilnError("KILN_NOT_FOUND", `lstat ${req.Path}: no such file or directory`);
    try {
      const p = await secureJoin(m.path, req.Path);
      return await fsStat(p, path.basename(p));
    } catch (err) {
      throw fsError(err, req.Path);
    } finally {
      await m[Symbol.asyncDispose]();
    }
  }

  async evaluate(callSignal: AbortSignal, id: string): Promise<void> {
    const { bridge, signal } = await this.context(callSignal);
    await this.refs.evaluate(id, (d) => bridge.solve(signal, d));
  }

  async resolveImageConfig(callSignal: AbortSignal, req: gateway.ResolveImageConfigRequest): Promise<MessageInitShape<typeof gateway.ResolveImageConfigResponseSchema>> {
    const { bridge, signal } = await this.context(callSignal);
    if (req.ResolverType !== 0) throw new KilnError("KILN_UNIMPLEMENTED", "resolving image configs from OCI layouts (ResolverType 1) is not supported by kilnd");
    const p = req.Platform;
    const platform: Platform | undefined = p ? { os: p.OS, architecture: p.Architecture, ...(p.Variant ? { variant: p.Variant } : {}) } : undefined;
    const r = await bridge.resolveImageConfig(signal, req.Ref, { platform });
    return { Digest: r.digest, Config: r.config };
  }

  inputs(): Record<string, pb.Definition> {
    return { ...(this.opts.inputs ?? {}) };
  }

  warn(req: gateway.WarnRequest): void {
    const td = new TextDecoder();
    this.opts.progress.write({ warnings: [{ vertex: req.digest as Digest, level: Number(req.level), short: td.decode(req.short), detail: req.detail.map((d) => td.decode(d)) }] });
  }

  /** Return{result} or Return{error}, exactly once. */
  return(req: gateway.ReturnRequest): void {
    if (this.returned) throw new KilnError("KILN_GATEWAY", "gateway result is already set");
    if (req.error) this.returned = { error: new ReturnedError(req.error) };
    else this.returned = { result: this.refs.toFrontendResult(req.result) };
    this.onReturn?.();
  }
}

function fsError(err: unknown, p: string): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new KilnError("KILN_NOT_FOUND", `open ${p}: no such file or directory`, { cause: err });
  if (code === "ENOTDIR") return new KilnError("KILN_NOT_FOUND", `open ${p}: not a directory`, { cause: err });
  return err instanceof Error ? err : new Error(errorMessage(err));
}

/** An fsutil Stat of `p` (not following a final symlink), named `name`. */
/**
 * Whether ReadDir lists an entry under an include pattern. BuildKit walks the directory with
 * fsutil and stops at each entry it lists, so a directory the pattern does not select itself is
 * listed when something inside it is selected (a pattern for `.txt` files at any depth lists
 * `sub` when `sub/a.txt` exists).
 */
async function selects(signal: AbortSignal, match: PatternMatcher, abs: string, rel: string, parent: MatchInfo): Promise<boolean> {
  throwIfAborted(signal);
  const { matched, info } = match.matchesUsingParentResults(rel, parent);
  if (matched) return true;
  const st = await lstat(abs).catch(() => undefined);
  if (!st?.isDirectory() || !mayMatchBelow(match, rel, false)) return false;
  const names = await readdir(abs).catch(() => []);
  for (const name of names.sort()) {
    if (await selects(signal, match, path.join(abs, name), `${rel}/${name}`, info)) return true;
  }
  return false;
}

async function fsStat(p: string, name: string): Promise<StatInit> {
  const st = await lstat(p, { bigint: true });
  const dev = st.isBlockDevice() || st.isCharacterDevice();
  return {
    path: name,
    mode: toGoMode(Number(st.mode)),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: st.isFile() ? st.size : 0n,
    modTime: st.mtimeNs,
    linkname: st.isSymbolicLink() ? await readlink(p) : "",
    // glibc's major()/minor() split of st_rdev.
    devmajor: dev ? ((st.rdev >> 8n) & 0xfffn) | ((st.rdev >> 32n) & ~0xfffn) : 0n,
    devminor: dev ? (st.rdev & 0xffn) | ((st.rdev >> 12n) & ~0xffn) : 0n,
  };
}

export interface GatewayServiceOptions {
  /** The frontends LLBBridge/Solve{Frontend} may name. */
  frontends: Record<string, Frontend>;
  /** The worker as Ping describes it (id, labels, platforms). */
  worker: () => MessageInitShape<typeof workertypes.WorkerRecordSchema>;
  log?: (msg: string) => void;
}

/** Registered builds by id, and the LLBBridge service that routes calls to them (control/gateway). */
export class GatewayService {
  private readonly builds = new Map<string, GatewayBuild>();
  private readonly waiting = new Map<string, Set<() => void>>();
  private readonly shutdown = new AbortController();

  constructor(private readonly opts: GatewayServiceOptions) {}

  /** Registers the build of Control.Solve `id`; the caller closes it with `end` when the solve ends. */
  start(id: string, o: GatewayBuildOptions): GatewayBuild {
    if (this.builds.has(id)) throw new KilnError("KILN_SOLVE", `build ID ${id} exists`);
    const b = new GatewayBuild(id, this.opts.frontends, o);
    this.builds.set(id, b);
    for (const wake of this.waiting.get(id) ?? []) wake();
    this.waiting.delete(id);
    return b;
  }

  end(b: GatewayBuild, err: Error = new KilnError("KILN_NO_JOB", `build ${b.id} has ended`)): void {
    b.close(err);
    if (this.builds.get(b.id) === b) this.builds.delete(b.id);
  }

  close(): void {
    this.shutdown.abort(new CanceledError("daemon shutting down"));
    for (const b of this.builds.values()) b.close(new CanceledError("daemon shutting down"));
    this.builds.clear();
  }

  /** The build an LLBBridge call belongs to, waiting briefly for its Control.Solve to arrive. */
  async lookup(signal: AbortSignal, md: grpc.Metadata, waitMs = buildLookupMs): Promise<GatewayBuild> {
    const ids = md.get(buildIdMetadataKey);
    const id = ids.length === 1 ? String(ids[0]) : "";
    if (!id) throw new KilnError("KILN_GATEWAY", "no buildid found in context");
    const found = this.builds.get(id);
    if (found) return found;
    return new Promise<GatewayBuild>((resolve, reject) => {
      let set = this.waiting.get(id);
      if (!set) this.waiting.set(id, (set = new Set()));
      const cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        set.delete(wake);
        if (set.size === 0 && this.waiting.get(id) === set) this.waiting.delete(id);
      };
      const wake = () => {
        cleanup();
        const b = this.builds.get(id);
        if (b) resolve(b);
        else reject(new KilnError("KILN_NO_JOB", `no such job ${id}`));
      };
      const onAbort = () => {
        cleanup();
        reject(signal.reason as Error);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new KilnError("KILN_NO_JOB", `no such job ${id}`));
      }, waitMs);
      set.add(wake);
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  register(server: grpc.Server): void {
    const unimplemented = (what: string) => () => Promise.reject(new KilnError("KILN_UNIMPLEMENTED", `${what} is not supported by kilnd: interactive containers (gateway.exec) are not implemented`));
    const def = grpcServiceDefinition(gateway.LLBBridge);
    trackValuelessEntries(def, "solve", gateway.SolveRequestSchema.field.FrontendInputs.number);
    const impl: Partial<ServiceImpl<typeof gateway.LLBBridge>> = {
      ping: (call, cb) => void this.unary(call, cb, "Ping", async () => ({ FrontendAPICaps: frontendCaps(), LLBCaps: llbCaps(), Workers: [this.opts.worker()] })),
      solve: (call, cb) => void this.unary(call, cb, "Solve", (b, s) => b.llbSolve(s, call.request)),
      readFile: (call, cb) => void this.unary(call, cb, "ReadFile", async (b, s) => ({ Data: await b.readFile(s, call.request) })),
      readDir: (call, cb) => void this.unary(call, cb, "ReadDir", async (b, s) => ({ entries: await b.readDir(s, call.request) })),
      statFile: (call, cb) => void this.unary(call, cb, "StatFile", async (b, s) => ({ stat: await b.statFile(s, call.request) })),
      evaluate: (call, cb) => void this.unary(call, cb, "Evaluate", async (b, s) => (await b.evaluate(s, call.request.Ref), {})),
      resolveImageConfig: (call, cb) => void this.unary(call, cb, "ResolveImageConfig", (b, s) => b.resolveImageConfig(s, call.request)),
      inputs: (call, cb) => void this.unary(call, cb, "Inputs", async (b) => ({ Definitions: b.inputs() })),
      warn: (call, cb) => void this.unary(call, cb, "Warn", async (b) => (b.warn(call.request), {})),
      return: (call, cb) => void this.unary(call, cb, "Return", async (b) => (b.return(call.request), {})),
      newContainer: (call, cb) => void this.unary(call, cb, "NewContainer", unimplemented("NewContainer")),
      releaseContainer: (call, cb) => void this.unary(call, cb, "ReleaseContainer", unimplemented("ReleaseContainer")),
      execProcess: (call) => call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "ExecProcess is not supported by kilnd: interactive containers (gateway.exec) are not implemented" }),
    };
    server.addService(def, impl as grpc.UntypedServiceImplementation);
  }

  /** One LLBBridge call: find the build, run `fn` until the client cancels or the daemon stops. */
  private async unary<Req, Res>(call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>, method: string, fn: (b: GatewayBuild, signal: AbortSignal) => Promise<Res>): Promise<void> {
    const ac = new AbortController();
    const onCancel = () => ac.abort(new CanceledError("client canceled the call"));
    call.on("cancelled", onCancel);
    const signal = AbortSignal.any([ac.signal, this.shutdown.signal]);
    try {
      let b: GatewayBuild;
      try {
        b = await this.lookup(signal, call.metadata);
      } catch (err) {
        // As BuildKit's forwarder words it, so clients see the same message.
        throw isAbortError(err) ? err : new KilnError("KILN_NOT_FOUND", `forwarding ${method}: ${errorMessage(err)}`, { cause: err });
      }
      cb(null, await fn(b, signal));
    } catch (err) {
      if (!isAbortError(err)) this.opts.log?.(`LLBBridge/${method} returned error: ${errorMessage(err)}`);
      cb(gatewayServiceError(err));
    } finally {
      call.removeListener("cancelled", onCancel);
    }
  }
}

/** Errors of LLBBridge calls as gRPC statuses (unknown refs as NOT_FOUND, unsupported as UNIMPLEMENTED). */
export function gatewayServiceError(err: unknown): Partial<grpc.StatusObject> {
  return err instanceof ReturnedError ? err.serviceError() : withErrorDetails(gatewayStatus(err), err);
}

function gatewayStatus(err: unknown): Partial<grpc.StatusObject> {
  if (isAbortError(err)) return { code: grpc.status.CANCELLED, details: "context canceled" };
  if (err instanceof KilnError && (err.code === "KILN_NO_JOB" || err.code === "KILN_NOT_FOUND")) return { code: grpc.status.NOT_FOUND, details: wireMessage(err) };
  if (err instanceof KilnError && err.code === "KILN_UNIMPLEMENTED") return { code: grpc.status.UNIMPLEMENTED, details: wireMessage(err) };
  if (err instanceof KilnError && (err.code === "KILN_FRONTEND" || err.code === "KILN_FLAGS")) return { code: grpc.status.INVALID_ARGUMENT, details: wireMessage(err) };
  return { code: grpc.status.UNKNOWN, details: wireMessage(err) };
}
