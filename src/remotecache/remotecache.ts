// Cache import and export for one solve, as BuildKit's CacheOptions entries ({type, attrs}):
// imports become a lookup the solver consults after a local miss (layers pulled only for results
// actually used); exports walk the solved keys and write layers, config and index.
import { Readable } from "node:stream";
import type { Descriptor } from "../api/oci.js";
import type { ContentStore } from "../content/types.js";
import { parseReference, type Resolver } from "../remotes/index.js";
import type { KeyInfo, ProgressWriter, Result, SolveHooks } from "../solver/types.js";
import { KilnError, digestOf, isDigest, type Digest } from "../util/index.js";
import { LocalCacheDir, RegistryCacheRef, SessionCacheStore, readCache, type CacheSource, type CacheTarget } from "./backends.js";
import type { ContentStores } from "../session/types.js";
import { annotationCreatedAt, annotationUncompressed, cacheConfigMediaType, layerChain, marshalConfig, parseConfig, recordsJSON, type CacheRecord } from "./config.js";
import { ConfigMatcher, buildConfig, type BuiltConfig, type CacheMode, type ImportedConfig } from "./graph.js";
import { AzureBlobStore, S3Store, azureFromAttrs, azureLayout, s3FromAttrs, s3Layout, type ObjectLayout, type ObjectStore } from "./objects.js";

/** The exporter response key of a cache export's top document (a descriptor in Go's JSON). */
export const cacheManifestKey = "cache.manifest";

export interface CacheEntry {
  type: string;
  attrs: Record<string, string>;
}

export interface RemoteCacheDeps {
  content: ContentStore;
  /** Which image of an index an inline cache is read from. */
  platform?: { os: string; architecture: string; variant?: string };
  /** A registry client with the build's credentials. */
  resolver(): Resolver;
  /** A result's layers as blobs in the content store (compression from the entry's attrs), base first, annotated with their diffIDs. */
  layerBlobs(signal: AbortSignal, result: Result, attrs: Record<string, string>): Promise<Descriptor[]>;
  /** Turns a remote layer chain into a result; `fetch` brings a blob into the content store. */
  unpack(signal: AbortSignal, layers: Descriptor[], fetch: (signal: AbortSignal, desc: Descriptor) => Promise<void>, progress: ProgressWriter, vertex: Digest): Promise<Result>;
  /** The local cache store's results for a key. */
  loadLocal(signal: AbortSignal, key: Digest, outputs: number): Promise<Result[] | undefined>;
  /** Whether a vertex's key does not follow its content (a local context's transfer), so it is never exported. */
  volatile?(info: KeyInfo): boolean;
  /**
   * The content stores a remote client attached: local caches are then `local:DIR` stores there
   * (as BuildKit reaches them), not paths on this machine. Undefined in-process.
   */
  clientStores?: ContentStores;
}

/**
 * Blobs pushed at once to a registry or cache directory unless upload_parallelism says otherwise:
 * each push is a few round trips of waiting on the registry, so more in flight is what makes an
 * export fast (BuildKit pushes a cache's blobs concurrently too).
 */
const registryUploadParallelism = 16;

const commonAttrs = ["mode", "oci-mediatypes", "image-manifest", "compression", "compression-level", "force-compression", "ignore-error"];
const s3Attrs = ["bucket", "region", "endpoint_url", "use_path_style", "access_key_id", "secret_access_key", "session_token", "prefix", "blobs_prefix", "manifests_prefix", "name", "touch_refresh", "upload_parallelism"];
const azblobAttrs = ["account_url", "container", "secret_access_key", "prefix", "blobs_prefix", "manifests_prefix", "name", "upload_parallelism"];
const exportAttrs: Record<string, string[]> = {
  inline: ["mode", "ignore-error"],
  s3: [...s3Attrs, ...commonAttrs],
  azblob: [...azblobAttrs, ...commonAttrs],
  registry: ["ref", ...commonAttrs],
  local: ["dest", "tag", ...commonAttrs],
};
const importAttrs: Record<string, string[]> = {
  s3: s3Attrs,
  azblob: azblobAttrs,
  registry: ["ref"],
  local: ["src", "tag", "digest"],
};

