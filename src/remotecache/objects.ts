// Object stores for `type=s3` and `type=azblob`, laid out as BuildKit lays them: each layer blob
// under `<prefix><blobs_prefix><digest>`, and the cache config itself (layers annotated with their
// media type, diffID, size and time) under `<prefix><manifests_prefix><name>` for every name.
// Requests are signed here (AWS Signature V4, Azure Shared Key) on undici: two small signers
// instead of two SDKs with hundreds of modules each.
import { createHash, createHmac } from "node:crypto";
import type { Readable } from "node:stream";
import { request, type Dispatcher } from "undici";
import { KilnError } from "../util/index.js";

export interface ObjectStore {
  readonly name: string;
  /** When the object was last modified; undefined when it is absent. */
  head(signal: AbortSignal, key: string): Promise<Date | undefined>;
  /** The object's body; undefined when it is absent. */
  get(signal: AbortSignal, key: string): Promise<Readable | undefined>;
  put(signal: AbortSignal, key: string, body: Readable | Buffer, size: number, opts?: { ifNoneMatch?: boolean }): Promise<void>;
  /** Renews an object's modification time (so expiry rules keep blobs still in use). */
  touch(signal: AbortSignal, key: string): Promise<void>;
}

async function fail(what: string, res: Dispatcher.ResponseData): Promise<never> {
  const text = (await res.body.text().catch(() => "")).slice(0, 500);
  throw new KilnError("KILN_CACHE_STORE", `${what}: HTTP ${res.statusCode}${text ? `: ${text}` : ""}`);
}

const sha256hex = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data).digest();

/** RFC 3986 encoding as SigV4 wants it; `/` kept in paths. */
function awsEncode(s: string, keepSlash: boolean): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase()).replace(keepSlash ? /%2F/g : /$^/, "/");
}

/** HEAD of an object (S3 and Azure answer alike): its last modification, or undefined when absent. */
async function headObject(signal: AbortSignal, key: string, u: URL, headers: Record<string, string>): Promise<Date | undefined> {
  const res = await request(u, { method: "HEAD", headers, signal });
  await res.body.dump();
  if (res.statusCode === 404) return undefined;
  if (res.statusCode !== 200) return fail(`HEAD ${key}`, res);
  const lm = res.headers["last-modified"];
  return typeof lm === "string" ? new Date(lm) : new Date(0);
}

/** GET of an object as a stream; undefined when absent. */
async function getObject(signal: AbortSignal, key: string, u: URL, headers: Record<string, string>): Promise<Readable | undefined> {
  const res = await request(u, { method: "GET", headers, signal });
  if (res.statusCode === 404) {
    await res.body.dump();
    return undefined;
  }
  if (res.statusCode !== 200) return fail(`GET ${key}`, res);
  return res.body;
}

export interface S3Options {
  bucket: string;
  region: string;
  endpointURL?: string;
  usePathStyle: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
}

export class S3Store implements ObjectStore {
  private readonly base: URL;

  constructor(private readonly o: S3Options) {
    const ep = new URL(o.endpointURL || `https://s3.${o.region}.amazonaws.com`);
    if (!o.usePathStyle) ep.hostname = `${o.bucket}.${ep.hostname}`;
    this.base = ep;
  }

  get name(): string {
    return `s3://${this.o.bucket}`;
  }

  private url(key: string): URL {
    const u = new URL(this.base.toString());
    const prefix = u.pathname.replace(/\/$/, "");
    u.pathname = `${prefix}${this.o.usePathStyle ? `/${this.o.bucket}` : ""}/${key}`;
    return u;
  }

