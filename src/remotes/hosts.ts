// Which hosts serve a registry domain, in what order and how to dial them: BuildKit's
// `[registry."…"]` config (mirrors, http, insecure, ca) mapped onto undici dispatchers.
import { readFile } from "node:fs/promises";
import { rootCertificates } from "node:tls";
import { Agent, getGlobalDispatcher, type Dispatcher } from "undici";
import { KilnError } from "../util/index.js";
import type { RegistryHostConfig } from "./types.js";

export interface RegistryEndpoint {
  /** host[:port] that is dialled. */
  host: string;
  scheme: "http" | "https";
  /** API root on that host: `/v2`, or `/v2/<path>` for a mirror given with a path. */
  path: string;
  mirror: boolean;
  /** Skip TLS verification. */
  insecure: boolean;
  /** insecure + http: try https first, then plain http (BuildKit's httpFallback). */
  httpFallback: boolean;
  ca: string[];
}

const dockerHubHost = "registry-1.docker.io";

/** localhost, 127.0.0.0/8 and ::1 default to plain http, as containerd's MatchLocalhost does. */
export function isLocalhost(host: string): boolean {
  let name = host;
  if (name.startsWith("[")) name = name.slice(1, name.indexOf("]"));
  else if (name.includes(":") && name.indexOf(":") === name.lastIndexOf(":")) name = name.slice(0, name.indexOf(":"));
  return name === "localhost" || name === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** `mirror.example.com/some/path` or `https://mirror:5000/x` → host and path (scheme is ignored, as in BuildKit). */
export function splitMirror(mirror: string): { host: string; path: string } {
  let s = mirror.trim();
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(s);
  if (scheme) s = s.slice(scheme[0].length);
  const slash = s.indexOf("/");
  if (slash === -1) return { host: s, path: "" };
  return { host: s.slice(0, slash), path: `/${s.slice(slash + 1).replace(/\/+$/, "")}`.replace(/\/+$/, "") };
}

function endpoint(host: string, path: string, mirror: boolean, cfg: RegistryHostConfig | undefined): RegistryEndpoint {
  const isHTTP = cfg?.http ?? isLocalhost(host);
  const insecure = cfg?.insecure === true;
  return {
    host,
    scheme: isHTTP && !insecure ? "http" : "https",
    path: `/v2${path}`,
    mirror,
    insecure,
    httpFallback: insecure && isHTTP,
    ca: cfg?.ca ?? [],
  };
}

/**
 * The endpoints for a registry domain. Pulls and resolves try the configured mirrors first, then
 * the registry itself; pushes go to the registry only.
 */
export function registryEndpoints(domain: string, hosts: Record<string, RegistryHostConfig>, op: "pull" | "push"): RegistryEndpoint[] {
  const cfg = hosts[domain];
  const out: RegistryEndpoint[] = [];
  if (op === "pull") {
    for (const raw of cfg?.mirrors ?? []) {
      const m = splitMirror(raw);
      if (m.host === "") continue;
      out.push(endpoint(m.host, m.path, true, hosts[m.host]));
    }
  }
  const host = domain === "docker.io" ? dockerHubHost : domain;
  out.push(endpoint(host, "", false, cfg));
  return out;
}

/** Owns the undici agents that non-default TLS settings need; the rest share the global dispatcher. */
export class Dispatchers {
  private readonly agents = new Map<string, Promise<Agent>>();

  async for(signal: AbortSignal, ep: Pick<RegistryEndpoint, "insecure" | "ca">): Promise<Dispatcher> {
    if (!ep.insecure && ep.ca.length === 0) return getGlobalDispatcher();
    const key = `${ep.insecure}|${ep.ca.join("\n")}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent = (async () => {
        const extra = await Promise.all(
          ep.ca.map(async (f) => {
            try {
              return await readFile(f, { encoding: "utf8", signal });
            } catch (err) {
              throw new KilnError("KILN_CONFIG", `failed to read registry CA file ${f}: ${(err as Error).message}`, { cause: err });
            }
          }),
        );
        return new Agent({
          connect: {
            rejectUnauthorized: !ep.insecure,
            ...(extra.length > 0 ? { ca: [...rootCertificates, ...extra] } : {}),
          },
        });
      })();
      agent.catch(() => this.agents.delete(key));
      this.agents.set(key, agent);
    }
    return agent;
  }

  async close(): Promise<void> {
    const agents = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(agents.map(async (a) => (await a.catch(() => undefined))?.close()));
  }
}
