// The session protocol's boundary (BuildKit's session/): the daemon end turns a Control.Session
// call into a `Session` the engine uses unchanged; the client end serves local directories,
// credentials, secrets, ssh agents and export targets over the same call. Implemented by
// GrpcSessionManager (remote.ts, the daemon end) and openClientSession (client.ts).
import type { Writable } from "node:stream";
import type * as grpc from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { control } from "../api/index.js";
import type { CredentialProvider } from "../remotes/types.js";
import type { Session } from "./types.js";
import type { SecretStore } from "./secrets.js";
import type { LocalContentDir } from "./contentserve.js";

/** gRPC metadata keys of the Control.Session call (lower-case on the wire). */
export const sessionHeaders = {
  id: "x-docker-expose-session-uuid",
  name: "x-docker-expose-session-name",
  sharedKey: "x-docker-expose-session-sharedkey",
  method: "x-docker-expose-session-grpc-method",
} as const;

export type SessionCall = grpc.ServerDuplexStream<control.BytesMessage, MessageInitShape<typeof control.BytesMessageSchema>>;

/** A byte stream to the client (FileSend/DiffCopy carrying BytesMessages): tar, oci and docker file outputs. */
export interface FileSendStream {
  readonly stream: Writable;
  /** Ends the stream and waits for the client to confirm it has everything. */
  close(): Promise<void>;
  /** Breaks the stream off (the export failed): the client discards what it got. */
  abort(err: Error): void;
}

/** The daemon's view of one connected client session. */
export interface RemoteSession extends Session {
  /** The client's `x-docker-expose-session-sharedkey`. */
  readonly sharedKey: string;
  /** Aborted when the client's Session call ends (disconnect, cancel). */
  readonly closed: AbortSignal;
  /** Whether the client serves a method (full path, compared case-insensitively). */
  supports(method: string): boolean;
  /**
   * Opens FileSend/DiffCopy as a byte stream; `metadata` travels as `exporter-md-<key>` headers,
   * `exporterId` (the exporter's index when the request listed several) as BuildKit ≥ 0.13's header.
   */
  openFileSend(signal: AbortSignal, metadata: Record<string, string>, exporterId?: number): Promise<FileSendStream>;
  /** Sends a directory's tree to the client's FileSend target with fsutil's protocol (local exporter). */
  sendDirectory(signal: AbortSignal, dir: string, exporterId?: number): Promise<void>;
}

export interface SessionManager {
  /** Serves one Control.Session call until the client or the daemon ends it. */
  handle(call: SessionCall): Promise<void>;
  /** The session with this id; waits up to `timeoutMs` (BuildKit: 5 s) for it to connect. */
  get(signal: AbortSignal, id: string, timeoutMs?: number): Promise<RemoteSession>;
  /** Ends every session (daemon shutdown). */
  close(): void;
}

/** What a client offers the daemon over its session (BuildKit's attachables). */
export interface ClientAttachables {
  /** `--local NAME=DIR`, served by FileSync/DiffCopy. */
  dirs?: Record<string, string>;
  /** Registry credentials, served by Auth/Credentials. */
  credentials?: CredentialProvider;
  secrets?: SecretStore;
  /** SSH agents, served by SSH/CheckAgent and SSH/ForwardAgent (one agent connection per call). */
  ssh?: { has(id: string): boolean; socketPath(signal: AbortSignal, id: string): Promise<string> };
  /** Where FileSend byte streams go (a file, stdout); called once per stream with its exporter metadata. */
  fileTarget?: (metadata: Record<string, string>) => Promise<Writable>;
  /** Where FileSend directory trees go (local exporter). */
  dirTarget?: string;
  /**
   * Per-exporter targets when a build has several outputs, by index in SolveRequest.Exporters:
   * the daemon names the exporter in `buildkit-attachable-exporter-id` (BuildKit ≥ 0.13). Without
   * an entry, exporter 0 falls back to `fileTarget`/`dirTarget`.
   */
  exportTargets?: Record<number, ExportTarget>;
  /** Content stores by id (`export`, `local:DIR`), served by containerd's content service as buildctl does. */
  contentStores?: ReadonlyMap<string, LocalContentDir>;
}

export interface ExportTarget {
  fileTarget?: (metadata: Record<string, string>) => Promise<Writable>;
  dirTarget?: string;
}
