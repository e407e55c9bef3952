// Assembles an image from a result, as BuildKit's ImageWriter does: layer blobs, the config patched
// with rootfs, normalised history, SOURCE_DATE_EPOCH clamping and build info, and the manifest,
// all written to the content store in BuildKit's byte layout (so digests are stable and comparable).
import type { CacheManager } from "../cache/index.js";
import type { ContentStore } from "../content/types.js";
import { MediaType, type Descriptor, type ImageConfig } from "../api/oci.js";
import { KilnError, digestOf, formatPlatform, hostPlatform, normalizePlatform, type Digest, type Platform } from "../util/index.js";
import { annotationsFor, type Annotations, type ImageCommitOptions } from "./attrs.js";
import { goJSON, sortedKeys } from "./gojson.js";
import { layerBlobs, layerMediaType, type ExportedLayer } from "./layers.js";
import type { ExportVertex } from "./progress.js";
import type { BuildInfo, ExportPlatform, ExportSource } from "./types.js";
import { commitAttestations, type CommittedAttestations } from "./attestation.js";

export interface CommittedImage {
  /** The manifest's descriptor, with `annotation-manifest-descriptor.*` and the platform. */
  manifest: Descriptor;
  config: Descriptor;
  configJSON: Record<string, unknown>;
  layers: ExportedLayer[];
  /** base64 of the build info JSON (the `containerimage.buildinfo` response key). */
  buildInfo?: string;
  /** The epoch used, if any (seconds). */
  epoch?: number;
}

export interface CommitDeps {
  mgr: CacheManager;
  content: ContentStore;
}

/** Go's time.Time JSON (RFC 3339 with nanoseconds, trailing zeros dropped) for milliseconds since the epoch. */
export function goTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, (_m, frac: string) => (/^0+$/.test(frac) ? "Z" : `.${frac.replace(/0+$/, "")}Z`));
}

function parseGoTime(s: unknown): number | undefined {
  if (typeof s !== "string") return undefined;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : t;
}

interface History {
  created?: number;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** Marshals history entries in ocispecs.History's field order. */
function historyJSON(h: History[]): unknown[] {
  return h.map((e) => {
    const o: Record<string, unknown> = {};
    if (e.created !== undefined) o.created = goTime(e.created);
    if (e.created_by) o.created_by = e.created_by;
    if (e.author) o.author = e.author;
    if (e.comment) o.comment = e.comment;
    if (e.empty_layer) o.empty_layer = true;
    return o;
  });
}

/**
 * BuildKit's normalizeLayersAndHistory: make the non-empty history entries match the layers, give
 * layer entries without a time their ref's creation time, and fill the remaining gaps.
 */
export function normalizeHistory(history: History[], layers: { description: string; createdAt: number }[]): History[] {
  let h = history.map((e) => ({ ...e }));
  const layerEntries = h.filter((e) => !e.empty_layer).length;
  if (layerEntries > layers.length) {
    let l = 0;
    h = h.map((e) => {
      const c = { ...e };
      if (l >= layers.length) c.empty_layer = true;
      if (!c.empty_layer) l++;
      return c;
    });
  }
  if (layers.length > layerEntries) {
    for (const md of layers.slice(layerEntries)) h.push({ created: md.createdAt, created_by: md.description, comment: "buildkit.exporter.image.v0" });
  }
  let li = 0;
  for (const e of h) {
    if (!e.empty_layer) {
      if (e.created === undefined) e.created = layers[li]?.createdAt;
      li++;
    }
  }
  // The first new layer's time, else the last known one, fills entries that have none.
  let created: number | undefined;
  let gap = false;
  for (const e of h) {
    if (e.created !== undefined) {
      created = e.created;
      if (gap) break;
    } else gap = true;
  }
  gap = false;
  for (const e of h) {
    if (e.created !== undefined) {
      if (gap) created = e.created;
    } else {
      gap = true;
      e.created = created;
    }
  }
  return h;
}

function defaultConfig(p: Platform = hostPlatform()): Record<string, unknown> {
  const cfg: Record<string, unknown> = { architecture: p.architecture, os: p.os };
  if (p.variant) cfg.variant = p.variant;
  cfg.config = { Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], WorkingDir: "/" };
  return cfg;
}