function bool(attrs: Record<string, string>, k: string, def: boolean): boolean {
  const v = attrs[k];
  if (v === undefined) return def;
  if (v === "" || /^(1|t|true)$/i.test(v)) return true;
  if (/^(0|f|false)$/i.test(v)) return false;
  throw new KilnError("KILN_CACHE_ATTR", `invalid boolean ${k}=${JSON.stringify(v)}`);
}

/** Checks entries before the build starts: unknown types, missing or unknown attributes. */
export function checkCacheEntries(entries: CacheEntry[], dir: "export" | "import"): void {
  const table = dir === "export" ? exportAttrs : importAttrs;
  for (const e of entries) {
    const known = table[e.type];
    if (!known) throw new KilnError("KILN_CACHE_ATTR", `unsupported cache ${dir}er type ${JSON.stringify(e.type)}`, { hint: `supported: ${Object.keys(table).join(", ")}` });
    for (const k of Object.keys(e.attrs)) {
      // buildctl forwards what it was given; BuildKit ignores attributes it does not use.
      if (!known.includes(k) && dir === "export" && !["name", "store"].includes(k)) throw new KilnError("KILN_CACHE_ATTR", `unknown ${e.type} cache export attribute ${JSON.stringify(k)}`);
    }
    if (dir === "export") {
      if (e.type === "registry" && !e.attrs.ref) throw new KilnError("KILN_CACHE_ATTR", "registry cache exporter requires ref");
      if (e.type === "local" && !e.attrs.dest) throw new KilnError("KILN_CACHE_ATTR", "local cache exporter requires dest");
      const mode = e.attrs.mode ?? "min";
      if (mode !== "min" && mode !== "max") throw new KilnError("KILN_CACHE_ATTR", `invalid cache mode ${JSON.stringify(mode)}`, { hint: "mode=min or mode=max" });
      for (const k of ["oci-mediatypes", "image-manifest", "ignore-error", "force-compression"]) bool(e.attrs, k, false);
    } else {
      if (e.type === "registry" && !e.attrs.ref) throw new KilnError("KILN_CACHE_ATTR", "registry cache importer requires ref");
      if (e.type === "local" && !e.attrs.src) throw new KilnError("KILN_CACHE_ATTR", "local cache importer requires src");
    }
    // Parsed now for their errors (missing bucket, bad touch_refresh), before any work starts.
    if (e.type === "s3" || e.type === "azblob") objectStoreOf(e);
    if (e.attrs.upload_parallelism !== undefined && !/^[1-9]\d*$/.test(e.attrs.upload_parallelism)) throw new KilnError("KILN_CACHE_ATTR", `invalid upload_parallelism ${JSON.stringify(e.attrs.upload_parallelism)}`);
  }
}

function objectStoreOf(e: CacheEntry): { store: ObjectStore; layout: ObjectLayout } | undefined {
  if (e.type === "s3") return { store: new S3Store(s3FromAttrs(e.attrs)), layout: s3Layout(e.attrs) };
  if (e.type === "azblob") return { store: new AzureBlobStore(azureFromAttrs(e.attrs)), layout: azureLayout(e.attrs) };
  return undefined;
}

/** An object-store cache: the config named by the first name, layers described by its own annotations. */
async function readObjectCache(signal: AbortSignal, store: ObjectStore, layout: ObjectLayout): Promise<ImportedConfig> {
  const key = layout.manifestKey(layout.names[0] ?? "buildkit");
  const body = await store.get(signal, key);
  if (!body) throw new KilnError("KILN_CACHE_IMPORT", `${store.name}: no cache manifest ${key}`);
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return { config: parseConfig(Buffer.concat(chunks)), descriptors: new Map() };
}

