// Walks a vertex graph: computes cache keys lazily, loads hits, runs misses once (also across
// concurrent builds), independent vertices in parallel up to a bound.
import { digestOf, isAbortError, CanceledError, type Digest } from "../util/index.js";
import { Semaphore } from "./semaphore.js";
import type { CacheStore, KeyDep, ProgressWriter, Result, SolveHooks, Vertex, VertexStatus } from "./types.js";

export interface SolverOptions {
  cache: CacheStore;
  maxParallelism: number;
}

/** A vertex failed; carries which one so the caller can show where in the source it came from. */
export class VertexError extends Error {
  constructor(readonly vertex: Vertex, cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = "VertexError";
  }
}

interface SharedRun {
  results: Promise<Result[]>;
  waiters: number;
}

export class Solver {
  private readonly cache: CacheStore;
  private readonly sem: Semaphore;
  /** In-flight executions by cache key, shared by every job. */
  private readonly running = new Map<Digest, SharedRun>();

  constructor(opts: SolverOptions) {
    this.cache = opts.cache;
    this.sem = new Semaphore(opts.maxParallelism);
  }

  /** Solves `root` and returns its result (the caller releases it). */
  async solve(signal: AbortSignal, root: Vertex, index: number, progress: ProgressWriter, hooks: SolveHooks = {}): Promise<Result> {
    const job = new Job(this, signal, progress, hooks);
    try {
      const outs = await job.results(root);
      const r = outs[index];
      if (!r) throw new Error(`vertex ${root.name} has no output ${index}`);
      job.reportSkipped(root);
      return r.clone();
    } finally {
      await job.release();
    }
  }

  /** @internal */
  runShared(key: Digest, signal: AbortSignal, fn: (signal: AbortSignal) => Promise<Result[]>): Promise<Result[]> {
    let shared = this.running.get(key);
    if (!shared) {
      // The shared run is cancelled only when every build waiting on it has gone.
      const ac = new AbortController();
      const entry: SharedRun = { results: Promise.resolve([]), waiters: 0 };
      entry.results = fn(ac.signal).finally(() => this.running.delete(key));
      // The run's own handles go once every build waiting on it has taken its clone: those
      // waiters' reactions were registered before the results settled (the key leaves `running`
      // before `results` resolves, so none can join later) and all run before the next macrotask.
      void entry.results.then((rs) => setImmediate(() => void Promise.allSettled(rs.map((r) => r.release()))), () => undefined);
      (entry as SharedRun & { ac: AbortController }).ac = ac;
      this.running.set(key, entry);
      shared = entry;
    }
    const run = shared as SharedRun & { ac: AbortController };
    run.waiters++;
    return new Promise<Result[]>((resolve, reject) => {
      const onAbort = () => {
        run.waiters--;
        if (run.waiters === 0) run.ac.abort(signal.reason);
        reject(new CanceledError(signal.reason));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      run.results.then(
        (rs) => {
          signal.removeEventListener("abort", onAbort);
          run.waiters--;
          resolve(rs.map((r) => r.clone()));
        },
        (err: unknown) => {
          signal.removeEventListener("abort", onAbort);
          run.waiters--;
          reject(err);
        },
      );
    });
  }

  /** @internal */
  get cacheStore(): CacheStore {
    return this.cache;
  }

  /** @internal */
  acquire(signal: AbortSignal): Promise<() => void> {
    return this.sem.acquire(signal);
  }
}

class Job {
  private readonly keys = new Map<Digest, Promise<Digest>>();
  private readonly outputs = new Map<Digest, Promise<Result[]>>();
  private readonly held: Result[] = [];
  /** Results storedLocally found while keying, by key. */
  private readonly loaded = new Map<Digest, Result[]>();
  private readonly reported = new Map<Digest, VertexStatus>();

  constructor(
    private readonly solver: Solver,
    private readonly signal: AbortSignal,
    private readonly progress: ProgressWriter,
    private readonly hooks: SolveHooks = {},
  ) {}

