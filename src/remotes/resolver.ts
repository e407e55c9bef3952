// RegistryResolver: the distribution API client on undici. Resolves and fetches through mirrors
// then the registry itself, pushes blobs (HEAD check, cross-repo mount, monolithic or chunked
// upload) and manifests, and authenticates as the registry's challenges ask.
import type { IncomingHttpHeaders } from "node:http";
import { Readable } from "node:stream";
import { getGlobalDispatcher, request, type Dispatcher } from "undici";
import { MediaType, isIndexMediaType, isManifestMediaType, type Descriptor } from "../api/oci.js";
import { CanceledError, KilnError, digestOf, isAbortError, isDigest, throwIfAborted } from "../util/index.js";
import { Authorizer } from "./auth.js";
import { RegistryError, condenseErrorBody, type RegistryAttempt } from "./errors.js";
import { Dispatchers, registryEndpoints, type RegistryEndpoint } from "./hosts.js";
import { formatReference, repositoryName } from "./reference.js";
import type { CredentialProvider, Reference, RegistryHostConfig, ResolvedDescriptor, Resolver } from "./types.js";

export interface RegistryResolverOptions {
  /** Per-host settings, keyed as in buildkitd.toml's `[registry."HOST"]`. */
  hosts?: Record<string, RegistryHostConfig>;
  credentials?: CredentialProvider;
  userAgent?: string;
  /** Blobs larger than this go up in PATCH chunks of this size; otherwise one streamed PUT. */
  chunkSize?: number;
}

export interface PushBlobOptions {
  /** Repositories on the same registry that may already hold the blob (cross-repo mount). */
  mountFrom?: string[];
}

/** What the resolver accepts for a manifest, most specific first (as containerd sends it). */
export const manifestAccept = [MediaType.ociIndex, MediaType.dockerManifestList, MediaType.ociManifest, MediaType.dockerManifest, "*/*"].join(", ");

/** Manifests are small; a body beyond this is not a manifest. */
const maxManifestBytes = 8 << 20;

type Body = Readable | Uint8Array | string;

interface Req {
  method: Dispatcher.HttpMethod;
  /** Relative to the endpoint's API root (`/library/busybox/manifests/latest`)… */
  path?: string;
  /** …or an absolute URL the registry handed out (upload locations). */
  url?: string;
  headers?: Record<string, string>;
  body?: () => Body;
  scopes: string[];
}

interface Res {
  status: number;
  headers: IncomingHttpHeaders;
  url: string;
  method: string;
  body: Readable;
  text(): Promise<string>;
  dump(): Promise<void>;
}

/** A request that never got an HTTP answer. */
class NetworkFailure extends Error {
  constructor(
    readonly url: string,
    readonly method: string,
    cause: unknown,
  ) {
    super(describeNetworkError(cause), { cause });
  }
}

export class RegistryResolver implements Resolver, AsyncDisposable {
  private readonly hosts: Record<string, RegistryHostConfig>;
  private readonly userAgent: string;
  private readonly chunkSize: number | undefined;
  private readonly dispatchers = new Dispatchers();
  private readonly auth: Authorizer;
  /** Hosts (insecure + http) whose https attempt failed, so they are spoken to in plain http. */
  private readonly fellBack = new Set<string>();

  constructor(opts: RegistryResolverOptions = {}) {
    this.hosts = opts.hosts ?? {};
    this.userAgent = opts.userAgent ?? "kiln/0.1";
    this.chunkSize = opts.chunkSize;
    this.auth = new Authorizer({
      credentials: opts.credentials,
      userAgent: this.userAgent,
      dispatcherFor: (signal, url) => {
        const cfg = this.hosts[url.host];
        return this.dispatchers.for(signal, { insecure: cfg?.insecure === true, ca: cfg?.ca ?? [] });
      },
    });
  }