function objectFetcher(store: ObjectStore, layout: ObjectLayout): BlobFetcher {
  return {
    name: store.name,
    async fetch(signal, content, desc) {
      if (await content.has(desc.digest as Digest)) return;
      const body = await store.get(signal, layout.blobKey(desc.digest));
      if (!body) throw new KilnError("KILN_CACHE_IMPORT", `${store.name}: blob ${desc.digest} is missing`);
      try {
        await content.ingest(signal, body, { digest: desc.digest as Digest, size: desc.size });
      } finally {
        body.destroy();
      }
    },
  };
}

function sourceOf(e: CacheEntry, deps: RemoteCacheDeps): CacheSource {
  if (e.type === "local" && deps.clientStores) return new SessionCacheStore(deps.clientStores, e.attrs.src ?? "", e.attrs.digest || undefined);
  if (e.type === "local") return new LocalCacheDir(e.attrs.src ?? "", e.attrs.tag || "latest", e.attrs.digest || undefined);
  return new RegistryCacheRef(deps.resolver(), parseReference(e.attrs.ref ?? ""));
}

function targetOf(e: CacheEntry, deps: RemoteCacheDeps): CacheTarget {
  if (e.type === "local" && deps.clientStores?.writable) return new SessionCacheStore(deps.clientStores, e.attrs.dest ?? "");
  if (e.type === "local") return new LocalCacheDir(e.attrs.dest ?? "", e.attrs.tag || "latest");
  return new RegistryCacheRef(deps.resolver(), parseReference(e.attrs.ref ?? ""));
}

/** A progress vertex of its own for a cache step, as BuildKit shows "importing cache manifest from …". */
async function step<T>(progress: ProgressWriter, name: string, fn: (vertex: Digest) => Promise<T>, swallow?: (err: unknown) => T): Promise<T> {
  const vertex = digestOf(`kiln.remotecache:${name}:${Date.now()}:${Math.random()}`);
  const started = new Date();
  progress.write({ vertexes: [{ digest: vertex, name, inputs: [], started }] });
  try {
    const out = await fn(vertex);
    progress.write({ vertexes: [{ digest: vertex, name, inputs: [], started, completed: new Date() }] });
    return out;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    if (swallow && !(err instanceof Error && err.name === "AbortError")) {
      progress.write({ vertexes: [{ digest: vertex, name, inputs: [], started, completed: new Date() }], warnings: [{ vertex, level: 1, short: msg }] });
      return swallow(err);
    }
    progress.write({ vertexes: [{ digest: vertex, name, inputs: [], started, completed: new Date(), error: msg }] });
    throw err;
  }
}

type BlobFetcher = Pick<CacheSource, "name" | "fetch">;

interface LoadedImport {
  source: BlobFetcher;
  matcher: ConfigMatcher;
}

/** The solve's view of its cache: keys as the solver forms them, and the imported configs to match them against. */
export class RemoteCache {
  readonly keys = new Map<Digest, KeyInfo>();
  private readonly imports: LoadedImport[] = [];
  /** Content roots of imported records that keys hit by definition (see buildConfig's `carried`). */
  private readonly carried = new Map<Digest, Digest[][]>();

  private constructor(
    private readonly deps: RemoteCacheDeps,
    private readonly progress: ProgressWriter,
  ) {}

  /** Reads every import; one that fails warns and the build goes on without it. */
  /**
   * Reading the imports goes on while the frontend works (it needs none of them): the solver's
   * questions wait for it. The signal passed must outlive the solve.
   */
  static open(signal: AbortSignal, entries: CacheEntry[], deps: RemoteCacheDeps, progress: ProgressWriter): RemoteCache {
    checkCacheEntries(entries, "import");
    const rc = new RemoteCache(deps, progress);
    rc.importing = entries.length > 0;
    rc.ready = Promise.all(
      entries.map(async (e) => {
        const objects = objectStoreOf(e);
        const source: BlobFetcher = objects ? objectFetcher(objects.store, objects.layout) : sourceOf(e, deps);
        await step(
          progress,
          `importing cache manifest from ${source.name}`,
          async () => {
            const imported = objects ? await readObjectCache(signal, objects.store, objects.layout) : await readCache(signal, sourceOf(e, deps), deps.platform);
            rc.imports.push({ source, matcher: new ConfigMatcher(imported, rc.keys) });
          },
          () => undefined,
        );
      }),
    ).then(() => undefined);
    // Failures were turned into warnings above; only an abort gets here, and the solve sees that itself.
    rc.ready.catch(() => {});
    return rc;
  }

