// The frontend boundary: a frontend turns build options into LLB, calling back into the engine
// through a bridge (BuildKit's LLBBridge) to read files and resolve images.
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
  resolveImageConfig(signal: AbortSignal, ref: string, opts: { platform?: Platform }): Promise<ResolvedImageConfig>;
}

export interface FrontendOptions {
  attrs: Record<string, string>;
  sessionId: string;
  /** The worker's platform, used as BUILDPLATFORM and the default target. */
  buildPlatform: Platform;
}

export interface FrontendResult {
  definition: Uint8Array;
  /** `containerimage.config` and friends, as BuildKit's frontends return them. */
  metadata: Record<string, Uint8Array>;
}

export interface Frontend {
  solve(signal: AbortSignal, bridge: FrontendBridge, opts: FrontendOptions): Promise<FrontendResult>;
}
