// Build cache that travels: export from one root, import into a fresh one, and the rebuild runs no
// RUN and gives the same image; a partial match runs only the changed tail; a missing cache warns.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { envPool, stepStates, type KilnEnv } from "../helpers/kiln.js";

const envs = envPool();
after(() => envs.closeAll());
const freshEnv = () => envs.fresh();

const dockerfile = [
  "FROM busybox AS build",
  "COPY a.txt /a",
  "RUN echo built-$(cat /a) > /out && echo ran-build-step",
  "FROM busybox",
  "COPY --from=build /out /out",
  "COPY b.txt /b",
  "RUN cat /out /b > /final && echo ran-final-step",
].join("\n");

async function build(env: KilnEnv, ctx: string, extra: string[]): Promise<{ states: Map<string, string>; stderr: string; digest: string }> {
  const md = path.join(env.tmp, `md-${Math.random().toString(36).slice(2)}.json`);
  const r = await env.run(["build", ctx, "-o", `type=oci,dest=${path.join(env.tmp, "out.tar")}`, "--metadata-file", md, ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const meta = JSON.parse(await readFile(md, "utf8").catch(() => assert.fail(`no metadata file:\n${r.stderr}`))) as Record<string, string>;
  return { states: stepStates(r.stderr), stderr: r.stderr, digest: meta["containerimage.digest"] ?? "" };
}

function runs(states: Map<string, string>): string[] {
  return [...states].filter(([name, st]) => name.includes(" RUN ") && st === "DONE").map(([name]) => name);
}

async function roundTrip(exportFlag: (mode: string) => string, importFlag: string, mode: string): Promise<void> {
  const a = await freshEnv();
  const files = { Dockerfile: dockerfile, "a.txt": `A ${mode} ${importFlag}\n`, "b.txt": "B\n" };
  const ctxA = await a.context(files);
  const first = await build(a, ctxA, ["--export-cache", exportFlag(mode)]);
  assert.equal(runs(first.states).length, 2, first.stderr);
  assert.match(first.stderr, /exporting cache to/);

  const b = await freshEnv();
  const ctxB = await b.context(files);
  const second = await build(b, ctxB, ["--import-cache", importFlag]);
  assert.deepEqual(runs(second.states), [], second.stderr);
  assert.equal(second.digest, first.digest, "the image is identical");
  assert.doesNotMatch(second.stderr, /^#\d+ \d+\.\d+ ran-/m, "no RUN printed output");
  // What the import gave stays: the same root rebuilds without it and still runs nothing.
  const third = await build(b, ctxB, []);
  assert.deepEqual(runs(third.states), [], third.stderr);
  assert.equal(third.digest, first.digest);
}

test("local cache, mode=min: a fresh root rebuilds with every step cached and the same image", async () => {
  const dir = path.join((await freshEnv()).tmp, "cache-min");
  await roundTrip((m) => `type=local,dest=${dir},mode=${m}`, `type=local,src=${dir}`, "min");
});

test("local cache, mode=max: every stage is cached; a change in the last stage runs only the tail", async () => {
  const scratch = await freshEnv();
  const dir = path.join(scratch.tmp, "cache-max");
  await roundTrip((m) => `type=local,dest=${dir},mode=${m}`, `type=local,src=${dir}`, "max");
  // BuildKit's layout: index.json names an index of layer blobs plus one cacheconfig.
  const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  assert.equal(index.manifests[0]?.annotations?.["org.opencontainers.image.ref.name"], "latest");
  const top = JSON.parse(await readFile(path.join(dir, "blobs", ...index.manifests[0]!.digest.split(":")), "utf8")) as { manifests: { mediaType: string; digest: string }[] };
  assert.equal(top.manifests.at(-1)?.mediaType, "application/vnd.buildkit.cacheconfig.v0");
  // Lazy: the importing root fetched the final image's layers, none of the other stages' results.
  const imported = envs.all.at(-1)!;
  const image = new Set(await layersOf(imported));
  const others = top.manifests.slice(0, -1).map((m) => m.digest).filter((d) => !image.has(d));
  assert.ok(others.length > 0, "a mode=max cache holds intermediate results");
  const have = new Set((await readdir(path.join(imported.root, "content", "blobs", "sha256"))).map((h) => `sha256:${h}`));
  assert.deepEqual(others.filter((d) => have.has(d)), [], "intermediate layers were not downloaded");

  const c = await freshEnv();
  const ctx = await c.context({ Dockerfile: dockerfile, "a.txt": "A max type=local,src=" + dir + "\n", "b.txt": "B changed\n" });
  const r = await build(c, ctx, ["--import-cache", `type=local,src=${dir}`]);
  const ran = runs(r.states);
  assert.equal(ran.length, 1, r.stderr);
  assert.match(ran[0]!, /ran-final-step/);
});

test("a root that imported a cache exports the same records again, content links included", async () => {
  const a = await freshEnv();
  const files = { Dockerfile: dockerfile, "a.txt": "re-export A\n", "b.txt": "B\n" };
  const first = path.join(a.tmp, "cache-first");
  await build(a, await a.context(files), ["--export-cache", `type=local,dest=${first},mode=min`]);
  const b = await freshEnv();
  const again = path.join(b.tmp, "cache-again");
  // Every step hits by definition here, so the COPY --from's content is never computed: its
  // content-root link has to come from the imported record.
  const r = await build(b, await b.context(files), ["--import-cache", `type=local,src=${first}`, "--export-cache", `type=local,dest=${again},mode=min`]);
  assert.deepEqual(runs(r.states), [], r.stderr);
  assert.deepEqual(await cacheGraph(again), await cacheGraph(first));
});

/** A local cache's records as digests with their inputs' linked digests (indexes vary with order). */
async function cacheGraph(dir: string): Promise<unknown> {
  const blob = async (d: string) => JSON.parse(await readFile(path.join(dir, "blobs", ...d.split(":")), "utf8")) as unknown;
  const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  const top = (await blob(index.manifests[0]!.digest)) as { manifests: { mediaType: string; digest: string }[] };
  const cc = (await blob(top.manifests.at(-1)!.digest)) as { records: { digest: string; inputs?: { selector?: string; link: number }[][] }[] };
  const graph = cc.records.map((r) => ({ digest: r.digest, inputs: (r.inputs ?? []).map((links) => links.map((l) => `${l.selector ?? ""}>${cc.records[l.link]?.digest}`).sort()) }));
  assert.ok(graph.some((r) => r.inputs.some((links) => links.length > 1)), "some input links both its content and its definition");
  return graph.sort((x, y) => (x.digest < y.digest ? -1 : x.digest > y.digest ? 1 : 0));
}

test("registry cache (--cache-to/--cache-from): round trip through the registry", async () => {
  const env = await freshEnv();
  const ref = `${env.registryHost}/kiln-cache/app:cache-${process.pid}`;
  await roundTrip((m) => `type=registry,ref=${ref},mode=${m}`, ref, "max");
});

test("a missing cache warns and the build goes on; a failing export fails the build unless ignore-error=true", async () => {
  const env = await freshEnv();
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo hi > /x\n" });
  const missing = await env.run(["build", ctx, "--import-cache", `type=local,src=${path.join(env.tmp, "nope")}`, "--import-cache", `type=registry,ref=${env.registryHost}/kiln-cache/none:missing`]);
  assert.equal(missing.code, 0, missing.stderr);
  assert.match(missing.stderr, /importing cache manifest from/);
  const blocker = path.join(env.tmp, "blocker");
  await writeFile(blocker, "a file where a directory should be");
  const failed = await env.run(["build", ctx, "--export-cache", `type=local,dest=${path.join(blocker, "sub")}`]);
  assert.notEqual(failed.code, 0, failed.stderr);
  const ignored = await env.run(["build", ctx, "--export-cache", `type=local,dest=${path.join(blocker, "sub")},ignore-error=true`]);
  assert.equal(ignored.code, 0, ignored.stderr);
});

test("inline cache: the pushed image carries its cache; a fresh root importing the image runs no RUN", async () => {
  const env = await freshEnv();
  const ref = `${env.registryHost}/kiln-cache/inline:${process.pid}`;
  const files = { Dockerfile: dockerfile, "a.txt": "inline A\n", "b.txt": "inline B\n" };
  const first = await build(env, await env.context(files), ["-o", `type=registry,name=${ref}`, "--export-cache", "type=inline"]);
  assert.equal(runs(first.states).length, 2, first.stderr);
  const b = await freshEnv();
  const second = await build(b, await b.context(files), ["--cache-from", ref]);
  assert.deepEqual(runs(second.states), [], second.stderr);
  // The configs differ (only the first carries the cache); the layers are the same blobs.
  assert.deepEqual(await layersOf(b), await layersOf(env));
});

/** The layer digests of the OCI tarball build() wrote last in this environment. */
async function layersOf(env: KilnEnv): Promise<string[]> {
  const tar = path.join(env.tmp, "out.tar");
  const read = (name: string) => execFileSync("tar", ["-xOf", tar, name]).toString("utf8");
  const index = JSON.parse(read("index.json")) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(read(`blobs/${index.manifests[0]!.digest.replace(":", "/")}`)) as { layers: { digest: string }[] };
  return manifest.layers.map((l) => l.digest);
}
