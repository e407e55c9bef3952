// moby.buildkit.v1.Control (and grpc.health.v1.Health) on grpc-js: thin adapters from the API's
// messages to the Controller, the garbage collector and the session manager.
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { addService, control, grpcServiceDefinition, health, pb, type ServiceImpl } from "../../api/index.js";
import { parseFilters, type GarbageCollector, type PruneOptions } from "../../cache/index.js";
import type { ExportOutputs } from "../../exporter/index.js";
import { DiskLocalDirs, type RemoteSession, type Session, type SessionManager, type SessionCall } from "../../session/index.js";
import type { Controller, SolveRequest } from "../controller.js";
import { CanceledError, KilnError, errorMessage, isAbortError } from "../../util/index.js";
import { gcPolicyRecords, ociWorkerLabels, splitEvent, statusResponse, usageRecord, workerRecord, type BuildkitVersionInfo } from "./convert.js";
import { JobRegistry } from "./jobs.js";
import { withErrorDetails } from "./errdetails.js";
import { wireMessage } from "../step-error.js";
import { BuildHistory } from "./history.js";
import { inputsOf, trackValuelessEntries } from "./nil-inputs.js";
import { ReturnedError, type GatewayBuild, type GatewayService } from "./gateway.js";

export interface ControlServiceOptions {
  controller: Controller;
  gc: GarbageCollector;
  /** The worker's persistent id (BuildKit: `<root>/workerid`). */
  workerId: string;
  /** Labels added to the OCI worker's own (`--oci-worker-labels`). */
  labels?: Record<string, string>;
  version: BuildkitVersionInfo;
  /** Serves Control.Session; without it Session is unimplemented and solves get no client. */
  sessions?: SessionManager;
  /** Where local-exporter trees wait before they travel to the client. */
  tmpDir: string;
  /** Errors worth a line in the daemon's log. */
  log?: (msg: string) => void;
  /** Serves builds driven through LLBBridge (an empty SolveRequest); without it they are unimplemented. */
  gateway?: GatewayService;
}

const fileSendMethod = "/moby.filesync.v1.FileSend/DiffCopy";
/** The content store buildctl attaches for an oci/docker layout directory output. */
const layoutStoreId = "export";

/** A gRPC status for an engine error: cancellations as CANCELLED, the rest with their message (and Dockerfile location). */
export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  return withErrorDetails(serviceStatus(err), err);
}

function serviceStatus(err: unknown): Partial<grpc.StatusObject> {
  if (isAbortError(err)) return { code: grpc.status.CANCELLED, details: "context canceled" };
  if (err instanceof ReturnedError) return err.serviceError();
  if (err instanceof KilnError && (err.code === "KILN_NO_JOB" || err.code === "KILN_NOT_FOUND")) return { code: grpc.status.NOT_FOUND, details: wireMessage(err) };
  if (err instanceof KilnError && err.code === "KILN_UNIMPLEMENTED") return { code: grpc.status.UNIMPLEMENTED, details: wireMessage(err) };
  if (err instanceof KilnError && (err.code === "KILN_FLAGS" || err.code === "KILN_EXPORTER_ATTR" || err.code === "KILN_FRONTEND")) return { code: grpc.status.INVALID_ARGUMENT, details: wireMessage(err) };
  return { code: grpc.status.UNKNOWN, details: wireMessage(err) };
}

/** Aborts when the client cancels the call or the daemon shuts down. */
function callSignal(call: { on(ev: "cancelled", fn: () => void): unknown; removeListener(ev: "cancelled", fn: () => void): unknown }, daemon: AbortSignal): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const onCancel = () => ac.abort(new CanceledError("client canceled the call"));
  call.on("cancelled", onCancel);
  return {
    signal: AbortSignal.any([ac.signal, daemon]),
    dispose: () => call.removeListener("cancelled", onCancel),
  };
}

