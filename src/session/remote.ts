// The daemon end of the session protocol: each Control.Session call becomes a gRPC client
// connection to the client's session server (through a private unix relay), wrapped as a
// `RemoteSession` the engine uses as it uses the in-process session.
import * as grpc from "@grpc/grpc-js";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { Writable } from "node:stream";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { auth, filesync, fsutil, health, maxMessageBytes, secrets as secretspb, sshforward, upload as uploadpb } from "./api.js";
import { CanceledError, KilnError, errorMessage } from "../util/index.js";
import type { AuthConfig, CredentialProvider } from "../remotes/types.js";
import { fromGoMode, goModeKind } from "./fsmode.js";
import { receiveListing, sendTree, writeListing, type ListedStat, type PacketConn, type PacketInit } from "./fssync.js";
import { decodePacket, encodePacket } from "./packetcodec.js";
import { walkTree } from "./fswalk.js";
import { messageConn } from "./msgstream.js";
import { bidiCall, metadataKeys, metadataValues, methods, encoder, decoder, setMetadataValues } from "./methods.js";
import type { SecretStore } from "./secrets.js";
import { listenOwned, type ForwardedSocket, type SSHAgents } from "./ssh.js";
import { bytesCallToDuplex, relayThroughUnixSocket } from "./tunnel.js";
import type { ContentStores, LocalBase, LocalDirs, LocalEntry, SyncOptions, Uploads } from "./types.js";
import { RemoteContentStores, contentStoreMethods } from "./contentstore.js";
import { sessionHeaders, type FileSendStream, type RemoteSession, type SessionCall, type SessionManager } from "./wire.js";

// Well under the 4 MiB a Go (buildctl) or grpc-js session server accepts by default; fewer, larger
// messages mean fewer trips through both tunnels than 32 KiB ones.
const fileSendChunk = 1 << 20;
/** How long a listing's stream waits for its copy before it is finished (a cache hit needs no copy). */
const parkedTransferMs = 60_000;

/** A bidi call of fsutil packets, through the hand codec: a listing is a packet per entry. */
function packetCall(client: grpc.Client, method: string, md: grpc.Metadata): grpc.ClientDuplexStream<PacketInit, fsutil.Packet> {
  return client.makeBidiStreamRequest(method, encodePacket, decodePacket, md, {});
}

function grpcCode(err: unknown): number | undefined {
  return typeof (err as { code?: unknown })?.code === "number" ? (err as { code: number }).code : undefined;
}

function statToEntry(st: ListedStat["stat"]): LocalEntry {
  const kind = goModeKind(st.mode);
  const e: LocalEntry = {
    path: st.path,
    type: kind === "dir" || kind === "file" || kind === "symlink" ? kind : "other",
    mode: fromGoMode(st.mode),
    uid: st.uid,
    gid: st.gid,
    size: Number(st.size),
    mtimeMs: Number(st.modTime / 1_000_000n),
  };
  if (st.linkname !== "") e.linkname = st.linkname;
  return e;
}

function sameEntry(a: LocalEntry, b: LocalEntry): boolean {
  return a.type === b.type && a.mode === b.mode && a.size === b.size && a.mtimeMs === b.mtimeMs && a.uid === b.uid && a.gid === b.gid && (a.linkname ?? "") === (b.linkname ?? "");
}

/** One FileSync/DiffCopy stream: listed, then possibly parked until the copy takes it. */
class Transfer {
  private readonly ac = new AbortController();
  readonly conn: PacketConn;
  listing: ListedStat[] = [];
  private timer: NodeJS.Timeout | undefined;
  private finished = false;

  constructor(
    readonly call: grpc.ClientDuplexStream<PacketInit, fsutil.Packet>,
    closed: AbortSignal,
  ) {
    const signal = AbortSignal.any([this.ac.signal, closed]);
    this.conn = messageConn(call, signal);
    signal.addEventListener("abort", () => call.cancel(), { once: true });
  }

