// Attestations in an image index, as BuildKit v0.11 writes them: each platform's in-toto statements
// (provenance, SBOMs) are the layers of one more manifest, platform unknown/unknown, annotated with
// the digest of the image manifest they describe.
import type { ContentStore } from "../content/types.js";
import { MediaType, type Descriptor } from "../api/oci.js";
import { KilnError, digestOf, formatPlatform, normalizePlatform, type Platform } from "../util/index.js";
import { familiarName, parseReference } from "../remotes/index.js";
import { goJSON, sortedKeys } from "./gojson.js";

export const inTotoMediaType = "application/vnd.in-toto+json";
export const inTotoStatementType = "https://in-toto.io/Statement/v0.1";
export const predicateTypeSLSA02 = "https://slsa.dev/provenance/v0.2";
export const predicateTypeSPDX = "https://spdx.dev/Document";
export const annotationPredicateType = "in-toto.io/predicate-type";
export const annotationReferenceType = "vnd.docker.reference.type";
export const annotationReferenceDigest = "vnd.docker.reference.digest";
export const referenceTypeAttestation = "attestation-manifest";
/** The platform of attestation manifests, so runtimes picking by platform never choose one. */
export const attestationPlatform = { architecture: "unknown", os: "unknown" } as const;

/** The image an attestation is written for: its layer descriptors, by the ref record each came from. */
export interface AttestedImage {
  layers: { recordId: string; descriptor: Descriptor }[];
}

export interface InTotoSubject {
  name: string;
  digest: Record<string, string>;
}

/** One in-toto statement to attach to an image. */
export interface Attestation {
  predicateType: string;
  /** Its file name ("provenance.json", "spdx.json"): the statements' order puts the core SBOM first. */
  path: string;
  /**
   * The predicate's JSON, made when the output is written (provenance notes when the build
   * finished); an image output passes its layers, by the ref record each came from.
   */
  predicate: (image?: AttestedImage) => Promise<Uint8Array>;
  /** The statement's own subjects; absent: the image it is attached to, under each of its names. */
  subjects?: InTotoSubject[];
  /** Whether only image outputs take it (BuildKit's inline-only); local files leave it out. */
  inlineOnly?: boolean;
}

/**
 * A package URL for an image name (BuildKit's purl.RefToPURL): `pkg:docker/NAMESPACE/NAME@TAG`,
 * qualified by the digest of a canonical reference and the platform.
 */
export function refToPURL(ref: string, platform?: Platform): string {
  let r;
  try {
    r = parseReference(ref);
  } catch (err) {
    throw new KilnError("KILN_EXPORTER", `failed to parse ref ${JSON.stringify(ref)}: ${(err as Error).message}`, { cause: err });
  }
  const qualifiers: [string, string][] = [];
  let version = "";
  if (r.digest !== undefined) qualifiers.push(["digest", r.digest]);
  else version = r.tag ?? "latest";
  if (r.digest !== undefined && r.tag !== undefined) version = r.tag;
  const name = familiarName(r);
  const parts = name.split("/");
  const last = parts.pop()!;
  if (platform) qualifiers.push(["platform", formatPlatform(normalizePlatform(platform))]);
  let out = "pkg:docker/";
  if (parts.length > 0) out += parts.map(queryEscape).join("/") + "/";
  out += queryEscape(last);
  if (version) out += "@" + pathEscape(version);
  if (qualifiers.length > 0) out += "?" + qualifiers.map(([k, v]) => `${k}=${pathEscape(v)}`).join("&");
  return out;
}

/** Go's url.QueryEscape: unreserved characters stay, a space is `+`, the rest is %-escaped. */
function queryEscape(s: string): string {
  return escapeBytes(s, /[A-Za-z0-9\-_.~]/).replace(/%20/g, "+");
}

/** Go's url.PathEscape: everything but unreserved characters and `$&+:=@` is %-escaped. */
export function pathEscape(s: string): string {
  return escapeBytes(s, /[A-Za-z0-9\-_.~$&+:=@]/);
}

function escapeBytes(s: string, keep: RegExp): string {
  return Array.from(Buffer.from(s, "utf8"))
    .map((b) => {
      const c = String.fromCharCode(b);
      return b < 0x80 && keep.test(c) ? c : "%" + b.toString(16).toUpperCase().padStart(2, "0");
    })
    .join("");
}

