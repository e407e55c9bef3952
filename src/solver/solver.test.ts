import { test } from "node:test";
import assert from "node:assert/strict";
import { Solver } from "./solver.js";
import type { CacheStore, Op, Result, Vertex } from "./types.js";
import { digestOf, type Digest } from "../util/index.js";

class MemResult implements Result {
  constructor(readonly id: string) {}
  clone(): Result {
    return new MemResult(this.id);
  }
  async release(): Promise<void> {}
}

class MemCache implements CacheStore {
  readonly map = new Map<string, string[]>();
  async load(_s: AbortSignal, key: Digest, outputs: number): Promise<Result[] | undefined> {
    const ids = this.map.get(key);
    return ids && ids.length === outputs ? ids.map((i) => new MemResult(i)) : undefined;
  }
  async save(_s: AbortSignal, key: Digest, results: Result[]): Promise<void> {
    this.map.set(key, results.map((r) => r.id));
  }
}

function vertex(name: string, inputs: Vertex[], runs: string[], delayMs = 0, fail = false): Vertex {
  const op: Op = {
    outputs: 1,
    async cacheMap() {
      return { digest: digestOf(name), deps: inputs.map(() => ({})) };
    },
    async exec(signal, _ctx, ins) {
      runs.push(name);
      if (delayMs) await new Promise((r, j) => {
        const t = setTimeout(r, delayMs);
        signal.addEventListener("abort", () => { clearTimeout(t); j(new Error("aborted")); });
      });
      if (fail) throw new Error(`${name} failed`);
      return [new MemResult(`${name}(${ins.map((i) => i.id).join(",")})`)];
    },
  };
  return { digest: digestOf(`v:${name}`), name, inputs: inputs.map((v) => ({ vertex: v, index: 0 })), ignoreCache: false, op };
}

test("solver runs each vertex once and reuses the cache on rebuild", async () => {
  const runs: string[] = [];
  const cache = new MemCache();
  const base = vertex("base", [], runs);
  const a = vertex("a", [base], runs);
  const b = vertex("b", [base], runs);
  const top = vertex("top", [a, b], runs);
  const solver = new Solver({ cache, maxParallelism: 4 });
  const r = await solver.solve(new AbortController().signal, top, 0, { write() {} });
  assert.equal(r.id, "top(a(base()),b(base()))");
  assert.deepEqual([...runs].sort(), ["a", "b", "base", "top"]);
  runs.length = 0;
  const events: string[] = [];
  await solver.solve(new AbortController().signal, top, 0, { write: (ev) => ev.vertexes?.forEach((v) => v.cached && events.push(v.name)) });
  assert.deepEqual(runs, [], "nothing runs on an unchanged rebuild");
  // The root's hit makes its inputs' results unnecessary; they still show as cached, inputs first.
  assert.deepEqual(events, ["base", "a", "b", "top"]);
});

test("independent vertices run in parallel; concurrent builds share a vertex", async () => {
  const runs: string[] = [];
  const solver = new Solver({ cache: new MemCache(), maxParallelism: 4 });
  const a = vertex("slow-a", [], runs, 150);
  const b = vertex("slow-b", [], runs, 150);
  const top = vertex("join", [a, b], runs);
  const t0 = Date.now();
  await Promise.all([
    solver.solve(new AbortController().signal, top, 0, { write() {} }),
    solver.solve(new AbortController().signal, top, 0, { write() {} }),
  ]);
  const took = Date.now() - t0;
  assert.ok(took < 290, `parallel run took ${took}ms`);
  assert.deepEqual([...runs].sort(), ["join", "slow-a", "slow-b"]);
});

test("a failing vertex fails the build with its name; cancel stops work", async () => {
  const runs: string[] = [];
  const solver = new Solver({ cache: new MemCache(), maxParallelism: 2 });
  const bad = vertex("bad", [], runs, 0, true);
  await assert.rejects(solver.solve(new AbortController().signal, vertex("t", [bad], runs), 0, { write() {} }), /bad failed/);
  const ac = new AbortController();
  const slow = vertex("forever", [], runs, 10_000);
  const p = solver.solve(ac.signal, slow, 0, { write() {} });
  setTimeout(() => ac.abort(), 30);
  await assert.rejects(p, (err: Error) => err.name === "CanceledError");
});

test("a shared run's own result handles are released once every waiting build has its clone", async () => {
  let live = 0;
  const released: string[] = [];
  class Counted implements Result {
    private gone = false;
    constructor(readonly id: string) {
      live++;
    }
    clone(): Result {
      if (this.gone) throw new Error(`clone of released ${this.id}`);
      return new Counted(this.id);
    }
    async release(): Promise<void> {
      if (this.gone) throw new Error(`double release of ${this.id}`);
      this.gone = true;
      live--;
      released.push(this.id);
    }
  }
  const runs: string[] = [];
  const op = (name: string, delayMs: number): Op => ({
    outputs: 1,
    async cacheMap() {
      return { digest: digestOf(name), deps: [] };
    },
    async exec() {
      runs.push(name);
      await new Promise((r) => setTimeout(r, delayMs));
      return [new Counted(name)];
    },
  });
  const v: Vertex = { digest: digestOf("v:shared"), name: "shared", inputs: [], ignoreCache: false, op: op("shared", 50) };
  const solver = new Solver({ cache: { load: async () => undefined, save: async () => undefined }, maxParallelism: 4 });
  const builds = await Promise.all(Array.from({ length: 5 }, () => solver.solve(new AbortController().signal, v, 0, { write() {} })));
  assert.deepEqual(runs, ["shared"], "one run for five builds");
  for (const r of builds) await r.release();
  await new Promise((r) => setImmediate(r));
  assert.equal(live, 0, "no handle is left in use after every build released its result");
});
