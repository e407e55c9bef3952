// pullImage: resolve a reference, pick the platform's manifest from an index, and bring manifest
// and config into the content store. Layers are fetched only when the caller asks (fetchBlob).
import type { Readable } from "node:stream";
import { MediaType, isIndexMediaType, isManifestMediaType, type Descriptor, type ImageConfig, type Index, type Manifest } from "../api/oci.js";
import type { BlobInfo, ContentStore } from "../content/index.js";
import { KilnError, formatPlatform, hostPlatform, isDigest, normalizePlatform, platformEquals, platformVector, type Digest, type Platform } from "../util/index.js";
import { lazyReadable } from "./lazy.js";
import { formatReference, parseReference } from "./reference.js";
import type { Reference, Resolver } from "./types.js";

export interface PullOptions {
  resolver: Resolver;
  store: ContentStore;
  ref: Reference | string;
  /** Default: the host's platform. */
  platform?: Platform;
}

export interface PulledImage {
  /** The reference pinned to the digest it resolved to (index or manifest); the tag is kept. */
  ref: Reference;
  /** What the reference resolved to: an index or a manifest. */
  descriptor: Descriptor;
  /** The platform's manifest (equal to `descriptor` for a single-platform image). */
  manifestDescriptor: Descriptor;
  manifest: Manifest;
  configDescriptor: Descriptor;
  config: ImageConfig;
  layers: Descriptor[];
  /** Brings a blob of this image into the store, unless it is there already. Concurrent calls share one download. */
  fetchBlob(signal: AbortSignal, desc: Descriptor): Promise<BlobInfo>;
}

const maxIndexDepth = 4;

export async function pullImage(signal: AbortSignal, opts: PullOptions): Promise<PulledImage> {
  const { resolver, store } = opts;
  const ref = typeof opts.ref === "string" ? parseReference(opts.ref) : opts.ref;
  const want = normalizePlatform(opts.platform ?? hostPlatform());
  const fetchBlob = (s: AbortSignal, desc: Descriptor): Promise<BlobInfo> => ensureBlob(s, resolver, store, ref, desc);

  const resolved = await resolveLocalFirst(signal, resolver, store, ref);
  let desc = resolved;
  let doc = await readManifestish(signal, store, fetchBlob, ref, desc);
  for (let depth = 0; isIndexMediaType(desc.mediaType); depth++) {
    if (depth >= maxIndexDepth) throw new KilnError("KILN_IMAGE", `${formatReference(ref)}: image indexes nested too deep`);
    const index = doc as Index;
    const chosen = choosePlatform(index.manifests ?? [], want);
    if (!chosen) {
      const offered = (index.manifests ?? []).map((m) => (m.platform ? formatPlatform(m.platform) : "unknown")).join(", ");
      throw new KilnError("KILN_IMAGE", `${formatReference(ref)}: no image for platform ${formatPlatform(want)} (the index offers ${offered || "nothing"})`);
    }
    desc = chosen;
    doc = await readManifestish(signal, store, fetchBlob, ref, desc);
  }
  const manifest = doc as Manifest;
  if (!manifest.config || !Array.isArray(manifest.layers)) throw new KilnError("KILN_IMAGE", `${formatReference(ref)}: manifest ${desc.digest} has no config or layers`);
  const configDescriptor = manifest.config;
  await fetchBlob(signal, configDescriptor);
  const config = await store.readJSON<ImageConfig>(configDescriptor.digest as Digest);
  return {
    ref: { ...ref, digest: resolved.digest },
    descriptor: resolved,
    manifestDescriptor: desc,
    manifest,
    configDescriptor,
    config,
    layers: manifest.layers,
    fetchBlob,
  };
}

/** A digest reference whose content is already here needs no registry at all. */
async function resolveLocalFirst(signal: AbortSignal, resolver: Resolver, store: ContentStore, ref: Reference): Promise<Descriptor> {
  if (ref.digest && isDigest(ref.digest)) {
    const info = await store.info(ref.digest);
    if (info) {
      const mediaType = sniffMediaType(await store.read(ref.digest));
      if (mediaType) return { mediaType, digest: ref.digest, size: info.size };
    }
  }
  return (await resolver.resolve(signal, ref)).descriptor;
}

async function readManifestish(
  signal: AbortSignal,
  store: ContentStore,
  fetchBlob: (s: AbortSignal, d: Descriptor) => Promise<BlobInfo>,
  ref: Reference,
  desc: Descriptor,
): Promise<Manifest | Index> {
  if (!isManifestMediaType(desc.mediaType) && !isIndexMediaType(desc.mediaType)) {
    throw new KilnError("KILN_IMAGE", `${formatReference(ref)}: unsupported manifest media type ${desc.mediaType}`, {
      hint: desc.mediaType.includes("v1+prettyjws") ? "Docker schema 1 images are not supported; push the image again with a current client" : undefined,
    });
  }
  await fetchBlob(signal, desc);
  return store.readJSON<Manifest | Index>(desc.digest as Digest);
}

async function ensureBlob(signal: AbortSignal, resolver: Resolver, store: ContentStore, ref: Reference, desc: Descriptor): Promise<BlobInfo> {
  if (!isDigest(desc.digest)) throw new KilnError("KILN_INVALID_DIGEST", `${formatReference(ref)}: invalid digest ${JSON.stringify(desc.digest)} in a descriptor`);
  const digest = desc.digest;
  const have = await store.info(digest);
  if (have) return have;
  // The store shares one ingest per digest; only the first caller's lazy source ever opens a request.
  const source: Readable = lazyReadable((s) => resolver.fetch(s, ref, desc));
  return store.ingest(signal, source, { digest, size: desc.size });
}

/** Picks the best manifest for `want`: the first platform of its vector an index offers (containerd's order). */
export function choosePlatform(manifests: Descriptor[], want: Platform): Descriptor | undefined {
  const vector = platformVector(want);
  let best: Descriptor | undefined;
  let bestRank = vector.length;
  for (const m of manifests) {
    if (!m.platform) continue;
    const have = normalizePlatform({ os: m.platform.os.toLowerCase(), architecture: m.platform.architecture.toLowerCase(), variant: m.platform.variant?.toLowerCase() });
    const rank = vector.findIndex((v) => platformEquals(v, have));
    if (rank >= 0 && rank < bestRank) {
      best = m;
      bestRank = rank;
    }
  }
  return best;
}

function sniffMediaType(body: Buffer): string | undefined {
  try {
    const doc = JSON.parse(body.toString("utf8")) as { mediaType?: unknown; manifests?: unknown; layers?: unknown };
    if (typeof doc.mediaType === "string") return doc.mediaType;
    if (Array.isArray(doc.manifests)) return MediaType.ociIndex;
    if (Array.isArray(doc.layers)) return MediaType.ociManifest;
  } catch {
    return undefined;
  }
  return undefined;
}
