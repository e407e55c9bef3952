// Exporter attributes with BuildKit's names, checked before anything is built: an unknown exporter,
// an unknown attribute, a value that does not parse, or a push with nowhere to go is one clear
// error up front, not a failure after the build.
import { KilnError, parsePlatform, formatPlatform, type Platform } from "../util/index.js";
import { parseReference } from "../remotes/index.js";
import { parseCompressionLevel, parseCompressionType, onlySupportsOCITypes, type CompressionConfig } from "./compression/index.js";

export const exporterTypes = ["image", "registry", "oci", "docker", "tar", "local", "cacheonly"] as const;
export type ExporterType = (typeof exporterTypes)[number];

const imageCommitAttrs = [
  "name",
  "compression",
  "compression-level",
  "force-compression",
  "oci-mediatypes",
  "buildinfo",
  "buildinfo-attrs",
  "rewrite-timestamp",
  "source-date-epoch",
  "attestation-inline",
  "prefer-nondist-layers",
];

const knownAttrs: Record<ExporterType, string[]> = {
  image: [...imageCommitAttrs, "push", "push-by-digest", "registry.insecure", "insecure", "name-canonical", "dangling-name-prefix", "store", "unpack"],
  registry: [...imageCommitAttrs, "push", "push-by-digest", "registry.insecure", "insecure", "name-canonical", "dangling-name-prefix", "store", "unpack"],
  oci: [...imageCommitAttrs, "dest", "tar"],
  docker: [...imageCommitAttrs, "dest", "tar"],
  tar: ["dest", "platform-split", "attestation-prefix"],
  local: ["dest", "platform-split", "attestation-prefix"],
  cacheonly: [],
};

export type AnnotationType = "index" | "index-descriptor" | "manifest" | "manifest-descriptor";

export interface AnnotationKey {
  type: AnnotationType;
  /** Normalised platform string, or "" for every platform. */
  platform: string;
  key: string;
}

const annotationRe = /^annotation(?:-([a-z-]+))?(?:\[([A-Za-z0-9_/-]+)\])?\.(\S+)$/;

/** BuildKit's annotation key grammar: annotation[-TYPE][\[PLATFORM\]].KEY; undefined when not an annotation key. */
export function parseAnnotationKey(k: string): AnnotationKey | undefined {
  const m = annotationRe.exec(k);
  if (!m) return undefined;
  const type = m[1] ?? "manifest";
  if (type !== "index" && type !== "index-descriptor" && type !== "manifest" && type !== "manifest-descriptor") {
    throw new KilnError("KILN_EXPORTER_ATTR", `unrecognized annotation type ${type}`, { hint: "annotation types: index, index-descriptor, manifest, manifest-descriptor" });
  }
  let platform = "";
  if (m[2]) {
    let p: Platform;
    try {
      p = parsePlatform(m[2]);
    } catch (err) {
      throw new KilnError("KILN_EXPORTER_ATTR", `invalid platform ${JSON.stringify(m[2])} in ${k}: ${(err as Error).message}`, { cause: err });
    }
    platform = formatPlatform(p);
  }
  return { type, platform, key: m[3]! };
}

export interface Annotations {
  index: Record<string, string>;
  indexDescriptor: Record<string, string>;
  manifest: Record<string, string>;
  manifestDescriptor: Record<string, string>;
}

/** Annotations grouped by platform ("" = all). */
export type AnnotationsGroup = Map<string, Annotations>;

function emptyAnnotations(): Annotations {
  return { index: {}, indexDescriptor: {}, manifest: {}, manifestDescriptor: {} };
}

/** The annotations that apply to `platform` (BuildKit's AnnotationsGroup.Platform). */
export function annotationsFor(group: AnnotationsGroup, platform: string | undefined): Annotations {
  const res = emptyAnnotations();
  for (const a of group.values()) {
    Object.assign(res.index, a.index);
    Object.assign(res.indexDescriptor, a.indexDescriptor);
  }
  for (const p of ["", ...(platform ? [platform] : [])]) {
    const a = group.get(p);
    if (!a) continue;
    Object.assign(res.manifest, a.manifest);
    Object.assign(res.manifestDescriptor, a.manifestDescriptor);
  }
  return res;
}

/** strconv.ParseBool; a missing attribute is `def`, an empty one `empty` (BuildKit: `push` alone means push=true). */
export function parseBool(key: string, v: string | undefined, def: boolean, empty = true): boolean {
  if (v === undefined) return def;
  if (v === "") return empty;
  // strconv.ParseBool's spellings.
  if (["1", "t", "T", "TRUE", "true", "True"].includes(v)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(v)) return false;
  throw new KilnError("KILN_EXPORTER_ATTR", `non-bool value specified for ${key}: strconv.ParseBool: parsing ${JSON.stringify(v)}: invalid syntax`);
}

/** The parts of an image/oci/docker export that shape the image itself. */
export interface ImageCommitOptions {
  names: string[];
  compression: CompressionConfig;
  ociMediaTypes: boolean;
  buildInfo: boolean;
  buildInfoAttrs: boolean;
  rewriteTimestamp: boolean;
  /** SOURCE_DATE_EPOCH in seconds. */
  epoch: number | undefined;
  annotations: AnnotationsGroup;
}

export interface ImageExportOptions extends ImageCommitOptions {
  push: boolean;
  pushByDigest: boolean;
  insecure: boolean;
  nameCanonical: boolean;
  danglingPrefix: string;
  store: boolean;
}

