// Whether a kiln command talks to a daemon: yes when --addr or BUILDKIT_HOST names one (buildctl's
// flags, including its TLS flags and --timeout), else it runs in-process against --root. The
// client library (grpc) is loaded only when a daemon is used.
import type { Command } from "commander";
import { connect } from "node:net";
import type { ControlClient, ConnectOptions } from "../../client/client.js";
import { KilnError } from "../../util/index.js";

/** Where `kiln build` looks for kilnd when no address is given. */
export const defaultDaemonAddress = "unix:///run/kiln/kilnd.sock";

export interface DaemonFlags {
  addr?: string;
  tlsservername?: string;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  tlsdir?: string;
  timeout?: string;
}

export function registerDaemonFlags(program: Command): void {
  program
    .option("--addr <address>", "kilnd/buildkitd address (unix:///PATH, tcp://HOST:PORT); default $BUILDKIT_HOST, else in-process")
    .option("--tlsservername <name>", "buildkitd server name for certificate validation")
    .option("--tlscacert <file>", "CA certificate for validation")
    .option("--tlscert <file>", "client certificate")
    .option("--tlskey <file>", "client key")
    .option("--tlsdir <dir>", "directory containing CA certificate, client certificate, and client key")
    .option("--timeout <seconds>", "timeout backend connection after value seconds", "5");
}

/** The daemon to use, or undefined for in-process. */
export function daemonOptions(g: DaemonFlags, env: NodeJS.ProcessEnv = process.env): ConnectOptions | undefined {
  const addr = g.addr || env.BUILDKIT_HOST;
  if (!addr) return undefined;
  const timeout = Number(g.timeout ?? "5");
  if (!Number.isFinite(timeout) || timeout <= 0) throw new KilnError("KILN_FLAGS", `invalid value ${JSON.stringify(g.timeout)} for flag --timeout`);
  const o: ConnectOptions = { addr, timeoutMs: timeout * 1000 };
  for (const k of ["tlsservername", "tlscacert", "tlscert", "tlskey", "tlsdir"] as const) {
    const v = g[k];
    if (v) o[k] = v;
  }
  return o;
}

/**
 * The default daemon, when one accepts a connection at once. A raw socket connect, not a gRPC
 * handshake: with no daemon the socket is missing or refuses within a millisecond, and a wedged
 * one gets 50 ms, so the in-process path pays next to nothing. `KILN_DEFAULT_HOST` moves the
 * probed address (tests run their own daemon without taking the machine's).
 */
export async function detectDaemon(signal: AbortSignal, env: NodeJS.ProcessEnv = process.env, timeoutMs = 50): Promise<ConnectOptions | undefined> {
  const addr = env.KILN_DEFAULT_HOST || defaultDaemonAddress;
  if (!addr.startsWith("unix:///")) return undefined;
  const sockPath = addr.slice("unix://".length);
  const ok = await new Promise<boolean>((resolve) => {
    const sock = connect(sockPath);
    const done = (v: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      sock.destroy();
      resolve(v);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(false), timeoutMs);
    signal.addEventListener("abort", onAbort, { once: true });
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
  return ok ? { addr, timeoutMs: 5000 } : undefined;
}

export async function withClient<T>(signal: AbortSignal, o: ConnectOptions, fn: (c: ControlClient) => Promise<T>): Promise<T> {
  const { ControlClient } = await import("../../client/client.js");
  // grpc-js passes an IP address host as the TLS server name, which Node reports with a
  // deprecation warning on stderr; buildctl's output has no such line.
  process.noDeprecation = true;
  using client = await ControlClient.connect(signal, o);
  return await fn(client);
}