  key(v: Vertex): Promise<Digest> {
    let p = this.keys.get(v.digest);
    if (!p) {
      p = this.computeKey(v);
      this.keys.set(v.digest, p);
    }
    return p;
  }

  results(v: Vertex): Promise<Result[]> {
    let p = this.outputs.get(v.digest);
    if (!p) {
      p = this.computeResults(v);
      this.outputs.set(v.digest, p);
    }
    return p;
  }

  private readonly keyed = new Map<Digest, Vertex>();

  /** A hit shows as cached, and so do the inputs it made unnecessary, inputs first, as in BuildKit. */
  reportSkipped(root: Vertex): void {
    const seen = new Set<Digest>();
    const visit = (v: Vertex): void => {
      if (seen.has(v.digest)) return;
      seen.add(v.digest);
      for (const i of v.inputs) visit(i.vertex);
      if (this.keyed.has(v.digest) && !this.reported.has(v.digest)) {
        const now = new Date();
        this.report(v, { started: now, completed: now, cached: true });
      }
    };
    visit(root);
  }

  private async computeKey(v: Vertex): Promise<Digest> {
    this.keyed.set(v.digest, v);
    const ctx = { vertex: v, progress: this.progress };
    let cm;
    try {
      cm = await v.op.cacheMap(this.signal, ctx);
    } catch (err) {
      this.fail(v, err);
    }
    const probe = this.hooks.remote?.probe;
    if (cm.deps.some((d) => d?.computeDigest)) {
      const defDeps: KeyDep[] = await Promise.all(v.inputs.map(async (input, i) => ({ key: await this.key(input.vertex), index: input.index, selector: cm.deps[i]?.selector ?? "" })));
      const info = { key: digestOf(JSON.stringify({ op: cm.digest, deps: defDeps, by: "definition" })), vertex: v, digest: cm.digest, alternates: cm.alternates, outputs: v.op.outputs, deps: defDeps };
      // What an imported cache gave is keyed by definition (its inputs were never materialised to
      // checksum), and so is what was built on it: later builds without the import look for that
      // key first too, as BuildKit tries definition keys before content ones.
      // An import is asked first even so: it knows the content links its records carry, which an
      // export from this build must write again.
      const cache = this.solver.cacheStore;
      if (probe && (await probe(this.signal, info))) {
        cache.vouch?.(info.key);
        this.hooks.onKey?.(info);
        return info.key;
      }
      if (!v.ignoreCache && (cache.isVouched?.(info.key) || (await this.storedLocally(info.key, v.op.outputs)))) {
        this.hooks.onKey?.(info);
        return info.key;
      }
    }
    const defs: ({ key: Digest; index: number } | undefined)[] = [];
    const deps: KeyDep[] = await Promise.all(
      v.inputs.map(async (input, i): Promise<KeyDep> => {
        const dep = cm.deps[i];
        if (dep?.computeDigest) {
          const outs = await this.results(input.vertex);
          const r = outs[input.index];
          if (!r) throw new Error(`vertex ${input.vertex.name} has no output ${input.index}`);
          defs[i] = { key: await this.key(input.vertex), index: input.index };
          try {
            return { content: await dep.computeDigest(this.signal, r), selector: dep.selector ?? "" };
          } catch (err) {
            this.fail(v, err);
          }
        }
        return { key: await this.key(input.vertex), index: input.index, selector: dep?.selector ?? "" };
      }),
    );
    const key = digestOf(JSON.stringify({ op: cm.digest, deps }));
    if (this.hooks.onKey) {
      const withDefs = deps.map((d, i) => {
        const def = defs[i];
        return "content" in d && def ? { ...d, def } : d;
      });
      this.hooks.onKey({ key, vertex: v, digest: cm.digest, alternates: cm.alternates, outputs: v.op.outputs, deps: withDefs });
    }
    return key;
  }