  park(onExpire: () => void): void {
    this.timer = setTimeout(() => {
      onExpire();
      void this.finish();
    }, parkedTransferMs);
    this.timer.unref();
  }

  unpark(): void {
    clearTimeout(this.timer);
  }

  /** Ends the stream politely (FIN, as a receiver that needs nothing more), else cancels it. */
  async finish(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    try {
      await this.conn.send({ type: fsutil.Packet_PacketType.PACKET_FIN });
      for (;;) {
        const p = await this.conn.recv();
        if (!p || p.type === fsutil.Packet_PacketType.PACKET_FIN) break;
      }
      this.conn.closeSend();
    } catch {
      this.cancel();
    }
  }

  /** Marks the transfer done after a complete copy (FIN already exchanged). */
  done(): void {
    this.finished = true;
    clearTimeout(this.timer);
  }

  cancel(): void {
    this.finished = true;
    clearTimeout(this.timer);
    this.ac.abort();
  }
}

class RemoteLocalDirs implements LocalDirs {
  private readonly parked = new WeakMap<LocalEntry[], Transfer>();
  private readonly listedWith = new WeakMap<LocalEntry[], { name: string; opts: SyncOptions }>();

  constructor(private readonly session: GrpcRemoteSession) {}

  private async open(signal: AbortSignal, name: string, opts: SyncOptions): Promise<Transfer | undefined> {
    const s = this.session;
    if (!s.supports(methods.diffCopy)) throw new KilnError("KILN_LOCAL_NOT_FOUND", "no local sources enabled");
    const md = new grpc.Metadata();
    setMetadataValues(md, metadataKeys.dirName, [name]);
    if (opts.includePatterns?.length) setMetadataValues(md, metadataKeys.includePatterns, opts.includePatterns);
    if (opts.excludePatterns?.length) setMetadataValues(md, metadataKeys.excludePatterns, opts.excludePatterns);
    if (opts.followPaths?.length) setMetadataValues(md, metadataKeys.followPaths, opts.followPaths);
    const call = packetCall(s.client, methods.diffCopy, md);
    const t = new Transfer(call, s.closed);
    const onAbort = () => t.cancel();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      t.listing = await receiveListing(signal, t.conn);
      return t;
    } catch (err) {
      t.cancel();
      if (grpcCode(err) === grpc.status.NOT_FOUND) return undefined;
      if (signal.aborted) throw new CanceledError(signal.reason);
      throw new KilnError("KILN_LOCAL_TRANSFER", `transferring local directory ${JSON.stringify(name)}: ${errorMessage(err)}`, { cause: err });
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  async list(signal: AbortSignal, name: string, opts: SyncOptions): Promise<LocalEntry[] | undefined> {
    const t = await this.open(signal, name, opts);
    if (!t) return undefined;
    const entries = t.listing.map((l) => statToEntry(l.stat));
    this.listedWith.set(entries, { name, opts });
    // Keeping the stream means a copy right after the listing needs no second walk on the client.
    this.parked.set(entries, t);
    t.park(() => this.parked.delete(entries));
    return entries;
  }

  async copyTo(signal: AbortSignal, name: string, entries: LocalEntry[], dest: string, base?: LocalBase): Promise<void> {
    let t = this.parked.get(entries);
    this.parked.delete(entries);
    t?.unpark();
    if (!t) {
      const how = this.listedWith.get(entries);
      t = await this.open(signal, name, how?.opts ?? {});
      if (!t) throw new KilnError("KILN_LOCAL_NOT_FOUND", `no local directory named ${JSON.stringify(name)} was provided to the build`);
    }
    const wanted = new Set(entries.map((e) => e.path));
    // A hard link whose first path is not wanted becomes a file of its own: the sender serves
    // its contents under its own ID all the same.
    const selected = t.listing
      .filter((l) => wanted.has(l.stat.path))
      .map((l) => (goModeKind(l.stat.mode) === "file" && l.stat.linkname !== "" && !wanted.has(l.stat.linkname) ? { id: l.id, stat: { ...l.stat, linkname: "" } } : l));
    const reuse = base
      ? (st: ListedStat["stat"]): string | undefined => {
          const prev = base.entries.get(st.path);
          return prev && sameEntry(prev, statToEntry(st)) ? path.join(base.dir, st.path) : undefined;
        }
      : undefined;
    const transfer = t;
    const onAbort = () => transfer.cancel();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      await writeListing(signal, transfer.conn, selected, dest, reuse ? { reuse } : {});
      transfer.done();
    } catch (err) {
      transfer.cancel();
      if (signal.aborted) throw new CanceledError(signal.reason);
      throw new KilnError("KILN_LOCAL_TRANSFER", `transferring local directory ${JSON.stringify(name)}: ${errorMessage(err)}`, { cause: err });
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  sharedKey(name: string): string | undefined {
    // BuildKit keys its incremental context snapshots on the local name and the session's shared key.
    return `session:${name}:${this.session.sharedKey}`;
  }
}

class RemoteCredentials implements CredentialProvider {
  constructor(private readonly session: GrpcRemoteSession) {}

  async credentials(signal: AbortSignal, host: string): Promise<AuthConfig | undefined> {
    if (!this.session.supports(methods.credentials)) return undefined;
    try {
      const res = await this.session.unary(signal, methods.credentials, auth.CredentialsRequestSchema, auth.CredentialsResponseSchema, { Host: host });
      if (res.Secret === "" && res.Username === "") return undefined;
      // A secret without a user name is an identity token (BuildKit's authprovider sends it so).
      if (res.Username === "") return { identityToken: res.Secret };
      return { username: res.Username, password: res.Secret };
    } catch (err) {
      if (grpcCode(err) === grpc.status.UNIMPLEMENTED) return undefined;
      throw err;
    }
  }

  /** The client's own token exchange (Auth/FetchToken), when it serves one. */
  async fetchToken(signal: AbortSignal, req: { host: string; realm: string; service: string; scopes: string[] }): Promise<{ token: string; expiresIn: number; issuedAt: number } | undefined> {
    if (!this.session.supports(methods.fetchToken)) return undefined;
    try {
      const res = await this.session.unary(signal, methods.fetchToken, auth.FetchTokenRequestSchema, auth.FetchTokenResponseSchema, { ClientID: "buildkit-client", Host: req.host, Realm: req.realm, Service: req.service, Scopes: req.scopes });
      return { token: res.Token, expiresIn: Number(res.ExpiresIn), issuedAt: Number(res.IssuedAt) };
    } catch (err) {
      if (grpcCode(err) === grpc.status.UNIMPLEMENTED) return undefined;
      throw err;
    }
  }
}

class RemoteSecrets implements SecretStore {
  constructor(private readonly session: GrpcRemoteSession) {}

  async get(signal: AbortSignal, id: string): Promise<Uint8Array | undefined> {
    try {
      const res = await this.session.unary(signal, methods.getSecret, secretspb.GetSecretRequestSchema, secretspb.GetSecretResponseSchema, { ID: id });
      return res.data;
    } catch (err) {
      const code = grpcCode(err);
      if (code === grpc.status.NOT_FOUND || code === grpc.status.UNIMPLEMENTED) return undefined;
      throw err;
    }
  }
}

class RemoteSSH implements SSHAgents {
  constructor(private readonly session: GrpcRemoteSession) {}

  has(_id: string): boolean {
    // Which ids the client holds is only known by asking (CheckAgent, in listen).
    return true;
  }

  async check(signal: AbortSignal, id: string): Promise<boolean> {
    try {
      await this.session.unary(signal, methods.checkAgent, sshforward.CheckAgentRequestSchema, sshforward.CheckAgentResponseSchema, { ID: id });
      return true;
    } catch (err) {
      if (signal.aborted || this.session.closed.aborted) throw err;
      return false;
    }
  }

  async listen(signal: AbortSignal, id: string, opts: { uid: number; gid: number; mode: number }): Promise<ForwardedSocket> {
    const s = this.session;
    try {
      await s.unary(signal, methods.checkAgent, sshforward.CheckAgentRequestSchema, sshforward.CheckAgentResponseSchema, { ID: id });
    } catch (err) {
      throw new KilnError("KILN_SSH", `no SSH key ${JSON.stringify(id)} forwarded from the client: ${errorMessage(err)}`, { cause: err });
    }
    const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-ssh-"));
    const sock = path.join(dir, "ssh_auth_sock");
    const conns = new Set<{ sock: Socket; call: grpc.ClientDuplexStream<unknown, sshforward.BytesMessage> }>();
    const server = createServer((c) => {
      const md = new grpc.Metadata();
      md.set(metadataKeys.sshID, id);
      const call = bidiCall(s.client, methods.forwardAgent, sshforward.BytesMessageSchema, sshforward.BytesMessageSchema, md);
      const entry = { sock: c, call: call as grpc.ClientDuplexStream<unknown, sshforward.BytesMessage> };
      conns.add(entry);
      const done = () => {
        conns.delete(entry);
        c.destroy();
        call.cancel();
      };
      call.on("data", (m: sshforward.BytesMessage) => {
        if (!c.write(m.data)) {
          call.pause();
          c.once("drain", () => call.resume());
        }
      });
      call.on("end", () => c.end());
      call.on("error", done);
      c.on("data", (d: Buffer) => {
        if (!call.write({ data: d })) {
          c.pause();
          call.once("drain", () => c.resume());
        }
      });
      c.on("end", () => call.end());
      c.on("error", done);
      c.on("close", done);
    });
    const close = async () => {
      for (const c of conns) {
        c.sock.destroy();
        c.call.cancel();
      }
      if (server.listening) await new Promise<void>((r) => server.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    };
    try {
      await listenOwned(server, sock, opts);
    } catch (err) {
      await close();
      throw err;
    }
    const onClosed = () => void close();
    s.closed.addEventListener("abort", onClosed, { once: true });
    return {
      path: sock,
      async [Symbol.asyncDispose]() {
        s.closed.removeEventListener("abort", onClosed);
        await close();
      },
    };
  }
}

class RemoteUploads implements Uploads {
  constructor(private readonly session: GrpcRemoteSession) {}

  async *pull(signal: AbortSignal, url: URL): AsyncIterable<Uint8Array> {
    const md = new grpc.Metadata();
    md.set(metadataKeys.uploadPath, url.pathname);
    md.set(metadataKeys.uploadHost, url.host);
    const call = bidiCall(this.session.client, methods.uploadPull, uploadpb.BytesMessageSchema, uploadpb.BytesMessageSchema, md);
    const sig = AbortSignal.any([signal, this.session.closed]);
    const onAbort = () => call.cancel();
    sig.addEventListener("abort", onAbort, { once: true });
    try {
      // The daemon sends nothing; the client streams the upload and ends it.
      call.end();
      for await (const m of call as AsyncIterable<uploadpb.BytesMessage>) yield m.data;
    } finally {
      sig.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }
}

export class GrpcRemoteSession implements RemoteSession {
  readonly localDirs: LocalDirs;
  readonly credentials: RemoteCredentials;
  readonly secrets?: SecretStore;
  readonly ssh?: SSHAgents;
  readonly upload?: Uploads;
  readonly contentStores?: ContentStores;
  private readonly supported: Set<string>;

  constructor(
    readonly id: string,
    readonly name: string,
    readonly sharedKey: string,
    methodList: readonly string[],
    readonly client: grpc.Client,
    readonly closed: AbortSignal,
  ) {
    this.supported = new Set(methodList.map((m) => m.toLowerCase()));
    this.localDirs = new RemoteLocalDirs(this);
    this.credentials = new RemoteCredentials(this);
    if (this.supports(methods.getSecret)) this.secrets = new RemoteSecrets(this);
    if (this.supports(methods.forwardAgent)) this.ssh = new RemoteSSH(this);
    if (this.supports(methods.uploadPull)) this.upload = new RemoteUploads(this);
    if (this.supports(contentStoreMethods.read) || this.supports(contentStoreMethods.write)) this.contentStores = new RemoteContentStores(client, closed, this.supports(contentStoreMethods.write));
  }

  supports(method: string): boolean {
    return this.supported.has(method.toLowerCase());
  }

  /** A unary call to the client, cancelled with `signal` or the session. */
  unary<I extends DescMessage, O extends DescMessage>(signal: AbortSignal, method: string, input: I, output: O, req: MessageInitShape<I>): Promise<MessageShape<O>> {
    const sig = AbortSignal.any([signal, this.closed]);
    return new Promise((resolve, reject) => {
      const call = this.client.makeUnaryRequest(method, encoder(input), decoder(output), req, new grpc.Metadata(), {}, (err, res) => {
        sig.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(res!);
      });
      const onAbort = () => call.cancel();
      if (sig.aborted) call.cancel();
      else sig.addEventListener("abort", onAbort, { once: true });
    });
  }

  private requireMethod(method: string): void {
    if (!this.supports(method)) throw new KilnError("KILN_SESSION", `method ${method.toLowerCase()} not supported by the client`);
  }

  async openFileSend(signal: AbortSignal, metadata: Record<string, string>, exporterId?: number): Promise<FileSendStream> {
    this.requireMethod(methods.fileSend);
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata)) setMetadataValues(md, metadataKeys.exporterPrefix + k.toLowerCase(), [v]);
    if (exporterId !== undefined) md.set(metadataKeys.exporterID, String(exporterId));
    const call = bidiCall(this.client, methods.fileSend, filesync.BytesMessageSchema, filesync.BytesMessageSchema, md);
    const sig = AbortSignal.any([signal, this.closed]);
    const onAbort = () => call.cancel();
    sig.addEventListener("abort", onAbort, { once: true });
    // The status tells whether the client kept everything; AlreadyExists means it needs nothing.
    const finished = new Promise<void>((resolve, reject) => {
      call.on("data", () => undefined);
      call.on("status", (st: grpc.StatusObject) => (st.code === grpc.status.OK || st.code === grpc.status.ALREADY_EXISTS ? resolve() : reject(Object.assign(new Error(st.details), { code: st.code }))));
      call.on("error", (err: Error) => (grpcCode(err) === grpc.status.ALREADY_EXISTS ? resolve() : reject(err)));
    });
    finished.catch(() => undefined);
    // All of a chunk's messages are queued at once and only the last one's write is waited for:
    // waiting on each message costs an event-loop turn per message through both tunnels,
    // while the Writable's high-water mark already bounds what is queued.
    const send = (chunk: Buffer, cb: (err?: Error | null) => void) => {
      for (let off = 0; off < chunk.length; off += fileSendChunk) {
        const part = chunk.subarray(off, off + fileSendChunk);
        if (off + fileSendChunk >= chunk.length) call.write({ data: part }, cb);
        else call.write({ data: part });
      }
      if (chunk.length === 0) cb();
    };
    const stream = new Writable({
      highWaterMark: 1 << 20,
      write(chunk: Buffer, _enc, cb) {
        if (call.destroyed) return cb(new KilnError("KILN_SESSION", "the client closed the file stream"));
        send(chunk, cb);
      },
      final(cb) {
        call.end();
        cb();
      },
    });
    return {
      stream,
      close: async () => {
        try {
          if (!stream.writableEnded) await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
          await finished;
        } catch (err) {
          if (sig.aborted) throw new CanceledError(sig.reason);
          throw new KilnError("KILN_SESSION", `sending the export to the client: ${errorMessage(err)}`, { cause: err });
        } finally {
          sig.removeEventListener("abort", onAbort);
        }
      },
      abort: (_err: Error) => {
        sig.removeEventListener("abort", onAbort);
        // A cancel, not an end: a Go client sees the RST and fails its copy. (Node's HTTP/2 sends
        // END_STREAM before the RST, so a grpc-js client may take it for a clean end; the failed
        // solve still tells its user.)
        call.cancel();
        stream.destroy();
      },
    };
  }

  async sendDirectory(signal: AbortSignal, dir: string, exporterId?: number): Promise<void> {
    this.requireMethod(methods.fileSend);
    const md = new grpc.Metadata();
    if (exporterId !== undefined) md.set(metadataKeys.exporterID, String(exporterId));
    const call = packetCall(this.client, methods.fileSend, md);
    const sig = AbortSignal.any([signal, this.closed]);
    const onAbort = () => call.cancel();
    sig.addEventListener("abort", onAbort, { once: true });
    try {
      const conn: PacketConn = messageConn(call, sig);
      await sendTree(sig, conn, walkTree(sig, dir, {}));
      conn.closeSend();
      // The receiver ends the call once it has everything; wait for that, not just our FIN.
      while ((await conn.recv()) !== undefined);
    } catch (err) {
      call.cancel();
      if (sig.aborted) throw new CanceledError(sig.reason);
      throw new KilnError("KILN_SESSION", `sending ${dir} to the client: ${errorMessage(err)}`, { cause: err });
    } finally {
      sig.removeEventListener("abort", onAbort);
    }
  }
}

interface Entry {
  session: GrpcRemoteSession;
  stop: () => void;
}

const healthInterval = 5_000;
const sessionWindow = 8 << 20;
const healthTimeout = 30_000;

/** Daemon-side registry of live sessions, each served from its Control.Session call. */
export class GrpcSessionManager implements SessionManager {
  private readonly sessions = new Map<string, Entry>();
  private readonly waiters = new Set<() => void>();
  private readonly reserved = new Set<string>();
  private closing = false;

  constructor(
    private readonly opts: {
      /** Where the relay sockets' private directories go (default: the system temp dir). */
      tmpDir?: string;
      /** BuildKit checks the client's health every 5 s (30 s timeout); false turns that off. */
      healthCheck?: boolean;
      healthIntervalMs?: number;
      healthTimeoutMs?: number;
    } = {},
  ) {}

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  async handle(call: SessionCall): Promise<void> {
    const md = call.metadata;
    const id = metadataValues(md, sessionHeaders.id)?.[0] ?? "";
    const name = metadataValues(md, sessionHeaders.name)?.[0] ?? "";
    const sharedKey = metadataValues(md, sessionHeaders.sharedKey)?.[0] ?? "";
    const methodList = (metadataValues(md, sessionHeaders.method) ?? []).flatMap((m) => m.split(",").map((s) => s.trim())).filter((m) => m !== "");
    if (id === "" || this.closing || this.sessions.has(id) || this.reserved.has(id)) {
      const details = id === "" ? "no session id in the request" : this.closing ? "the daemon is shutting down" : `session ${id} already exists`;
      call.emit("error", { code: id === "" ? grpc.status.INVALID_ARGUMENT : grpc.status.ALREADY_EXISTS, details });
      return;
    }
    // Held from here, so a second call with the same id cannot slip in while this one sets up.
    this.reserved.add(id);
    const ac = new AbortController();
    const ended = new Promise<void>((resolve) => {
      const end = () => {
        ac.abort(new CanceledError("session closed"));
        resolve();
      };
      call.once("end", end);
      call.once("cancelled", end);
      call.once("error", end);
      call.once("close", end);
      ac.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    const duplex = bytesCallToDuplex(call);
    duplex.once("close", () => ac.abort(new CanceledError("session closed")));
    duplex.on("error", () => undefined);
    let relay: Awaited<ReturnType<typeof relayThroughUnixSocket>> | undefined;
    let client: grpc.Client | undefined;
    let healthTimer: NodeJS.Timeout | undefined;
    try {
      relay = await relayThroughUnixSocket(duplex, this.opts.tmpDir);
      client = new grpc.Client(relay.target, grpc.credentials.createInsecure(), {
        "grpc.default_authority": "localhost",
        "grpc.max_receive_message_length": maxMessageBytes,
        "grpc.max_send_message_length": maxMessageBytes,
        // The tunnel cannot be re-dialled: an idle channel must not let go of it.
        "grpc.client_idle_timeout_ms": 2_147_483_647,
        "grpc.initial_reconnect_backoff_ms": 60_000,
        // HTTP/2's 64 KiB default window stalls bulk transfers behind the tunnel's round trips.
        "grpc-node.flow_control_window": sessionWindow,
      });
      const session = new GrpcRemoteSession(id, name, sharedKey, methodList, client, ac.signal);
      this.sessions.set(id, { session, stop: () => ac.abort(new CanceledError("daemon shutting down")) });
      this.notify();
      if (this.opts.healthCheck !== false && session.supports(methods.healthCheck)) healthTimer = this.monitorHealth(session, ac);
      await ended;
    } catch (err) {
      // Setting up the relay failed: the client hears why, the caller gets no rejection to handle.
      if (!call.writableEnded && !call.cancelled) call.emit("error", { code: grpc.status.INTERNAL, details: `session ${id}: ${errorMessage(err)}` });
    } finally {
      this.reserved.delete(id);
      ac.abort(new CanceledError("session closed"));
      clearInterval(healthTimer);
      if (this.sessions.get(id)?.session.closed === ac.signal) this.sessions.delete(id);
      client?.close();
      await relay?.[Symbol.asyncDispose]();
      duplex.destroy();
      // A status OK ends the client's side; after a cancel there is nobody to tell.
      if (!call.writableEnded && !call.cancelled) call.end();
    }
  }

  /** BuildKit's monitorHealth: a check every 5 s; two failures without five successes between end the session. */
  private monitorHealth(session: GrpcRemoteSession, ac: AbortController): NodeJS.Timeout {
    let failedBefore = false;
    let okInRow = 0;
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      session
        .unary(AbortSignal.timeout(this.opts.healthTimeoutMs ?? healthTimeout), methods.healthCheck, health.HealthCheckRequestSchema, health.HealthCheckResponseSchema, {})
        .then(
          () => {
            if (++okInRow >= 5) failedBefore = false;
          },
          () => {
            if (ac.signal.aborted) return;
            if (failedBefore) ac.abort(new KilnError("KILN_SESSION", "session health check failed"));
            failedBefore = true;
            okInRow = 0;
          },
        )
        .finally(() => (running = false));
    }, this.opts.healthIntervalMs ?? healthInterval);
    timer.unref();
    return timer;
  }

  async get(signal: AbortSignal, id: string, timeoutMs = 5_000): Promise<RemoteSession> {
    const colon = id.indexOf(":");
    if (colon >= 0 && colon < id.length - 1) id = id.slice(colon + 1);
    const found = () => {
      const e = this.sessions.get(id);
      return e && !e.session.closed.aborted ? e.session : undefined;
    };
    const now = found();
    if (now) return now;
    const timeout = AbortSignal.timeout(timeoutMs);
    const sig = AbortSignal.any([signal, timeout]);
    return new Promise<RemoteSession>((resolve, reject) => {
      const check = () => {
        const s = found();
        if (s) {
          cleanup();
          resolve(s);
        }
      };
      const onAbort = () => {
        cleanup();
        if (signal.aborted) reject(new CanceledError(signal.reason));
        else reject(new KilnError("KILN_SESSION", `no active session for ${id}: context deadline exceeded`));
      };
      const cleanup = () => {
        this.waiters.delete(check);
        sig.removeEventListener("abort", onAbort);
      };
      this.waiters.add(check);
      if (sig.aborted) onAbort();
      else sig.addEventListener("abort", onAbort, { once: true });
    });
  }

  close(): void {
    this.closing = true;
    for (const e of this.sessions.values()) e.stop();
  }
}
