// A Control API client over grpc-js (unix sockets, TCP, mutual TLS), returning what buildctl's
// client library returns: usage records sorted as it sorts them, worker infos, the version.
import * as grpc from "@grpc/grpc-js";
import { readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { openClientSession } from "../session/client.js";
import type { ClientAttachables } from "../session/wire.js";
import { bindClient, control, maxMessageBytes, rpcstatus, type ServiceClient, type workertypes } from "../session/api.js";
import { KilnError, errorMessage, type SourceLocation } from "../util/index.js";
import { parseDaemonAddress, tlsFiles, type TLSFlags } from "./address.js";

/** One cache record, with the fields and names `buildctl du` uses (client.UsageInfo). */
export interface UsageInfo {
  id: string;
  parents: string[];
  mutable: boolean;
  inUse: boolean;
  size: number;
  createdAt: Date;
  lastUsedAt: Date | undefined;
  usageCount: number;
  description: string;
  recordType: string;
  shared: boolean;
  /** The times as sent, in nanoseconds since the epoch (Go prints them in full). */
  createdAtNs?: bigint;
  lastUsedAtNs?: bigint;
}

export interface PruneRequestOptions {
  all?: boolean;
  filters?: string[];
  keepDurationMs?: number;
  keepBytes?: number;
}

export interface ConnectOptions extends TLSFlags {
  addr: string;
  /** How long to wait for the connection (buildctl's --timeout, 5 s). */
  timeoutMs?: number;
}

const date = (t: Timestamp | undefined) => (t ? timestampDate(t) : undefined);
const nanos = (t: Timestamp | undefined) => (t ? t.seconds * 1_000_000_000n + BigInt(t.nanos) : undefined);

export function usageFromRecord(r: control.UsageRecord): UsageInfo {
  return {
    id: r.ID,
    parents: r.Parents,
    mutable: r.Mutable,
    inUse: r.InUse,
    size: Number(r.Size),
    createdAt: date(r.CreatedAt) ?? new Date(0),
    lastUsedAt: date(r.LastUsedAt),
    usageCount: Number(r.UsageCount),
    description: r.Description,
    recordType: r.RecordType,
    shared: r.Shared,
    createdAtNs: nanos(r.CreatedAt) ?? 0n,
    lastUsedAtNs: nanos(r.LastUsedAt),
  };
}

const sourceDetailType = "github.com/moby/buildkit/errdefs.Source+json";

/**
 * The Dockerfile location a daemon attached to an error (errdefs.Source, JSON in the
 * google.rpc.Status of `grpc-status-details-bin`), so the client can show the excerpt.
 */
export function errorSourceLocation(err: unknown): SourceLocation | undefined {
  const bin = (err as { metadata?: grpc.Metadata }).metadata?.get("grpc-status-details-bin")[0];
  if (!Buffer.isBuffer(bin)) return undefined;
  try {
    for (const d of fromBinary(rpcstatus.StatusSchema, bin).details) {
      if (d.typeUrl !== sourceDetailType) continue;
      const j = JSON.parse(Buffer.from(d.value).toString()) as { info?: { filename?: string; data?: string }; ranges?: { start?: { line?: number }; end?: { line?: number } }[] };
      // BuildKit gives an instruction continued over several lines a range per line.
      const ranges = j.ranges ?? [];
      const start = ranges.length > 0 ? Math.min(...ranges.map((r) => r.start?.line ?? 0)) : 0;
      const end = Math.max(start, ...ranges.map((r) => r.end?.line ?? start));
      if (start < 1) continue;
      const all = Buffer.from(j.info?.data ?? "", "base64").toString().split("\n");
      return { file: j.info?.filename ?? "", startLine: start, endLine: Math.max(end, start), lines: all.slice(start - 1, Math.max(end, start)), allLines: all };
    }
  } catch {
    // Details a client can't read change nothing but the display.
  }
  return undefined;
}

const vertexDetailType = "github.com/moby/buildkit/errdefs.Vertex+json";

/** The digest of the failed step a daemon attached to an error (errdefs.Vertex). */
export function errorVertex(err: unknown): string | undefined {
  const bin = (err as { metadata?: grpc.Metadata }).metadata?.get("grpc-status-details-bin")[0];
  if (!Buffer.isBuffer(bin)) return undefined;
  try {
    const d = fromBinary(rpcstatus.StatusSchema, bin).details.find((x) => x.typeUrl === vertexDetailType);
    const digest = d ? (JSON.parse(Buffer.from(d.value).toString()) as { digest?: unknown }).digest : undefined;
    return typeof digest === "string" ? digest : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A gRPC error as the one line buildctl would print after its own prefix; with the progress's
 * step names, a failed step is named as an in-process build names it.
 */
export function callError(what: string, err: unknown, stepNames?: ReadonlyMap<string, string>): KilnError {
  const e = err as Partial<grpc.ServiceError>;
  let msg = typeof e.code === "number" && e.details !== undefined ? e.details : errorMessage(err);
  const step = stepNames?.get(errorVertex(err) ?? "");
  if (step && !msg.startsWith(`${step}: `)) msg = `${step}: ${msg}`;
  return new KilnError(e.code === grpc.status.CANCELLED ? "KILN_CANCELED" : "KILN_DAEMON", `${what}: ${msg}`, { cause: err, location: errorSourceLocation(err) });
}

async function channelCredentials(opts: ConnectOptions, host: string): Promise<{ creds: grpc.ChannelCredentials; options: grpc.ChannelOptions }> {
  const files = tlsFiles(opts);
  if (!files) return { creds: grpc.credentials.createInsecure(), options: {} };
  const read = async (what: string, f: string | undefined) => {
    if (!f) return null;
    try {
      return await readFile(f);
    } catch (err) {
      throw new KilnError("KILN_FLAGS", `could not read ${what} ${f}: ${errorMessage(err)}`, { cause: err });
    }
  };
  const ca = await read("CA certificate", files.ca);
  const key = await read("key", files.key);
  const cert = await read("certificate", files.cert);
  const options: grpc.ChannelOptions = {};
  // By default the certificate is checked against the address's host, as buildctl does; an
  // override is only needed for another name (and an IP address as SNI is not allowed).
  if (opts.tlsservername && opts.tlsservername !== host) {
    options["grpc.ssl_target_name_override"] = opts.tlsservername;
    options["grpc.default_authority"] = opts.tlsservername;
  }
  return { creds: grpc.credentials.createSsl(ca, key, cert), options };
}

/** BuildKit's identity.NewID shape: 25 base-36 characters from 128 random bits (buildctl's build refs). */
export function newID(): string {
  return BigInt("0x" + randomBytes(16).toString("hex")).toString(36).padStart(25, "0").slice(-25);
}

export class ControlClient implements Disposable {
  private constructor(
    readonly api: ServiceClient<typeof control.Control>,
    private readonly raw: grpc.Client,
  ) {}

  /** Connects (and waits until the daemon answers, up to the timeout) to --addr. */
  static async connect(signal: AbortSignal, opts: ConnectOptions): Promise<ControlClient> {
    const a = parseDaemonAddress(opts.addr);
    const { creds, options } = await channelCredentials(opts, a.host);
    const raw = new grpc.Client(a.target, creds, {
      ...options,
      "grpc.max_receive_message_length": maxMessageBytes,
      "grpc.max_send_message_length": maxMessageBytes,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal.reason as Error);
        signal.throwIfAborted();
        signal.addEventListener("abort", onAbort, { once: true });
        raw.waitForReady(Date.now() + (opts.timeoutMs ?? 5000), (err) => {
          signal.removeEventListener("abort", onAbort);
          if (err) reject(new KilnError("KILN_DAEMON", `failed to connect to ${opts.addr}: ${connectFailure(raw, err)}`, { cause: err }));
          else resolve();
        });
      });
    } catch (err) {
      raw.close();
      throw err;
    }
    return new ControlClient(bindClient(control.Control, raw), raw);
  }

  async listWorkers(signal: AbortSignal, filter: string[] = []): Promise<workertypes.WorkerRecord[]> {
    try {
      return (await this.api.listWorkers({ filter }, { signal })).record;
    } catch (err) {
      throw callError("failed to list workers", err);
    }
  }

  async info(signal: AbortSignal): Promise<workertypes.BuildkitVersion | undefined> {
    try {
      return (await this.api.info({}, { signal })).buildkitVersion;
    } catch (err) {
      throw callError("failed to call info", err);
    }
  }

  /** Records sorted as buildctl's client sorts them: largest first, then by id, descending. */
  async diskUsage(signal: AbortSignal, filter: string[] = []): Promise<UsageInfo[]> {
    let res: control.DiskUsageResponse;
    try {
      res = await this.api.diskUsage({ filter }, { signal });
    } catch (err) {
      throw callError("failed to call diskusage", err);
    }
    return res.record.map(usageFromRecord).sort((a, b) => b.size - a.size || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  }

  /** Streams each removed record to `onRemoved` as the daemon reports it. */
  async prune(signal: AbortSignal, o: PruneRequestOptions, onRemoved: (u: UsageInfo) => void): Promise<void> {
    const call = this.api.prune(
      {
        filter: o.filters ?? [],
        all: o.all ?? false,
        keepDuration: BigInt(Math.trunc(o.keepDurationMs ?? 0)) * 1_000_000n,
        keepBytes: BigInt(Math.trunc(o.keepBytes ?? 0)),
      },
      { signal },
    );
    try {
      for await (const r of call as AsyncIterable<control.UsageRecord>) onRemoved(usageFromRecord(r));
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw callError("failed to call prune", err);
    }
  }

  /**
   * One build the way buildctl runs it: a session serving `attachables`, Status streamed from
   * before Solve starts, and the exporter response once both have ended.
   */
  async build(
    signal: AbortSignal,
    req: MessageInitShape<typeof control.SolveRequestSchema>,
    attachables: ClientAttachables,
    onStatus: (s: control.StatusResponse) => void,
    opts: {
      name?: string;
      sharedKey?: string;
      ref?: string;
      /** Runs beside the solve (a gateway build's client side); the solve's own error wins. */
      drive?: (ref: string, sessionId: string, signal: AbortSignal) => Promise<void>;
    } = {},
  ): Promise<Record<string, string>> {
    const ac = new AbortController();
    const inner = AbortSignal.any([signal, ac.signal]);
    const session = await openClientSession(inner, this.raw, { attachables, name: opts.name, sharedKey: opts.sharedKey });
    try {
      const ref = opts.ref ?? newID();
      const status = this.api.status({ Ref: ref }, { signal: inner });
      // Names of the steps shown, for naming a failed one in the error.
      const stepNames = new Map<string, string>();
      const statusDone = new Promise<void>((resolve) => {
        status.on("data", (s: control.StatusResponse) => {
          for (const v of s.vertexes) if (v.name) stepNames.set(v.digest, v.name);
          onStatus(s);
        });
        status.once("error", () => resolve());
        status.once("end", () => resolve());
        status.once("close", () => resolve());
      });
      let res: control.SolveResponse;
      try {
        const solved = this.api.solve({ ...req, Ref: ref, Session: session.id }, { signal: inner });
        if (opts.drive) {
          const driven = opts.drive(ref, session.id, inner);
          const [s] = await Promise.allSettled([solved, driven]);
          if (s.status === "rejected") throw s.reason;
          await driven;
          res = s.value;
        } else res = await solved;
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        throw callError("failed to solve", err, stepNames);
      } finally {
        // The daemon ends Status with the solve; don't let a lost stream hold the result back.
        const timer = setTimeout(() => ac.abort(new Error("status stream did not end")), 5000);
        await statusDone;
        clearTimeout(timer);
      }
      return res.ExporterResponse;
    } finally {
      ac.abort(new Error("build ended"));
      await session.close().catch(() => undefined);
    }
  }

  close(): void {
    this.raw.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** grpc-js only says "Failed to connect before the deadline"; the channel's last error says why. */
function connectFailure(raw: grpc.Client, err: Error): string {
  const state = raw.getChannel().getConnectivityState(false);
  return state === grpc.connectivityState.TRANSIENT_FAILURE ? `${err.message} (the daemon is not reachable or refused the connection)` : err.message;
}
