// The frontend boundary: a frontend turns build options into LLB, calling back into the engine
// through a bridge (BuildKit's LLBBridge) to read files and resolve images.
import type { Definition } from "../api/index.js";
import type { Platform } from "../util/index.js";

export interface ResolvedImageConfig {
  /** The reference with its resolved digest. */
  ref: string;
  digest: string;
  config: Uint8Array;
}

export interface FrontendBridge {
  /** Solves LLB and returns an opaque handle to its result, readable with readFile. */
  solve(signal: AbortSignal, definition: Uint8Array): Promise<string>;
  /** Reads a file from a solved result; undefined when it does not exist. */
  readFile(signal: AbortSignal, ref: string, path: string): Promise<Uint8Array | undefined>;
  /** `store`: the image is in one of the client's OCI layouts (an `oci-layout://` source), not a registry. */
  resolveImageConfig(signal: AbortSignal, ref: string, opts: { platform?: Platform; store?: { storeId: string } }): Promise<ResolvedImageConfig>;
  /**
   * The root filesystem of a solved result, read-only, until disposed; undefined for an unknown
   * handle or an empty result (scratch). For callers that need more than readFile (the gateway
   * API's ReadDir, StatFile, ranged reads).
   */
  openRef?(signal: AbortSignal, ref: string): Promise<RefMount | undefined>;
  /** Shows the client a warning about a vertex (BuildKit's LLBBridge Warn). */
  warn?(vertex: string, w: { level: number; short: string; detail: string[]; url?: string }): void;
}

/** A mounted result: `path` stays readable until disposal. */
export interface RefMount extends AsyncDisposable {
  readonly path: string;
}

export interface FrontendOptions {
  attrs: Record<string, string>;
  sessionId: string;
  /** The worker's platform, used as BUILDPLATFORM and the default target. */
  buildPlatform: Platform;
  /** The request's FrontendInputs: named LLB results given to the frontend (e.g. "context"); undefined marks one sent empty. */
  inputs?: Record<string, Definition | undefined>;
}

export interface FrontendResult {
  /** The LLB of a single result. */
  definition?: Uint8Array;
  /**
   * A multi-platform result: one definition per platform id ("linux/arm64"), as BuildKit's
   * `Result.Refs`; the metadata's `refs.platforms` lists them in order and
   * `containerimage.config/<id>` carries each one's image config.
   */
  refs?: Record<string, Uint8Array>;
  /** `containerimage.config` and friends, as BuildKit's frontends return them. */
  metadata: Record<string, Uint8Array>;
  /** The frontend that made the result when it isn't the request's (a gateway build's dockerfile.v0), for build info. */
  frontend?: string;
  /** In-toto statements to attach, by platform id (the single result's platform when not multi-platform). */
  attestations?: Record<string, FrontendAttestation[]>;
}

/** Statements a frontend made, as files of an LLB result (BuildKit's result.Attestation). */
export interface FrontendAttestation {
  /** `bundle`: every file in the directory `path` is a whole statement; `in-toto`: the file `path` is a predicate. */
  kind: "bundle" | "in-toto";
  definition: Uint8Array;
  path: string;
  /** The predicate type every statement must have (bundle), or has (in-toto). */
  predicateType?: string;
  /** The file-name stem of the SBOM that describes the image itself (the others are extra scans). */
  sbomCore?: string;
}

/** BuildKit's exptypes.ExporterPlatformsKey: which platform each result is. */
export const platformsMetadataKey = "refs.platforms";
export const imageConfigMetadataKey = "containerimage.config";

export interface ResultPlatform {
  /** The key of the result in `refs` and the suffix of its metadata keys. */
  id: string;
  platform: Platform;
}

/** `refs.platforms` as Go marshals exptypes.Platforms (ocispecs.Platform field order). */
export function marshalPlatforms(list: ResultPlatform[]): Uint8Array {
  const json = {
    Platforms: list.map((p) => ({
      ID: p.id,
      Platform: { architecture: p.platform.architecture, os: p.platform.os, ...(p.platform.variant ? { variant: p.platform.variant } : {}) },
    })),
  };
  return Buffer.from(JSON.stringify(json));
}

/** Reads `refs.platforms`; undefined when the metadata has none. */
export function parsePlatformsMetadata(metadata: Record<string, Uint8Array>): ResultPlatform[] | undefined {
  const raw = metadata[platformsMetadataKey];
  if (!raw) return undefined;
  const parsed = JSON.parse(Buffer.from(raw).toString("utf8")) as { Platforms?: { ID: string; Platform: { architecture: string; os: string; variant?: string } }[] | null };
  return (parsed.Platforms ?? []).map((p) => ({ id: p.ID, platform: { os: p.Platform.os, architecture: p.Platform.architecture, ...(p.Platform.variant ? { variant: p.Platform.variant } : {}) } }));
}

export interface Frontend {
  solve(signal: AbortSignal, bridge: FrontendBridge, opts: FrontendOptions): Promise<FrontendResult>;
}
