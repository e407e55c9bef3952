// What a build asks of its client: local directories, and (later) credentials, secrets, ssh.
// Daemonless, these are answered in-process; through kilnd, over BuildKit's session protocol.
import type { CredentialProvider } from "../remotes/types.js";
import type { SecretStore } from "./secrets.js";
import type { SSHAgents } from "./ssh.js";

export interface SyncOptions {
  includePatterns?: string[];
  excludePatterns?: string[];
  followPaths?: string[];
}

export interface LocalEntry {
  /** Slash-separated path relative to the directory root. */
  path: string;
  type: "file" | "dir" | "symlink" | "other";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  linkname?: string;
}

export interface LocalDirs {
  /**
   * Lists the entries of the named local directory that the patterns select, parents first,
   * in lexical order; undefined when the client offers no such directory.
   */
  list(signal: AbortSignal, name: string, opts: SyncOptions): Promise<LocalEntry[] | undefined>;
  /**
   * Copies the selected entries into `dest` (an empty directory), preserving metadata. Entries
   * unchanged since `base` may be taken from it (hard links) instead of being transferred again.
   */
  copyTo(signal: AbortSignal, name: string, entries: LocalEntry[], dest: string, base?: LocalBase): Promise<void>;
  /**
   * Identifies the directory behind `name` across builds (e.g. its absolute path on the client),
   * so a later build can start from the snapshot an earlier one made; undefined disables that.
   */
  sharedKey?(name: string): string | undefined;
}

/** An earlier snapshot of the same local directory, and the entries it was made from. */
export interface LocalBase {
  dir: string;
  entries: ReadonlyMap<string, LocalEntry>;
}

export interface Session {
  readonly id: string;
  readonly localDirs: LocalDirs;
  readonly credentials: CredentialProvider;
  /** Secrets the client offers (`--secret`); none when absent. */
  readonly secrets?: SecretStore;
  /** SSH agents the client forwards (`--ssh`); none when absent. */
  readonly ssh?: SSHAgents;
  /** Files the client uploads (`http://buildkit-session/<id>` URLs, BuildKit's upload provider); none when absent. */
  readonly upload?: Uploads;
  /** Content stores the client attached (`oci-layout://` sources, layout and local cache outputs); none when absent. */
  readonly contentStores?: ContentStores;
}

/** The client's content stores (BuildKit's session content attachable: OCI layouts by store id). */
export interface ContentStores {
  /** The blob's size; undefined when the store doesn't hold it. */
  info(signal: AbortSignal, storeId: string, digest: string): Promise<{ size: number } | undefined>;
  /** The blob's bytes, streamed. */
  read(signal: AbortSignal, storeId: string, digest: string): AsyncIterable<Uint8Array>;
  /** Whether the client takes writes (a layout or cache directory it attached for the build's output). */
  readonly writable?: boolean;
  /**
   * Puts a blob into the client's store, which checks its size and digest before it appears
   * there; false when the store had it already.
   */
  write?(signal: AbortSignal, storeId: string, desc: { digest: string; size: number }, data: () => AsyncIterable<Uint8Array>): Promise<boolean>;
}

export interface Uploads {
  /** The bytes of the upload the URL names, streamed as the client sends them. */
  pull(signal: AbortSignal, url: URL): AsyncIterable<Uint8Array>;
}
