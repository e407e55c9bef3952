// The solver's boundary: vertices, ops, cache maps, results and progress. Knows no LLB op.
import type { Digest } from "../util/index.js";

/** A build result held by the solver: a reference-counted handle to something the worker made. */
export interface Result {
  readonly id: string;
  /** Another handle to the same result; each handle is released once. */
  clone(): Result;
  release(): Promise<void>;
}

export interface CacheMapDep {
  /** Narrows what of the input matters (e.g. a copy's source path). */
  selector?: string;
  /**
   * When present the input contributes the digest of its content (e.g. a checksum of the copied
   * paths) instead of its cache key, so equal content hits the cache whatever produced it.
   */
  computeDigest?: (signal: AbortSignal, input: Result) => Promise<Digest>;
}

export interface CacheMap {
  digest: Digest;
  /**
   * Further digests the same result is known by (BuildKit's later source keys, such as an image's
   * config ChainID after its manifest): remote caches record and match each of them.
   */
  alternates?: Digest[];
  deps: CacheMapDep[];
}

export interface OpContext {
  readonly vertex: Vertex;
  readonly progress: ProgressWriter;
}

export interface Op {
  /** How this op is keyed; may do work (resolve an image, hash a directory) but must not produce results. */
  cacheMap(signal: AbortSignal, ctx: OpContext): Promise<CacheMap>;
  /** Produces the op's outputs from its inputs' results. */
  exec(signal: AbortSignal, ctx: OpContext, inputs: Result[]): Promise<Result[]>;
  /** How many outputs the op has. */
  readonly outputs: number;
}

export interface VertexInput {
  vertex: Vertex;
  index: number;
}

export interface Vertex {
  readonly digest: Digest;
  readonly name: string;
  readonly inputs: VertexInput[];
  readonly ignoreCache: boolean;
  readonly op: Op;
  /** Free-form data the frontend attached (source locations for error display, progress groups). */
  readonly meta?: Record<string, unknown>;
}

/** Where results live between builds, by cache key and output index. */
export interface CacheStore {
  load(signal: AbortSignal, key: Digest, outputs: number): Promise<Result[] | undefined>;
  save(signal: AbortSignal, key: Digest, results: Result[]): Promise<void>;
  /**
   * Excludes other processes sharing this store from running the same key until released; the
   * solver re-checks the cache once it holds the lock. Absent for stores private to one process.
   */
  lock?(signal: AbortSignal, key: Digest): Promise<() => Promise<void>>;
  /**
   * Remembers a definition key an imported cache matched, result or not: steps after it were keyed
   * through it, so a later build must reach the same keys without the import.
   */
  vouch?(key: Digest): void;
  isVouched?(key: Digest): boolean;
}

/**
 * One input of a cache key: the input's own key (definition-based) or its content digest; a
 * content dep also names the input's key (`def`), which remote caches link as BuildKit does.
 */
export type KeyDep = { key: Digest; index: number; selector: string } | { content: Digest; selector: string; def?: { key: Digest; index: number } };

/** How a vertex's cache key was formed, for remote cache export and import. */
export interface KeyInfo {
  key: Digest;
  vertex: Vertex;
  /** The op's CacheMap digest. */
  digest: Digest;
  /** The CacheMap's alternate digests, if any. */
  alternates?: Digest[];
  outputs: number;
  deps: KeyDep[];
}

/** Per-solve cache hooks: a remote cache consulted after a local miss, and a record of every key. */
export interface SolveHooks {
  /** Sees each key once it is computed (before its result is looked up). */
  onKey?(info: KeyInfo): void;
  /** A step missed every cache and is about to run (for explaining misses). */
  onMiss?(key: Digest, vertex: Vertex): void;
  /** Asked when the local store misses; results it gives are saved locally. */
  remote?: {
    load(signal: AbortSignal, key: Digest, outputs: number): Promise<Result[] | undefined>;
    /**
     * Asked before content is checksummed: whether the remote has a result for this key formed from
     * its inputs' keys alone. Lets an imported cache hit without materialising inputs (a stage a
     * COPY --from reads), as BuildKit tries definition keys before content ones.
     */
    probe?(signal: AbortSignal, info: KeyInfo): Promise<boolean>;
  };
}

// Progress, in BuildKit's StatusResponse shape.
export interface VertexStatus {
  digest: Digest;
  name: string;
  inputs: Digest[];
  started?: Date;
  completed?: Date;
  cached?: boolean;
  error?: string;
}

export interface StatusUpdate {
  id: string;
  vertex: Digest;
  name?: string;
  current: number;
  total?: number;
  /** When this update was made (BuildKit's VertexStatus.Timestamp); displays use the time they received it when absent. */
  timestamp?: Date;
  started?: Date;
  completed?: Date;
}

export interface LogChunk {
  vertex: Digest;
  stream: 1 | 2;
  data: Uint8Array;
  timestamp: Date;
}

export interface ProgressEvent {
  vertexes?: VertexStatus[];
  statuses?: StatusUpdate[];
  logs?: LogChunk[];
  warnings?: { vertex: Digest; level: number; short: string; detail?: string[]; url?: string }[];
}

export interface ProgressWriter {
  write(ev: ProgressEvent): void;
}

export const discardProgress: ProgressWriter = { write() {} };