/** The image's platform string ("linux/amd64"), from its config. */
export function configPlatform(cfg: Partial<ImageConfig> | Record<string, unknown>): string {
  const c = cfg as Partial<ImageConfig>;
  const host = hostPlatform();
  return formatPlatform(normalizePlatform({ os: c.os ?? host.os, architecture: c.architecture ?? host.architecture, variant: c.variant }));
}

/** Go's encoding of BuildInfo (frontend, attrs, sources), optionally without attrs. */
export function buildInfoJSON(bi: BuildInfo, withAttrs: boolean): string {
  const o: Record<string, unknown> = {};
  if (bi.frontend) o.frontend = bi.frontend;
  if (withAttrs && bi.attrs && Object.keys(bi.attrs).length > 0) o.attrs = sortedKeys(bi.attrs);
  const sources = [...bi.sources].sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  if (sources.length > 0) o.sources = sources.map((s) => ({ type: s.type, ref: s.ref, pin: s.pin }));
  return goJSON(o);
}

function descriptorJSON(d: Descriptor): Record<string, unknown> {
  const o: Record<string, unknown> = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.urls && d.urls.length > 0) o.urls = d.urls;
  if (d.annotations && Object.keys(d.annotations).length > 0) o.annotations = sortedKeys(d.annotations);
  if (d.platform) {
    const p: Record<string, unknown> = { architecture: d.platform.architecture, os: d.platform.os };
    if (d.platform["os.version"]) p["os.version"] = d.platform["os.version"];
    if (d.platform["os.features"]?.length) p["os.features"] = d.platform["os.features"];
    if (d.platform.variant) p.variant = d.platform.variant;
    o.platform = p;
  }
  return o;
}

/** A descriptor as Go's json.Marshal writes ocispecs.Descriptor. */
export function descriptorBytes(d: Descriptor): string {
  return goJSON(descriptorJSON(d));
}