  /** Signs with SigV4; bodies are sent unsigned (UNSIGNED-PAYLOAD), so layers stream without a first pass. */
  private signed(method: string, u: URL, extra: Record<string, string> = {}): Record<string, string> {
    const now = new Date();
    const amzDate = now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
    const day = amzDate.slice(0, 8);
    const headers: Record<string, string> = { ...extra, host: u.host, "x-amz-date": amzDate, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" };
    if (this.o.sessionToken) headers["x-amz-security-token"] = this.o.sessionToken;
    if (!this.o.accessKeyId || !this.o.secretAccessKey) return headers;
    const names = Object.keys(headers).map((k) => k.toLowerCase()).sort();
    const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v.trim()]));
    const query = [...u.searchParams].map(([k, v]) => `${awsEncode(k, false)}=${awsEncode(v, false)}`).sort().join("&");
    const canonicalPath = u.pathname.split("/").map((seg) => awsEncode(decodeURIComponent(seg), false)).join("/");
    const canonical = [method, canonicalPath, query, names.map((n) => `${n}:${lower[n]}\n`).join(""), names.join(";"), "UNSIGNED-PAYLOAD"].join("\n");
    const scope = `${day}/${this.o.region}/s3/aws4_request`;
    const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256hex(canonical)].join("\n");
    const key = hmac(hmac(hmac(hmac(`AWS4${this.o.secretAccessKey}`, day), this.o.region), "s3"), "aws4_request");
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${this.o.accessKeyId}/${scope}, SignedHeaders=${names.join(";")}, Signature=${createHmac("sha256", key).update(toSign).digest("hex")}`;
    return headers;
  }

  head(signal: AbortSignal, key: string): Promise<Date | undefined> {
    const u = this.url(key);
    return headObject(signal, key, u, this.signed("HEAD", u));
  }

  get(signal: AbortSignal, key: string): Promise<Readable | undefined> {
    const u = this.url(key);
    return getObject(signal, key, u, this.signed("GET", u));
  }

  async put(signal: AbortSignal, key: string, body: Readable | Buffer, size: number): Promise<void> {
    const u = this.url(key);
    const res = await request(u, { method: "PUT", headers: this.signed("PUT", u, { "content-length": String(size) }), body, signal });
    if (res.statusCode !== 200) return fail(`PUT ${key}`, res);
    await res.body.dump();
  }

  async touch(signal: AbortSignal, key: string): Promise<void> {
    const u = this.url(key);
    const headers = this.signed("PUT", u, { "x-amz-copy-source": `/${this.o.bucket}/${awsEncode(key, true)}`, "x-amz-metadata-directive": "REPLACE", "x-amz-meta-updated-at": new Date().toISOString() });
    const res = await request(u, { method: "PUT", headers, signal });
    if (res.statusCode !== 200) return fail(`touch ${key}`, res);
    await res.body.dump();
  }
}

/** BuildKit's s3 attributes, with the AWS environment for what they leave out. */
export function s3FromAttrs(attrs: Record<string, string>, env: NodeJS.ProcessEnv = process.env): S3Options {
  const bucket = attrs.bucket;
  if (!bucket) throw new KilnError("KILN_CACHE_ATTR", "bucket not set for s3 cache");
  const region = attrs.region || env.AWS_REGION || env.AWS_DEFAULT_REGION;
  if (!region) throw new KilnError("KILN_CACHE_ATTR", "region not set for s3 cache");
  const ak = attrs.access_key_id || env.AWS_ACCESS_KEY_ID;
  const sk = attrs.secret_access_key || env.AWS_SECRET_ACCESS_KEY;
  const st = attrs.session_token || (attrs.access_key_id ? undefined : env.AWS_SESSION_TOKEN);
  return {
    bucket,
    region,
    endpointURL: attrs.endpoint_url || env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined,
    usePathStyle: /^(1|t|true)$/i.test(attrs.use_path_style ?? ""),
    ...(ak ? { accessKeyId: ak } : {}),
    ...(sk ? { secretAccessKey: sk } : {}),
    ...(st ? { sessionToken: st } : {}),
  };
}

export interface AzureOptions {
  accountURL: string;
  container: string;
  secretAccessKey?: string;
}

const azureVersion = "2021-08-06";

export class AzureBlobStore implements ObjectStore {
  private readonly account: string;
  private readonly base: URL;
  private containerReady: Promise<void> | undefined;

  constructor(private readonly o: AzureOptions) {
    this.base = new URL(o.accountURL.replace(/\/$/, ""));
    const host = this.base.hostname;
    // An emulator (Azurite) names the account in the path: http://127.0.0.1:10000/devstoreaccount1.
    const emulator = /^[\d.]+$/.test(host) || host === "localhost";
    this.account = emulator ? (this.base.pathname.split("/")[1] ?? "") : (host.split(".")[0] ?? "");
  }

  get name(): string {
    return `${this.o.accountURL}/${this.o.container}`;
  }

  private url(key: string | undefined, query = ""): URL {
    const u = new URL(this.base.toString());
    u.pathname = `${u.pathname.replace(/\/$/, "")}/${this.o.container}${key ? `/${key.split("/").map(encodeURIComponent).join("/")}` : ""}`;
    u.search = query;
    return u;
  }

  private signed(method: string, u: URL, extra: Record<string, string> = {}, length = 0): Record<string, string> {
    const headers: Record<string, string> = { ...extra, "x-ms-date": new Date().toUTCString(), "x-ms-version": azureVersion };
    if (!this.o.secretAccessKey) return headers;
    const ms = Object.entries(headers)
      .map(([k, v]) => [k.toLowerCase(), v.trim()] as const)
      .filter(([k]) => k.startsWith("x-ms-"))
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => `${k}:${v}\n`)
      .join("");
    const params = [...u.searchParams].map(([k, v]) => [k.toLowerCase(), v] as const).sort(([a], [b]) => (a < b ? -1 : 1));
    const resource = `/${this.account}${u.pathname}${params.map(([k, v]) => `\n${k}:${v}`).join("")}`;
    const h = (n: string) => extra[n] ?? "";
    const toSign = [method, h("content-encoding"), h("content-language"), length > 0 ? String(length) : "", h("content-md5"), h("content-type"), "", h("if-modified-since"), h("if-match"), h("if-none-match"), h("if-unmodified-since"), h("range"), ms + resource].join("\n");
    const sig = createHmac("sha256", Buffer.from(this.o.secretAccessKey, "base64")).update(toSign, "utf8").digest("base64");
    headers.authorization = `SharedKey ${this.account}:${sig}`;
    return headers;
  }

  /** Creates the container on first use, as BuildKit does. */
  private ensureContainer(signal: AbortSignal): Promise<void> {
    this.containerReady ??= (async () => {
      const u = this.url(undefined, "?restype=container");
      const res = await request(u, { method: "PUT", headers: this.signed("PUT", u), signal });
      if (res.statusCode !== 201 && res.statusCode !== 409) return fail(`creating container ${this.o.container}`, res);
      await res.body.dump();
    })().catch((err: unknown) => {
      this.containerReady = undefined;
      throw err;
    });
    return this.containerReady;
  }

  head(signal: AbortSignal, key: string): Promise<Date | undefined> {
    const u = this.url(key);
    return headObject(signal, key, u, this.signed("HEAD", u));
  }

  get(signal: AbortSignal, key: string): Promise<Readable | undefined> {
    const u = this.url(key);
    return getObject(signal, key, u, this.signed("GET", u));
  }

  async put(signal: AbortSignal, key: string, body: Readable | Buffer, size: number, opts: { ifNoneMatch?: boolean } = {}): Promise<void> {
    await this.ensureContainer(signal);
    const u = this.url(key);
    const extra: Record<string, string> = { "x-ms-blob-type": "BlockBlob", "content-length": String(size) };
    // Blobs are content-addressed: one writer is enough (BuildKit uploads them with If-None-Match: *).
    if (opts.ifNoneMatch) extra["if-none-match"] = "*";
    const res = await request(u, { method: "PUT", headers: this.signed("PUT", u, extra, size), body, signal });
    if (opts.ifNoneMatch && (res.statusCode === 409 || res.statusCode === 412)) return void (await res.body.dump());
    if (res.statusCode !== 201) return fail(`PUT ${key}`, res);
    await res.body.dump();
  }

  async touch(signal: AbortSignal, key: string): Promise<void> {
    const u = this.url(key, "?comp=metadata");
    const res = await request(u, { method: "PUT", headers: this.signed("PUT", u, { "x-ms-meta-updatedat": new Date().toISOString() }), signal });
    if (res.statusCode !== 200) return fail(`touch ${key}`, res);
    await res.body.dump();
  }
}

export function azureFromAttrs(attrs: Record<string, string>, env: NodeJS.ProcessEnv = process.env): AzureOptions {
  const accountURL = attrs.account_url || env.BUILDKIT_AZURE_STORAGE_ACCOUNT_URL;
  if (!accountURL) throw new KilnError("KILN_CACHE_ATTR", "either ${BUILDKIT_AZURE_STORAGE_ACCOUNT_URL} or account_url attribute is required for azblob cache");
  try {
    new URL(accountURL);
  } catch {
    throw new KilnError("KILN_CACHE_ATTR", `azure storage account url ${JSON.stringify(accountURL)} is not a valid url`);
  }
  const key = attrs.secret_access_key || env.BUILDKIT_AZURE_STORAGE_SECRET_ACCESS_KEY;
  return { accountURL, container: attrs.container || env.BUILDKIT_AZURE_STORAGE_CONTAINER || "buildkit-cache", ...(key ? { secretAccessKey: key } : {}) };
}

/** Key layout: BuildKit's s3 concatenates; its azblob joins with `/` (filepath.Join). */
export interface ObjectLayout {
  blobKey(digest: string): string;
  manifestKey(name: string): string;
  names: string[];
  touchRefreshMs: number;
}

export function s3Layout(attrs: Record<string, string>): ObjectLayout {
  const prefix = attrs.prefix ?? "";
  const blobs = attrs.blobs_prefix ?? "blobs/";
  const manifests = attrs.manifests_prefix ?? "manifests/";
  return { blobKey: (d) => prefix + blobs + d, manifestKey: (n) => prefix + manifests + n, names: namesOf(attrs), touchRefreshMs: durationMs(attrs.touch_refresh ?? "24h") };
}

export function azureLayout(attrs: Record<string, string>): ObjectLayout {
  const join = (...parts: string[]) => parts.filter((p) => p !== "").join("/").replace(/\/+/g, "/").replace(/^\//, "");
  return {
    blobKey: (d) => join(attrs.prefix ?? "", attrs.blobs_prefix ?? "blobs", d),
    manifestKey: (n) => join(attrs.prefix ?? "", attrs.manifests_prefix ?? "manifests", n),
    names: namesOf(attrs),
    touchRefreshMs: 24 * 3600_000,
  };
}

function namesOf(attrs: Record<string, string>): string[] {
  const names = (attrs.name ?? "").split(";").filter((n) => n !== "");
  return names.length > 0 ? names : ["buildkit"];
}

/** Go's time.ParseDuration for the forms people write: 24h, 1h30m, 90s, 500ms. */
export function durationMs(s: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = s.trim();
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(rest)) throw new KilnError("KILN_CACHE_ATTR", `invalid duration ${JSON.stringify(s)}`);
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/.exec(rest);
    if (!m) break;
    total += Number(m[1]) * (units[m[2]!] ?? 0);
    rest = rest.slice(m[0].length);
  }
  return total;
}
