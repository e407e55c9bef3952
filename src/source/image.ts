// docker-image://REF: resolves an image for a platform, then unpacks each layer once into a
// snapshot chain shared by every build that uses the same layers.
import { createGunzip } from "node:zlib";
import { PassThrough, type Readable } from "node:stream";
import type { Descriptor, ImageConfig } from "../api/oci.js";
import type { CacheManager, ImmutableRef } from "../cache/index.js";
import type { ContentStore } from "../content/types.js";
import { pullImage, parseReference, formatReference, type PulledImage } from "../remotes/index.js";
import type { Resolver } from "../remotes/types.js";
import type { Session } from "../session/types.js";
import { applyLayer } from "../snapshot/index.js";
import type { CacheMap, Op, OpContext, ProgressWriter, Result } from "../solver/types.js";
import { Flight, KilnError, digestOf, formatPlatform, type Digest, type Platform } from "../util/index.js";

export interface ResolvedImage {
  /** Canonical reference, pinned to the manifest's digest. */
  ref: string;
  /** Digest of what the tag pointed at (index or manifest). */
  digest: Digest;
  /** Digest of the platform's manifest. */
  manifestDigest: Digest;
  config: ImageConfig;
  configBytes: Uint8Array;
  layers: Descriptor[];
  pulled: PulledImage;
}

export interface ImagePuller {
  resolve(signal: AbortSignal, ref: string, platform: Platform, session: Session | undefined): Promise<ResolvedImage>;
  unpack(signal: AbortSignal, img: ResolvedImage, progress: ProgressWriter, vertex: Digest): Promise<ImmutableRef | undefined>;
}

export interface RegistryImagePullerOptions {
  mgr: CacheManager;
  content: ContentStore;
  /** The resolver to use for a build's session (credentials come from the client). */
  resolverFor(session: Session | undefined): Resolver;
}

export class RegistryImagePuller implements ImagePuller {
  private readonly unpacking = new Flight<string>();
  private readonly resolving = new Flight<ResolvedImage>();

  constructor(private readonly opts: RegistryImagePullerOptions) {}

  resolve(signal: AbortSignal, ref: string, platform: Platform, session: Session | undefined): Promise<ResolvedImage> {
    const parsed = parseReference(ref);
    return this.resolving.run(`${formatReference(parsed)}|${formatPlatform(platform)}|${session?.id ?? ""}`, async () => {
      const pulled = await pullImage(signal, { resolver: this.opts.resolverFor(session), store: this.opts.content, ref: parsed, platform });
      const configBytes = await this.opts.content.read(pulled.configDescriptor.digest as Digest);
      return {
        ref: formatReference(pulled.ref),
        digest: (pulled.ref.digest ?? pulled.manifestDescriptor.digest) as Digest,
        manifestDigest: pulled.manifestDescriptor.digest as Digest,
        config: pulled.config,
        configBytes,
        layers: pulled.layers,
        pulled,
      };
    });
  }

  async unpack(signal: AbortSignal, img: ResolvedImage, progress: ProgressWriter, vertex: Digest): Promise<ImmutableRef | undefined> {
    const { mgr, content } = this.opts;
    const diffIds = img.config.rootfs?.diff_ids ?? [];
    return mgr.stackLayers(signal, img.layers, (layer, parent, i) =>
      this.unpacking.run(`${layer.digest}|${parent?.id ?? ""}`, async () => {
        const found = await mgr.findLayer(layer.digest, parent);
        if (found) {
          await found.release();
          return found.id;
        }
        const started = new Date();
        const status = { id: `extracting ${layer.digest}`, vertex, started, current: 0 };
        if (!(await content.has(layer.digest as Digest))) {
          progress.write({ statuses: [{ id: `downloading ${layer.digest}`, vertex, started, current: 0, total: layer.size }] });
          await img.pulled.fetchBlob(signal, layer);
          progress.write({ statuses: [{ id: `downloading ${layer.digest}`, vertex, started, current: layer.size, total: layer.size, completed: new Date() }] });
        }
        progress.write({ statuses: [status] });
        const mut = await mgr.newMutable(parent, `pulled from ${img.ref}`);
        try {
          const res = await applyLayer(signal, mgr.snapshotter, mut.id, decompress(content.createReadStream(layer.digest as Digest), layer.mediaType));
          const expected = diffIds[i];
          if (expected && res.diffId && res.diffId !== expected) {
            throw new KilnError("KILN_LAYER_DIGEST", `layer ${layer.digest} of ${img.ref}: uncompressed digest ${res.diffId} does not match the config's ${expected}`);
          }
          const ref = await mut.commit({ blobDigest: layer.digest, blobMediaType: layer.mediaType, blobSize: layer.size, diffId: res.diffId ?? expected ?? null });
          progress.write({ statuses: [{ ...status, completed: new Date() }] });
          const rid = ref.id;
          await ref.release();
          return rid;
        } catch (err) {
          await mut.discard();
          throw err;
        }
      }),
    );
  }
}