  /** Closes the connection pools this resolver created (insecure or custom-CA hosts). */
  close(): Promise<void> {
    return this.dispatchers.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async resolve(signal: AbortSignal, ref: Reference): Promise<ResolvedDescriptor> {
    const target = ref.digest ?? ref.tag ?? "latest";
    const path = `/${ref.path}/manifests/${target}`;
    const scopes = [pullScope(ref.path)];
    const descriptor = await this.firstAnswer(signal, ref, "pull", formatReference(ref), async (ep) => {
      const head = await this.send(signal, ep, { method: "HEAD", path, headers: { accept: manifestAccept }, scopes });
      await head.dump();
      if (head.status === 200) {
        const d = descriptorFromHeaders(head.headers, ref.digest);
        if (d) return d;
      }
      // Without a usable HEAD answer, GET it: some registries answer HEAD poorly, and on an
      // error the body says why.
      if (head.status === 401) return attemptOf(ep, head, "");
      const get = await this.send(signal, ep, { method: "GET", path, headers: { accept: manifestAccept }, scopes });
      if (get.status !== 200) return attemptOf(ep, get, condenseErrorBody(await get.text()));
      const body = await readLimited(get.body, maxManifestBytes);
      const digest = digestOf(body);
      if (ref.digest !== undefined && digest !== ref.digest) {
        return attemptOf(ep, get, `content digest ${digest} does not match the requested ${ref.digest}`);
      }
      const mediaType = manifestMediaType(headerString(get.headers["content-type"]), body);
      if (!mediaType) return attemptOf(ep, get, "the answer is not an image manifest or index");
      return { mediaType, digest, size: body.length } satisfies Descriptor;
    });
    return { ref: { ...ref, digest: descriptor.digest }, descriptor };
  }

  async fetch(signal: AbortSignal, ref: Reference, desc: Descriptor): Promise<Readable> {
    checkDescriptor(desc);
    const isManifest = isManifestMediaType(desc.mediaType) || isIndexMediaType(desc.mediaType);
    const path = `/${ref.path}/${isManifest ? "manifests" : "blobs"}/${desc.digest}`;
    const headers: Record<string, string> = { accept: isManifest ? `${desc.mediaType}, ${manifestAccept}` : "*/*" };
    return this.firstAnswer(signal, ref, "pull", `${repositoryName(ref)}@${desc.digest}`, async (ep) => {
      const res = await this.send(signal, ep, { method: "GET", path, headers, scopes: [pullScope(ref.path)] });
      if (res.status !== 200) return attemptOf(ep, res, condenseErrorBody(await res.text()));
      const length = headerString(res.headers["content-length"]);
      if (length !== undefined && Number(length) !== desc.size) {
        await res.dump();
        return attemptOf(ep, res, `size ${length} does not match the descriptor's ${desc.size}`);
      }
      return res.body;
    });
  }

  async exists(signal: AbortSignal, ref: Reference, desc: Descriptor): Promise<boolean> {
    checkDescriptor(desc);
    const ep = this.pushEndpoint(ref);
    const kind = isManifestMediaType(desc.mediaType) || isIndexMediaType(desc.mediaType) ? "manifests" : "blobs";
    const res = await this.sendOrFail(signal, ep, ref, `${repositoryName(ref)}@${desc.digest}`, {
      method: "HEAD",
      path: `/${ref.path}/${kind}/${desc.digest}`,
      headers: kind === "manifests" ? { accept: manifestAccept } : {},
      scopes: [pullScope(ref.path)],
    });
    await res.dump();
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw new RegistryError(`${repositoryName(ref)}@${desc.digest}`, repositoryName(ref), [attemptOf(ep, res, "")]);
  }

  async pushBlob(signal: AbortSignal, ref: Reference, desc: Descriptor, open: () => Readable, opts: PushBlobOptions = {}): Promise<void> {
    checkDescriptor(desc);
    const ep = this.pushEndpoint(ref);
    const what = `${repositoryName(ref)}@${desc.digest}`;
    const mounts = (opts.mountFrom ?? []).filter((r) => r !== ref.path);
    const scopes = [pushScope(ref.path), ...mounts.map(pullScope)];
    const fail = async (res: Res): Promise<never> => {
      throw new RegistryError(`pushing ${what}`, repositoryName(ref), [attemptOf(ep, res, condenseErrorBody(await res.text()))]);
    };

    const head = await this.sendOrFail(signal, ep, ref, `pushing ${what}`, { method: "HEAD", path: `/${ref.path}/blobs/${desc.digest}`, scopes });
    await head.dump();
    if (head.status === 200) return;
    if (head.status !== 404) await fail(head);

    let location: string | undefined;
    for (const from of mounts) {
      const q = new URLSearchParams({ mount: desc.digest, from });
      const res = await this.sendOrFail(signal, ep, ref, `pushing ${what}`, { method: "POST", path: `/${ref.path}/blobs/uploads/?${q}`, headers: { "content-length": "0" }, scopes });
      if (res.status === 201) {
        await res.dump();
        return;
      }
      if (res.status !== 202) await fail(res);
      await res.dump();
      // The registry could not mount and opened an upload session instead: use it.
      location = headerString(res.headers.location);
      break;
    }
    if (location === undefined) {
      const res = await this.sendOrFail(signal, ep, ref, `pushing ${what}`, { method: "POST", path: `/${ref.path}/blobs/uploads/`, headers: { "content-length": "0" }, scopes });
      if (res.status !== 202) await fail(res);
      await res.dump();
      location = headerString(res.headers.location);
    }
    if (!location) throw new RegistryError(`pushing ${what}`, repositoryName(ref), [{ host: ep.host, mirror: false, method: "POST", url: `/v2/${ref.path}/blobs/uploads/`, status: 202, detail: "no upload Location header" }]);
    let uploadUrl = new URL(location, `${this.origin(ep)}${ep.path}/`).toString();

    if (this.chunkSize !== undefined && this.chunkSize > 0 && desc.size > this.chunkSize) {
      uploadUrl = await this.uploadChunks(signal, ep, ref, what, uploadUrl, open, scopes, fail);
      const done = new URL(uploadUrl);
      done.searchParams.set("digest", desc.digest);
      const res = await this.sendOrFail(signal, ep, ref, `pushing ${what}`, { method: "PUT", url: done.toString(), headers: { "content-length": "0" }, scopes });
      if (res.status !== 201) await fail(res);
      await res.dump();
      checkDigestHeader(res, desc, ep, ref, what);
      return;
    }
    const put = new URL(uploadUrl);
    put.searchParams.set("digest", desc.digest);
    const res = await this.sendOrFail(signal, ep, ref, `pushing ${what}`, {
      method: "PUT",
      url: put.toString(),
      headers: { "content-type": "application/octet-stream", "content-length": String(desc.size) },
      body: open,
      scopes,
    });
    if (res.status !== 201) await fail(res);
    await res.dump();
    checkDigestHeader(res, desc, ep, ref, what);
  }

  async pushManifest(signal: AbortSignal, ref: Reference, desc: Descriptor, body: Uint8Array): Promise<void> {
    checkDescriptor(desc);
    if (digestOf(body) !== desc.digest || body.length !== desc.size) {
      throw new KilnError("KILN_DIGEST_MISMATCH", `manifest for ${formatReference(ref)}: body is ${digestOf(body)} (${body.length} bytes), descriptor says ${desc.digest} (${desc.size} bytes)`);
    }
    const ep = this.pushEndpoint(ref);
    const target = ref.tag ?? desc.digest;
    const what = `pushing ${repositoryName(ref)}:${target}`;
    const res = await this.sendOrFail(signal, ep, ref, what, {
      method: "PUT",
      path: `/${ref.path}/manifests/${target}`,
      headers: { "content-type": desc.mediaType, "content-length": String(body.length) },
      body: () => body,
      scopes: [pushScope(ref.path)],
    });
    if (res.status !== 201 && res.status !== 200) {
      throw new RegistryError(what, repositoryName(ref), [attemptOf(ep, res, condenseErrorBody(await res.text()))]);
    }
    await res.dump();
    checkDigestHeader(res, desc, ep, ref, what);
  }

  private async uploadChunks(
    signal: AbortSignal,
    ep: RegistryEndpoint,
    ref: Reference,
    what: string,
    start: string,
    open: () => Readable,
    scopes: string[],
    fail: (res: Res) => Promise<never>,
  ): Promise<string> {
    const size = this.chunkSize!;
    let url = start;
    let offset = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      const chunk = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      const res = await this.sendOrFail(signal, ep, ref, `pushing ${what}`, {
        method: "PATCH",
        url,
        headers: {
          "content-type": "application/octet-stream",
          "content-length": String(chunk.length),
          "content-range": `${offset}-${offset + chunk.length - 1}`,
        },
        body: () => chunk,
        scopes,
      });
      if (res.status !== 202) await fail(res);
      await res.dump();
      const next = headerString(res.headers.location);
      if (next) url = new URL(next, url).toString();
      offset += chunk.length;
    };
    const source = open();
    try {
      for await (const c of source) {
        throwIfAborted(signal);
        let buf = typeof c === "string" ? Buffer.from(c) : (c as Buffer);
        while (buf.length > 0) {
          const take = Math.min(size - pendingBytes, buf.length);
          pending.push(buf.subarray(0, take));
          pendingBytes += take;
          buf = buf.subarray(take);
          if (pendingBytes === size) await flush();
        }
      }
      if (pendingBytes > 0) await flush();
    } finally {
      source.destroy();
    }
    return url;
  }