export interface TarballExportOptions extends ImageCommitOptions {
  tar: boolean;
}

export function parseEpoch(key: string, v: string | undefined): number | undefined {
  if (v === undefined || v === "") return undefined;
  if (!/^-?\d+$/.test(v.trim())) throw new KilnError("KILN_EXPORTER_ATTR", `invalid ${key}: strconv.ParseInt: parsing ${JSON.stringify(v)}: invalid syntax`);
  return Number(v.trim());
}

/** Checks the exporter type and that every attribute is one it knows. */
export function checkAttrs(type: string, attrs: Record<string, string>): ExporterType {
  if (!(exporterTypes as readonly string[]).includes(type)) {
    throw new KilnError("KILN_EXPORTER_TYPE", `exporter ${JSON.stringify(type)} could not be found`, { hint: `exporter types: ${exporterTypes.join(", ")}` });
  }
  const t = type as ExporterType;
  const known = knownAttrs[t];
  for (const k of Object.keys(attrs)) {
    if (known.includes(k)) continue;
    if (known.includes("name") && parseAnnotationKey(k)) continue;
    throw new KilnError("KILN_EXPORTER_ATTR", `unknown attribute ${JSON.stringify(k)} for exporter ${t}`, {
      hint: known.length > 0 ? `${t} takes: ${known.join(", ")}${known.includes("name") ? ", annotation.*, annotation-index.*, annotation-manifest.*, annotation-manifest-descriptor.*" : ""}` : `${t} takes no attributes`,
    });
  }
  return t;
}

function splitNames(v: string | undefined): string[] {
  return (v ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/** `multiPlatform`: the build makes an index, where index annotations have a place. */
export function parseImageCommit(type: ExporterType, attrs: Record<string, string>, multiPlatform = false): ImageCommitOptions {
  const group: AnnotationsGroup = new Map();
  for (const [k, v] of Object.entries(attrs)) {
    const a = parseAnnotationKey(k);
    if (!a) continue;
    let g = group.get(a.platform);
    if (!g) group.set(a.platform, (g = emptyAnnotations()));
    const target = a.type === "index" ? g.index : a.type === "index-descriptor" ? g.indexDescriptor : a.type === "manifest" ? g.manifest : g.manifestDescriptor;
    target[a.key] = v;
  }
  // BuildKit refuses index annotations for a single-platform image, but only once it is built: say so now.
  if (!multiPlatform) for (const [, a] of group) {
    if (Object.keys(a.index).length > 0 || Object.keys(a.indexDescriptor).length > 0) {
      throw new KilnError("KILN_EXPORTER_ATTR", "index annotations not supported for single platform export", { hint: "use annotation.* or annotation-manifest-descriptor.* for a single-platform image" });
    }
  }
  const type_ = parseCompressionType(attrs.compression ?? "gzip");
  const level = parseCompressionLevel(type_, attrs["compression-level"]);
  const compression: CompressionConfig = { type: type_, force: parseBool("force-compression", attrs["force-compression"], false) };
  if (level !== undefined) compression.level = level;
  const defaultOCI = type === "oci";
  let ociMediaTypes = parseBool("oci-mediatypes", attrs["oci-mediatypes"], defaultOCI);
  if (onlySupportsOCITypes(type_)) ociMediaTypes = true;
  const names = splitNames(attrs.name);
  for (const n of names) parseReference(n);
  parseBool("attestation-inline", attrs["attestation-inline"], true);
  parseBool("prefer-nondist-layers", attrs["prefer-nondist-layers"], false);
  return {
    names,
    compression,
    ociMediaTypes,
    buildInfo: parseBool("buildinfo", attrs.buildinfo, true),
    buildInfoAttrs: parseBool("buildinfo-attrs", attrs["buildinfo-attrs"], false, false),
    rewriteTimestamp: parseBool("rewrite-timestamp", attrs["rewrite-timestamp"], false),
    epoch: parseEpoch("source-date-epoch", attrs["source-date-epoch"]),
    annotations: group,
  };
}

export function parseImageExport(type: "image" | "registry", attrs: Record<string, string>, multiPlatform = false): ImageExportOptions {
  const base = parseImageCommit(type, attrs, multiPlatform);
  const push = parseBool("push", attrs.push, type === "registry");
  const opts: ImageExportOptions = {
    ...base,
    push,
    pushByDigest: parseBool("push-by-digest", attrs["push-by-digest"], false),
    insecure: parseBool("registry.insecure", attrs["registry.insecure"] ?? attrs.insecure, false),
    nameCanonical: parseBool("name-canonical", attrs["name-canonical"], false),
    danglingPrefix: attrs["dangling-name-prefix"] ?? "",
    store: parseBool("store", attrs.store, true),
  };
  parseBool("unpack", attrs.unpack, false);
  if (opts.danglingPrefix) parseReference(opts.danglingPrefix, { defaultTag: false });
  if (push && opts.names.length === 0 && !opts.danglingPrefix) {
    throw new KilnError("KILN_EXPORTER_ATTR", `exporter ${type} has push=true but no name to push to`, { hint: "set name=REGISTRY/REPOSITORY[:TAG] (kiln build -t NAME --push)" });
  }
  return opts;
}

export function parseTarballExport(type: "oci" | "docker", attrs: Record<string, string>, multiPlatform = false): TarballExportOptions {
  return { ...parseImageCommit(type, attrs, multiPlatform), tar: parseBool("tar", attrs.tar, true) };
}
