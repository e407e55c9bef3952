// The client end of the session protocol: opens Control.Session on the daemon's channel and runs
// a gRPC server over that call's bytes, serving the client's attachables (local directories,
// credentials, secrets, ssh agents, export targets) to the daemon, as buildctl's session does.
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import type { Http2Session } from "node:http2";
import { connect, type Socket } from "node:net";
import path from "node:path";
import type { Writable } from "node:stream";
import { addService, auth, bindClient, control, filesync, fsutil, health, maxMessageBytes, secrets as secretspb, sshforward } from "./api.js";
import { CanceledError, KilnError, errorMessage } from "../util/index.js";
import { receiveListing, sendTree, writeListing, type PacketConn, type PacketInit } from "./fssync.js";
import { decodePacket, encodePacket } from "./packetcodec.js";
import { walkTree, type WalkStat } from "./fswalk.js";
import { messageConn } from "./msgstream.js";
import { decoder, metadataKeys, metadataValues, methods } from "./methods.js";
import { bytesCallToDuplex, relayThroughUnixSocket, type UnixRelay } from "./tunnel.js";
import { sessionHeaders, type ClientAttachables, type ExportTarget } from "./wire.js";
import { addContentStoreService } from "./contentserve.js";

export interface ClientSessionOptions {
  /** The session id the daemon files this session under (SolveRequest.session); random by default. */
  id?: string;
  /** Informational (`x-docker-expose-session-name`): buildctl sends its working directory's basename. */
  name?: string;
  /** Part of the daemon's key for reusing earlier context uploads (buildx: `<dir>:<node>`). */
  sharedKey?: string;
  attachables: ClientAttachables;
  /**
   * Send files' real owners instead of root. buildctl resets every owner to 0 before sending,
   * so builds do not depend on who runs the client; fsutil itself keeps them.
   */
  keepOwners?: boolean;
}

export interface ClientSession extends AsyncDisposable {
  readonly id: string;
  /** The methods advertised to the daemon. */
  readonly methods: readonly string[];
  /** Settles when the session call ends (rejects when it ended with an error). */
  readonly done: Promise<void>;
  /** Ends the session: half-closes the call and stops serving. */
  close(): Promise<void>;
}

type ServerStream = grpc.ServerDuplexStream<unknown, unknown>;

/** Ends a server call with an error status whose code survives (NotFound, AlreadyExists…). */
function fail(call: { emit(ev: "error", e: unknown): unknown }, err: unknown, code = grpc.status.UNKNOWN): void {
  const c = typeof (err as { code?: unknown })?.code === "number" && (err as { code: number }).code < 17 ? (err as { code: number }).code : code;
  call.emit("error", { code: c, details: errorMessage(err) });
}

/** A signal aborted when the daemon cancels the call or the session ends. */
function callSignal(call: NodeJS.EventEmitter, session: AbortSignal): AbortSignal {
  const ac = new AbortController();
  call.once("cancelled", () => ac.abort(new CanceledError("cancelled by the daemon")));
  return AbortSignal.any([ac.signal, session]);
}

const resetOwners = (st: WalkStat): boolean => {
  st.uid = 0;
  st.gid = 0;
  return true;
};

/** FileSend/DiffCopy carries raw bytes here; each handler decodes as BytesMessage or Packet. */
const rawFileSend: grpc.ServiceDefinition = {
  diffCopy: {
    path: "/moby.filesync.v1.FileSend/DiffCopy",
    requestStream: true,
    responseStream: true,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
    originalName: "DiffCopy",
  },
};

/** FileSync/DiffCopy as the client serves it: packets written by the hand encoder (listings are thousands). */
const rawFileSync: grpc.ServiceDefinition = {
  diffCopy: {
    path: methods.diffCopy,
    requestStream: true,
    responseStream: true,
    requestSerialize: encodePacket,
    requestDeserialize: decodePacket,
    responseSerialize: encodePacket,
    responseDeserialize: decodePacket,
    originalName: "DiffCopy",
  },
};

/**
 * Opens a session on `client`'s channel (which must reach the daemon's Control service) and serves
 * `attachables` over it until closed or the daemon ends it.
 */