  private pushEndpoint(ref: Reference): RegistryEndpoint {
    return registryEndpoints(ref.domain, this.hosts, "push")[0]!;
  }

  private origin(ep: RegistryEndpoint): string {
    const scheme = ep.httpFallback && this.fellBack.has(ep.host) ? "http" : ep.scheme;
    return `${scheme}://${ep.host}`;
  }

  /**
   * Runs `fn` against each pull endpoint in order (mirrors first) until one answers. A returned
   * attempt means "not here, try the next"; after the last, the attempts become the error.
   */
  private async firstAnswer<T>(signal: AbortSignal, ref: Reference, op: "pull", what: string, fn: (ep: RegistryEndpoint) => Promise<T | RegistryAttempt>): Promise<T> {
    const attempts: RegistryAttempt[] = [];
    for (const ep of registryEndpoints(ref.domain, this.hosts, op)) {
      throwIfAborted(signal);
      try {
        const r = await fn(ep);
        if (isAttempt(r)) attempts.push(r);
        else return r;
      } catch (err) {
        if (err instanceof NetworkFailure) attempts.push({ host: ep.host, mirror: ep.mirror, method: err.method, url: err.url, detail: err.message });
        else throw err;
      }
    }
    throw new RegistryError(what, repositoryName(ref), attempts);
  }

