// The cache rules users rely on, through the CLI: keys follow content (never mtimes or where the
// context lives), only what depends on a change re-runs, and concurrent builds share work.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stepStates, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

let env: KilnEnv;
before(async () => {
  env = await kilnEnv();
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

function stateOf(states: Map<string, string>, fragment: string): string | undefined {
  for (const [name, st] of states) if (name.includes(fragment)) return st;
  return undefined;
}

const dockerfile = ["FROM busybox", "COPY a.txt /a", "RUN cat /a > /a2", "COPY b.txt /b", "RUN cat /b > /b2"].join("\n");

async function build(ctx: string, extra: string[] = []): Promise<Map<string, string>> {
  const r = await env.run(["build", ctx, ...extra]);
  assert.equal(r.code, 0, r.stderr);
  return stepStates(r.stderr);
}

test("touching files changes no cache key", async () => {
  const ctx = await env.context({ Dockerfile: dockerfile, "a.txt": "A\n", "b.txt": "B\n" });
  await build(ctx);
  const later = new Date(Date.now() + 60_000);
  await utimes(path.join(ctx, "a.txt"), later, later);
  await utimes(path.join(ctx, "b.txt"), later, later);
  const states = await build(ctx);
  for (const step of ["COPY a.txt", "RUN cat /a", "COPY b.txt", "RUN cat /b"]) assert.equal(stateOf(states, step), "CACHED", step);
});

test("editing one file re-runs only the steps that depend on it", async () => {
  const ctx = await env.context({ Dockerfile: dockerfile, "a.txt": "A\n", "b.txt": "B\n" });
  await build(ctx);
  await writeFile(path.join(ctx, "b.txt"), "B2\n");
  const states = await build(ctx);
  assert.equal(stateOf(states, "COPY a.txt"), "CACHED");
  assert.equal(stateOf(states, "RUN cat /a"), "CACHED");
  assert.equal(stateOf(states, "COPY b.txt"), "DONE");
  assert.equal(stateOf(states, "RUN cat /b"), "DONE");
});

test("the same content in another directory shares the cache", async () => {
  const first = await env.context({ Dockerfile: dockerfile, "a.txt": "same A\n", "b.txt": "same B\n", "unrelated.txt": "1" });
  await build(first);
  const second = await env.context({ Dockerfile: dockerfile, "a.txt": "same A\n", "b.txt": "same B\n", "unrelated.txt": "2" });
  const states = await build(second);
  for (const step of ["COPY a.txt", "RUN cat /a", "COPY b.txt", "RUN cat /b"]) assert.equal(stateOf(states, step), "CACHED", step);
});

test("--no-cache runs every step again", async () => {
  const ctx = await env.context({ Dockerfile: dockerfile, "a.txt": "nc A\n", "b.txt": "nc B\n" });
  await build(ctx);
  const states = await build(ctx, ["--no-cache"]);
  assert.equal(stateOf(states, "RUN cat /a"), "DONE");
  assert.equal(stateOf(states, "RUN cat /b"), "DONE");
});

test("two concurrent builds of one Dockerfile on one root run each RUN once", async () => {
  const ctx = await env.context({
    Dockerfile: ["FROM busybox", "RUN sleep 1 && echo one > /one", "COPY a.txt /a", "RUN sleep 1 && cat /a > /two"].join("\n"),
    "a.txt": `concurrent ${process.pid}\n`,
  });
  const [x, y] = await Promise.all([env.run(["build", ctx]), env.run(["build", ctx])]);
  assert.equal(x.code, 0, x.stderr);
  assert.equal(y.code, 0, y.stderr);
  const sx = stepStates(x.stderr);
  const sy = stepStates(y.stderr);
  for (const step of ["RUN sleep 1 && echo one", "RUN sleep 1 && cat /a"]) {
    const seen = [stateOf(sx, step), stateOf(sy, step)].sort();
    assert.deepEqual(seen, ["CACHED", "DONE"], `${step}: one build runs it, the other takes its result`);
  }
});
