// SSH agent forwarding (`--ssh default[=SOCKET|KEY[,KEY…]]`): a step that mounts an agent gets a
// socket of its own whose connections are relayed to the client's agent. Key files are loaded
// into a private ssh-agent (openssh-client) started for the build, as buildctl loads them into
// an in-process agent.
import { spawn, type ChildProcess } from "node:child_process";
import { chmod, chown, lstat, mkdtemp, rm } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { KilnError } from "../util/index.js";

/** Listens on a unix socket and gives it the step's owner and mode (a mounted agent socket). */
export async function listenOwned(server: Server, sock: string, owner: { uid: number; gid: number; mode: number }): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(sock, resolve);
  });
  await chown(sock, owner.uid, owner.gid);
  await chmod(sock, owner.mode & 0o777);
}

export interface ForwardedSocket extends AsyncDisposable {
  /** A unix socket on this machine to bind into the container. */
  readonly path: string;
}

export interface SSHAgents {
  /** True when the client forwards an agent under `id` (or may: a remote client is only sure after `check`). */
  has(id: string): boolean;
  /** Asks the client whether it forwards `id`, where `has` cannot know (a remote session's CheckAgent). */
  check?(signal: AbortSignal, id: string): Promise<boolean>;
  /** A new socket relaying to agent `id`, owned and permissioned as the mount asks. */
  listen(signal: AbortSignal, id: string, opts: { uid: number; gid: number; mode: number }): Promise<ForwardedSocket>;
}

export interface AgentConfig {
  id: string;
  /** One agent socket, or key files; empty means $SSH_AUTH_SOCK. */
  paths: string[];
}

/** Parses `--ssh` values: `id[=path[,path…]]`. */
export function parseSSHSpec(spec: string): AgentConfig {
  const eq = spec.indexOf("=");
  if (eq < 0) return { id: spec || "default", paths: [] };
  return { id: spec.slice(0, eq) || "default", paths: spec.slice(eq + 1).split(",").filter((p) => p !== "") };
}

interface Agent {
  config: AgentConfig;
  /** The socket connections are relayed to, once known. */
  socket: Promise<string> | undefined;
}

export class ClientSSHAgents implements SSHAgents, AsyncDisposable {
  private readonly agents = new Map<string, Agent>();
  private readonly started: { child: ChildProcess; dir: string }[] = [];

  constructor(configs: AgentConfig[]) {
    for (const c of configs) {
      if (this.agents.has(c.id)) throw new KilnError("KILN_FLAGS", `invalid duplicate ID ${c.id}`);
      let paths = c.paths;
      if (paths.length === 0) {
        const sock = process.env.SSH_AUTH_SOCK;
        if (!sock) throw new KilnError("KILN_FLAGS", "invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set");
        paths = [sock];
      }
      this.agents.set(c.id, { config: { id: c.id, paths }, socket: undefined });
    }
  }

  has(id: string): boolean {
    return this.agents.has(id);
  }

  /** The agent socket `id` relays to (a remote session's ForwardAgent connects to it). */
  socketPath(signal: AbortSignal, id: string): Promise<string> {
    const agent = this.agents.get(id);
    if (!agent) return Promise.reject(new KilnError("KILN_SSH", `unset ssh forward key ${id}`));
    return this.agentSocket(signal, agent);
  }

  /** The agent socket: the given one, or a private agent holding the given keys. */
  private agentSocket(signal: AbortSignal, agent: Agent): Promise<string> {
    agent.socket ??= (async () => {
      const paths = agent.config.paths;
      const first = await lstat(paths[0]!).catch((err: unknown) => {
        throw new KilnError("KILN_SSH", `failed to stat ${paths[0]}: ${(err as Error).message}`, { cause: err });
      });
      if (first.isSocket()) {
        if (paths.length > 1) throw new KilnError("KILN_SSH", "invalid combination of socket and key paths");
        return paths[0]!;
      }
      return this.startAgent(signal, paths);
    })();
    return agent.socket;
  }

  private async startAgent(signal: AbortSignal, keys: string[]): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-ssh-agent-"));
    const sock = path.join(dir, "agent.sock");
    const child = spawn("ssh-agent", ["-D", "-a", sock], { stdio: "ignore" });
    this.started.push({ child, dir });
    await new Promise<void>((resolve, reject) => {
      child.once("error", (err) => reject(new KilnError("KILN_SSH", `ssh-agent: ${err.message}`, { hint: "apt-get install openssh-client", cause: err })));
      const poll = async () => {
        for (let i = 0; i < 100 && !signal.aborted; i++) {
          if (await lstat(sock).then((s) => s.isSocket()).catch(() => false)) return resolve();
          await new Promise((r) => setTimeout(r, 20));
        }
        reject(new KilnError("KILN_SSH", "ssh-agent did not start"));
      };
      void poll();
    });
    await new Promise<void>((resolve, reject) => {
      const add = spawn("ssh-add", ["-q", ...keys], { env: { ...process.env, SSH_AUTH_SOCK: sock, SSH_ASKPASS: "", DISPLAY: "" }, stdio: ["ignore", "ignore", "pipe"], signal });
      let err = "";
      add.stderr.on("data", (d: Buffer) => (err += d.toString()));
      add.on("error", reject);
      add.on("close", (code) => (code === 0 ? resolve() : reject(new KilnError("KILN_SSH", `failed to load ssh keys ${keys.join(", ")}: ${err.trim()}`))));
    });
    return sock;
  }

  async listen(signal: AbortSignal, id: string, opts: { uid: number; gid: number; mode: number }): Promise<ForwardedSocket> {
    const agent = this.agents.get(id);
    if (!agent) throw new KilnError("KILN_SSH", `no SSH key ${JSON.stringify(id)} forwarded from the client`);
    const target = await this.agentSocket(signal, agent);
    const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-ssh-"));
    const sock = path.join(dir, "ssh_auth_sock");
    const conns = new Set<Socket>();
    const server: Server = createServer((c) => {
      const up = connect(target);
      conns.add(c).add(up);
      const done = () => {
        c.destroy();
        up.destroy();
        conns.delete(c);
        conns.delete(up);
      };
      c.on("error", done).on("close", done);
      up.on("error", done).on("close", done);
      c.pipe(up).pipe(c);
    });
    try {
      await listenOwned(server, sock, opts);
    } catch (err) {
      server.close();
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    return {
      path: sock,
      async [Symbol.asyncDispose]() {
        for (const c of conns) c.destroy();
        await new Promise<void>((r) => server.close(() => r()));
        await rm(dir, { recursive: true, force: true });
      },
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const { child, dir } of this.started.splice(0)) {
      child.kill();
      await rm(dir, { recursive: true, force: true });
    }
  }
}