  /** `send`, with a network failure turned into a RegistryError naming the host. */
  private async sendOrFail(signal: AbortSignal, ep: RegistryEndpoint, ref: Reference, what: string, req: Req): Promise<Res> {
    try {
      return await this.send(signal, ep, req);
    } catch (err) {
      if (err instanceof NetworkFailure) {
        throw new RegistryError(what, repositoryName(ref), [{ host: ep.host, mirror: ep.mirror, method: err.method, url: err.url, detail: err.message }], { cause: err.cause });
      }
      throw err;
    }
  }

  /** One logical request: authentication retry, redirects and the https→http fallback included. */
  private async send(signal: AbortSignal, ep: RegistryEndpoint, req: Req): Promise<Res> {
    let url = new URL(req.url ?? `${this.origin(ep)}${ep.path}${req.path ?? ""}`);
    let method = req.method;
    let body = req.body;
    let scopes = req.scopes;
    let authRetried = false;
    for (let hop = 0; hop < 12; hop++) {
      throwIfAborted(signal);
      const sameHost = url.host === ep.host;
      if (sameHost && ep.httpFallback && this.fellBack.has(ep.host) && url.protocol === "https:") url.protocol = "http:";
      const headers: Record<string, string> = { "user-agent": this.userAgent, ...req.headers };
      if (!body) delete headers["content-type"];
      // Credentials go only to the registry itself, never to a host it redirects to.
      const authorization = sameHost ? await this.auth.header(signal, ep.host, scopes) : undefined;
      if (authorization) headers.authorization = authorization;
      const dispatcher = sameHost ? await this.dispatchers.for(signal, ep) : getGlobalDispatcher();
      let raw: Dispatcher.ResponseData;
      try {
        raw = await request(url, { method, headers, body: body?.() ?? null, signal, dispatcher });
      } catch (err) {
        if (signal.aborted || isAbortError(err)) throw new CanceledError(signal.reason);
        if (sameHost && ep.httpFallback && url.protocol === "https:" && !this.fellBack.has(ep.host)) {
          this.fellBack.add(ep.host);
          continue;
        }
        throw new NetworkFailure(url.toString(), method, err);
      }
      const res = wrap(raw, url.toString(), method);
      if (res.status === 401 && sameHost && !authRetried) {
        const text = await res.text();
        const retryScopes = await this.auth.challenged(signal, ep.host, res.headers["www-authenticate"], scopes, authorization);
        if (retryScopes) {
          authRetried = true;
          scopes = retryScopes;
          continue;
        }
        return consumed(res, text);
      }
      const location = headerString(res.headers.location);
      if ([301, 302, 303, 307, 308].includes(res.status) && location) {
        await res.dump();
        url = new URL(location, url);
        if (res.status === 303 || ((res.status === 301 || res.status === 302) && method !== "HEAD" && method !== "GET")) {
          method = "GET";
          body = undefined;
        }
        continue;
      }
      return res;
    }
    throw new NetworkFailure(url.toString(), method, new Error("too many redirects"));
  }
}

