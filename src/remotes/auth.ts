// Registry authentication: WWW-Authenticate challenges, Bearer tokens (fetched per scope and
// cached until they expire) and Basic auth, with credentials from a CredentialProvider.
import { request, type Dispatcher } from "undici";
import { Flight, KilnError, isAbortError, CanceledError } from "../util/index.js";
import { condenseErrorBody } from "./errors.js";
import type { AuthConfig, CredentialProvider } from "./types.js";

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` (several challenges may share one header). */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const out: Challenge[] = [];
  for (const h of header === undefined ? [] : Array.isArray(header) ? header : [header]) {
    let i = 0;
    let current: Challenge | undefined;
    const skipSpace = (): void => {
      while (i < h.length && (h[i] === " " || h[i] === "\t")) i++;
    };
    while (i < h.length) {
      skipSpace();
      if (h[i] === ",") {
        i++;
        continue;
      }
      const tok = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/.exec(h.slice(i));
      if (!tok) break;
      i += tok[0].length;
      skipSpace();
      if (h[i] === "=") {
        // a parameter of the current challenge
        i++;
        skipSpace();
        let value = "";
        if (h[i] === '"') {
          i++;
          while (i < h.length && h[i] !== '"') {
            if (h[i] === "\\" && i + 1 < h.length) i++;
            value += h[i];
            i++;
          }
          i++;
        } else {
          const v = /^[^,\s]*/.exec(h.slice(i))![0];
          value = v;
          i += v.length;
        }
        if (current) current.params[tok[0].toLowerCase()] = value;
      } else {
        current = { scheme: tok[0].toLowerCase(), params: {} };
        out.push(current);
      }
    }
  }
  return out;
}

type HostAuth = { kind: "basic" } | { kind: "bearer"; realm: string; service: string | undefined };

interface CachedToken {
  token: string;
  expiresAt: number;
}

export interface AuthorizerOptions {
  credentials: CredentialProvider | undefined;
  userAgent: string;
  /** Dispatcher to reach a token realm. */
  dispatcherFor(signal: AbortSignal, url: URL): Promise<Dispatcher>;
}

/** Per-resolver authentication state: what each host asked for, and the tokens it gave out. */
export class Authorizer {
  private readonly hosts = new Map<string, HostAuth>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly creds = new Map<string, Promise<AuthConfig | undefined>>();
  private readonly fetching = new Flight<CachedToken>();

  constructor(private readonly opts: AuthorizerOptions) {}

  /** The Authorization header for a request to `host` needing `scopes`, once the host's scheme is known. */
  async header(signal: AbortSignal, host: string, scopes: string[]): Promise<string | undefined> {
    const how = this.hosts.get(host);
    if (!how) return undefined;
    const creds = await this.credentials(signal, host);
    if (how.kind === "basic") {
      if (!creds?.username && !creds?.password) return undefined;
      return `Basic ${Buffer.from(`${creds.username ?? ""}:${creds.password ?? ""}`).toString("base64")}`;
    }
    if (creds?.registryToken) return `Bearer ${creds.registryToken}`;
    const token = await this.token(signal, host, how, normalizeScopes(scopes), creds);
    return `Bearer ${token.token}`;
  }

  /**
   * Records a 401's challenge. Returns the scopes to retry with, or undefined when a retry
   * cannot help (no usable challenge, or Basic auth without credentials).
   */
  async challenged(signal: AbortSignal, host: string, header: string | string[] | undefined, scopes: string[], sentAuth: string | undefined): Promise<string[] | undefined> {
    const challenges = parseChallenges(header);
    const bearer = challenges.find((c) => c.scheme === "bearer" && c.params.realm);
    const basic = challenges.find((c) => c.scheme === "basic");
    if (bearer) {
      const how: HostAuth = { kind: "bearer", realm: bearer.params.realm!, service: bearer.params.service };
      this.hosts.set(host, how);
      const wanted = normalizeScopes([...scopes, ...(bearer.params.scope ? bearer.params.scope.split(" ") : [])]);
      // A token we sent was refused (expired early, revoked): never offer it again.
      if (sentAuth?.startsWith("Bearer ")) {
        const sent = sentAuth.slice(7);
        for (const [k, t] of this.tokens) if (t.token === sent) this.tokens.delete(k);
      }
      return wanted;
    }
    if (basic) {
      this.hosts.set(host, { kind: "basic" });
      const creds = await this.credentials(signal, host);
      if (!creds?.username && !creds?.password) return undefined;
      // Sending the same Basic credentials twice gets the same answer.
      if (sentAuth?.startsWith("Basic ")) return undefined;
      return normalizeScopes(scopes);
    }
    return undefined;
  }

  private credentials(signal: AbortSignal, host: string): Promise<AuthConfig | undefined> {
    const provider = this.opts.credentials;
    if (!provider) return Promise.resolve(undefined);
    let p = this.creds.get(host);
    if (!p) {
      p = provider.credentials(signal, host);
      // A failed or cancelled lookup is asked again next time.
      p.catch(() => this.creds.delete(host));
      this.creds.set(host, p);
    }
    return p;
  }

  private async token(signal: AbortSignal, host: string, how: Extract<HostAuth, { kind: "bearer" }>, scopes: string[], creds: AuthConfig | undefined): Promise<CachedToken> {
    const who = creds?.identityToken ? "identity" : creds?.username ?? "";
    const key = `${how.realm}|${how.service ?? ""}|${scopes.join(" ")}|${who}`;
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return cached;
    return this.fetching.run(key, async () => {
      const t = await this.fetchToken(signal, host, how, scopes, creds);
      this.tokens.set(key, t);
      return t;
    });
  }

  private async fetchToken(signal: AbortSignal, host: string, how: Extract<HostAuth, { kind: "bearer" }>, scopes: string[], creds: AuthConfig | undefined): Promise<CachedToken> {
    const realm = parseRealm(how.realm, host);
    const dispatcher = await this.opts.dispatcherFor(signal, realm);
    if (creds?.identityToken) {
      // An identity (refresh) token is exchanged through the OAuth2 POST endpoint.
      const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: creds.identityToken, client_id: "kiln" });
      if (how.service) form.set("service", how.service);
      if (scopes.length > 0) form.set("scope", scopes.join(" "));
      const res = await this.send(signal, realm, "POST", { "content-type": "application/x-www-form-urlencoded" }, form.toString(), dispatcher);
      // Registries without the OAuth2 endpoint: fall back to GET with the token as a password.
      if (![404, 405, 400, 401].includes(res.status)) return this.parseToken(res, realm, host);
    }
    const url = new URL(realm);
    if (how.service) url.searchParams.set("service", how.service);
    for (const s of scopes) url.searchParams.append("scope", s);
    const headers: Record<string, string> = {};
    const secret = creds?.password ?? creds?.identityToken;
    if (creds?.username || secret) {
      headers.authorization = `Basic ${Buffer.from(`${creds?.username ?? ""}:${secret ?? ""}`).toString("base64")}`;
    }
    return this.parseToken(await this.send(signal, url, "GET", headers, undefined, dispatcher), url, host);
  }

  private async send(signal: AbortSignal, url: URL, method: string, headers: Record<string, string>, body: string | undefined, dispatcher: Dispatcher): Promise<{ status: number; text: string }> {
    try {
      const res = await request(url, { method: method as Dispatcher.HttpMethod, headers: { "user-agent": this.opts.userAgent, ...headers }, body, signal, dispatcher });
      return { status: res.statusCode, text: await res.body.text() };
    } catch (err) {
      if (isAbortError(err) || signal.aborted) throw new CanceledError(signal.reason);
      throw new KilnError("KILN_REGISTRY", `failed to fetch an auth token from ${url.origin}: ${(err as Error).message}`, { cause: err });
    }
  }

  private parseToken(res: { status: number; text: string }, url: URL, host: string): CachedToken {
    if (res.status !== 200) {
      const detail = condenseErrorBody(res.text);
      throw new KilnError("KILN_REGISTRY", `authentication for ${host} failed: token server ${url.origin}${url.pathname} answered ${res.status}${detail ? ` (${detail})` : ""}`, {
        hint: res.status === 401 ? "check the credentials in $DOCKER_CONFIG/config.json (docker login)" : undefined,
      });
    }
    let parsed: { token?: string; access_token?: string; expires_in?: number };
    try {
      parsed = JSON.parse(res.text) as typeof parsed;
    } catch {
      throw new KilnError("KILN_REGISTRY", `authentication for ${host} failed: token server ${url.origin} answered with invalid JSON`);
    }
    const token = parsed.token ?? parsed.access_token;
    if (!token) throw new KilnError("KILN_REGISTRY", `authentication for ${host} failed: token server ${url.origin} sent no token`);
    // The spec's default lifetime is 60 s; refresh a little early so a token does not expire in flight.
    const lifetime = typeof parsed.expires_in === "number" && parsed.expires_in > 0 ? parsed.expires_in : 60;
    return { token, expiresAt: Date.now() + Math.max(lifetime - 10, lifetime / 2) * 1000 };
  }
}

function parseRealm(realm: string, host: string): URL {
  try {
    return new URL(realm);
  } catch {
    throw new KilnError("KILN_REGISTRY", `${host} sent an invalid token realm ${JSON.stringify(realm)}`);
  }
}

/** Merges `repository:x:pull` and `repository:x:push` into `repository:x:pull,push`; sorted, so cache keys are stable. */
export function normalizeScopes(scopes: string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  const other = new Set<string>();
  for (const s of scopes) {
    const last = s.lastIndexOf(":");
    if (last <= 0) {
      if (s) other.add(s);
      continue;
    }
    const resource = s.slice(0, last);
    const set = byResource.get(resource) ?? new Set<string>();
    for (const a of s.slice(last + 1).split(",")) if (a) set.add(a);
    byResource.set(resource, set);
  }
  const out = [...other];
  for (const [resource, actions] of byResource) out.push(`${resource}:${[...actions].sort().join(",")}`);
  return out.sort();
}