export async function openClientSession(signal: AbortSignal, client: grpc.Client, opts: ClientSessionOptions): Promise<ClientSession> {
  // BuildKit's identity.NewID shape: 25 base-36 characters from 128 random bits.
  const id = opts.id ?? BigInt("0x" + randomBytes(16).toString("hex")).toString(36).padStart(25, "0").slice(-25);
  const a = opts.attachables;
  const life = new AbortController();
  const server = new grpc.Server({ "grpc.max_receive_message_length": maxMessageBytes, "grpc.max_send_message_length": maxMessageBytes });
  const served: string[] = [];
  const serve = (svc: { typeName: string; methods: { name: string }[] }, names: string[]) => {
    for (const n of names) served.push(`/${svc.typeName}/${n}`);
  };

  addService(server, health.Health, {
    check: (_call, cb) => cb(null, { status: health.HealthCheckResponse_ServingStatus.SERVING }),
  });
  serve(health.Health, ["Check"]);

  if (a.dirs && Object.keys(a.dirs).length > 0) {
    const dirs = a.dirs;
    server.addService(rawFileSync, {
      diffCopy: (call: grpc.ServerDuplexStream<fsutil.Packet, PacketInit>) => {
        const md = call.metadata;
        const name = metadataValues(md, metadataKeys.dirName)?.[0] ?? "";
        const dir = Object.hasOwn(dirs, name) ? dirs[name] : undefined;
        if (dir === undefined) {
          fail(call, new Error(`no access allowed to dir ${JSON.stringify(name)}`), grpc.status.NOT_FOUND);
          return;
        }
        const sig = callSignal(call, life.signal);
        const conn: PacketConn = messageConn(call, sig);
        const entries = walkTree(sig, dir, {
          includePatterns: metadataValues(md, metadataKeys.includePatterns),
          excludePatterns: metadataValues(md, metadataKeys.excludePatterns),
          followPaths: metadataValues(md, metadataKeys.followPaths),
          ...(opts.keepOwners ? {} : { map: resetOwners }),
        });
        sendTree(sig, conn, entries).then(
          () => call.end(),
          (err: unknown) => fail(call, err),
        );
      },
    });
    serve(filesync.FileSync, ["DiffCopy"]);
  }

  if (a.fileTarget || a.dirTarget !== undefined || Object.keys(a.exportTargets ?? {}).length > 0) {
    server.addService(rawFileSend, {
      diffCopy: (call: ServerStream) => {
        handleFileSend(call, a, life.signal).then(
          () => call.end(),
          (err: unknown) => fail(call, err),
        );
      },
    });
    serve(filesync.FileSend, ["DiffCopy"]);
  }

  if (a.contentStores && a.contentStores.size > 0) served.push(...addContentStoreService(server, a.contentStores, life.signal));

  if (a.credentials) {
    const creds = a.credentials;
    addService(server, auth.Auth, {
      credentials: (call, cb) => {
        const sig = callSignal(call, life.signal);
        creds.credentials(sig, call.request.Host).then(
          (ac) => {
            // BuildKit's authprovider: an identity token travels as the secret with no user name.
            if (!ac) cb(null, {});
            else if (ac.identityToken) cb(null, { Secret: ac.identityToken });
            else cb(null, { Username: ac.username ?? "", Secret: ac.password ?? "" });
          },
          (err: unknown) => cb({ code: grpc.status.UNKNOWN, details: errorMessage(err) }),
        );
      },
    });
    serve(auth.Auth, ["Credentials"]);
  }

  if (a.secrets) {
    const store = a.secrets;
    addService(server, secretspb.Secrets, {
      getSecret: (call, cb) => {
        const sig = callSignal(call, life.signal);
        store.get(sig, call.request.ID).then(
          (data) => (data ? cb(null, { data }) : cb({ code: grpc.status.NOT_FOUND, details: `secret ${call.request.ID} not found` })),
          (err: unknown) => cb({ code: grpc.status.UNKNOWN, details: errorMessage(err) }),
        );
      },
    });
    serve(secretspb.Secrets, ["GetSecret"]);
  }

  if (a.ssh) {
    const agents = a.ssh;
    addService(server, sshforward.SSH, {
      checkAgent: (call, cb) => {
        const id = call.request.ID || "default";
        if (agents.has(id)) cb(null, {});
        else cb({ code: grpc.status.UNKNOWN, details: `unset ssh forward key ${id}` });
      },
      forwardAgent: (call) => {
        const id = metadataValues(call.metadata, metadataKeys.sshID)?.[0] || "default";
        forwardAgent(call, id, agents, callSignal(call, life.signal)).then(
          () => call.end(),
          (err: unknown) => fail(call, err),
        );
      },
    });
    serve(sshforward.SSH, ["CheckAgent", "ForwardAgent"]);
  }

  const md = new grpc.Metadata();
  md.set(sessionHeaders.id, id);
  md.set(sessionHeaders.name, opts.name ?? path.basename(process.cwd()));
  md.set(sessionHeaders.sharedKey, opts.sharedKey ?? "");
  for (const m of served) md.add(sessionHeaders.method, m);

  const ctl = bindClient(control.Control, client);
  const call = ctl.session({ metadata: md });
  const onAbort = () => call.cancel();
  if (signal.aborted) call.cancel();
  else signal.addEventListener("abort", onAbort, { once: true });
  // Listening from the start: the daemon may end the call (a refused id) while the relay is set up.
  const done = new Promise<void>((resolve, reject) => {
    call.on("status", (st: grpc.StatusObject) => (st.code === grpc.status.OK ? resolve() : reject(new KilnError("KILN_SESSION", `session ended: ${st.details}`))));
    call.on("error", (err: Error) => reject(new KilnError("KILN_SESSION", `session ended: ${err.message}`, { cause: err })));
  });
  done.catch(() => undefined);
  const duplex = bytesCallToDuplex(call);
  duplex.on("error", () => undefined);
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  // The server gets a real socket relayed to the call, not the Duplex itself: over a JS stream,
  // Node's HTTP/2 completes every frame's write through JavaScript, and a listing is thousands of
  // frames (a 5,000-file context spent ~0.5 s there); through a socket the relay moves them in
  // 64 KB reads.
  let relay: UnixRelay | undefined;
  let relaySocket: Socket | undefined;
  try {
    relay = await relayThroughUnixSocket(duplex);
    relaySocket = await connectUnix(relay.socketPath);
  } catch (err) {
    call.cancel();
    duplex.destroy();
    await relay?.[Symbol.asyncDispose]();
    throw err;
  }
  injector.injectConnection(relaySocket);
  widenFlowControlWindows(server);

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      signal.removeEventListener("abort", onAbort);
      life.abort(new CanceledError("session closed"));
      injector.destroy();
      // Half-close as buildctl does: the daemon answers by ending the call.
      if (!call.writableEnded) call.end();
      const t = setTimeout(() => call.cancel(), 2_000);
      await done.catch(() => undefined);
      clearTimeout(t);
      relaySocket.destroy();
      await relay[Symbol.asyncDispose]();
      server.forceShutdown();
    })());
  done.then(close, close).catch(() => undefined);
  return { id, methods: served, done, close, [Symbol.asyncDispose]: close };
}