  private importing = false;
  private ready: Promise<void> = Promise.resolve();

  hooks(): SolveHooks {
    const remote = this.importing
      ? {
          load: async (signal: AbortSignal, key: Digest, outputs: number) => {
            await this.ready;
            return this.load(signal, key, outputs);
          },
          probe: async (_signal: AbortSignal, info: KeyInfo) => {
            await this.ready;
            return this.probe(info);
          },
        }
      : undefined;
    return { onKey: (info) => this.keys.set(info.key, info), ...(remote ? { remote } : {}) };
  }

  private probe(info: KeyInfo): boolean {
    this.keys.set(info.key, info);
    const hit = this.imports.some((imp) => {
      // A match without a result still counts: what follows may have one (mode=min keeps only the last).
      for (let o = 0; o < info.outputs; o++) if (imp.matcher.matches(info.key, o).size === 0) return false;
      return true;
    });
    if (!hit) {
      this.keys.delete(info.key);
      return false;
    }
    const roots = this.imports.map((imp) => imp.matcher.contentRoots(info.key, info.outputs));
    const merged = info.deps.map((_, i) => [...new Set(roots.flatMap((r) => r[i] ?? []))].sort());
    if (merged.some((r) => r.length > 0)) this.carried.set(info.key, merged);
    return true;
  }

  private async load(signal: AbortSignal, key: Digest, outputs: number): Promise<Result[] | undefined> {
    const info = this.keys.get(key);
    if (!info) return undefined;
    for (const imp of this.imports) {
      const found = [];
      for (let o = 0; o < outputs; o++) found.push(imp.matcher.result(key, o));
      if (found.some((f) => f === undefined)) continue;
      const results: Result[] = [];
      try {
        for (const f of found) {
          if (!f) continue;
          results.push(await this.deps.unpack(signal, f.layers, (s, d) => imp.source.fetch(s, this.deps.content, d), this.progress, info.vertex.digest));
        }
        return results;
      } catch (err) {
        await Promise.allSettled(results.map((r) => r.release()));
        if (signal.aborted) throw err;
        // A cache whose blobs went missing is not worth failing the build over: run the step.
        const msg = err instanceof Error ? err.message : String(err);
        this.progress.write({ warnings: [{ vertex: info.vertex.digest, level: 1, short: `cache import from ${imp.source.name}: ${msg}` }] });
      }
    }
    return undefined;
  }

  /** Writes each export; one that fails fails the build unless ignore-error=true. */
  async export(signal: AbortSignal, entries: CacheEntry[], roots: { key: Digest; output: number }[]): Promise<Record<string, string>> {
    checkCacheEntries(entries, "export");
    const out: Record<string, string> = {};
    for (const e of entries) {
      if (e.type === "inline") continue;
      const ignore = bool(e.attrs, "ignore-error", false);
      const objects = objectStoreOf(e);
      if (objects) {
        await step(this.progress, `exporting cache to ${objects.store.name}`, (vertex) => this.exportObjects(signal, e, objects.store, objects.layout, roots, vertex), ignore ? () => undefined : undefined);
        continue;
      }
      const target = targetOf(e, this.deps);
      const what = e.type === "local" ? "client directory" : target.name;
      const root = await step(this.progress, `exporting cache to ${what}`, (vertex) => this.exportOne(signal, e, target, roots, vertex), ignore ? () => undefined : undefined);
      // BuildKit's answer: the client tags it in a local cache's index.json.
      if (root) out[cacheManifestKey] = `{"mediaType":${JSON.stringify(root.mediaType)},"digest":${JSON.stringify(root.digest)},"size":${root.size}}`;
    }
    return out;
  }

