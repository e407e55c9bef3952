// The registry client's boundary.
import type { Readable } from "node:stream";
import type { Descriptor } from "../api/oci.js";

/** A parsed, normalised image reference: docker.io/library/busybox:latest. */
export interface Reference {
  domain: string;
  path: string;
  tag?: string;
  digest?: string;
}

export interface RegistryHostConfig {
  mirrors?: string[];
  http?: boolean;
  insecure?: boolean;
  ca?: string[];
}

export interface AuthConfig {
  username?: string;
  password?: string;
  identityToken?: string;
  registryToken?: string;
}

/** Where credentials come from: the docker config file in-process, or the client's session in the daemon. */
export interface CredentialProvider {
  credentials(signal: AbortSignal, host: string): Promise<AuthConfig | undefined>;
}

export interface ResolvedDescriptor {
  /** The canonical reference with its digest. */
  ref: Reference;
  descriptor: Descriptor;
}

export interface Resolver {
  /** Resolves a tag or digest to the descriptor of its manifest or index. */
  resolve(signal: AbortSignal, ref: Reference): Promise<ResolvedDescriptor>;
  /** Fetches a manifest, index or blob by descriptor. */
  fetch(signal: AbortSignal, ref: Reference, desc: Descriptor): Promise<Readable>;
  /** Checks whether a blob exists in the repository. */
  exists(signal: AbortSignal, ref: Reference, desc: Descriptor): Promise<boolean>;
  /** Uploads a blob (if missing) from a stream. */
  pushBlob(signal: AbortSignal, ref: Reference, desc: Descriptor, open: () => Readable): Promise<void>;
  /** Puts a manifest or index under a tag or digest. */
  pushManifest(signal: AbortSignal, ref: Reference, desc: Descriptor, body: Uint8Array): Promise<void>;
}