/** What the daemon may send ahead of our acknowledgements (its own end uses the same). */
const sessionWindow = 8 << 20;

/**
 * The daemon sends exports (an image tarball, a directory) to this server: with HTTP/2's 64 KiB
 * default window every 64 KiB waits for a WINDOW_UPDATE's round trip through both tunnels (a 2 MB
 * tarball took ~120 ms). grpc-js's server takes no window option, so the session it made for the
 * injected connection (its `sessions` map, when it has one) is widened directly.
 */
function widenFlowControlWindows(server: grpc.Server): void {
  const sessions = (server as unknown as { sessions?: unknown }).sessions;
  if (!(sessions instanceof Map)) return;
  for (const s of sessions.keys() as Iterable<Partial<Http2Session>>) {
    try {
      s.setLocalWindowSize?.(sessionWindow);
      s.settings?.({ initialWindowSize: sessionWindow });
    } catch {
      // A session already closing keeps its windows.
    }
  }
}

function connectUnix(socketPath: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    sock.once("connect", () => {
      sock.off("error", reject);
      resolve(sock);
    });
    sock.once("error", reject);
  });
}

/** FileSend/DiffCopy: a byte stream into `fileTarget`, or an fsutil tree into `dirTarget`. */
async function handleFileSend(call: ServerStream, attachables: ClientAttachables, session: AbortSignal): Promise<void> {
  const sig = callSignal(call, session);
  // BuildKit's chooser: a missing or unparsable id is exporter 0.
  const id = Number.parseInt(metadataValues(call.metadata, metadataKeys.exporterID)?.[0] ?? "0", 10) || 0;
  const a: ExportTarget | undefined = attachables.exportTargets?.[id] ?? (id === 0 ? attachables : undefined);
  if (!a || (!a.fileTarget && a.dirTarget === undefined)) throw new KilnError("KILN_SESSION", `exporter ${id} not found`);
  const exporterMd: Record<string, string> = {};
  for (const [k, v] of Object.entries(call.metadata.getMap())) {
    if (!k.startsWith(metadataKeys.exporterPrefix) || k.endsWith("-encoded")) continue;
    exporterMd[k.slice(metadataKeys.exporterPrefix.length)] = (metadataValues(call.metadata, k) ?? [String(v)]).join(",");
  }
  const raw = messageConn<Buffer, Buffer>(call, sig);
  let first: Buffer | undefined;
  let mode: "bytes" | "dir" = a.dirTarget !== undefined ? "dir" : "bytes";
  if (a.dirTarget !== undefined && a.fileTarget) {
    // Both offered: the first message tells. A BytesMessage starts with field 1 (0x0a); the first
    // packet of a tree is a STAT (field 2, 0x12) or the empty end-of-listing STAT.
    first = await raw.recv();
    mode = first !== undefined && first.length > 0 && first[0] === 0x0a ? "bytes" : "dir";
  }
  if (mode === "dir") {
    const dest = a.dirTarget!;
    await mkdir(dest, { recursive: true, mode: 0o700 });
    const decode = decodePacket;
    const encode = encodePacket;
    let pushed = first;
    const conn: PacketConn = {
      async recv() {
        if (pushed !== undefined) {
          const p = pushed;
          pushed = undefined;
          return decode(p);
        }
        const b = await raw.recv();
        return b === undefined ? undefined : decode(b);
      },
      send: (p) => raw.send(encode(p)),
      closeSend: () => raw.closeSend(),
    };
    const listing = await receiveListing(sig, conn);
    await writeListing(sig, conn, listing, dest, { merge: true, owner: { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 } });
    return;
  }
  if (!a.fileTarget) throw new KilnError("KILN_SESSION", "empty outfile and outdir");
  const out: Writable | undefined = await a.fileTarget(exporterMd);
  if (!out) {
    call.emit("error", { code: grpc.status.ALREADY_EXISTS, details: "target already exists" });
    return;
  }
  const decode = decoder(filesync.BytesMessageSchema);
  try {
    for (let b = first ?? (await raw.recv()); b !== undefined; b = await raw.recv()) {
      const data = decode(b).data;
      if (data.length === 0) continue;
      if (!out.write(data)) await new Promise<void>((resolve, reject) => {
        const onErr = (e: Error) => reject(e);
        out.once("error", onErr);
        out.once("drain", () => {
          out.off("error", onErr);
          resolve();
        });
      });
    }
    await new Promise<void>((resolve, reject) => {
      out.once("error", reject);
      out.end(() => resolve());
    });
  } catch (err) {
    // The error is this call's to report; destroyed with it, the target re-emits it, and with no
    // listener left that would end the whole client (an unhandled CanceledError when the session closed).
    out.on("error", () => undefined);
    out.destroy(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
}

/** SSH/ForwardAgent: one agent connection, its bytes relayed both ways. */
async function forwardAgent(call: grpc.ServerDuplexStream<sshforward.BytesMessage, unknown>, id: string, agents: NonNullable<ClientAttachables["ssh"]>, sig: AbortSignal): Promise<void> {
  if (!agents.has(id)) throw new KilnError("KILN_SSH", `unset ssh forward key ${id}`);
  const sockPath = await agents.socketPath(sig, id);
  const sock = connect(sockPath);
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once("connect", resolve);
      sock.once("error", reject);
    });
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(new CanceledError(sig.reason));
      sig.addEventListener("abort", onAbort, { once: true });
      call.on("data", (m: sshforward.BytesMessage) => {
        if (!sock.write(m.data)) {
          call.pause();
          sock.once("drain", () => call.resume());
        }
      });
      call.on("end", () => sock.end());
      sock.on("data", (d: Buffer) => {
        if (!call.write({ data: d })) {
          sock.pause();
          call.once("drain", () => sock.resume());
        }
      });
      sock.on("error", reject);
      sock.on("close", () => {
        sig.removeEventListener("abort", onAbort);
        resolve();
      });
    });
  } finally {
    sock.destroy();
  }
}