  /**
   * Inline cache (mode=min): the records of the result's chain, results given as indexes into the
   * image's own layers (`layers`, the image's blobs, base first) — the value of `moby.buildkit.cache.v0`.
   */
  async inlineRecords(signal: AbortSignal, root: { key: Digest; output: number }, layers: Descriptor[]): Promise<unknown[] | undefined> {
    const built = await buildConfig(signal, this.keys, [root], "min", (key, output) => Promise.resolve(key === root.key && output === root.output ? layers : undefined), this.deps.volatile, (key) => this.carried.get(key));
    const image = layers.map((l) => l.digest);
    const records: CacheRecord[] = built.config.records.map((r) => {
      const out: CacheRecord = { ...r, results: [], chains: [...r.chains] };
      for (const res of r.results) {
        const blobs = layerChain(built.config, res.layer).map((l) => l.blob);
        if (blobs.every((b, i) => image[i] === b)) out.results.push({ layer: blobs.length - 1, createdAt: res.createdAt });
        else out.chains.push({ layers: blobs.map((b) => image.indexOf(b)), createdAt: res.createdAt });
      }
      return out;
    });
    if (!records.some((r) => r.results.length > 0 || r.chains.length > 0)) return undefined;
    return recordsJSON(records);
  }

  /** `made` hears of each result's layers as soon as they exist (mode=max uses every one), so uploads start while others are still diffed and compressed. */
  private build(signal: AbortSignal, e: CacheEntry, roots: { key: Digest; output: number }[], made?: (descs: Descriptor[]) => void): Promise<BuiltConfig> {
    const mode = (e.attrs.mode ?? "min") as CacheMode;
    const oci = bool(e.attrs, "oci-mediatypes", true);
    const layerAttrs = { compression: e.attrs.compression ?? "gzip", ...(e.attrs["compression-level"] ? { "compression-level": e.attrs["compression-level"] } : {}), ...(e.attrs["force-compression"] !== undefined ? { "force-compression": e.attrs["force-compression"] } : {}), "oci-mediatypes": String(oci) };
    return buildConfig(signal, this.keys, roots, mode, async (key, output) => {
      const info = this.keys.get(key);
      if (!info) return undefined;
      const local = await this.deps.loadLocal(signal, key, info.outputs);
      if (!local) return undefined;
      try {
        const r = local[output];
        const descs = r ? await this.deps.layerBlobs(signal, r, layerAttrs) : undefined;
        if (descs && mode === "max") made?.(descs);
        return descs;
      } finally {
        await Promise.allSettled(local.map((r) => r.release()));
      }
    }, this.deps.volatile, (key) => this.carried.get(key));
  }

  /** One status line per layer, as BuildKit's "writing layer sha256:…". */
  private async writingLayer(vertex: Digest, d: Descriptor, fn: () => Promise<void>): Promise<void> {
    const started = new Date();
    const id = `writing layer ${d.digest}`;
    this.progress.write({ statuses: [{ id, vertex, current: 0, started }] });
    await fn();
    this.progress.write({ statuses: [{ id, vertex, current: 0, started, completed: new Date() }] });
  }

  /**
   * Builds the config while uploading its blobs: each as soon as it is made, `parallelism` at a
   * time, each once; then the ones not heard of early. A failed upload stops the rest.
   */
  private async buildAndUpload(
    signal: AbortSignal,
    e: CacheEntry,
    roots: { key: Digest; output: number }[],
    parallelism: number,
    upload: (signal: AbortSignal, d: Descriptor) => Promise<void>,
    /** Runs once the config is built, beside the uploads still going. */
    built?: (signal: AbortSignal, built: BuiltConfig) => Promise<void>,
  ): Promise<BuiltConfig> {
    const failed = new AbortController();
    const sig = AbortSignal.any([signal, failed.signal]);
    const limit = new Limiter(parallelism);
    const started = new Map<string, Promise<void>>();
    const start = (d: Descriptor) => {
      if (started.has(d.digest)) return;
      const p = limit.run(() => upload(sig, d));
      p.catch((err: unknown) => failed.abort(err));
      started.set(d.digest, p);
    };
    try {
      const config = await this.build(sig, e, roots, (descs) => descs.forEach(start));
      for (const d of config.blobs.values()) start(d);
      await Promise.all([...started.values(), built?.(sig, config).catch((err: unknown) => {
        failed.abort(err);
        throw err;
      })]);
      return config;
    } catch (err) {
      // The first upload that failed says why, not the abort it caused elsewhere.
      throw failed.signal.aborted && !signal.aborted ? failed.signal.reason : err;
    } finally {
      await Promise.allSettled(started.values());
    }
  }

