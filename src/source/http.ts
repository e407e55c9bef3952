// http(s)://URL: one downloaded file in a snapshot of its own, as BuildKit's http source makes it.
// With a checksum the cache key is known before anything is fetched; without one the file is
// fetched to learn its digest, and the URL's ETag lets a later build revalidate instead of
// downloading again.
import { createHash } from "node:crypto";
import { chown, lutimes, open } from "node:fs/promises";
import path from "node:path";
import { getGlobalDispatcher, interceptors, request, type Dispatcher } from "undici";
import type { CacheManager, ImmutableRef } from "../cache/index.js";
import type { CacheMap, Op, OpContext, Result } from "../solver/types.js";
import type { Uploads } from "../session/index.js";
import { KilnError, digestOf, throwIfAborted } from "../util/index.js";
import { sourceCacheDigest } from "./image.js";

/** The host of URLs BuildKit's clients hand out for files they upload over the session. */
const sessionUploadHost = "buildkit-session";

/** Per client session: the uploads already pulled, by URL. */
const pulledUploads = new WeakMap<Uploads, Map<string, { refId: string; checksum: string; filename: string }>>();

/** kv bucket: sha256(URL) → the downloads known for it, with their ETags. */
const urlBucket = "source.http";

export interface HttpSourceAttrs {
  checksum?: string;
  filename?: string;
  perm?: number;
  uid?: number;
  gid?: number;
}

interface Known {
  etag: string;
  checksum: string;
  modTime: string;
  refId: string;
}

interface Download {
  ref: ImmutableRef;
  checksum: string;
  filename: string;
  modTime: string;
}

export function httpAttrs(attrs: Record<string, string>): HttpSourceAttrs {
  const num = (k: string, base = 10) => (attrs[k] ? parseInt(attrs[k], base) : undefined);
  return { checksum: attrs["http.checksum"], filename: attrs["http.filename"], perm: num("http.perm", 8), uid: num("http.uid"), gid: num("http.gid") };
}

/** getFileName: the given name, else Content-Disposition's, else the URL path's last element. */
function fileName(url: string, manual: string | undefined, disposition: string | undefined): string {
  if (manual) return manual;
  const m = disposition ? /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition) : null;
  if (m && !m[1]!.endsWith("/")) {
    const base = path.posix.basename(decodeURIComponent(m[1]!).replaceAll("\\", "/"));
    if (base) return base;
  }
  try {
    const base = path.posix.basename(decodeURIComponent(new URL(url).pathname));
    if (base && base !== "." && base !== "/") return base;
  } catch {
    // fall through to the default
  }
  return "download";
}

/** Drops what is left of a response body; the abort it causes is expected, not an error. */
function discard(res: Dispatcher.ResponseData): void {
  res.body.on("error", () => {});
  res.body.destroy();
}

