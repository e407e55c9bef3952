// kilnd: the engine behind BuildKit's Control API on unix sockets, TCP (mutual TLS) and systemd
// sockets. One worker over the root; SIGTERM/SIGINT stop accepting, abort running solves (their
// containers and mounts go with them) and exit 0.
import * as grpc from "@grpc/grpc-js";
import { access, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import type net from "node:net";
import { maxMessageBytes } from "../../api/index.js";
import { Controller } from "../../control/index.js";
import { ControlService, GatewayService, kilnVersion, ociWorkerLabels, workerId } from "../../control/grpc/index.js";
import { DockerfileFrontend } from "../../frontend/index.js";
import { GrpcSessionManager, type SessionManager } from "../../session/index.js";
import { openWorker } from "../../worker/index.js";
import { errorMessage } from "../../util/index.js";
import { loadConfig } from "../config.js";
import { daemonCommand, defaultConfigPath, mergeSettings, type DaemonFlags, type DaemonSettings } from "./flags.js";
import { groupToGid, openListener, takeSystemdFds, type Listener } from "./listen.js";

export interface DaemonHooks {
  /** The session manager for Control.Session (the session protocol's daemon end). */
  sessions?: (root: string) => SessionManager;
}

function logLine(level: string, msg: string): void {
  process.stderr.write(`time="${new Date().toISOString()}" level=${level} msg=${JSON.stringify(msg)}\n`);
}

async function serverCredentials(s: DaemonSettings): Promise<grpc.ServerCredentials | undefined> {
  if (!s.tls.cert || !s.tls.key) return undefined;
  const read = async (what: string, f: string) => {
    try {
      return await readFile(f);
    } catch (err) {
      throw new Error(`could not read ${what} ${f}: ${errorMessage(err)}`, { cause: err });
    }
  };
  const cert = await read("certificate", s.tls.cert);
  const key = await read("key", s.tls.key);
  const ca = s.tls.ca ? await read("ca certificate", s.tls.ca) : null;
  // With a CA, clients must present a certificate it signed (buildkitd's RequireAndVerifyClientCert).
  return grpc.ServerCredentials.createSsl(ca, [{ private_key: key, cert_chain: cert }], ca !== null);
}

export async function runDaemon(flags: DaemonFlags, hooks: DaemonHooks = {}): Promise<number> {
  let configFile = flags.config;
  if (configFile === undefined && (await access(defaultConfigPath).then(() => true, () => false))) configFile = defaultConfigPath;
  const cfg = await loadConfig(configFile);
  const settings = mergeSettings(flags, cfg);
  const debug = settings.debug;
  const log = (msg: string) => logLine("info", msg);
  const root = path.resolve(settings.root);
  await mkdir(root, { recursive: true, mode: 0o700 });
  const gid = settings.group !== undefined ? await groupToGid(settings.group) : (settings.gid ?? process.getgid?.() ?? 0);
  const uid = process.getuid?.() ?? 0;
  const systemdFds = takeSystemdFds();
  const creds = await serverCredentials(settings);

  const ac = new AbortController();
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) {
      logLine("warning", `${sig} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    logLine("info", `${sig} received: stopping server`);
    ac.abort(new Error(`${sig}`));
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  await using opened = await openWorker({ root, registries: cfg.registries, gc: settings.gc });
  const frontends = { "dockerfile.v0": new DockerfileFrontend() };
  const controller = new Controller({
    worker: opened.worker,
    frontends,
    maxParallelism: cfg.maxParallelism,
    registries: cfg.registries,
    entitlements: settings.entitlements,
  });
  const tmpDir = path.join(root, "tmp");
  await mkdir(tmpDir, { recursive: true, mode: 0o700 });
  const wid = await workerId(root);
  const gateway = new GatewayService({
    frontends,
    worker: () => ({
      ID: wid,
      Labels: ociWorkerLabels(settings.labels),
      platforms: opened.worker.platforms.map((p) => ({ OS: p.os, Architecture: p.architecture, Variant: p.variant ?? "" })),
    }),
    log: (m) => logLine("error", m),
  });
  const service = new ControlService({
    controller,
    gc: opened.gc,
    gateway,
    workerId: wid,
    labels: settings.labels,
    version: kilnVersion,
    sessions: hooks.sessions?.(root) ?? new GrpcSessionManager({ tmpDir }),
    tmpDir,
    log: (m) => logLine("error", m),
  });
  const server = new grpc.Server({
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
    // Builds stream for a long time over one connection; don't let keepalive policing cut them.
    "grpc.keepalive_permit_without_calls": 1,
  });
  service.register(server);
  gateway.register(server);
  const plain = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const secure = creds ? server.createConnectionInjector(creds) : undefined;
  const onConnection = (s: net.Socket, tls: boolean) => (tls && secure ? secure : plain).injectConnection(s);

  const listeners: Listener[] = [];
  try {
    for (const addr of settings.addresses) {
      const l = await openListener(ac.signal, addr, { uid, gid, tls: creds !== undefined, systemdFds, onConnection });
      listeners.push(l);
      if (addr.startsWith("unix://") && creds) logLine("warning", `TLS is disabled for ${addr}`);
      if (addr.startsWith("tcp://") && !creds) logLine("warning", `TLS is not enabled for ${addr}. enabling mutual TLS authentication is highly recommended`);
      log(`running server on ${l.address}`);
    }
    if (debug) logLine("debug", `root ${root}, worker platforms ${opened.worker.platforms.map((p) => `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`).join(",")}`);
    await new Promise<void>((resolve) => {
      if (ac.signal.aborted) resolve();
      else ac.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    return 0;
  } finally {
    // Stop accepting first, then end what runs, then the connections.
    await Promise.allSettled(listeners.map((l) => l.close()));
    await service.close();
    server.forceShutdown();
    for (const l of listeners) l.destroyConnections();
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
}

export async function main(argv: string[], hooks: DaemonHooks = {}): Promise<number> {
  let code = 0;
  const cmd = daemonCommand(async (flags) => {
    try {
      code = await runDaemon(flags, hooks);
    } catch (err) {
      process.stderr.write(`kilnd: ${errorMessage(err)}\n`);
      if (flags.debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
      code = 1;
    }
  });
  cmd.version(`kilnd ${kilnVersion.package} ${kilnVersion.version} ${kilnVersion.revision}`.trim());
  cmd.exitOverride();
  try {
    await cmd.parseAsync(argv, { from: "user" });
  } catch (err) {
    const c = (err as { exitCode?: number }).exitCode;
    return typeof c === "number" ? c : 1;
  }
  return code;
}
