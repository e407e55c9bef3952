// DockerConfigCredentials: credentials as the docker CLI stores them in $DOCKER_CONFIG/config.json
// (`auths`, `credHelpers`, `credsStore`), helpers run as `docker-credential-<name> get`.
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { CanceledError, KilnError } from "../util/index.js";
import type { AuthConfig, CredentialProvider } from "./types.js";

/** The key docker uses for Docker Hub in config.json and with credential helpers. */
export const dockerHubAuthKey = "https://index.docker.io/v1/";
const dockerHubHosts = new Set(["docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"]);

interface ConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string; registrytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

export interface DockerConfigCredentialsOptions {
  /** Directory holding config.json; default $DOCKER_CONFIG, else ~/.docker. */
  configDir?: string;
  /** Environment for credential helpers (PATH decides which helper runs). */
  env?: NodeJS.ProcessEnv;
}

export class DockerConfigCredentials implements CredentialProvider {
  private readonly configDir: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(opts: DockerConfigCredentialsOptions = {}) {
    this.env = opts.env ?? process.env;
    this.configDir = opts.configDir ?? this.env.DOCKER_CONFIG ?? path.join(os.homedir(), ".docker");
  }

  /** `host` is a registry host (`ghcr.io`, `127.0.0.1:5000`); Docker Hub's names all map to its one key. */
  async credentials(signal: AbortSignal, host: string): Promise<AuthConfig | undefined> {
    const cfg = await this.read(signal);
    if (!cfg) return undefined;
    const hub = dockerHubHosts.has(host);
    const serverAddress = hub ? dockerHubAuthKey : host;
    const helper = cfg.credHelpers?.[hub ? "docker.io" : host] ?? (hub ? cfg.credHelpers?.[dockerHubAuthKey] ?? cfg.credHelpers?.["index.docker.io"] : undefined) ?? cfg.credsStore;
    if (helper) {
      const fromHelper = await runHelper(signal, helper, serverAddress, this.env);
      if (fromHelper) return fromHelper;
    }
    return fromAuths(cfg, hub ? dockerHubAuthKey : host, hub);
  }

  private async read(signal: AbortSignal): Promise<ConfigFile | undefined> {
    const file = path.join(this.configDir, "config.json");
    let text: string;
    try {
      text = await readFile(file, { encoding: "utf8", signal });
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") return undefined;
      if (signal.aborted) throw new CanceledError(signal.reason);
      throw new KilnError("KILN_CREDENTIALS", `failed to read ${file}: ${(err as Error).message}`, { cause: err });
    }
    try {
      return JSON.parse(text) as ConfigFile;
    } catch (err) {
      throw new KilnError("KILN_CREDENTIALS", `failed to parse ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Matches an `auths` key the way docker does: by host, whatever scheme or path the key carries. */
function fromAuths(cfg: ConfigFile, key: string, hub: boolean): AuthConfig | undefined {
  const auths = cfg.auths ?? {};
  let entry = auths[key];
  if (!entry) {
    for (const [k, v] of Object.entries(auths)) {
      const h = hostOf(k);
      if (h === key || (hub && dockerHubHosts.has(h))) {
        entry = v;
        break;
      }
    }
  }
  if (!entry) return undefined;
  const out: AuthConfig = {};
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const i = decoded.indexOf(":");
    if (i < 0) throw new KilnError("KILN_CREDENTIALS", `invalid auth for ${key} in docker config: not base64 of user:password`);
    out.username = decoded.slice(0, i);
    out.password = decoded.slice(i + 1);
  }
  if (entry.username) out.username = entry.username;
  if (entry.password) out.password = entry.password;
  if (entry.identitytoken) out.identityToken = entry.identitytoken;
  if (entry.registrytoken) out.registryToken = entry.registrytoken;
  return Object.keys(out).length > 0 ? out : undefined;
}

function hostOf(key: string): string {
  let s = key.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "");
  const slash = s.indexOf("/");
  if (slash >= 0) s = s.slice(0, slash);
  return s;
}

async function runHelper(signal: AbortSignal, name: string, serverAddress: string, env: NodeJS.ProcessEnv): Promise<AuthConfig | undefined> {
  const bin = `docker-credential-${name}`;
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(bin, ["get"], { env, signal, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", (err) => {
      if (signal.aborted) reject(new CanceledError(signal.reason));
      else if ((err as { code?: string }).code === "ENOENT") reject(new KilnError("KILN_CREDENTIALS", `credential helper ${bin} not found in PATH`, { cause: err }));
      else reject(new KilnError("KILN_CREDENTIALS", `credential helper ${bin}: ${err.message}`, { cause: err }));
    });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.on("error", () => undefined);
    child.stdin.end(serverAddress);
  });
  if (code !== 0) {
    const out = `${stdout}${stderr}`.trim();
    // The helper protocol's "no entry" answer is not a failure: the registry may be public.
    if (/credentials not found/i.test(out)) return undefined;
    throw new KilnError("KILN_CREDENTIALS", `credential helper ${bin} failed for ${serverAddress}: ${out || `exit status ${code}`}`);
  }
  let parsed: { Username?: string; Secret?: string };
  try {
    parsed = JSON.parse(stdout) as typeof parsed;
  } catch {
    throw new KilnError("KILN_CREDENTIALS", `credential helper ${bin} printed invalid JSON for ${serverAddress}`);
  }
  if (!parsed.Secret && !parsed.Username) return undefined;
  // "<token>" as the user name marks an identity token, by the helper protocol.
  if (parsed.Username === "<token>") return { identityToken: parsed.Secret ?? "" };
  return { username: parsed.Username ?? "", password: parsed.Secret ?? "" };
}