const etagValue = (v: string | undefined) => (v ?? "").replace(/^W\//, "");

export class HttpSourceOp implements Op {
  readonly outputs = 1;
  private download: Download | undefined;
  /** The shared connection pool, following redirects as Go's http.Client does. */
  private readonly dispatcher: Dispatcher = getGlobalDispatcher().compose(interceptors.redirect({ maxRedirections: 10 }));

  constructor(
    private readonly deps: { mgr: CacheManager; upload?: Uploads | undefined },
    private readonly url: string,
    private readonly attrs: HttpSourceAttrs,
  ) {}

  /** BuildKit's formatCacheKey: the file's name, permissions, owner and content digest (and its Last-Modified). */
  private key(filename: string, checksum: string, modTime: string): CacheMap {
    // Go's encoding/json of BuildKit's key struct (it escapes <, > and &), hashed, then made a source digest.
    const json = JSON.stringify({ Filename: filename, Perm: this.attrs.perm ?? 0, UID: this.attrs.uid ?? 0, GID: this.attrs.gid ?? 0, Checksum: checksum, ...(modTime ? { LastModTime: modTime } : {}) }).replace(
      /[<>&\u2028\u2029]/g,
      (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
    );
    return { digest: sourceCacheDigest(digestOf(json)), deps: [] };
  }

  private urlKey(): string {
    return createHash("sha256").update(this.url).digest("hex");
  }

  private known(): Known[] {
    const raw = this.deps.mgr.db.getKV(urlBucket, this.urlKey());
    return raw ? (JSON.parse(raw) as Known[]) : [];
  }

  /** `http://buildkit-session/…` names a file the client uploads through its session, not a server. */
  private sessionUpload(): URL | undefined {
    let u: URL;
    try {
      u = new URL(this.url);
    } catch {
      return undefined;
    }
    return u.host === sessionUploadHost ? u : undefined;
  }

  /**
   * A client serves each upload once, but one build may solve its source several times (the
   * frontend reads the context, then the build uses it): later solves take the first one's file.
   */
  private async pullUpload(signal: AbortSignal, u: URL): Promise<Download> {
    const uploads = this.deps.upload;
    if (!uploads) throw new KilnError("KILN_HTTP", `no upload ${u.pathname} offered by the client session`, { hint: this.url });
    let seen = pulledUploads.get(uploads);
    if (!seen) pulledUploads.set(uploads, (seen = new Map()));
    const before = seen.get(this.url);
    const ref = before ? this.deps.mgr.tryGet(before.refId) : undefined;
    if (before && ref) return { ref, checksum: before.checksum, filename: before.filename, modTime: "" };
    const d = await this.save(signal, uploads.pull(signal, u), {});
    seen.set(this.url, { refId: d.ref.id, checksum: d.checksum, filename: d.filename });
    return d;
  }

  /** The downloaded file's digest, once fetched (provenance records it). */
  pin(): string | undefined {
    return this.attrs.checksum ?? this.download?.checksum;
  }

  async cacheMap(signal: AbortSignal): Promise<CacheMap> {
    if (this.attrs.checksum) return this.key(fileName(this.url, this.attrs.filename, undefined), this.attrs.checksum, "");
    const upload = this.sessionUpload();
    if (upload) {
      this.download = await this.pullUpload(signal, upload);
      return this.key(this.download.filename, this.download.checksum, "");
    }
    // Revalidate what an earlier build fetched (and still has), by ETag; once without it when a
    // not-modified answer names a download that is gone meanwhile.
    const byEtag = new Map(this.known().filter((k) => this.deps.mgr.db.getRef(k.refId)).map((k) => [k.etag, k]));
    for (const conditional of byEtag.size > 0 ? [true, false] : [false]) {
      const headers: Record<string, string> = conditional ? { "if-none-match": [...byEtag.keys()].join(", ") } : {};
      const res = await request(this.url, { method: "GET", headers, signal, dispatcher: this.dispatcher });
      try {
        if (res.statusCode === 304 || res.statusCode === 200) {
          let etag = etagValue(res.headers.etag as string | undefined);
          if (!etag && byEtag.size === 1 && res.statusCode === 304) etag = [...byEtag.keys()][0]!;
          const k = byEtag.get(etag);
          const ref = k ? this.deps.mgr.tryGet(k.refId) : undefined;
          if (k && ref) {
            this.download = { ref, checksum: k.checksum, filename: fileName(this.url, this.attrs.filename, res.headers["content-disposition"] as string | undefined), modTime: k.modTime };
            return this.key(this.download.filename, k.checksum, k.modTime);
          }
          if (res.statusCode === 304) continue;
        }
        if (res.statusCode < 200 || res.statusCode >= 400) throw new KilnError("KILN_HTTP", `invalid response status ${res.statusCode}`, { hint: this.url });
        this.download = await this.save(signal, res.body, res.headers);
        return this.key(this.download.filename, this.download.checksum, this.download.modTime);
      } finally {
        discard(res);
      }
    }
    throw new KilnError("KILN_HTTP", `invalid not-modified response for ${this.url}`);
  }

  async exec(signal: AbortSignal, _ctx: OpContext): Promise<Result[]> {
    let d = this.download;
    this.download = undefined;
    const upload = this.sessionUpload();
    if (!d && upload) d = await this.pullUpload(signal, upload);
    if (!d) {
      const res = await request(this.url, { method: "GET", signal, dispatcher: this.dispatcher });
      try {
        if (res.statusCode < 200 || res.statusCode >= 400) throw new KilnError("KILN_HTTP", `invalid response status ${res.statusCode}`, { hint: this.url });
        d = await this.save(signal, res.body, res.headers);
      } finally {
        discard(res);
      }
    }
    const want = this.attrs.checksum;
    if (want && d.checksum !== want) {
      await d.ref.release();
      throw new KilnError("KILN_HTTP_CHECKSUM", `digest mismatch ${d.checksum}: ${want}`);
    }
    return [d.ref];
  }

  /** Streams the body into a new snapshot, hashing it; remembers the ETag for revalidation. */
  private async save(signal: AbortSignal, body: AsyncIterable<Uint8Array>, headers: Record<string, string | string[] | undefined>): Promise<Download> {
    const filename = fileName(this.url, this.attrs.filename, headers["content-disposition"] as string | undefined);
    const mut = await this.deps.mgr.newMutable(undefined, `http url ${this.url}`);
    let ref: ImmutableRef;
    const hash = createHash("sha256");
    const lastModified = (headers["last-modified"] as string | undefined) ?? "";
    try {
      const file = path.join(mut.upperDir(), filename);
      const fh = await open(file, "wx", this.attrs.perm || 0o600);
      try {
        for await (const chunk of body) {
          throwIfAborted(signal);
          hash.update(chunk);
          await fh.write(chunk);
        }
        await fh.chmod(this.attrs.perm || 0o600);
      } finally {
        await fh.close();
      }
      if (this.attrs.uid || this.attrs.gid) await chown(file, this.attrs.uid ?? 0, this.attrs.gid ?? 0);
      // The file's time is the server's Last-Modified, or the epoch.
      const parsed = lastModified ? Date.parse(lastModified) : NaN;
      const t = Number.isNaN(parsed) ? 0 : parsed / 1000;
      await lutimes(file, t, t);
      ref = await mut.commit({}, signal);
    } catch (err) {
      await mut.discard();
      throw err;
    }
    const checksum = `sha256:${hash.digest("hex")}`;
    const etag = etagValue(headers.etag as string | undefined);
    if (etag) {
      const known = this.known().filter((k) => k.etag !== etag && this.deps.mgr.db.getRef(k.refId));
      known.push({ etag, checksum, modTime: lastModified, refId: ref.id });
      this.deps.mgr.db.setKV(urlBucket, this.urlKey(), JSON.stringify(known));
    }
    return { ref, checksum, filename, modTime: lastModified };
  }
}
