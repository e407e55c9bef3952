// kilnd's listeners, as buildkitd makes them: unix sockets (0660, owned by the configured group),
// TCP (mutual TLS when a CA is given), and sockets systemd passes in (fd://, LISTEN_FDS).
import net from "node:net";
import { chmod, chown, lstat, mkdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../../util/index.js";

export type ListenAddress = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number } | { kind: "fd"; fd?: number };

/** `unix:///run/kiln/kilnd.sock`, `tcp://0.0.0.0:1234`, `tcp://[::1]:1234`, `fd://`, `fd://3`. */
export function parseListenAddress(addr: string): ListenAddress {
  const i = addr.indexOf("://");
  if (i < 0) throw new KilnError("KILN_FLAGS", `address ${addr} does not contain proto, you meant unix://${addr} ?`);
  const proto = addr.slice(0, i);
  const rest = addr.slice(i + 3);
  switch (proto) {
    case "unix":
      if (rest === "") throw new KilnError("KILN_FLAGS", `address ${addr}: missing socket path`);
      return { kind: "unix", path: rest };
    case "tcp": {
      const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d+)$/.exec(rest);
      const port = m ? Number(m[3]) : NaN;
      if (!m || port > 65535) throw new KilnError("KILN_FLAGS", `address ${addr}: expected tcp://HOST:PORT`);
      return { kind: "tcp", host: m[1] ?? m[2] ?? "", port };
    }
    case "fd":
      if (rest === "") return { kind: "fd" };
      if (!/^\d+$/.test(rest)) throw new KilnError("KILN_FLAGS", `address ${addr}: expected fd:// or fd://NUMBER`);
      return { kind: "fd", fd: Number(rest) };
    default:
      throw new KilnError("KILN_FLAGS", `addr ${addr} not supported`);
  }
}

/** systemd's first passed descriptor (sd_listen_fds). */
const listenFdsStart = 3;

/**
 * The sockets systemd passed to this process, read once: the variables are cleared so children
 * (runc, helpers) don't think the sockets are theirs.
 */
export function takeSystemdFds(env: NodeJS.ProcessEnv = process.env): number[] {
  const pid = env.LISTEN_PID;
  const n = Number(env.LISTEN_FDS ?? "0");
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (pid === undefined || Number(pid) !== process.pid || !Number.isInteger(n) || n <= 0) return [];
  return Array.from({ length: n }, (_, i) => listenFdsStart + i);
}

/** A group name or number (`--group`), as /etc/group has it. */
export async function groupToGid(group: string): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const text = await readFile("/etc/group", "utf8").catch(() => "");
  for (const line of text.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new KilnError("KILN_FLAGS", `group: unknown group ${group}`);
}

function listen(server: net.Server, opts: net.ListenOptions, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      signal.removeEventListener("abort", onAbort);
      reject(err);
    };
    const onAbort = () => {
      server.removeListener("error", onError);
      server.close();
      reject(signal.reason as Error);
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    server.once("error", onError);
    // Pipes bind synchronously inside listen(), so a umask set around this call covers the socket.
    server.listen(opts, () => {
      server.removeListener("error", onError);
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}

/** Whether something answers on the unix socket at `p` (another daemon still running). */
function socketAlive(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export interface Listener {
  readonly address: string;
  readonly server: net.Server;
  /** Whether connections are wrapped in TLS (TCP with a certificate configured). */
  readonly tls: boolean;
  /** Stops accepting (and removes a unix socket's file); connections already made stay. */
  close(): Promise<void>;
  /** Ends the connections still open. */
  destroyConnections(): void;
}

/**
 * A listener whose close doesn't wait for its connections: net.Server's close callback fires only
 * once every connection has ended, and clients keep theirs open.
 */
function makeListener(address: string, server: net.Server, tls: boolean, conns: Set<net.Socket>, unlink?: string): Listener {
  return {
    address,
    server,
    tls,
    async close() {
      if (server.listening) server.close();
      if (unlink) await rm(unlink, { force: true });
    },
    destroyConnections() {
      for (const c of conns) c.destroy();
      conns.clear();
    },
  };
}

function tracked(conns: Set<net.Socket>, fn: (s: net.Socket) => void): (s: net.Socket) => void {
  return (s) => {
    conns.add(s);
    s.once("close", () => conns.delete(s));
    fn(s);
  };
}

/**
 * Opens one listener. Unix sockets: a stale socket is replaced but a live one is an error; the
 * socket is born 0600 (umask) and then opened to the group (0660, `uid:gid`), as buildkitd does.
 */
export async function openListener(signal: AbortSignal, addr: string, o: { uid: number; gid: number; tls: boolean; systemdFds: number[]; onConnection: (s: net.Socket, tls: boolean) => void }): Promise<Listener> {
  const a = parseListenAddress(addr);
  const conns = new Set<net.Socket>();
  switch (a.kind) {
    case "unix": {
      const p = path.resolve(a.path);
      const dir = path.dirname(p);
      const dirExisted = await lstat(dir).then(
        () => true,
        () => false,
      );
      if (!dirExisted) {
        await mkdir(dir, { recursive: true, mode: 0o770 });
        await chown(dir, o.uid, o.gid);
      }
      const st = await lstat(p).catch(() => undefined);
      if (st) {
        if (!st.isSocket()) throw new KilnError("KILN_LISTEN", `${p} exists and is not a socket`);
        if (await socketAlive(p)) throw new KilnError("KILN_LISTEN", `${p} is in use: is another kilnd running?`);
        await rm(p, { force: true });
      }
      // Unix sockets carry no TLS: peers are checked by the file's permissions.
      const server = net.createServer(tracked(conns, (s) => o.onConnection(s, false)));
      const old = process.umask(0o177);
      try {
        await listen(server, { path: p }, signal);
      } finally {
        process.umask(old);
      }
      try {
        await chmod(p, 0o660);
        await chown(p, o.uid, o.gid);
      } catch (err) {
        server.close();
        throw err;
      }
      return makeListener(p, server, false, conns, p);
    }
    case "tcp": {
      const server = net.createServer(tracked(conns, (s) => o.onConnection(s, o.tls)));
      await listen(server, { host: a.host || undefined, port: a.port }, signal);
      const bound = server.address() as net.AddressInfo;
      return makeListener(`${bound.address}:${bound.port}`, server, o.tls, conns);
    }
    case "fd": {
      if (o.systemdFds.length === 0) throw new KilnError("KILN_LISTEN", "no sockets found via socket activation: make sure the service was started by systemd");
      const fd = a.fd ?? o.systemdFds[0]!;
      if (!o.systemdFds.includes(fd)) throw new KilnError("KILN_LISTEN", `fd ${fd} was not passed by systemd (have ${o.systemdFds.join(", ")})`);
      const server = net.createServer(tracked(conns, (s) => o.onConnection(s, o.tls)));
      await listen(server, { fd } as net.ListenOptions, signal);
      return makeListener(`fd://${fd}`, server, o.tls, conns);
    }
  }
}
