// What a build asks of its client: local directories, and (later) credentials, secrets, ssh.
// Daemonless, these are answered in-process; through kilnd, over BuildKit's session protocol.
import type { CredentialProvider } from "../remotes/types.js";

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
  /** Copies the selected entries into `dest` (an empty directory), preserving metadata. */
  copyTo(signal: AbortSignal, name: string, entries: LocalEntry[], dest: string): Promise<void>;
}

export interface Session {
  readonly id: string;
  readonly localDirs: LocalDirs;
  readonly credentials: CredentialProvider;
}