  /** Loads a stored result once: kept (and held by the job) for computeResults to serve. */
  private async storedLocally(key: Digest, outputs: number): Promise<boolean> {
    const rs = await this.solver.cacheStore.load(this.signal, key, outputs);
    if (!rs) return false;
    this.hold(rs);
    this.loaded.set(key, rs);
    return true;
  }

  private async computeResults(v: Vertex): Promise<Result[]> {
    const key = await this.key(v);
    const cache = this.solver.cacheStore;
    if (!v.ignoreCache) {
      const early = this.loaded.get(key);
      if (early) {
        this.reportSkipped(v);
        return early;
      }
      const hit = (await cache.load(this.signal, key, v.op.outputs)) ?? (await this.loadRemote(key, v));
      if (hit) {
        this.hold(hit);
        this.reportSkipped(v);
        return hit;
      }
    }
    const results = await this.solver.runShared(key, this.signal, async (signal) => {
      const unlock = await cache.lock?.(signal, key);
      try {
        // Another process sharing the store may have made this result while we waited.
        if (unlock && !v.ignoreCache) {
          const hit = await cache.load(signal, key, v.op.outputs);
          if (hit) {
            this.reportSkipped(v);
            return hit;
          }
        }
        return await this.execVertex(signal, v, key);
      } finally {
        await unlock?.();
      }
    });
    this.hold(results);
    return results;
  }

  /** A remote cache hit becomes a local one, so the next build needs no import. */
  private async loadRemote(key: Digest, v: Vertex): Promise<Result[] | undefined> {
    const remote = this.hooks.remote;
    if (!remote) return undefined;
    // Keyed apart from executions: a failed import must not stand in for running the step.
    const rs = await this.solver.runShared(`remote:${key}` as Digest, this.signal, async (signal) => {
      const got = await remote.load(signal, key, v.op.outputs);
      if (!got) return [];
      await this.solver.cacheStore.save(signal, key, got);
      return got;
    });
    return rs.length === v.op.outputs ? rs : undefined;
  }

  private async execVertex(signal: AbortSignal, v: Vertex, key: Digest): Promise<Result[]> {
    const cache = this.solver.cacheStore;
    const inputs = await Promise.all(
      v.inputs.map(async (input) => {
        const outs = await this.results(input.vertex);
        const r = outs[input.index];
        if (!r) throw new Error(`vertex ${input.vertex.name} has no output ${input.index}`);
        return r;
      }),
    );
    const release = await this.solver.acquire(signal);
    const started = new Date();
    this.report(v, { started });
    this.hooks.onMiss?.(key, v);
    try {
      const outs = await v.op.exec(signal, { vertex: v, progress: this.progress }, inputs);
      await cache.save(signal, key, outs);
      this.report(v, { started, completed: new Date() });
      return outs;
    } catch (err) {
      const canceled = isAbortError(err) || signal.aborted;
      this.report(v, { started, completed: new Date(), error: canceled ? "context canceled" : errMessage(err) });
      if (canceled) throw new CanceledError(err);
      throw new VertexError(v, err);
    } finally {
      release();
    }
  }

  private fail(v: Vertex, err: unknown): never {
    if (isAbortError(err) || this.signal.aborted) throw new CanceledError(err);
    if (err instanceof VertexError) throw err;
    const now = new Date();
    this.report(v, { started: now, completed: now, error: errMessage(err) });
    throw new VertexError(v, err);
  }

  private hold(rs: Result[]): void {
    this.held.push(...rs);
  }

  private report(v: Vertex, st: Partial<VertexStatus>): void {
    const prev = this.reported.get(v.digest);
    const next: VertexStatus = { ...prev, digest: v.digest, name: v.name, inputs: v.inputs.map((i) => i.vertex.digest), ...st };
    this.reported.set(v.digest, next);
    this.progress.write({ vertexes: [next] });
  }

  async release(): Promise<void> {
    await Promise.allSettled(this.held.map((r) => r.release()));
    this.held.length = 0;
    this.loaded.clear();
  }
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
