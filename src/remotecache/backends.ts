// Where caches live: a local OCI layout directory (buildctl's `type=local`) and a registry
// repository (`type=registry`). Both hold BuildKit's shape: an index whose manifests are the layer
// blobs plus one cacheconfig blob (or, with image-manifest=true, an image manifest with the
// cacheconfig as its config).
import { createReadStream } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { randomBytes, createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { Descriptor, Index, Manifest } from "../api/oci.js";
import type { ContentStore } from "../content/types.js";
import type { ContentStores } from "../session/types.js";
import { formatReference, type Reference, type Resolver } from "../remotes/index.js";
import { KilnError, assertDigest, digestOf, isDigest, writeFileAtomic, type Digest } from "../util/index.js";
import { annotationCreatedAt, annotationUncompressed, cacheConfigMediaType, parseConfig, parseRecords, type CacheConfig } from "./config.js";
import type { ImportedConfig } from "./graph.js";

/** Where an exported cache goes. */
export interface CacheTarget {
  readonly name: string;
  hasBlob(signal: AbortSignal, desc: Descriptor): Promise<boolean>;
  putBlob(signal: AbortSignal, desc: Descriptor, open: () => Readable): Promise<void>;
  /** Puts the top document (index or manifest) last, so a half-written cache is never visible. */
  putRoot(signal: AbortSignal, desc: Descriptor, body: Uint8Array): Promise<void>;
}

/** Where an imported cache comes from. */
export interface CacheSource {
  readonly name: string;
  /** The top document's descriptor; throws when there is none. */
  resolve(signal: AbortSignal): Promise<Descriptor>;
  read(signal: AbortSignal, desc: Descriptor): Promise<Buffer>;
  /** Brings a blob into the content store (verified). */
  fetch(signal: AbortSignal, content: ContentStore, desc: Descriptor): Promise<void>;
}

const maxDocBytes = 64 << 20;

async function readAll(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    const b = c as Buffer;
    n += b.length;
    if (n > limit) {
      stream.destroy();
      throw new KilnError("KILN_CACHE_IMPORT", `document larger than ${limit} bytes`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

function verify(desc: Descriptor, body: Buffer): Buffer {
  if (digestOf(body) !== desc.digest) throw new KilnError("KILN_DIGEST_MISMATCH", `blob ${desc.digest}: content is ${digestOf(body)}`);
  return body;
}

// ---- local: an OCI image layout directory ----

const refNameAnnotation = "org.opencontainers.image.ref.name";

export class LocalCacheDir implements CacheTarget, CacheSource {
  constructor(
    readonly dir: string,
    private readonly tag = "latest",
    private readonly digest?: string,
  ) {}

  get name(): string {
    return this.dir;
  }

  private blobFile(d: string): string {
    const dg = assertDigest(d);
    return path.join(this.dir, "blobs", ...dg.split(":"));
  }

  async hasBlob(_signal: AbortSignal, desc: Descriptor): Promise<boolean> {
    try {
      return (await stat(this.blobFile(desc.digest))).size === desc.size;
    } catch {
      return false;
    }
  }

  async putBlob(signal: AbortSignal, desc: Descriptor, openSrc: () => Readable): Promise<void> {
    if (await this.hasBlob(signal, desc)) return;
    const dest = this.blobFile(desc.digest);
    await mkdir(path.dirname(dest), { recursive: true });
    const tmp = `${dest}.${randomBytes(6).toString("hex")}.tmp`;
    const fh = await open(tmp, "w");
    try {
      const hash = createHash("sha256");
      let size = 0;
      const src = openSrc();
      try {
        for await (const c of src as AsyncIterable<Buffer>) {
          signal.throwIfAborted();
          hash.update(c);
          size += c.length;
          await fh.write(c);
        }
      } finally {
        src.destroy();
      }
      const got = `sha256:${hash.digest("hex")}`;
      if (got !== desc.digest || size !== desc.size) throw new KilnError("KILN_DIGEST_MISMATCH", `blob ${desc.digest}: wrote ${got} (${size} bytes)`);
      await fh.sync();
      await fh.close();
      await rename(tmp, dest);
    } catch (err) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async putRoot(signal: AbortSignal, desc: Descriptor, body: Uint8Array): Promise<void> {
    await this.putBlob(signal, desc, () => bufferStream(body));
    await mkdir(this.dir, { recursive: true });
    await writeFileAtomic(path.join(this.dir, "oci-layout"), Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
    const index = await this.readIndex();
    // One entry per tag: the new cache replaces the tag's old one, other tags stay.
    const manifests = (index?.manifests ?? []).filter((m) => m.annotations?.[refNameAnnotation] !== this.tag);
    manifests.push({ mediaType: desc.mediaType, digest: desc.digest, size: desc.size, annotations: { [refNameAnnotation]: this.tag } });
    const out: Index = { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests };
    await writeFileAtomic(path.join(this.dir, "index.json"), Buffer.from(JSON.stringify(out)));
  }

  private async readIndex(): Promise<Index | undefined> {
    try {
      return JSON.parse(await readFile(path.join(this.dir, "index.json"), "utf8")) as Index;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  async resolve(_signal: AbortSignal): Promise<Descriptor> {
    if (this.digest) {
      if (!isDigest(this.digest)) throw new KilnError("KILN_CACHE_IMPORT", `invalid digest ${this.digest}`);
      const st = await stat(this.blobFile(this.digest));
      return { mediaType: "", digest: this.digest, size: st.size };
    }
    const index = await this.readIndex();
    const m = index?.manifests.find((x) => x.annotations?.[refNameAnnotation] === this.tag);
    if (!m) throw new KilnError("KILN_CACHE_IMPORT", `no cache tagged ${JSON.stringify(this.tag)} in ${this.dir}`);
    return m;
  }

  async read(_signal: AbortSignal, desc: Descriptor): Promise<Buffer> {
    return verify(desc, await readFile(this.blobFile(desc.digest)));
  }

  async fetch(signal: AbortSignal, content: ContentStore, desc: Descriptor): Promise<void> {
    if (await content.has(desc.digest as Digest)) return;
    await content.ingest(signal, createReadStream(this.blobFile(desc.digest)), { digest: desc.digest as Digest, size: desc.size });
  }
}

/**
 * A local cache directory on the client of a remote build, reached through the session's content
 * store `local:DIR` (as BuildKit's local cache exporter and importer do): the daemon puts and reads
 * blobs there, never the path itself. The client tags the top document in DIR/index.json from the
 * response's `cache.manifest`, and names the digest to import (it read its own index.json).
 */
export class SessionCacheStore implements CacheTarget, CacheSource {
  readonly storeId: string;

  constructor(
    private readonly stores: ContentStores,
    readonly dir: string,
    private readonly digest?: string,
  ) {
    this.storeId = `local:${dir}`;
  }

  get name(): string {
    return this.dir;
  }

  async hasBlob(signal: AbortSignal, desc: Descriptor): Promise<boolean> {
    return (await this.stores.info(signal, this.storeId, desc.digest))?.size === desc.size;
  }

  async putBlob(signal: AbortSignal, desc: Descriptor, openSrc: () => Readable): Promise<void> {
    if (!this.stores.write) throw new KilnError("KILN_CACHE_EXPORT", `${this.dir}: the client's session takes no writes`);
    await this.stores.write(signal, this.storeId, { digest: assertDigest(desc.digest), size: desc.size }, openSrc);
  }

  async putRoot(signal: AbortSignal, desc: Descriptor, body: Uint8Array): Promise<void> {
    await this.putBlob(signal, desc, () => bufferStream(body));
  }

  async resolve(signal: AbortSignal): Promise<Descriptor> {
    // BuildKit's importer takes only a digest: tags live in index.json, which is the client's to read.
    if (!this.digest) throw new KilnError("KILN_CACHE_IMPORT", "local cache importer requires explicit digest");
    if (!isDigest(this.digest)) throw new KilnError("KILN_CACHE_IMPORT", `invalid digest ${this.digest}`);
    const info = await this.stores.info(signal, this.storeId, this.digest);
    if (!info) throw new KilnError("KILN_CACHE_IMPORT", `${this.dir}: no blob ${this.digest}`);
    return { mediaType: "", digest: this.digest, size: info.size };
  }

  async read(signal: AbortSignal, desc: Descriptor): Promise<Buffer> {
    if (desc.size > maxDocBytes) throw new KilnError("KILN_CACHE_IMPORT", `document larger than ${maxDocBytes} bytes`);
    return verify(desc, await readAll(Readable.from(this.stores.read(signal, this.storeId, assertDigest(desc.digest))), maxDocBytes));
  }

  async fetch(signal: AbortSignal, content: ContentStore, desc: Descriptor): Promise<void> {
    if (await content.has(desc.digest as Digest)) return;
    const body = Readable.from(this.stores.read(signal, this.storeId, assertDigest(desc.digest)));
    try {
      await content.ingest(signal, body, { digest: desc.digest as Digest, size: desc.size });
    } finally {
      body.destroy();
    }
  }
}

function bufferStream(body: Uint8Array): Readable {
  return Readable.from([Buffer.from(body)]);
}

// ---- registry ----

export class RegistryCacheRef implements CacheTarget, CacheSource {
  constructor(
    private readonly resolver: Resolver,
    private readonly ref: Reference,
  ) {}

  get name(): string {
    return formatReference(this.ref);
  }

  hasBlob(signal: AbortSignal, desc: Descriptor): Promise<boolean> {
    return this.resolver.exists(signal, this.ref, desc);
  }

  putBlob(signal: AbortSignal, desc: Descriptor, openSrc: () => Readable): Promise<void> {
    return this.resolver.pushBlob(signal, this.ref, desc, openSrc);
  }

  putRoot(signal: AbortSignal, desc: Descriptor, body: Uint8Array): Promise<void> {
    return this.resolver.pushManifest(signal, this.ref, desc, body);
  }

  async resolve(signal: AbortSignal): Promise<Descriptor> {
    return (await this.resolver.resolve(signal, this.ref)).descriptor;
  }

  async read(signal: AbortSignal, desc: Descriptor): Promise<Buffer> {
    return verify(desc, await readAll(await this.resolver.fetch(signal, this.ref, desc), maxDocBytes));
  }

  async fetch(signal: AbortSignal, content: ContentStore, desc: Descriptor): Promise<void> {
    if (await content.has(desc.digest as Digest)) return;
    const body = await this.resolver.fetch(signal, this.ref, desc);
    try {
      await content.ingest(signal, body, { digest: desc.digest as Digest, size: desc.size });
    } finally {
      body.destroy();
    }
  }
}

export const inlineCacheKey = "moby.buildkit.cache.v0";

const imageManifestTypes = ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];

/**
 * Reads a cache's top document and its config: an index of blobs + cacheconfig, an image manifest
 * whose config is the cacheconfig, or an image (or an image index: this platform's image) whose
 * config carries inline cache records.
 */
export async function readCache(signal: AbortSignal, src: CacheSource, platform?: { os: string; architecture: string; variant?: string }): Promise<ImportedConfig> {
  const top = await src.resolve(signal);
  const doc = JSON.parse((await src.read(signal, top)).toString("utf8")) as Partial<Index & Manifest>;
  let configDesc: Descriptor | undefined;
  let layers: Descriptor[] = [];
  if (Array.isArray(doc.manifests) && !doc.manifests.some((m) => m.mediaType === cacheConfigMediaType) && doc.manifests.some((m) => imageManifestTypes.includes(m.mediaType))) {
    // An image index: the inline caches of all its images, as BuildKit imports them (a
    // multi-platform build matches each platform's steps against that platform's image);
    // this platform's image first, and images without inline cache (attestations) skipped.
    const images = doc.manifests.filter((m) => imageManifestTypes.includes(m.mediaType));
    const isOwn = (m: Descriptor) => !!m.platform && !!platform && m.platform.os === platform.os && m.platform.architecture === platform.architecture && (m.platform.variant ?? "") === (platform.variant ?? "");
    images.sort((a, b) => Number(isOwn(b)) - Number(isOwn(a)));
    const parts: ImportedConfig[] = [];
    for (const m of images) {
      const mf = JSON.parse((await src.read(signal, m)).toString("utf8")) as Partial<Manifest>;
      if (!mf.config || !Array.isArray(mf.layers) || mf.layers.length === 0) continue;
      const part = await readInline(signal, src, mf.config, mf.layers).catch((err: unknown) => {
        if (err instanceof KilnError && err.code === "KILN_CACHE_IMPORT") return undefined;
        throw err;
      });
      if (part) parts.push(part);
    }
    if (parts.length === 0) throw new KilnError("KILN_CACHE_IMPORT", `${src.name}: no image in ${top.digest} has inline cache (${inlineCacheKey})`);
    return mergeImported(parts);
  }
  if (Array.isArray(doc.manifests)) {
    configDesc = doc.manifests.find((m) => m.mediaType === cacheConfigMediaType);
    layers = doc.manifests.filter((m) => m.mediaType !== cacheConfigMediaType);
  } else if (doc.config && Array.isArray(doc.layers)) {
    layers = doc.layers;
    if (doc.config.mediaType === cacheConfigMediaType) configDesc = doc.config;
    else return readInline(signal, src, doc.config, layers);
  }
  if (!configDesc) throw new KilnError("KILN_CACHE_IMPORT", `${src.name}: ${top.digest} holds no ${cacheConfigMediaType}`);
  const config = parseConfig(await src.read(signal, configDesc));
  return { config, descriptors: new Map(layers.map((d) => [d.digest as Digest, d])) };
}

/** Several imported configs as one: each one's layer and record indexes shifted past the ones before. */
function mergeImported(parts: ImportedConfig[]): ImportedConfig {
  if (parts.length === 1) return parts[0]!;
  const layers: CacheConfig["layers"] = [];
  const records: CacheConfig["records"] = [];
  const descriptors = new Map<Digest, Descriptor>();
  for (const p of parts) {
    const lo = layers.length;
    const ro = records.length;
    layers.push(...p.config.layers.map((l) => ({ ...l, parent: l.parent < 0 ? l.parent : l.parent + lo })));
    records.push(
      ...p.config.records.map((r) => ({
        ...r,
        inputs: r.inputs.map((ins) => ins.map((x) => ({ ...x, link: x.link + ro }))),
        results: r.results.map((x) => ({ ...x, layer: x.layer + lo })),
        chains: r.chains.map((c) => ({ ...c, layers: c.layers.map((l) => l + lo) })),
      })),
    );
    for (const [d, desc] of p.descriptors) if (!descriptors.has(d)) descriptors.set(d, desc);
  }
  return { config: { layers, records }, descriptors };
}

/** Inline cache: records in the image config, layer indexes into the image's own layers (each on the one before). */
async function readInline(signal: AbortSignal, src: CacheSource, configDesc: Descriptor, imageLayers: Descriptor[]): Promise<ImportedConfig> {
  const cfg = JSON.parse((await src.read(signal, configDesc)).toString("utf8")) as Record<string, unknown> & { rootfs?: { diff_ids?: string[] } };
  const raw = cfg[inlineCacheKey];
  if (raw === undefined) throw new KilnError("KILN_CACHE_IMPORT", `${src.name}: the image has no inline cache (${inlineCacheKey})`);
  const diffIds = cfg.rootfs?.diff_ids ?? [];
  // A layer no record dates (mode=min records only the result) keeps the time its history entry
  // gives, as BuildKit's importer dates it, so a rebuilt image has the same history.
  const history = (Array.isArray(cfg.history) ? (cfg.history as { created?: unknown; empty_layer?: unknown }[]) : []).filter((h) => h.empty_layer !== true);
  const descs = imageLayers.map((l, i) => {
    const created = history[i]?.created;
    return {
      ...l,
      annotations: {
        ...(typeof created === "string" && created !== "" ? { [annotationCreatedAt]: created } : {}),
        ...l.annotations,
        [annotationUncompressed]: l.annotations?.[annotationUncompressed] ?? diffIds[i] ?? "",
      },
    };
  });
  const layers = descs.map((d, i) => ({ blob: d.digest as Digest, parent: i - 1 }));
  return { config: { layers, records: parseRecords(raw, layers.length) }, descriptors: new Map(descs.map((d) => [d.digest as Digest, d])) };
}
