import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { KeyInfo, Op, Vertex } from "../solver/types.js";
import { digestOf, type Digest } from "../util/index.js";
import { LocalCacheDir, readCache } from "./backends.js";
import { marshalConfig, outputKey, parseConfig, sortConfig } from "./config.js";
import { ConfigMatcher, buildConfig } from "./graph.js";

const testdata = path.join(import.meta.dirname, "testdata");

test("a cache config BuildKit v0.11.6 wrote parses and marshals back to the same bytes", async () => {
  const raw = await readFile(path.join(testdata, "buildkit-v0.11.6-max.cacheconfig.json"), "utf8");
  const cc = parseConfig(raw);
  assert.equal(cc.layers.length, 6);
  assert.equal(marshalConfig(cc), raw);
  // BuildKit's output is already in BuildKit's order: sorting changes nothing.
  assert.equal(marshalConfig(sortConfig(cc)), raw);
});

test("a local cache directory as buildctl writes it: index.json by tag, the index's layers keep their diffIDs", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-rc-"));
  try {
    const index = await readFile(path.join(testdata, "buildkit-v0.11.6-max.index.json"));
    const config = await readFile(path.join(testdata, "buildkit-v0.11.6-max.cacheconfig.json"));
    await mkdir(path.join(dir, "blobs", "sha256"), { recursive: true });
    for (const b of [index, config]) await writeFile(path.join(dir, "blobs", "sha256", digestOf(b).slice(7)), b);
    await writeFile(path.join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.index.v1+json", digest: digestOf(index), size: index.length, annotations: { "org.opencontainers.image.ref.name": "latest" } }] }));
    const signal = new AbortController().signal;
    const imported = await readCache(signal, new LocalCacheDir(dir));
    assert.equal(imported.descriptors.size, 6);
    for (const d of imported.descriptors.values()) assert.match(d.annotations?.["containerd.io/uncompressed"] ?? "", /^sha256:/);
    await assert.rejects(readCache(signal, new LocalCacheDir(dir, "other")), /no cache tagged "other"/);
    // By digest, as BuildKit's local importer takes it.
    const byDigest = await readCache(signal, new LocalCacheDir(dir, "latest", digestOf(index)));
    assert.equal(byDigest.config.records.length, imported.config.records.length);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("invalid configs are refused: links out of range, parent cycles", () => {
  const d = digestOf("x");
  assert.throws(() => parseConfig(JSON.stringify({ records: [{ digest: d, inputs: [[{ link: 3 }]] }] })), /missing record 3/);
  assert.throws(() => parseConfig(JSON.stringify({ layers: [{ blob: d, parent: 1 }, { blob: d }] })), /cycle/);
  assert.throws(() => parseConfig("[1,"), /invalid cache config/);
});

const op: Op = { outputs: 1, cacheMap: () => Promise.reject(new Error("unused")), exec: () => Promise.reject(new Error("unused")) };
function vertex(name: string): Vertex {
  return { digest: digestOf(name), name, inputs: [], ignoreCache: false, op };
}

/** image → COPY (content of a context file) → RUN, as the solver reports their keys. */
function chain(fileContent: string): { keys: Map<Digest, KeyInfo>; run: Digest } {
  const keys = new Map<Digest, KeyInfo>();
  const add = (name: string, digest: string, deps: KeyInfo["deps"]): Digest => {
    const key = digestOf(JSON.stringify({ digest, deps }));
    keys.set(key, { key, vertex: vertex(name), digest: digestOf(digest), outputs: 1, deps });
    return key;
  };
  const image = add("image", "busybox", []);
  const local = add("local", `local ${fileContent}`, []);
  const copy = add("copy", "copy a", [
    { key: image, index: 0, selector: "" },
    { content: digestOf(fileContent), selector: "/a", def: { key: local, index: 0 } },
  ]);
  const run = add("run", "run x", [{ key: copy, index: 0, selector: "" }]);
  return { keys, run };
}

test("records link as the solver formed its keys; a fresh solve of the same graph matches, changed content does not", async () => {
  const signal = new AbortController().signal;
  const built = chain("A");
  const layer = { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: digestOf("layer"), size: 5, annotations: { "containerd.io/uncompressed": digestOf("diff") } };
  const volatile = (k: KeyInfo) => k.vertex.name === "local";
  const out = await buildConfig(signal, built.keys, [{ key: built.run, output: 0 }], "min", (key) => Promise.resolve(key === built.run ? [layer] : undefined), volatile);
  // image, copy, run and the content root; the volatile local source is not exported.
  assert.equal(out.config.records.length, 4);
  assert.ok(out.config.records.some((r) => r.digest === outputKey(digestOf("A"), -1)));
  const reparsed = parseConfig(marshalConfig(out.config));

  const same = chain("A");
  const m = new ConfigMatcher({ config: reparsed, descriptors: out.blobs }, same.keys);
  assert.deepEqual(m.result(same.run, 0)?.layers.map((l) => l.digest), [layer.digest]);

  const changed = chain("B");
  const m2 = new ConfigMatcher({ config: reparsed, descriptors: out.blobs }, changed.keys);
  assert.equal(m2.result(changed.run, 0), undefined);
});
