// pushImage: uploads an image (index, manifests, configs, layers) from the content store, children
// before parents so the registry never sees a manifest whose blobs are missing.
import { isIndexMediaType, isManifestMediaType, type Descriptor, type Index, type Manifest } from "../api/oci.js";
import type { ContentStore } from "../content/index.js";
import { KilnError, type Digest } from "../util/index.js";
import { parseReference } from "./reference.js";
import { RegistryResolver } from "./resolver.js";
import type { Reference, Resolver } from "./types.js";

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
}

export async function pushImage(signal: AbortSignal, opts: PushImageOptions): Promise<void> {
  const ref = typeof opts.ref === "string" ? parseReference(opts.ref) : opts.ref;
  const limit = Math.max(1, opts.concurrency ?? 4);
  const { resolver, store } = opts;

  const pushBlob = async (desc: Descriptor): Promise<void> => {
    const open = () => store.createReadStream(desc.digest as Digest);
    if (resolver instanceof RegistryResolver) await resolver.pushBlob(signal, ref, desc, open, { mountFrom: opts.mountFrom });
    else await resolver.pushBlob(signal, ref, desc, open);
  };

  const pushTree = async (desc: Descriptor, target: Reference): Promise<void> => {
    if (isIndexMediaType(desc.mediaType)) {
      const index = await store.readJSON<Index>(desc.digest as Digest);
      for (const child of index.manifests ?? []) await pushTree(child, { domain: ref.domain, path: ref.path });
    } else if (isManifestMediaType(desc.mediaType)) {
      const manifest = await store.readJSON<Manifest>(desc.digest as Digest);
      await runLimited([manifest.config, ...manifest.layers], limit, pushBlob);
    } else {
      throw new KilnError("KILN_IMAGE", `cannot push ${desc.digest}: ${desc.mediaType} is not a manifest or index`);
    }
    await resolver.pushManifest(signal, target, desc, await store.read(desc.digest as Digest));
  };

  await pushTree(opts.descriptor, ref);
}

async function runLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