/** A source's CacheMap digest from its key, as BuildKit's source op makes it. */
export function sourceCacheDigest(key: string): Digest {
  return digestOf(`buildkit.source.v0:${key}`);
}

/** The ChainID of the image's layers (BuildKit's config key); the config's digest when it is not an image config. */
function imageConfigKey(img: ResolvedImage): string | undefined {
  let diffIds: unknown;
  try {
    const cfg = JSON.parse(Buffer.from(img.configBytes).toString("utf8")) as { rootfs?: { type?: string; diff_ids?: unknown } };
    if (cfg.rootfs?.type !== "layers" || !Array.isArray(cfg.rootfs.diff_ids) || cfg.rootfs.diff_ids.length === 0) return undefined;
    diffIds = cfg.rootfs.diff_ids;
  } catch {
    return digestOf(img.configBytes);
  }
  let chain = "";
  for (const d of diffIds as string[]) chain = chain ? digestOf(`${chain} ${d}`) : d;
  return chain;
}

/** Go's encoding/json for a flat object of strings (keys in order, undefined left out). */
function goJSON(o: Record<string, string | undefined>): string {
  const esc = (s: string) => JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  return `{${Object.entries(o)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${esc(k)}:${esc(v!)}`)
    .join(",")}}`;
}

function decompress(stream: Readable, mediaType: string): Readable {
  if (mediaType.endsWith("gzip")) return stream.pipe(createGunzip());
  if (mediaType.endsWith("zstd")) throw new KilnError("KILN_UNSUPPORTED", "zstd layers are not supported yet");
  return stream.pipe(new PassThrough());
}

export class ImageSourceOp implements Op {
  readonly outputs = 1;
  private resolved: ResolvedImage | undefined;

  constructor(
    private readonly deps: { mgr: CacheManager; images: ImagePuller },
    private readonly ref: string,
    private readonly platform: Platform,
    private readonly session: Session,
  ) {}

  private async resolve(signal: AbortSignal): Promise<ResolvedImage> {
    this.resolved ??= await this.deps.images.resolve(signal, this.ref, this.platform, this.session);
    return this.resolved;
  }

  /**
   * BuildKit's two keys for an image: what the reference resolved to (index or manifest) with the
   * platform, then the ChainID of its layers, so the same layers under another tag also match.
   */
  async cacheMap(signal: AbortSignal): Promise<CacheMap> {
    const img = await this.resolve(signal);
    const manifestKey = digestOf(goJSON({ Digest: img.digest, OS: this.platform.os, Arch: this.platform.architecture, Variant: this.platform.variant || undefined }));
    const configKey = imageConfigKey(img);
    return { digest: sourceCacheDigest(manifestKey), alternates: configKey ? [sourceCacheDigest(configKey)] : undefined, deps: [] };
  }

  async exec(signal: AbortSignal, ctx: OpContext): Promise<Result[]> {
    const img = await this.resolve(signal);
    const ref = await this.deps.images.unpack(signal, img, ctx.progress, ctx.vertex.digest);
    if (ref) return [ref];
    // An image with no layers is an empty filesystem.
    const mut = await this.deps.mgr.newMutable(undefined, `empty image ${img.ref}`);
    return [await mut.commit()];
  }
}