  /** s3 and azblob: blobs (touched when old, so expiry keeps them), then the config under each name, its layers annotated. */
  private async exportObjects(signal: AbortSignal, e: CacheEntry, store: ObjectStore, layout: ObjectLayout, roots: { key: Digest; output: number }[], vertex: Digest): Promise<void> {
    const built = await this.buildAndUpload(signal, e, roots, Number(e.attrs.upload_parallelism ?? 4), (sig, d) =>
      this.writingLayer(vertex, d, async () => {
        const key = layout.blobKey(d.digest);
        const at = await store.head(sig, key);
        if (!at) await store.put(sig, key, this.deps.content.createReadStream(d.digest as Digest), d.size, { ifNoneMatch: true });
        else if (Date.now() - at.getTime() > layout.touchRefreshMs) await store.touch(sig, key);
      }),
    );
    const config = {
      ...built.config,
      layers: built.config.layers.map((l) => {
        const d = built.blobs.get(l.blob);
        const diffID = d?.annotations?.[annotationUncompressed];
        return d ? { ...l, annotations: { mediaType: d.mediaType, ...(diffID && isDigest(diffID) ? { diffID } : {}), size: d.size, createdAt: d.annotations?.[annotationCreatedAt] } } : l;
      }),
    };
    const bytes = Buffer.from(marshalConfig(config));
    for (const name of layout.names) await store.put(signal, layout.manifestKey(name), bytes, bytes.length);
  }

  private async exportOne(signal: AbortSignal, e: CacheEntry, target: CacheTarget, roots: { key: Digest; output: number }[], vertex: Digest): Promise<Descriptor> {
    const oci = bool(e.attrs, "oci-mediatypes", true);
    const imageManifest = bool(e.attrs, "image-manifest", false);
    // Layer blobs go up while the config is built (putBlob skips one the target has, with one
    // HEAD), the config after them, the top document last: a reader never finds an index whose
    // blobs are missing.
    let configDesc: Descriptor | undefined;
    const built = await this.buildAndUpload(
      signal,
      e,
      roots,
      Number(e.attrs.upload_parallelism ?? registryUploadParallelism),
      (sig, d) => this.writingLayer(vertex, d, () => target.putBlob(sig, d, () => this.deps.content.createReadStream(d.digest as Digest))),
      async (sig, b) => {
        const configBytes = Buffer.from(marshalConfig(b.config));
        configDesc = { mediaType: cacheConfigMediaType, digest: digestOf(configBytes), size: configBytes.length };
        await target.putBlob(sig, configDesc, () => Readable.from([configBytes]));
      },
    );
    if (!configDesc) throw new Error("cache config was not written");
    const layerDescs = built.config.layers.map((l) => built.blobs.get(l.blob)).filter((d): d is Descriptor => d !== undefined);
    let root: { mediaType: string; body: Buffer };
    if (imageManifest) {
      const m = { schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: configDesc, layers: layerDescs };
      root = { mediaType: m.mediaType, body: Buffer.from(JSON.stringify(m)) };
    } else {
      const mediaType = oci ? "application/vnd.oci.image.index.v1+json" : "application/vnd.docker.distribution.manifest.list.v2+json";
      root = { mediaType, body: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests: [...layerDescs, configDesc] })) };
    }
    const rootDesc = { mediaType: root.mediaType, digest: digestOf(root.body), size: root.body.length };
    await target.putRoot(signal, rootDesc, root.body);
    return rootDesc;
  }
}

/** Runs at most `n` tasks at once, the rest in the order they came. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly n: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    // A finished task hands its slot to the next waiter directly, so no newcomer slips in between.
    if (this.active >= this.n) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