function wrap(raw: Dispatcher.ResponseData, url: string, method: string): Res {
  return {
    status: raw.statusCode,
    headers: raw.headers,
    url,
    method,
    body: raw.body,
    text: async () => {
      try {
        return (await readLimited(raw.body, 64 << 10)).toString("utf8");
      } catch {
        return "";
      }
    },
    dump: async () => {
      await raw.body.dump().catch(() => undefined);
    },
  };
}

function consumed(res: Res, text: string): Res {
  return { ...res, body: Readable.from([]), text: async () => text, dump: async () => undefined };
}

function attemptOf(ep: RegistryEndpoint, res: Res, detail: string): RegistryAttempt {
  return { host: ep.host, mirror: ep.mirror, method: res.method, url: res.url, status: res.status, detail };
}

function isAttempt(v: unknown): v is RegistryAttempt {
  return typeof v === "object" && v !== null && "host" in v && "method" in v && "detail" in v && "url" in v;
}

function pullScope(path: string): string {
  return `repository:${path}:pull`;
}

function pushScope(path: string): string {
  return `repository:${path}:pull,push`;
}

function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function checkDescriptor(desc: Descriptor): void {
  if (!isDigest(desc.digest)) throw new KilnError("KILN_INVALID_DIGEST", `invalid digest ${JSON.stringify(desc.digest)} in descriptor`);
}

function checkDigestHeader(res: Res, desc: Descriptor, ep: RegistryEndpoint, ref: Reference, what: string): void {
  const got = headerString(res.headers["docker-content-digest"]);
  if (got !== undefined && got !== desc.digest) {
    throw new RegistryError(what, repositoryName(ref), [attemptOf(ep, res, `registry stored it as ${got}, expected ${desc.digest}`)]);
  }
}

function descriptorFromHeaders(headers: IncomingHttpHeaders, refDigest: string | undefined): Descriptor | undefined {
  const mediaType = headerString(headers["content-type"])?.split(";")[0]?.trim();
  const digest = refDigest ?? headerString(headers["docker-content-digest"]);
  const length = Number(headerString(headers["content-length"]));
  if (!mediaType || !(isManifestMediaType(mediaType) || isIndexMediaType(mediaType))) return undefined;
  if (!digest || !isDigest(digest) || !Number.isInteger(length) || length <= 0) return undefined;
  return { mediaType, digest, size: length };
}

/** The media type from the header, or from the body when the registry sends a generic one. */
function manifestMediaType(header: string | undefined, body: Buffer): string | undefined {
  const fromHeader = header?.split(";")[0]?.trim();
  if (fromHeader && (isManifestMediaType(fromHeader) || isIndexMediaType(fromHeader))) return fromHeader;
  try {
    const doc = JSON.parse(body.toString("utf8")) as { mediaType?: unknown; manifests?: unknown; layers?: unknown; config?: unknown };
    if (typeof doc.mediaType === "string" && (isManifestMediaType(doc.mediaType) || isIndexMediaType(doc.mediaType))) return doc.mediaType;
    if (Array.isArray(doc.manifests)) return MediaType.ociIndex;
    if (Array.isArray(doc.layers) && doc.config) return MediaType.ociManifest;
  } catch {
    return undefined;
  }
  return undefined;
}

async function readLimited(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    const b = typeof c === "string" ? Buffer.from(c) : (c as Buffer);
    n += b.length;
    if (n > limit) {
      body.destroy();
      throw new KilnError("KILN_REGISTRY", `response larger than ${limit} bytes`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks, n);
}

function describeNetworkError(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const inner = e.cause && e.cause.message ? e.cause : e;
  const code = inner.code ?? e.code;
  const msg = inner.message ?? String(err);
  return code && !msg.includes(code) ? `${code}: ${msg}` : msg;
}
