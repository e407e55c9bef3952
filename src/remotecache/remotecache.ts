// Cache import and export for one solve, as BuildKit's CacheOptions entries ({type, attrs}):
// imports become a lookup the solver consults after a local miss (layers pulled only for results
// actually used); exports walk the solved keys and write layers, config and index.
import { Readable } from "node:stream";
import type { Descriptor } from "../api/oci.js";
import type { ContentStore } from "../content/types.js";
import { parseReference, type Resolver } from "../remotes/index.js";
import type { KeyInfo, ProgressWriter, Result, SolveHooks } from "../solver/types.js";
import { KilnError, digestOf, type Digest } from "../util/index.js";
import { LocalCacheDir, RegistryCacheRef, readCache, type CacheSource, type CacheTarget } from "./backends.js";
import { cacheConfigMediaType, layerChain, marshalConfig, recordsJSON, type CacheRecord } from "./config.js";
import { ConfigMatcher, buildConfig, type CacheMode } from "./graph.js";

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
}

const commonAttrs = ["mode", "oci-mediatypes", "image-manifest", "compression", "compression-level", "force-compression", "ignore-error"];
const exportAttrs: Record<string, string[]> = {
  inline: ["mode", "ignore-error"],
  registry: ["ref", ...commonAttrs],
  local: ["dest", "tag", ...commonAttrs],
};
const importAttrs: Record<string, string[]> = {
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
  }
}

function sourceOf(e: CacheEntry, deps: RemoteCacheDeps): CacheSource {
  if (e.type === "local") return new LocalCacheDir(e.attrs.src ?? "", e.attrs.tag || "latest", e.attrs.digest || undefined);
  return new RegistryCacheRef(deps.resolver(), parseReference(e.attrs.ref ?? ""));
}

function targetOf(e: CacheEntry, deps: RemoteCacheDeps): CacheTarget {
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

interface LoadedImport {
  source: CacheSource;
  matcher: ConfigMatcher;
}

/** The solve's view of its cache: keys as the solver forms them, and the imported configs to match them against. */
export class RemoteCache {
  readonly keys = new Map<Digest, KeyInfo>();
  private readonly imports: LoadedImport[] = [];

  private constructor(
    private readonly deps: RemoteCacheDeps,
    private readonly progress: ProgressWriter,
  ) {}

  /** Reads every import; one that fails warns and the build goes on without it. */
  static async open(signal: AbortSignal, entries: CacheEntry[], deps: RemoteCacheDeps, progress: ProgressWriter): Promise<RemoteCache> {
    checkCacheEntries(entries, "import");
    const rc = new RemoteCache(deps, progress);
    await Promise.all(
      entries.map(async (e) => {
        const source = sourceOf(e, deps);
        await step(
          progress,
          `importing cache manifest from ${source.name}`,
          async () => {
            const imported = await readCache(signal, source, deps.platform);
            rc.imports.push({ source, matcher: new ConfigMatcher(imported, rc.keys) });
          },
          () => undefined,
        );
      }),
    );
    return rc;
  }

  hooks(): SolveHooks {
    const remote =
      this.imports.length > 0
        ? {
            load: (signal: AbortSignal, key: Digest, outputs: number) => this.load(signal, key, outputs),
            probe: (_signal: AbortSignal, info: KeyInfo) => Promise.resolve(this.probe(info)),
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
    if (!hit) this.keys.delete(info.key);
    return hit;
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
      const target = targetOf(e, this.deps);
      const ignore = bool(e.attrs, "ignore-error", false);
      const what = e.type === "local" ? "client directory" : target.name;
      await step(this.progress, `exporting cache to ${what}`, (vertex) => this.exportOne(signal, e, target, roots, vertex), ignore ? () => undefined : undefined);
    }
    return out;
  }

  /**
   * Inline cache (mode=min): the records of the result's chain, results given as indexes into the
   * image's own layers (`layers`, the image's blobs, base first) — the value of `moby.buildkit.cache.v0`.
   */
  async inlineRecords(signal: AbortSignal, root: { key: Digest; output: number }, layers: Descriptor[]): Promise<unknown[] | undefined> {
    const built = await buildConfig(signal, this.keys, [root], "min", (key, output) => Promise.resolve(key === root.key && output === root.output ? layers : undefined), this.deps.volatile);
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

  private async exportOne(signal: AbortSignal, e: CacheEntry, target: CacheTarget, roots: { key: Digest; output: number }[], vertex: Digest): Promise<void> {
    const mode = (e.attrs.mode ?? "min") as CacheMode;
    const oci = bool(e.attrs, "oci-mediatypes", true);
    const imageManifest = bool(e.attrs, "image-manifest", false);
    const layerAttrs = { compression: e.attrs.compression ?? "gzip", ...(e.attrs["compression-level"] ? { "compression-level": e.attrs["compression-level"] } : {}), ...(e.attrs["force-compression"] !== undefined ? { "force-compression": e.attrs["force-compression"] } : {}), "oci-mediatypes": String(oci) };
    const built = await buildConfig(signal, this.keys, roots, mode, async (key, output) => {
      const info = this.keys.get(key);
      if (!info) return undefined;
      const local = await this.deps.loadLocal(signal, key, info.outputs);
      if (!local) return undefined;
      try {
        const r = local[output];
        return r ? await this.deps.layerBlobs(signal, r, layerAttrs) : undefined;
      } finally {
        await Promise.allSettled(local.map((r) => r.release()));
      }
    }, this.deps.volatile);
    const layerDescs = built.config.layers.map((l) => built.blobs.get(l.blob)).filter((d): d is Descriptor => d !== undefined);
    const started = new Date();
    let done = 0;
    // Blobs concurrently, the documents after them: a reader never finds an index whose blobs are missing.
    const queue = [...new Map(layerDescs.map((d) => [d.digest, d])).values()];
    const workers = Array.from({ length: Math.min(4, queue.length) }, async () => {
      for (let d = queue.shift(); d; d = queue.shift()) {
        const desc = d;
        if (!(await target.hasBlob(signal, desc))) await target.putBlob(signal, desc, () => this.deps.content.createReadStream(desc.digest as Digest));
        done++;
        this.progress.write({ statuses: [{ id: "writing layers", vertex, current: done, total: layerDescs.length, started }] });
      }
    });
    await Promise.all(workers);
    const configBytes = Buffer.from(marshalConfig(built.config));
    const configDesc: Descriptor = { mediaType: cacheConfigMediaType, digest: digestOf(configBytes), size: configBytes.length };
    await target.putBlob(signal, configDesc, () => Readable.from([configBytes]));
    let root: { mediaType: string; body: Buffer };
    if (imageManifest) {
      const m = { schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: configDesc, layers: layerDescs };
      root = { mediaType: m.mediaType, body: Buffer.from(JSON.stringify(m)) };
    } else {
      const mediaType = oci ? "application/vnd.oci.image.index.v1+json" : "application/vnd.docker.distribution.manifest.list.v2+json";
      root = { mediaType, body: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests: [...layerDescs, configDesc] })) };
    }
    await target.putRoot(signal, { mediaType: root.mediaType, digest: digestOf(root.body), size: root.body.length }, root.body);
  }
}