/**
 * `kiln du`'s record for the root's state outside cache records (database, content store): no
 * BuildKit record, and never pruned, so clients that expect an empty list after `prune --all`
 * (BuildKit's own tests, buildx) would wait for it forever. The daemon lists cache records only.
 */
const rootStateRecordId = "kiln-metadata";

function anonymousSession(): Session {
  return { id: randomBytes(12).toString("hex"), localDirs: new DiskLocalDirs({}), credentials: { credentials: () => Promise.resolve(undefined) } };
}

export class ControlService {
  readonly jobs = new JobRegistry();
  readonly history = new BuildHistory();
  private readonly shutdown = new AbortController();
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly opts: ControlServiceOptions) {}

  /** Registers Control and Health on `server`. */
  register(server: grpc.Server): void {
    const def = grpcServiceDefinition(control.Control);
    trackValuelessEntries(def, "solve", control.SolveRequestSchema.field.FrontendInputs.number);
    const impl: Partial<ServiceImpl<typeof control.Control>> = {
      listWorkers: (call, cb) => void this.unary(call, cb, () => this.listWorkers(call.request.filter)),
      info: (call, cb) => void this.unary(call, cb, async () => ({ buildkitVersion: { ...this.opts.version } })),
      diskUsage: (call, cb) => void this.unary(call, cb, async () => ({ record: (await this.opts.gc.diskUsage(call.request.filter)).filter((r) => r.id !== rootStateRecordId).map(usageRecord) })),
      prune: (call) => void this.prune(call),
      solve: (call, cb) => void this.unary(call, cb, (signal) => this.solve(signal, call.request)),
      status: (call) => void this.status(call),
      session: (call) => void this.session(call),
      listenBuildHistory: (call) => void this.listenHistory(call),
      updateBuildHistory: (call, cb) => void this.unary(call, cb, async () => (this.history.update(call.request), {})),
    };
    server.addService(def, impl as grpc.UntypedServiceImplementation);
    addService(server, health.Health, {
      check: (_call, cb) => cb(null, { status: health.HealthCheckResponse_ServingStatus.SERVING }),
    });
  }

  /**
   * Aborts every running call (solves stop, their containers and mounts go) and waits for them,
   * at most `graceMs`: a step that ignores its abort must not keep the daemon from exiting.
   */
  async close(graceMs = 30_000): Promise<void> {
    this.shutdown.abort(new CanceledError("daemon shutting down"));
    this.opts.sessions?.close();
    this.opts.gateway?.close();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.opts.log?.(`${this.running.size} call(s) still running ${graceMs} ms after shutdown began; exiting anyway`);
        resolve();
      }, graceMs);
    });
    try {
      await Promise.race([Promise.allSettled([...this.running]), timeout]);
    } finally {
      clearTimeout(timer);
      this.jobs.close();
    }
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.running.add(p);
    void p.finally(() => this.running.delete(p)).catch(() => undefined);
    return p;
  }

  private async unary<Req, Res>(call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>, fn: (signal: AbortSignal) => Promise<Res>): Promise<void> {
    const { signal, dispose } = callSignal(call, this.shutdown.signal);
    try {
      cb(null, await this.track(fn(signal)));
    } catch (err) {
      if (!isAbortError(err) || !call.cancelled) this.opts.log?.(`${call.getPath()} returned error: ${errorMessage(err)}`);
      cb(toServiceError(err));
    } finally {
      dispose();
    }
  }

  /** The one worker, unless `filter` (containerd syntax over `id` and `labels.KEY`, as BuildKit's) excludes it. */
  private async listWorkers(filter: string[]) {
    let f;
    try {
      f = parseFilters(filter);
    } catch (err) {
      throw new KilnError("KILN_FLAGS", errorMessage(err), { cause: err });
    }
    const ds = await this.opts.gc.diskStat();
    const w = this.opts.controller.worker;
    const labels = ociWorkerLabels(this.opts.labels);
    const id = this.opts.workerId;
    const matches = f.matches((field) => {
      if (field === "id") return [id, id !== ""];
      if (field.startsWith("labels.")) {
        const k = field.slice("labels.".length);
        return [labels[k] ?? "", k in labels];
      }
      return ["", false];
    });
    if (!matches) return { record: [] };
    return { record: [workerRecord({ id, labels, platforms: w.platforms, gcPolicy: gcPolicyRecords(this.opts.gc.policies, ds.total), version: this.opts.version })] };
  }

  private async prune(call: grpc.ServerWritableStream<control.PruneRequest, unknown>): Promise<void> {
    const { signal, dispose } = callSignal(call, this.shutdown.signal);
    const r = call.request;
    const o: PruneOptions = {
      all: r.all,
      filters: r.filter,
      keepDurationMs: Number(r.keepDuration / 1_000_000n),
      keepBytes: Number(r.keepBytes),
    };
    try {
      await this.track(this.opts.gc.prune(signal, o, (u) => call.write(usageRecord(u))));
      call.end();
    } catch (err) {
      call.emit("error", toServiceError(err));
    } finally {
      dispose();
    }
  }

  private async status(call: grpc.ServerWritableStream<control.StatusRequest, unknown>): Promise<void> {
    const { signal, dispose } = callSignal(call, this.shutdown.signal);
    try {
      // As BuildKit: the daemon's clock, so clients can correct the times they show.
      const md = new grpc.Metadata();
      md.set("buildkit-current-timestamp", new Date().toISOString());
      call.sendMetadata(md);
      await this.jobs.watch(signal, call.request.Ref, (ev) => {
        for (const part of splitEvent(ev)) call.write(statusResponse(part));
      });
      call.end();
    } catch (err) {
      if (!call.cancelled) call.emit("error", toServiceError(err));
    } finally {
      dispose();
    }
  }

  private async session(call: SessionCall): Promise<void> {
    const sessions = this.opts.sessions;
    if (!sessions) {
      call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "sessions are not supported by this daemon" });
      return;
    }
    try {
      await this.track(sessions.handle(call));
    } catch (err) {
      if (!call.cancelled) call.emit("error", toServiceError(err));
    }
  }

  private async solve(signal: AbortSignal, r: control.SolveRequest): Promise<{ ExporterResponse: Record<string, string> }> {
    const ref = r.Ref || randomBytes(12).toString("hex");
    const job = this.jobs.start(ref);
    // Internal requests (buildx's capability probes) stay out of the history, as in BuildKit.
    const recorded = r.Internal
      ? undefined
      : this.history.start({
          ref,
          frontend: r.Frontend,
          frontendAttrs: { ...r.FrontendAttrs },
          exporters: r.Exporters.length > 0 ? r.Exporters.map((e) => ({ type: e.Type, attrs: { ...e.Attrs } })) : r.Exporter ? [{ type: r.Exporter, attrs: { ...r.ExporterAttrs } }] : [],
        });
    const progress = recorded ? recorded.progress(job.progress) : job.progress;
    let failure: unknown;
    let gw: GatewayBuild | undefined;
    try {
      const req: SolveRequest = { ref, frontendAttrs: { ...r.FrontendAttrs }, entitlements: r.Entitlements };
      if ((r.Cache?.Exports.length ?? 0) > 0 || (r.Cache?.Imports.length ?? 0) > 0) {
        req.cache = { exports: (r.Cache?.Exports ?? []).map((e) => ({ type: e.Type, attrs: { ...e.Attrs } })), imports: (r.Cache?.Imports ?? []).map((e) => ({ type: e.Type, attrs: { ...e.Attrs } })) };
      }
      // An empty request is how BuildKit's clients (buildctl build, buildx) start a build they
      // drive through the gateway API (LLBBridge); registered at once, as their calls follow quickly.
      if (!r.Frontend && !(r.Definition && r.Definition.def.length > 0)) {
        if (!this.opts.gateway) throw new KilnError("KILN_UNIMPLEMENTED", "builds driven through the gateway API (LLBBridge) are not supported by this daemon");
        gw = this.opts.gateway.start(ref, { progress, inputs: r.FrontendInputs });
        req.gateway = gw;
      }
      if (r.Frontend) req.frontend = r.Frontend;
      if (r.Frontend && Object.keys(r.FrontendInputs).length > 0) req.frontendInputs = inputsOf(r, r.FrontendInputs);
      if (r.Definition && r.Definition.def.length > 0) req.definition = toBinary(pb.DefinitionSchema, r.Definition);
      if (r.Exporters.length > 0) req.exporters = r.Exporters.map((e) => ({ type: e.Type, attrs: { ...e.Attrs } }));
      else if (r.Exporter) req.exporter = { type: r.Exporter, attrs: { ...r.ExporterAttrs } };
      let session: Session = anonymousSession();
      let outputs: ExportOutputs | undefined | ExportOutputs[];
      if (r.Session) {
        if (!this.opts.sessions) throw new KilnError("KILN_UNIMPLEMENTED", "sessions are not supported by this daemon");
        const remote = await this.opts.sessions.get(signal, r.Session);
        session = remote;
        // Several exporters: each stream names its exporter's index, as BuildKit ≥ 0.13 does.
        // buildctl offers an oci/docker layout directory as a content store (no FileSend then).
        if (remote.supports(fileSendMethod) || remote.contentStores?.writable) outputs = req.exporters ? req.exporters.map((_, i) => this.sessionOutputs(remote, i)) : this.sessionOutputs(remote);
      }
      const res = await this.opts.controller.solve(signal, req, session, outputs, progress);
      // BuildKit collects after builds, off the request's path.
      void this.track(this.opts.gc.afterBuild(this.shutdown.signal)).catch((err: unknown) => {
        if (!isAbortError(err)) this.opts.log?.(`gc error: ${errorMessage(err)}`);
      });
      return { ExporterResponse: res };
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      if (gw) this.opts.gateway?.end(gw);
      if (recorded) {
        const st = failure === undefined ? undefined : toServiceError(failure);
        recorded.complete(st ? { code: st.code ?? grpc.status.UNKNOWN, message: st.details ?? "" } : undefined);
      }
      job.finish();
    }
  }

  /** ListenBuildHistory: the records, then (without EarlyExit) new events until the client goes. */
  private async listenHistory(call: grpc.ServerWritableStream<control.BuildHistoryRequest, MessageInitShape<typeof control.BuildHistoryEventSchema>>): Promise<void> {
    const { signal, dispose } = callSignal(call, this.shutdown.signal);
    try {
      await this.track(this.history.listen(signal, call.request, (ev) => call.write(ev)));
      call.end();
    } catch (err) {
      if (!call.cancelled) call.emit("error", toServiceError(err));
    } finally {
      dispose();
    }
  }

  /** Exporter destinations on the client: byte streams over FileSend, trees staged here and then sent. */
  private sessionOutputs(s: RemoteSession, exporterId?: number): ExportOutputs {
    const tmpDir = this.opts.tmpDir;
    const stores = s.contentStores;
    return {
      ...(stores?.writable && stores.write
        ? {
            layoutStore: {
              put: async (signal, desc, data) => void (await stores.write!(signal, layoutStoreId, desc, data)),
            },
          }
        : {}),
      async openStream(signal) {
        const fs = await s.openFileSend(signal, {}, exporterId);
        return {
          stream: fs.stream,
          commit: () => fs.close(),
          abort: () => {
            fs.abort(new Error("export failed"));
            return Promise.resolve();
          },
        };
      },
      async openDirectory(signal) {
        const dir = await mkdtemp(path.join(tmpDir, "export-"));
        return {
          path: dir,
          async commit() {
            try {
              await s.sendDirectory(signal, dir, exporterId);
            } finally {
              await rm(dir, { recursive: true, force: true });
            }
          },
          abort: () => rm(dir, { recursive: true, force: true }),
        };
      },
    };
  }
}
