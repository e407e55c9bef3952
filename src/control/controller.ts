// The engine's door: one solve request → frontend → solver → exporter, the same for the daemon,
// the daemonless CLI and library users.
import { readFile } from "node:fs/promises";
import { toBinary } from "@bufbuild/protobuf";
import { DefinitionSchema } from "../api/index.js";
import { randomBytes } from "node:crypto";
import { loadDefinition, type LoadedDefinition } from "../llb/index.js";
import type { BlobProviderScope, ImmutableRef } from "../cache/index.js";
import { buildInfoJSON, makeBuildInfo, resolveExporter, type ExportOutputs, type ExportPlatform, type ExporterInstance } from "../exporter/index.js";
import type { RegistryHostConfig } from "../remotes/index.js";
import { parsePlatformsMetadata, type Frontend, type FrontendBridge, type FrontendResult } from "../frontend/index.js";
import type { Session } from "../session/types.js";
import { Solver, VertexError, type ProgressWriter, type Vertex } from "../solver/index.js";
import { grantEntitlements, type Entitlement, type Worker } from "../worker/index.js";
import { KilnError, secureJoin, parsePlatform, type Digest, type Platform } from "../util/index.js";
import type { Descriptor, ImageConfig } from "../api/oci.js";
import { layerBlobs, layerMediaType, parseImageCommit } from "../exporter/index.js";
import { RegistryResolver } from "../remotes/index.js";
import { MissExplainer, mergeHooks, RemoteCache, inlineCacheKey, annotationCreatedAt, annotationUncompressed, checkCacheEntries, goTime, type CacheEntry, type RemoteCacheDeps } from "../remotecache/index.js";
import { LocalSourceOp } from "../source/index.js";
import type { Result, SolveHooks } from "../solver/index.js";
import { StepError } from "./step-error.js";
import { BuildAttestations, type AttestationDeps } from "./attestations.js";

export interface SolveRequest {
  ref?: string;
  definition?: Uint8Array;
  frontend?: string;
  frontendAttrs?: Record<string, string>;
  exporter?: { type: string; attrs: Record<string, string> };
  /** Several exporters in one solve (BuildKit ≥ 0.13's `Exporters`); used instead of `exporter` when set. */
  exporters?: { type: string; attrs: Record<string, string> }[];
  /** Privileges the build asks for (`--allow`): "network.host", "security.insecure". */
  entitlements?: string[];
  /** BuildKit's CacheOptions: caches to write after the build and to read before it. */
  cache?: { exports?: CacheEntry[]; imports?: CacheEntry[] };
  /** Say in the progress log why each step that runs missed the cache (kiln's own; not in BuildKit's API). */
  explainCache?: boolean;
  /** A frontend for this request only, used instead of `frontend`: the client drives the build through LLBBridge. */
  gateway?: Frontend;
  /** Control.Solve's FrontendInputs, for the frontend (the Dockerfile frontend's context and dockerfile). */
  frontendInputs?: Record<string, import("../api/index.js").Definition | undefined>;
}

export interface ControllerOptions {
  worker: Worker;
  frontends: Record<string, Frontend>;
  maxParallelism: number;
  /** `[registry."host"]` settings, for exporters that push. */
  registries?: Record<string, RegistryHostConfig>;
  /** Entitlements builds may be granted (buildkitd.toml `insecure-entitlements`). */
  entitlements?: string[];
}

/** SOURCE_DATE_EPOCH and BUILDKIT_BUILDINFO build args reach the exporter unless it sets them itself (BuildKit's control.Solve). */
function exporterAttrs(attrs: Record<string, string>, frontendAttrs: Record<string, string>): Record<string, string> {
  const out = { ...attrs };
  const epoch = frontendAttrs["build-arg:SOURCE_DATE_EPOCH"];
  if (epoch !== undefined && out["source-date-epoch"] === undefined && ["image", "registry", "oci", "docker"].includes(attrs.type ?? "")) out["source-date-epoch"] = epoch;
  const bi = frontendAttrs["build-arg:BUILDKIT_BUILDINFO"];
  if (bi && out.buildinfo === undefined) out.buildinfo = bi;
  delete out.type;
  return out;
}