/** JSON text re-marshalled as Go marshals a decoded interface{}: compact, map keys sorted, HTML escaped. */
export function goRemarshal(text: string): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === "object") {
      const o = sortedKeys(v as Record<string, unknown>);
      for (const k of Object.keys(o)) o[k] = sort(o[k]);
      return o;
    }
    return v;
  };
  return goJSON(sort(JSON.parse(text)));
}

/** The in-toto statement of an attestation, as Go's json.Marshal writes intoto.Statement. */
export async function statementBytes(att: Attestation, defaultSubjects: InTotoSubject[], image?: AttestedImage): Promise<string> {
  const subjects = att.subjects && att.subjects.length > 0 ? att.subjects : defaultSubjects;
  const raw = Buffer.from(await att.predicate(image)).toString("utf8");
  let predicate: string;
  try {
    // Go compacts a raw predicate; its key order stays.
    predicate = goJSON(JSON.parse(raw));
  } catch (err) {
    throw new KilnError("KILN_EXPORTER", `attestation ${att.path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const head = goJSON({ _type: inTotoStatementType, predicateType: att.predicateType, subject: subjects.map((s) => ({ name: s.name, digest: sortedKeys(s.digest) })) });
  return `${head.slice(0, -1)},"predicate":${predicate}}`;
}

export interface CommittedAttestations {
  /** The attestation manifest's descriptor for the index (annotations and platform set). */
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
}

/**
 * Writes one platform's statements as layers of an attestation manifest that refers to `target`
 * (the image manifest). `names` are the image's names; each is a subject, with the platform.
 */
export async function commitAttestations(
  signal: AbortSignal,
  content: ContentStore,
  atts: Attestation[],
  target: Descriptor,
  image: AttestedImage,
  platform: Platform,
  names: string[],
  ociMediaTypes: boolean,
  indent: (v: unknown) => string,
  step: <T>(name: string, fn: () => Promise<T>) => Promise<T> = (_name, fn) => fn(),
): Promise<CommittedAttestations> {
  const subjects = names.map((n) => ({ name: refToPURL(n, platform), digest: { [target.digest.split(":")[0]!]: target.digest.split(":")[1]! } }));
  const layers: Descriptor[] = [];
  for (const att of atts) {
    const bytes = await statementBytes(att, subjects, image);
    const info = await content.put(signal, bytes);
    layers.push({ mediaType: inTotoMediaType, digest: info.digest, size: info.size, annotations: { [annotationPredicateType]: att.predicateType } });
  }
  const config = goJSON({ architecture: attestationPlatform.architecture, os: attestationPlatform.os, config: {}, rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) } });
  const configInfo = await content.put(signal, config);
  const configDesc: Descriptor = { mediaType: ociMediaTypes ? MediaType.ociConfig : MediaType.dockerConfig, digest: configInfo.digest, size: configInfo.size };
  const manifestType = ociMediaTypes ? MediaType.ociManifest : MediaType.dockerManifest;
  const manifest = indent({
    mediaType: manifestType,
    schemaVersion: 2,
    config: { mediaType: configDesc.mediaType, digest: configDesc.digest, size: configDesc.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, ...(ociMediaTypes ? { annotations: l.annotations } : {}) })),
  });
  const info = await step(`exporting attestation manifest ${digestOf(manifest)}`, () => content.put(signal, manifest));
  return {
    manifest: {
      mediaType: manifestType,
      digest: info.digest,
      size: info.size,
      annotations: { [annotationReferenceDigest]: target.digest, [annotationReferenceType]: referenceTypeAttestation },
      platform: { ...attestationPlatform },
    },
    config: configDesc,
    layers,
  };
}

/**
 * Statements in BuildKit's order: the core SBOM (the scan of the image itself) before the
 * others, each group in the order given.
 */
export function orderAttestations<T extends { path: string; sbomCore?: string }>(atts: T[]): T[] {
  const isCore = (a: T) => a.sbomCore !== undefined && a.path.split(".")[0] === a.sbomCore;
  return [...atts.filter(isCore), ...atts.filter((a) => !isCore(a))];
}