/** Layer annotations kept in a manifest: none for Docker media types, and never the internal ones. */
function layerAnnotations(a: Record<string, string> | undefined, oci: boolean): Record<string, string> | undefined {
  if (!oci || !a) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(a)) {
    if (k === "containerd.io/uncompressed" || k === "buildkit/createdat" || k.startsWith("containerd.io/distribution.source.")) continue;
    out[k] = v;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

type StepRunner = <T>(id: string, fn: () => Promise<T>) => Promise<T>;

function stepRunner(vertex: ExportVertex | undefined): StepRunner {
  return (id, fn) => (vertex ? vertex.step(id, fn) : fn());
}

function layerOptions(opts: ImageCommitOptions) {
  return { compression: opts.compression, ...(opts.rewriteTimestamp && opts.epoch !== undefined ? { rewriteTimestamp: opts.epoch } : {}) };
}

/** Annotations of a kind only OCI media types can carry switch them on (BuildKit's EnableOCITypes). */
function checkAnnotationPlatforms(opts: ImageCommitOptions, ids: string[]): void {
  for (const [pk, a] of opts.annotations) {
    if (pk !== "" && !ids.includes(pk)) throw new KilnError("KILN_EXPORTER_ATTR", `invalid annotation: no platform ${pk} found in source`);
    if (Object.keys(a.index).length + Object.keys(a.indexDescriptor).length + Object.keys(a.manifestDescriptor).length > 0) opts.ociMediaTypes = true;
  }
}

export async function commitImage(signal: AbortSignal, deps: CommitDeps, src: ExportSource, optsIn: ImageCommitOptions, vertex?: ExportVertex): Promise<CommittedImage> {
  const opts = { ...optsIn };
  const base: Record<string, unknown> = src.config ? { ...(src.config as Record<string, unknown>) } : defaultConfig();
  const platform = configPlatform(base);
  checkAnnotationPlatforms(opts, [platform]);
  const annotations: Annotations = annotationsFor(opts.annotations, platform);
  if (Object.keys(annotations.index).length > 0 || Object.keys(annotations.indexDescriptor).length > 0) {
    throw new KilnError("KILN_EXPORTER_ATTR", "index annotations not supported for single platform export", { hint: "use annotation.* or annotation-manifest-descriptor.* for a single-platform image" });
  }
  const run = stepRunner(vertex);
  const layers = await run("exporting layers", () => layerBlobs(signal, deps.mgr, deps.content, src.ref, layerOptions(opts)));
  return writeImage(signal, deps, base, src.buildInfo, layers, opts, annotations, run);
}

export interface CommittedIndex {
  /** The index's descriptor, with `annotation-index-descriptor.*`. */
  index: Descriptor;
  /** One image per platform, in the index's order; each manifest descriptor carries its platform. */
  images: CommittedImage[];
  /** The attestation manifests listed after the images. */
  attestations: CommittedAttestations[];
}

/**
 * A multi-platform result as BuildKit's ImageWriter commits it: every platform's layers (in
 * parallel), then each platform's config and manifest, then an index listing the manifests.
 */
export async function commitIndex(signal: AbortSignal, deps: CommitDeps, platforms: ExportPlatform[], optsIn: ImageCommitOptions, vertex?: ExportVertex): Promise<CommittedIndex> {
  const opts = { ...optsIn };
  checkAnnotationPlatforms(opts, platforms.map((p) => p.id));
  // Attestation manifests carry annotations, which only OCI media types have.
  if (platforms.some((p) => (p.attestations ?? []).length > 0)) opts.ociMediaTypes = true;
  const run = stepRunner(vertex);
  const layerOpts = layerOptions(opts);
  const layers = await run("exporting layers", () => Promise.all(platforms.map((p) => layerBlobs(signal, deps.mgr, deps.content, p.ref, layerOpts))));
  const images: CommittedImage[] = [];
  const attestations: CommittedAttestations[] = [];
  for (const [i, p] of platforms.entries()) {
    const base: Record<string, unknown> = p.config ? { ...(p.config as Record<string, unknown>) } : defaultConfig(p.platform);
    const a = annotationsFor(opts.annotations, p.id);
    const img = await writeImage(signal, deps, base, p.buildInfo, layers[i]!, opts, { index: {}, indexDescriptor: {}, manifest: a.manifest, manifestDescriptor: a.manifestDescriptor }, run);
    const plat = normalizePlatform(p.platform);
    img.manifest.platform = { architecture: plat.architecture, os: plat.os, ...(plat.variant ? { variant: plat.variant } : {}) };
    images.push(img);
    const atts = p.attestations ?? [];
    if (atts.length > 0) {
      const target = img.manifest;
      const image = { layers: img.layers.map((l) => ({ recordId: l.record.id, descriptor: { mediaType: layerMediaType(l.mediaType, opts.ociMediaTypes), digest: l.digest, size: l.size } })) };
      attestations.push(await commitAttestations(signal, deps.content, atts, target, image, p.platform, opts.names, opts.ociMediaTypes, indentJSON, run));
    }
  }
  const top = annotationsFor(opts.annotations, undefined);
  // MarshalIndent of BuildKit's index struct: mediaType, schemaVersion, manifests, annotations.
  const index: Record<string, unknown> = {
    mediaType: opts.ociMediaTypes ? MediaType.ociIndex : MediaType.dockerManifestList,
    schemaVersion: 2,
    manifests: [...images.map((img) => descriptorJSON(img.manifest)), ...attestations.map((a) => descriptorJSON(a.manifest))],
  };
  if (Object.keys(top.index).length > 0) index.annotations = sortedKeys(top.index);
  const bytes = indentJSON(index);
  const info = await run(`exporting manifest list ${digestPreview(bytes)}`, () => deps.content.put(signal, bytes));
  const desc: Descriptor = { mediaType: index.mediaType as string, digest: info.digest, size: info.size };
  if (Object.keys(top.indexDescriptor).length > 0) desc.annotations = { ...top.indexDescriptor };
  return { index: desc, images, attestations };
}

/** The config and manifest of one image whose layers are exported. */
async function writeImage(
  signal: AbortSignal,
  deps: CommitDeps,
  base: Record<string, unknown>,
  buildInfoSrc: BuildInfo | undefined,
  layers: ExportedLayer[],
  opts: ImageCommitOptions,
  annotations: Annotations,
  run: StepRunner,
): Promise<CommittedImage> {
  // Config: BuildKit patches the frontend's JSON as a map, so top-level keys come out sorted.
  const rawHistory = Array.isArray(base.history) ? (base.history as Record<string, unknown>[]) : [];
  let history = normalizeHistory(
    rawHistory.map((h) => ({
      created: parseGoTime(h.created),
      created_by: typeof h.created_by === "string" ? h.created_by : undefined,
      author: typeof h.author === "string" ? h.author : undefined,
      comment: typeof h.comment === "string" ? h.comment : undefined,
      empty_layer: h.empty_layer === true,
    })),
    layers.map((l) => ({ description: l.record.description || "created by buildkit", createdAt: l.record.createdAt })),
  );
  const epochMs = opts.epoch !== undefined ? opts.epoch * 1000 : undefined;
  if (epochMs !== undefined) history = history.map((h) => (h.created === undefined || h.created > epochMs ? { ...h, created: epochMs } : h));
  const cfg: Record<string, unknown> = { ...base };
  cfg.rootfs = { type: "layers", diff_ids: layers.length > 0 ? layers.map((l) => l.diffId) : null };
  cfg.history = historyJSON(history);
  const created = parseGoTime(cfg.created);
  if (cfg.created !== undefined && epochMs !== undefined && created !== undefined && created > epochMs) cfg.created = goTime(epochMs);
  if (cfg.created === undefined) {
    const last = [...history].reverse().find((h) => h.created !== undefined)?.created;
    cfg.created = last !== undefined ? goTime(last) : null;
  }
  let buildInfo: string | undefined;
  delete cfg["moby.buildkit.buildinfo.v1"];
  if (buildInfoSrc) {
    buildInfo = Buffer.from(buildInfoJSON(buildInfoSrc, true)).toString("base64");
    if (opts.buildInfo) cfg["moby.buildkit.buildinfo.v1"] = Buffer.from(buildInfoJSON(buildInfoSrc, opts.buildInfoAttrs)).toString("base64");
  }
  const sorted = sortedKeys(cfg);
  const configBytes = goJSON(sorted);
  const configType = opts.ociMediaTypes ? MediaType.ociConfig : MediaType.dockerConfig;
  const configInfo = await run(`exporting config ${digestPreview(configBytes)}`, () => deps.content.put(signal, configBytes));
  const configDesc: Descriptor = { mediaType: configType, digest: configInfo.digest, size: configInfo.size };

  const manifestType = opts.ociMediaTypes ? MediaType.ociManifest : MediaType.dockerManifest;
  const manifest: Record<string, unknown> = {
    mediaType: manifestType,
    schemaVersion: 2,
    config: descriptorJSON(configDesc),
    layers: layers.map((l) => descriptorJSON({ mediaType: layerMediaType(l.mediaType, opts.ociMediaTypes), digest: l.digest, size: l.size, annotations: layerAnnotations(l.annotations, opts.ociMediaTypes) })),
  };
  if (Object.keys(annotations.manifest).length > 0) manifest.annotations = sortedKeys(annotations.manifest);
  const manifestBytes = indentJSON(manifest);
  const manifestInfo = await run(`exporting manifest ${digestPreview(manifestBytes)}`, () => deps.content.put(signal, manifestBytes));
  const plat = normalizePlatform({ os: String(sorted.os ?? "linux"), architecture: String(sorted.architecture ?? hostPlatform().architecture), variant: typeof sorted.variant === "string" ? sorted.variant : undefined });
  const manifestDesc: Descriptor = { mediaType: manifestType, digest: manifestInfo.digest, size: manifestInfo.size };
  if (Object.keys(annotations.manifestDescriptor).length > 0) manifestDesc.annotations = { ...annotations.manifestDescriptor };
  manifestDesc.platform = { architecture: plat.architecture, os: plat.os, ...(plat.variant ? { variant: plat.variant } : {}) };
  return { manifest: manifestDesc, config: configDesc, configJSON: sorted, layers, buildInfo, epoch: opts.epoch };
}

/** json.MarshalIndent(v, "", "  ") with Go's HTML escaping. */
export function indentJSON(v: unknown): string {
  return JSON.stringify(v, null, 2).replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

function digestPreview(data: string): string {
  return digestOf(data);
}

/** BuildKit's exporter response for an image. */
export function exporterResponse(img: CommittedImage, descriptor: Descriptor, name?: string): Record<string, string> {
  const res: Record<string, string> = {
    "containerimage.digest": descriptor.digest,
    "containerimage.config.digest": img.config.digest,
    "containerimage.descriptor": Buffer.from(descriptorBytes(descriptor)).toString("base64"),
  };
  if (img.buildInfo) res["containerimage.buildinfo"] = img.buildInfo;
  if (name) res["image.name"] = name;
  return res;
}

export type { Digest };