/** Whether the frontend attrs ask for a multi-platform result (several platforms, or multi-platform=true). */
function multiPlatformRequest(fattrs: Record<string, string>): boolean {
  const flag = fattrs["build-arg:BUILDKIT_MULTI_PLATFORM"] || fattrs["multi-platform"];
  if (flag) return ["1", "t", "T", "TRUE", "true", "True"].includes(flag);
  return (fattrs.platform ?? "").split(",").filter((s) => s.trim() !== "").length > 1;
}

/**
 * The request's cache imports plus those the Dockerfile frontend takes from its attrs, as
 * BuildKit's does: `cache-imports` (JSON CacheOptionsEntry list; buildctl and buildx send their
 * imports there too, so duplicates are dropped) and the older `cache-from` (registry refs,
 * comma-separated).
 */
export function withFrontendCacheImports(imports: CacheEntry[], attrs: Record<string, string>): CacheEntry[] {
  const out = [...imports];
  const json = attrs["cache-imports"];
  if (json) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (err) {
      throw new KilnError("KILN_CACHE_ATTR", `failed to unmarshal cache-imports (${JSON.stringify(json)}): ${(err as Error).message}`, { cause: err });
    }
    if (!Array.isArray(parsed)) throw new KilnError("KILN_CACHE_ATTR", `failed to unmarshal cache-imports (${JSON.stringify(json)}): not a list`);
    for (const e of parsed as unknown[]) {
      // Go's encoding/json matches field names case-insensitively.
      const fields = Object.fromEntries(Object.entries(e !== null && typeof e === "object" ? e : {}).map(([k, v]) => [k.toLowerCase(), v as unknown]));
      const attrsOf = fields.attrs !== null && typeof fields.attrs === "object" ? (fields.attrs as Record<string, unknown>) : {};
      out.push({ type: typeof fields.type === "string" ? fields.type : "", attrs: Object.fromEntries(Object.entries(attrsOf).map(([k, v]) => [k, String(v)])) });
    }
  }
  for (const ref of (attrs["cache-from"] ?? "").split(",")) if (ref.trim() !== "") out.push({ type: "registry", attrs: { ref: ref.trim() } });
  const seen = new Set<string>();
  return out.filter((e) => {
    const key = JSON.stringify([e.type, Object.entries(e.attrs).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export class Controller {
  readonly solver: Solver;

  constructor(private readonly opts: ControllerOptions) {
    this.solver = new Solver({ cache: opts.worker.store, maxParallelism: opts.maxParallelism });
  }

  get worker(): Worker {
    return this.opts.worker;
  }

  /** `outputs`: one destination, or one per entry of `req.exporters`. */
  async solve(signal: AbortSignal, req: SolveRequest, session: Session, outputs: ExportOutputs | undefined | (ExportOutputs | undefined)[], progress: ProgressWriter): Promise<Record<string, string>> {
    const worker = this.opts.worker;
    // Validate the exporters before any work starts.
    const specs = req.exporters ?? (req.exporter ? [req.exporter] : []);
    const fattrs = req.frontendAttrs ?? {};
    const exporters: { exp: ExporterInstance; out: ExportOutputs | undefined }[] = specs.map((e, i) => {
      const exp = resolveExporter(e.type, exporterAttrs({ ...e.attrs, type: e.type }, fattrs), { mgr: worker.mgr, content: worker.content, registries: this.opts.registries }, { multiPlatform: multiPlatformRequest(fattrs) });
      const out = Array.isArray(outputs) ? outputs[i] : outputs;
      if (exp.needsOutput && !out) throw new KilnError("KILN_EXPORTER_ATTR", `exporter ${exp.type} needs a destination (dest=...)`);
      return { exp, out };
    });
    const entitlements = grantEntitlements(req.entitlements ?? [], this.opts.entitlements ?? []);
    const attest = BuildAttestations.open(fattrs, req.frontend, Object.keys(req.frontendInputs ?? {}).length > 0);
    const cacheExports = req.cache?.exports ?? [];
    checkCacheEntries(cacheExports, "export");
    const held: ImmutableRef[] = [];
    // Imported cache layers stay blobs in the registry until needed: fetchable while this solve runs.
    using providers = worker.mgr.providerScope();
    // Cache hooks and the roots the cache export starts from (the build's results, not the frontend's helper solves).
    const cacheImports = withFrontendCacheImports(req.cache?.imports ?? [], req.frontend || req.gateway ? fattrs : {});
    const remote = cacheImports.length || cacheExports.length ? RemoteCache.open(signal, cacheImports, this.remoteCacheDeps(session, providers), progress) : undefined;
    const db = worker.mgr.db;
    const explainer = new MissExplainer({ get: (id) => db.getKV(explainBucket, id), set: (id, v) => db.setKV(explainBucket, id, v) }, progress, req.explainCache === true);
    const solveCtx: SolveCtx = { hooks: mergeHooks(mergeHooks(remote?.hooks() ?? {}, explainer.hooks()), attest?.hooks() ?? {}), roots: [] };
    const bridge = this.bridge(session, progress, held, entitlements, solveCtx.hooks);
    const attestDeps: AttestationDeps = {
      worker,
      bridge,
      solve: async (s, def) => {
        const r = await this.solveDefinition(s, def, session, progress, entitlements, { hooks: solveCtx.hooks });
        if (r) held.push(r);
        return r;
      },
    };
    const exportCache = async (): Promise<Record<string, string>> => {
      if (!remote || cacheExports.length === 0) return {};
      const keyOf = new Map([...remote.keys.values()].map((k) => [k.vertex, k.key]));
      const roots = (solveCtx.roots ?? []).flatMap((r) => {
        const key = keyOf.get(r.vertex);
        return key ? [{ key, output: r.index }] : [];
      });
      return remote.export(signal, cacheExports, roots);
    };
    try {
      let definition = req.definition;
      let config: Partial<ImageConfig> | undefined;
      let frontendName = req.frontend;
      let frontendResult: FrontendResult | undefined;
      if (req.frontend || req.gateway) {
        const fe = req.gateway ?? this.opts.frontends[req.frontend ?? ""];
        if (!fe) throw new KilnError("KILN_FRONTEND", `frontend ${JSON.stringify(req.frontend)} not found`);
        const attrs = req.frontendAttrs ?? {};
        const res = await fe.solve(signal, attest ? attest.wrapBridge(bridge) : bridge, { attrs, sessionId: session.id, buildPlatform: worker.platform, ...(req.frontendInputs ? { inputs: req.frontendInputs } : {}) });
        if (res.refs) {
          const { parts, roots } = await this.solvePlatforms(signal, res, session, progress, entitlements, held, res.frontend ?? req.frontend, fattrs, solveCtx);
          if (attest) await attest.attachToPlatforms(signal, attestDeps, parts, res);
          if (remote && cacheExports.some((e) => e.type === "inline")) {
            await Promise.all(parts.map(async (p, i) => (p.config = p.ref ? await this.withInlineCache(signal, remote, roots[i], p.ref, p.config, specs, fattrs) : p.config)));
          }
          if (exporters.length === 0) return await exportCache();
          const out: Record<string, string> = {};
          for (const { exp, out: o } of exporters) Object.assign(out, await exp.export(signal, { ref: undefined, platforms: parts, credentials: session.credentials }, o, progress));
          // BuildKit answers with each platform's build info beside what the exporters say.
          for (const p of parts) if (p.buildInfo) out[`containerimage.buildinfo/${p.id}`] = Buffer.from(buildInfoJSON(p.buildInfo, true)).toString("base64");
          return Object.assign(out, await exportCache());
        }
        definition = res.definition;
        frontendName = res.frontend ?? req.frontend;
        const cfg = res.metadata["containerimage.config"];
        if (cfg) config = JSON.parse(Buffer.from(cfg).toString("utf8")) as Partial<ImageConfig>;
        frontendResult = res;
      }
      const ref = definition ? await this.solveDefinition(signal, definition, session, progress, entitlements, solveCtx) : undefined;
      if (ref) held.push(ref);
      if (exporters.length === 0) return await exportCache();
      const sources = definition ? [...loadDefinition(definition).ops.values()].flatMap((o) => (o.op.op.case === "source" ? [{ identifier: o.op.op.value.identifier, attrs: o.op.op.value.attrs }] : [])) : [];
      const buildInfo = makeBuildInfo(frontendName, fattrs, sources);
      const res: Record<string, string> = {};
      if (remote && ref && cacheExports.some((e) => e.type === "inline")) config = await this.withInlineCache(signal, remote, solveCtx.roots?.at(-1), ref, config, specs, fattrs);
      const attestations = attest ? await attest.forSingle(signal, attestDeps, { definition, ref, config, frontendResult }) : undefined;
      for (const { exp, out } of exporters) Object.assign(res, await exp.export(signal, { ref, config, buildInfo, credentials: session.credentials, ...(attestations ? { attestations } : {}) }, out, progress));
      return Object.assign(res, await exportCache());
    } finally {
      await Promise.allSettled(held.map((r) => r.release()));
      try {
        explainer.save();
      } catch {
        // Only explanations of a later build depend on this record.
      }
    }
  }

  /**
   * A multi-platform frontend result: every platform's graph is loaded (and checked: a platform
   * this machine can't run fails here, before any step starts), then all are solved together, so
   * steps they share run once.
   */
  private async solvePlatforms(
    signal: AbortSignal,
    res: FrontendResult,
    session: Session,
    progress: ProgressWriter,
    entitlements: ReadonlySet<Entitlement>,
    held: ImmutableRef[],
    frontend: string | undefined,
    fattrs: Record<string, string>,
    ctx: SolveCtx = { hooks: {} },
  ): Promise<{ parts: ExportPlatform[]; roots: (SolveRoot | undefined)[] }> {
    const list = parsePlatformsMetadata(res.metadata);
    if (!list) throw new KilnError("KILN_FRONTEND", "unable to export multiple refs, missing platforms mapping");
    const loaded = list.map((p) => {
      const def = res.refs?.[p.id];
      if (!def) throw new KilnError("KILN_FRONTEND", `failed to find ref for ID ${p.id}`);
      const ld = loadDefinition(def);
      return { p, ld, root: this.opts.worker.load(ld, session, entitlements) };
    });
    // A step the platforms share runs once; the other solves would show it again as cached.
    const completed = new Set<string>();
    const shown: ProgressWriter = {
      write(ev) {
        if (!ev.vertexes) return progress.write(ev);
        const vertexes = ev.vertexes.filter((v) => !(completed.has(v.digest) && v.cached));
        for (const v of vertexes) if (v.completed && !v.error) completed.add(v.digest);
        if (vertexes.length > 0 || ev.statuses || ev.logs || ev.warnings) progress.write({ ...ev, vertexes });
      },
    };
    // The first failure stops the other platforms; every solve settles before this returns, so
    // no result arrives after the caller has released what it holds.
    const ac = new AbortController();
    const stop = () => ac.abort(signal.reason);
    signal.addEventListener("abort", stop, { once: true });
    let firstError: unknown;
    let settled: PromiseSettledResult<ImmutableRef | undefined>[];
    try {
      settled = await Promise.allSettled(
        loaded.map(async ({ ld, root }) => {
          if (!root) return undefined;
          try {
            return await this.solveLoaded(ac.signal, ld, root, shown, ctx);
          } catch (err) {
            if (firstError === undefined) {
              firstError = err;
              ac.abort(err);
            }
            throw err;
          }
        }),
      );
    } finally {
      signal.removeEventListener("abort", stop);
    }
    const refs = settled.map((r) => (r.status === "fulfilled" ? r.value : undefined));
    for (const r of refs) if (r) held.push(r);
    if (firstError !== undefined) throw firstError;
    const parts = loaded.map(({ p, ld }, i): ExportPlatform => {
      const cfg = res.metadata[`containerimage.config/${p.id}`];
      const sources = [...ld.ops.values()].flatMap((o) => (o.op.op.case === "source" ? [{ identifier: o.op.op.value.identifier, attrs: o.op.op.value.attrs }] : []));
      return {
        id: p.id,
        platform: p.platform,
        ref: refs[i],
        config: cfg ? (JSON.parse(Buffer.from(cfg).toString("utf8")) as Partial<ImageConfig>) : undefined,
        buildInfo: makeBuildInfo(frontend, fattrs, sources),
      };
    });
    return { parts, roots: loaded.map(({ root }) => root) };
  }

  private async solveLoaded(signal: AbortSignal, loaded: LoadedDefinition, root: { vertex: Vertex; index: number }, progress: ProgressWriter, ctx: SolveCtx = { hooks: {} }): Promise<ImmutableRef> {
    ctx.roots?.push(root);
    try {
      return (await this.solver.solve(signal, root.vertex, root.index, progress, ctx.hooks)) as ImmutableRef;
    } catch (err) {
      if (err instanceof VertexError) throw toUserError(err, loaded.source);
      throw err;
    }
  }

  private async solveDefinition(signal: AbortSignal, definition: Uint8Array, session: Session, progress: ProgressWriter, entitlements: ReadonlySet<Entitlement>, ctx: SolveCtx = { hooks: {} }): Promise<ImmutableRef | undefined> {
    const loaded = loadDefinition(definition);
    const root = this.opts.worker.load(loaded, session, entitlements);
    if (!root) return undefined;
    return this.solveLoaded(signal, loaded, root, progress, ctx);
  }

  /**
   * `--export-cache type=inline`: the image config carries the result's cache records, its layers
   * named by index in the image — computed with the image exporter's compression, so the indexes
   * are that image's layers (the exporter then reuses the same blobs).
   */
  private async withInlineCache(signal: AbortSignal, remote: RemoteCache, root: SolveRoot | undefined, ref: ImmutableRef, config: Partial<ImageConfig> | undefined, specs: { type: string; attrs: Record<string, string> }[], fattrs: Record<string, string>): Promise<Partial<ImageConfig> | undefined> {
    const spec = specs.find((e) => ["image", "registry", "oci", "docker"].includes(e.type));
    const key = root ? [...remote.keys.values()].find((k) => k.vertex === root.vertex)?.key : undefined;
    if (!spec || !root || !key || !config) return config;
    const commit = parseImageCommit(spec.type as "image", exporterAttrs({ ...spec.attrs, type: spec.type }, fattrs));
    // Rewritten timestamps make other blobs than the cache would name.
    if (commit.rewriteTimestamp) return config;
    const worker = this.opts.worker;
    const layers = await layerBlobs(signal, worker.mgr, worker.content, ref, { compression: commit.compression });
    const records = await remote.inlineRecords(
      signal,
      { key, output: root.index },
      layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, annotations: { [annotationUncompressed]: l.diffId, [annotationCreatedAt]: goTime(l.record.createdAt) } })),
    );
    return records ? ({ ...(config ?? {}), [inlineCacheKey]: records } as Partial<ImageConfig>) : config;
  }

  /** What the remote cache needs from the worker, for one build's session. */
  private remoteCacheDeps(session: Session, providers: BlobProviderScope): RemoteCacheDeps {
    const worker = this.opts.worker;
    return {
      content: worker.content,
      platform: worker.platform,
      ...(session.contentStores ? { clientStores: session.contentStores } : {}),
      resolver: () => new RegistryResolver({ hosts: this.opts.registries ?? {}, credentials: session.credentials, chunkSize: 16 << 20 }),
      layerBlobs: async (signal, result, attrs) => {
        const commit = parseImageCommit("oci", attrs);
        const layers = await layerBlobs(signal, worker.mgr, worker.content, result as ImmutableRef, { compression: commit.compression });
        return layers.map((l): Descriptor => ({
          mediaType: layerMediaType(l.mediaType, commit.ociMediaTypes),
          digest: l.digest,
          size: l.size,
          annotations: { [annotationUncompressed]: l.diffId, [annotationCreatedAt]: goTime(l.record.createdAt) },
        }));
      },
      unpack: async (signal, layers, fetch) => {
        // Lazily: the layers are recorded as blobs and fetched only when needed (an image export
        // takes the blobs as they are), unpacked only when something mounts them. Layers take the
        // times the cache recorded, so image history (and digest) match the exporting build's.
        const ref = await worker.mgr.lazyChain(
          signal,
          layers.map((l) => {
            const at = Date.parse(l.annotations?.[annotationCreatedAt] ?? "");
            return { digest: l.digest as Digest, mediaType: l.mediaType, size: l.size, diffId: l.annotations?.[annotationUncompressed] as Digest, ...(Number.isFinite(at) ? { createdAt: at } : {}) };
          }),
          "pulled from remote cache",
          providers,
          (s, blob) => fetch(s, { mediaType: blob.mediaType, digest: blob.digest, size: blob.size }),
        );
        if (ref) return ref;
        const mut = await worker.mgr.newMutable(undefined, "empty result from remote cache");
        return mut.commit();
      },
      loadLocal: (signal, key, outputs): Promise<Result[] | undefined> => worker.store.load(signal, key, outputs),
      volatile: (info) => info.vertex.op instanceof LocalSourceOp,
    };
  }

  private bridge(session: Session, progress: ProgressWriter, held: ImmutableRef[], entitlements: ReadonlySet<Entitlement>, hooks: SolveHooks = {}): FrontendBridge {
    const refs = new Map<string, ImmutableRef | undefined>();
    return {
      solve: async (signal, def) => {
        const ref = await this.solveDefinition(signal, def, session, progress, entitlements, { hooks });
        if (ref) held.push(ref);
        const id = randomBytes(8).toString("hex");
        refs.set(id, ref);
        return id;
      },
      readFile: async (signal, id, p) => {
        const ref = refs.get(id);
        if (!ref) return undefined;
        // A single-layer ref (a local source) is readable straight from its directory.
        const rec = ref.record;
        await ref.extract(signal);
        const read = async (root: string) => {
          try {
            return await readFile(await secureJoin(root, p));
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
            throw err;
          }
        };
        if (!rec.parent) return read(this.opts.worker.mgr.snapshotter.upperDir(ref.id));
        await using mnt = await ref.mount(signal);
        return read(mnt.path);
      },
      openRef: async (signal, id) => {
        const ref = refs.get(id);
        if (!ref) return undefined;
        const done = { [Symbol.asyncDispose]: () => Promise.resolve() };
        await ref.extract(signal);
        if (!ref.record.parent) return { path: this.opts.worker.mgr.snapshotter.upperDir(ref.id), ...done };
        return ref.mount(signal);
      },
      warn: (vertex, w) => {
        progress.write({ warnings: [{ vertex: vertex as Digest, level: w.level, short: w.short, detail: w.detail, ...(w.url ? { url: w.url } : {}) }] });
      },
      resolveImageConfig: async (signal, ref, o) => {
        const platform: Platform = o.platform ?? this.opts.worker.platform;
        const images = o.store ? this.opts.worker.ociLayoutImages(session, o.store.storeId) : this.opts.worker.images;
        const img = await images.resolve(signal, ref, platform, session);
        return { ref: img.ref, digest: img.digest, config: img.configBytes };
      },
    };
  }
}

/** kv bucket: per step place, how its key was formed in the last build (for --explain-cache). */
const explainBucket = "cache.explain";

/** The vertex and output a solve's result is. */
type SolveRoot = { vertex: Vertex; index: number };

/** The cache hooks of one build, and where its results' roots are collected (absent for helper solves). */
interface SolveCtx {
  hooks: SolveHooks;
  roots?: SolveRoot[];
}

/** Turns a vertex failure into one user-facing error, with the Dockerfile lines when known. */
function toUserError(err: VertexError, source: import("../llb/index.js").LoadedDefinition["source"]): KilnError {
  const cause = err.cause;
  const base = cause instanceof KilnError ? cause : undefined;
  let location = base?.location;
  const locs = source?.locations?.[err.vertex.digest]?.locations ?? [];
  const loc = locs[0];
  if (!location && loc && source) {
    const info = source.infos[loc.sourceIndex];
    if (info && loc.ranges.length > 0) {
      const text = Buffer.from(info.data).toString("utf8").split("\n");
      // An instruction over several lines has a range per line.
      const start = Math.min(...loc.ranges.map((r) => r.start?.line ?? 1));
      const end = Math.max(...loc.ranges.map((r) => r.end?.line ?? start));
      location = { file: info.filename, startLine: start, endLine: end, lines: text.slice(start - 1, end), allLines: text };
      if (info.definition) location.definition = toBinary(DefinitionSchema, info.definition);
    }
  }
  return new StepError(base?.code ?? "KILN_BUILD", err.vertex.name, err.vertex.digest, err.message, { cause, hint: base?.hint, location });
}

export function parsePlatformList(s: string | undefined): Platform[] {
  return (s ?? "").split(",").map((p) => p.trim()).filter(Boolean).map(parsePlatform);
}
