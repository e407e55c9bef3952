// The exporter boundary: an Exporter validates attrs into an instance that turns a result into output.
import type { Writable } from "node:stream";
import type { ImmutableRef } from "../cache/index.js";
import type { ImageConfig } from "../api/oci.js";
import type { CredentialProvider } from "../remotes/index.js";
import type { ProgressWriter } from "../solver/types.js";
import type { Platform } from "../util/index.js";
import type { Attestation } from "./attestation.js";

/** A source the build used, for the `moby.buildkit.buildinfo.v1` config entry. */
export interface BuildSource {
  type: "docker-image" | "git" | "http";
  ref: string;
  pin: string;
}

/** What a build was made from (BuildKit's deprecated but still written build info). */
export interface BuildInfo {
  frontend?: string;
  /** The frontend attributes that shape the result (build args, labels, target, …). */
  attrs?: Record<string, string>;
  sources: BuildSource[];
}

/** One platform's part of a multi-platform result. */
export interface ExportPlatform {
  /** The platform id ("linux/arm64"): annotation[...] keys and split folders name it. */
  id: string;
  platform: Platform;
  ref: ImmutableRef | undefined;
  config?: Partial<ImageConfig>;
  buildInfo?: BuildInfo;
  /** In-toto statements about this platform's image (provenance, SBOMs). */
  attestations?: Attestation[];
}

export interface ExportSource {
  /** The result's filesystem; undefined for an empty (scratch) result. */
  ref: ImmutableRef | undefined;
  /**
   * Set for a multi-platform result (BuildKit's `Refs` + `refs.platforms`): images go under an
   * index, files into one folder per platform; `ref`, `config` and `buildInfo` are then unused.
   */
  platforms?: ExportPlatform[];
  /** The image config the frontend produced (`containerimage.config`), without rootfs. */
  config?: Partial<ImageConfig>;
  buildInfo?: BuildInfo;
  /** Statements about a single-platform result; image outputs then become an index. */
  attestations?: Attestation[];
  /** The client's credentials (pushes). */
  credentials?: CredentialProvider;
}

/** A destination that appears only when committed: nothing is left behind on failure. */
export interface PendingOutput {
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface StreamOutput extends PendingOutput {
  stream: Writable;
}

export interface DirectoryOutput extends PendingOutput {
  path: string;
}

/** A content store on the client: blobs go in one by one, each checked there before it appears. */
export interface BlobSink {
  /** Puts the blob unless the store has it already. */
  put(signal: AbortSignal, desc: { digest: string; size: number }, data: () => AsyncIterable<Uint8Array>): Promise<void>;
}

/** Where exporter bytes go: local files (daemonless) or the client's session (kilnd). */
export interface ExportOutputs {
  openStream(signal: AbortSignal): Promise<StreamOutput>;
  openDirectory(signal: AbortSignal): Promise<DirectoryOutput>;
  /**
   * The layout directory's own content store, when the client attached one (buildctl's `export`
   * store for oci/docker with tar=false): the blobs go there and the client writes index.json
   * from the exporter's response, so the daemon needs no path on the client's machine.
   */
  layoutStore?: BlobSink;
}

export interface ExporterInstance {
  readonly type: string;
  /** True when the exporter writes to `dest` (a file, stdout or a directory). */
  readonly needsOutput: boolean;
  export(signal: AbortSignal, src: ExportSource, outputs: ExportOutputs | undefined, progress: ProgressWriter): Promise<Record<string, string>>;
}
