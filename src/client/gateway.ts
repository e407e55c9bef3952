// A build driven through the gateway API, the way buildctl (client.Build) and buildx run every
// build: Control.Solve with no definition and no frontend, and meanwhile LLBBridge calls carrying
// the build's id; the build function's result (or error) goes back through LLBBridge/Return.
import * as grpc from "@grpc/grpc-js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { bindClient, gateway, rpcstatus, type control, type ServiceClient } from "../api/index.js";
import type { ClientAttachables } from "../session/index.js";
import { errorMessage } from "../util/index.js";
import type { ControlClient } from "./client.js";

/** The metadata key that ties LLBBridge calls to their Control.Solve (BuildKit's client/buildid). */
export const buildIdKey = "buildkit-controlapi-buildid";

type ResultInit = MessageInitShape<typeof gateway.ResultSchema>;

/** LLBBridge for one build: every call carries the build's id. */
export class GatewayClient {
  constructor(
    private readonly api: ServiceClient<typeof gateway.LLBBridge>,
    readonly buildId: string,
    readonly sessionId: string,
  ) {}

  private opts(signal: AbortSignal) {
    const metadata = new grpc.Metadata();
    metadata.set(buildIdKey, this.buildId);
    return { metadata, signal };
  }

  ping(signal: AbortSignal): Promise<gateway.PongResponse> {
    return this.api.ping({}, this.opts(signal));
  }

  /** Solves a definition or runs a frontend; results come back as refs with their definitions (proto.refarray). */
  solve(signal: AbortSignal, req: MessageInitShape<typeof gateway.SolveRequestSchema>): Promise<gateway.SolveResponse> {
    return this.api.solve({ allowResultReturn: true, allowResultArrayRef: true, ...req }, this.opts(signal));
  }

  async readFile(signal: AbortSignal, ref: string, filePath: string, range?: { offset: number; length: number }): Promise<Uint8Array> {
    const r = await this.api.readFile({ Ref: ref, FilePath: filePath, Range: range ? { Offset: BigInt(range.offset), Length: BigInt(range.length) } : undefined }, this.opts(signal));
    return r.Data;
  }

  async readDir(signal: AbortSignal, ref: string, dirPath: string, includePattern = ""): Promise<gateway.ReadDirResponse["entries"]> {
    return (await this.api.readDir({ Ref: ref, DirPath: dirPath, IncludePattern: includePattern }, this.opts(signal))).entries;
  }

  async statFile(signal: AbortSignal, ref: string, p: string): Promise<gateway.StatFileResponse["stat"]> {
    return (await this.api.statFile({ Ref: ref, Path: p }, this.opts(signal))).stat;
  }

  async evaluate(signal: AbortSignal, ref: string): Promise<void> {
    await this.api.evaluate({ Ref: ref }, this.opts(signal));
  }

  resolveImageConfig(signal: AbortSignal, req: MessageInitShape<typeof gateway.ResolveImageConfigRequestSchema>): Promise<gateway.ResolveImageConfigResponse> {
    return this.api.resolveImageConfig(req, this.opts(signal));
  }

  async inputs(signal: AbortSignal): Promise<gateway.InputsResponse["Definitions"]> {
    return (await this.api.inputs({}, this.opts(signal))).Definitions;
  }

  async warn(signal: AbortSignal, req: MessageInitShape<typeof gateway.WarnRequestSchema>): Promise<void> {
    await this.api.warn(req, this.opts(signal));
  }

  async return(signal: AbortSignal, req: MessageInitShape<typeof gateway.ReturnRequestSchema>): Promise<void> {
    await this.api.return(req, this.opts(signal));
  }
}

/** An error as the status BuildKit's client returns for it: a gRPC error keeps its code and message. */
export function errorStatus(err: unknown): rpcstatus.Status {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code === "number" && typeof e.details === "string") return create(rpcstatus.StatusSchema, { code: e.code, message: e.details });
  return create(rpcstatus.StatusSchema, { code: grpc.status.UNKNOWN, message: errorMessage(err) });
}

/** What a build function hands back: a result (ref ids from GatewayClient.solve, metadata), or nothing (an empty result). */
export type BuildFunc = (gw: GatewayClient, signal: AbortSignal) => Promise<ResultInit | undefined>;

/**
 * Runs `fn` as a gateway build on the daemon: `req` carries the exporter, its attrs, frontend
 * attrs and entitlements (its Definition and Frontend are left empty, as buildctl leaves them).
 * Returns the exporter response; a failed solve rejects with "failed to solve: …", as buildctl.
 */
export function gatewayBuild(
  signal: AbortSignal,
  client: ControlClient,
  req: Omit<MessageInitShape<typeof control.SolveRequestSchema>, "$typeName" | "Definition" | "Frontend" | "Ref" | "Session">,
  attachables: ClientAttachables,
  onStatus: (s: control.StatusResponse) => void,
  fn: BuildFunc,
): Promise<Record<string, string>> {
  // The build function's own failure is sent back through Return, and the solve then fails with
  // it; the solve's error is the one reported, as buildctl reports it.
  const drive = async (ref: string, sessionId: string, inner: AbortSignal): Promise<void> => {
    const gw = new GatewayClient(bindClient(gateway.LLBBridge, client.api.raw), ref, sessionId);
    let result: ResultInit | undefined;
    let failure: unknown;
    try {
      result = await fn(gw, inner);
    } catch (err) {
      failure = err;
    }
    await gw.return(inner, failure === undefined ? { result: result ?? { result: { case: "ref", value: { id: "" } } } } : { error: errorStatus(failure) });
  };
  return client.build(signal, req, attachables, onStatus, { drive });
}
