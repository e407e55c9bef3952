// oci-layout://NAME@DIGEST: an image from one of the client's OCI layouts, read through the
// session's content store (BuildKit's ociLayoutResolver); pulled and unpacked as registry images are.
import { Readable } from "node:stream";
import type { Descriptor } from "../api/oci.js";
import type { Reference, ResolvedDescriptor, Resolver } from "../remotes/types.js";
import type { ContentStores } from "../session/types.js";
import { KilnError } from "../util/index.js";

const maxManifestBytes = 8 << 20;

export class OCILayoutResolver implements Resolver {
  constructor(
    private readonly stores: ContentStores | undefined,
    private readonly storeId: string,
  ) {}

  private get store(): ContentStores {
    if (!this.stores) throw new KilnError("KILN_SESSION", `no OCI layout store ${JSON.stringify(this.storeId)} offered by the client session`);
    return this.stores;
  }

  /** Only digests name content in a layout's store; the media type is the document's own. */
  async resolve(signal: AbortSignal, ref: Reference): Promise<ResolvedDescriptor> {
    if (!ref.digest) throw new KilnError("KILN_OCI_LAYOUT", `oci-layout reference ${ref.path} has no digest`);
    const info = await this.store.info(signal, this.storeId, ref.digest);
    if (!info) throw new KilnError("KILN_OCI_LAYOUT", `${ref.digest}: not found in OCI layout store ${this.storeId}`);
    if (info.size > maxManifestBytes) throw new KilnError("KILN_OCI_LAYOUT", `${ref.digest}: ${info.size} bytes is too large for a manifest`);
    const chunks: Uint8Array[] = [];
    for await (const c of this.store.read(signal, this.storeId, ref.digest)) chunks.push(c);
    const doc = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { mediaType?: string; manifests?: unknown };
    const mediaType = doc.mediaType ?? (doc.manifests !== undefined ? "application/vnd.oci.image.index.v1+json" : "application/vnd.oci.image.manifest.v1+json");
    return { ref, descriptor: { mediaType, digest: ref.digest, size: info.size } };
  }

  async fetch(signal: AbortSignal, _ref: Reference, desc: Descriptor): Promise<Readable> {
    return Readable.from(this.store.read(signal, this.storeId, desc.digest));
  }

  async exists(signal: AbortSignal, _ref: Reference, desc: Descriptor): Promise<boolean> {
    return (await this.store.info(signal, this.storeId, desc.digest)) !== undefined;
  }

  pushBlob(): Promise<void> {
    return Promise.reject(new KilnError("KILN_OCI_LAYOUT", "an OCI layout source is read-only"));
  }

  pushManifest(): Promise<void> {
    return Promise.reject(new KilnError("KILN_OCI_LAYOUT", "an OCI layout source is read-only"));
  }
}
