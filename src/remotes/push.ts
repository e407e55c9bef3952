// pushImage: uploads an image (index, manifests, configs, layers) from the content store, children
// before parents so the registry never sees a manifest whose blobs are missing. Each blob is
// checked (HEAD) before it is sent, mounted from another repository of the same registry when one
// may hold it, and every request is retried with back-off when the registry answers 5xx/429 or
// the connection drops. A push that stops half-way leaves only unreferenced uploads behind: the
// registry commits a blob only after verifying its digest, and no manifest goes up before its blobs.
import { isIndexMediaType, isManifestMediaType, type Descriptor, type Index, type Manifest } from "../api/oci.js";
import type { ContentStore } from "../content/index.js";
import { CanceledError, KilnError, isAbortError, type Digest } from "../util/index.js";
import { RegistryError } from "./errors.js";
import { formatReference, parseReference, repositoryName } from "./reference.js";
import { RegistryResolver } from "./resolver.js";
import type { Reference, Resolver } from "./types.js";

export interface RetryOptions {
  /** Tries per request, the first included (default 5). */
  attempts?: number;
  /** First back-off delay (default 500 ms); doubles each time, with jitter. */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export interface PushProgress {
  kind: "blob" | "manifest";
  descriptor: Descriptor;
  state: "start" | "done" | "retry";
  attempt?: number;
  error?: unknown;
}

export interface PushImageOptions {
  resolver: Resolver;
  store: ContentStore;
  /** Where to push; its tag (if any) names the top-level descriptor. */
  ref: Reference | string;
  descriptor: Descriptor;
  /** Repositories on the same registry to try cross-repo mounts from. */
  mountFrom?: string[];
  /** Blob uploads in flight at once. */
  concurrency?: number;
  /** Push the top-level manifest (or index) by its digest only, with no tag. */
  byDigest?: boolean;
  retry?: RetryOptions;
  onProgress?: (ev: PushProgress) => void;
}

export async function pushImage(signal: AbortSignal, opts: PushImageOptions): Promise<void> {
  const parsed = typeof opts.ref === "string" ? parseReference(opts.ref, { defaultTag: !opts.byDigest }) : opts.ref;
  const ref: Reference = opts.byDigest ? { domain: parsed.domain, path: parsed.path } : { domain: parsed.domain, path: parsed.path, ...(parsed.tag !== undefined ? { tag: parsed.tag } : {}) };
  const limit = Math.max(1, opts.concurrency ?? 4);
  const { resolver, store } = opts;
  const report = opts.onProgress ?? (() => undefined);
  const mountFrom = [...new Set(opts.mountFrom ?? [])].filter((r) => r !== ref.path);

  const pushBlob = async (desc: Descriptor): Promise<void> => {
    report({ kind: "blob", descriptor: desc, state: "start" });
    await withRetry(signal, opts.retry, `pushing ${repositoryName(ref)}@${desc.digest}`, (attempt, err) => report({ kind: "blob", descriptor: desc, state: "retry", attempt, error: err }), async () => {
      const open = () => store.createReadStream(desc.digest as Digest);
      if (resolver instanceof RegistryResolver) await resolver.pushBlob(signal, ref, desc, open, { mountFrom });
      else await resolver.pushBlob(signal, ref, desc, open);
    });
    report({ kind: "blob", descriptor: desc, state: "done" });
  };

  // Blobs shared by several manifests of an index go up once.
  const pushed = new Map<string, Promise<void>>();
  const pushBlobOnce = (desc: Descriptor): Promise<void> => {
    let p = pushed.get(desc.digest);
    if (!p) pushed.set(desc.digest, (p = pushBlob(desc)));
    return p;
  };

  const pushTree = async (desc: Descriptor, target: Reference): Promise<void> => {
    if (isIndexMediaType(desc.mediaType)) {
      const index = await store.readJSON<Index>(desc.digest as Digest);
      for (const child of index.manifests ?? []) await pushTree(child, { domain: ref.domain, path: ref.path });
    } else if (isManifestMediaType(desc.mediaType)) {
      const manifest = await store.readJSON<Manifest>(desc.digest as Digest);
      await runLimited([manifest.config, ...manifest.layers], limit, pushBlobOnce);
    } else {
      throw new KilnError("KILN_IMAGE", `cannot push ${desc.digest}: ${desc.mediaType} is not a manifest or index`);
    }
    const body = await store.read(desc.digest as Digest);
    report({ kind: "manifest", descriptor: desc, state: "start" });
    await withRetry(signal, opts.retry, `pushing ${formatReference({ ...target, ...(target.tag === undefined ? { digest: desc.digest } : {}) })}`, (attempt, err) => report({ kind: "manifest", descriptor: desc, state: "retry", attempt, error: err }), () =>
      resolver.pushManifest(signal, target, desc, body),
    );
    report({ kind: "manifest", descriptor: desc, state: "done" });
  };

  try {
    await pushTree(opts.descriptor, ref);
  } catch (err) {
    throw pushError(err);
  }
}

/** True for failures worth another try: no answer at all, or a 5xx/408/429 from the registry. */
export function isRetryable(err: unknown): boolean {
  if (isAbortError(err)) return false;
  if (err instanceof RegistryError) {
    const last = err.attempts[err.attempts.length - 1];
    const s = last?.status;
    return s === undefined || s >= 500 || s === 408 || s === 429;
  }
  const code = (err as { code?: string } | undefined)?.code;
  return typeof code === "string" && /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|UND_ERR_SOCKET|UND_ERR_CLOSED|UND_ERR_CONNECT_TIMEOUT|UND_ERR_HEADERS_TIMEOUT|UND_ERR_BODY_TIMEOUT)$/.test(code);
}

export async function withRetry<T>(signal: AbortSignal, retry: RetryOptions | undefined, _what: string, onRetry: (attempt: number, err: unknown) => void, fn: () => Promise<T>): Promise<T> {
  const attempts = Math.max(1, retry?.attempts ?? 5);
  const base = retry?.baseDelayMs ?? 500;
  const max = retry?.maxDelayMs ?? 8000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (signal.aborted) throw new CanceledError(signal.reason);
      if (attempt >= attempts || !isRetryable(err)) throw err;
      onRetry(attempt, err);
      const delay = Math.min(max, base * 2 ** (attempt - 1));
      await sleep(signal, delay / 2 + Math.random() * (delay / 2));
    }
  }
}

function sleep(signal: AbortSignal, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new CanceledError(signal.reason));
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new CanceledError(signal.reason));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** A push failure said as one: push access (not pull), the registry, the repository, the status. */
function pushError(err: unknown): unknown {
  if (!(err instanceof RegistryError)) return err;
  const denied = err.attempts.some((a) => a.status === 401 || a.status === 403);
  if (!denied) return err;
  const what = err.message.slice(0, err.message.indexOf(": ") >= 0 ? err.message.indexOf(": ") : err.message.length);
  return new RegistryError(what, err.repository, err.attempts, {
    summary: `push access denied to ${err.repository}: authentication required or insufficient scope`,
    hint: "log in to the registry (docker login writes $DOCKER_CONFIG/config.json) with an account that may push to this repository",
    cause: err,
  });
}

async function runLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      try {
        await fn(items[next++]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (rejected) throw rejected.reason;
}
