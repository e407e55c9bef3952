// Lazy refs on a real cache: an imported layer chain is recorded by its blobs without fetching or
// unpacking anything; mounting it fetches (from the provider) and extracts once, even with two
// processes at it; du counts its blob, prune removes it with its blob, and a crash halfway
// through an extraction is repaired by the next one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { createGzip } from "node:zlib";
import { LocalContentStore } from "../content/index.js";
import { writeDiff } from "../snapshot/index.js";
import type { Digest } from "../util/index.js";
import { defaultGCPolicies } from "./gc.js";
import type { BlobProvider, LazyLayer } from "./refs.js";
import { RefCacheStore } from "./store.js";
import { openCache, otherProcess, tempRoot } from "./testhelpers.js";

const signal = new AbortController().signal;
const gzipLayer = "application/vnd.oci.image.layer.v1.tar+gzip";

/** Two gzip layers (a file each, the second also overwrites the first's) in a store of their own, as a registry would hold them. */
async function remoteLayers(dir: string): Promise<{ store: LocalContentStore; layers: LazyLayer[] }> {
  await using src = await openCache(dir, defaultGCPolicies({}));
  const store = new LocalContentStore(path.join(dir, "remote"));
  const layers: LazyLayer[] = [];
  let parent;
  for (const [i, files] of [{ "a.txt": "first\n", "b.txt": "old\n" }, { "b.txt": "new\n", "c/d.txt": "deep\n" }].entries()) {
    const mut = await src.mgr.newMutable(parent, `layer ${i}`);
    for (const [name, body] of Object.entries(files)) {
      const p = path.join(mut.upperDir(), name);
      await mkdir(path.dirname(p), { recursive: true });
      await writeFile(p, body);
    }
    const ref = await mut.commit();
    const hash = createHash("sha256");
    const tar = writeDiff(signal, src.snapshotter, ref.id);
    tar.on("data", (c: Buffer) => hash.update(c));
    const blob = await store.ingest(signal, tar.pipe(createGzip()));
    layers.push({ digest: blob.digest, mediaType: gzipLayer, size: blob.size, diffId: `sha256:${hash.digest("hex")}` as Digest, createdAt: 1_700_000_000_000 + i });
    await parent?.release();
    parent = ref;
  }
  await parent?.release();
  return { store, layers };
}

function providerFrom(store: LocalContentStore, local: LocalContentStore, fetched: string[]): BlobProvider {
  return async (s, blob) => {
    fetched.push(blob.digest);
    await local.ingest(s, store.createReadStream(blob.digest), { digest: blob.digest, size: blob.size });
  };
}

test("a lazy chain is recorded without fetching or unpacking; mounting it fetches and extracts once", async () => {
  await using root = await tempRoot();
  const { store, layers } = await remoteLayers(path.join(root.path, "src"));
  await using c = await openCache(path.join(root.path, "dst"), defaultGCPolicies({}));
  const fetched: string[] = [];
  const scope = c.mgr.providerScope();
  const top = await c.mgr.lazyChain(signal, layers, "pulled from remote cache", scope, providerFrom(store, c.content, fetched));
  assert.ok(top);
  const chain = top.chain();
  assert.deepEqual(chain.map((r) => [r.lazy, r.size, r.blobDigest, r.createdAt]), layers.map((l) => [true, 0, l.digest, l.createdAt]));
  assert.equal(top.lazy, true);
  assert.deepEqual(fetched, [], "nothing is fetched until something needs it");
  for (const r of chain) assert.equal(await c.snapshotter.stat(r.id), undefined, "nothing is unpacked");
  // The same layers again reuse the rows.
  const again = await c.mgr.lazyChain(signal, layers, "pulled from remote cache", scope, providerFrom(store, c.content, fetched));
  assert.equal(again?.id, top.id);
  await again?.release();

  // du: a lazy record's size is its blob's.
  const du = new Map((await c.gc.usage()).map((u) => [u.id, u.size]));
  for (const [i, r] of chain.entries()) assert.equal(du.get(r.id), layers[i]!.size);
  assert.equal(await c.mgr.canServe(top), true, "its provider can bring the blobs");

  // An exporter wanting the blobs gets them without an extraction.
  await c.mgr.ensureBlob(signal, layers[1]!, "top layer");
  assert.deepEqual(fetched, [layers[1]!.digest]);
  assert.equal(await c.snapshotter.stat(top.id), undefined);

  {
    await using mnt = await top.mount(signal);
    assert.equal(await readFile(path.join(mnt.path, "a.txt"), "utf8"), "first\n");
    assert.equal(await readFile(path.join(mnt.path, "b.txt"), "utf8"), "new\n");
    assert.equal(await readFile(path.join(mnt.path, "c", "d.txt"), "utf8"), "deep\n");
  }
  assert.deepEqual(fetched.sort(), layers.map((l) => l.digest).sort(), "each blob fetched once");
  for (const r of top.chain()) {
    assert.equal(r.lazy, false);
    assert.ok(r.size! > 0);
    assert.equal((await c.snapshotter.stat(r.id))?.kind, "committed");
  }
  // A child on top of it works as on any ref.
  const child = await c.mgr.newMutable(top, "child");
  await writeFile(path.join(child.upperDir(), "e.txt"), "child\n");
  const childRef = await child.commit();
  await childRef.release();
  await top.release();
  scope[Symbol.dispose]();
});

test("without its provider a lazy ref whose blobs are not here is no cache hit; prune takes lazy refs and their blobs", async () => {
  await using root = await tempRoot();
  const { store, layers } = await remoteLayers(path.join(root.path, "src"));
  await using c = await openCache(path.join(root.path, "dst"), defaultGCPolicies({}));
  const fetched: string[] = [];
  const top = await (() => {
    using scope = c.mgr.providerScope();
    return c.mgr.lazyChain(signal, layers, "pulled from remote cache", scope, providerFrom(store, c.content, fetched));
  })();
  assert.ok(top);
  c.db.saveCache("sha256:key", [top.id]);
  assert.equal(await c.mgr.canServe(top), false, "the import that could fetch the blobs is over");
  await assert.rejects(top.mount(signal), /KILN_BLOB_MISSING|no cache import provides it/);
  assert.equal(await new RefCacheStore(c.mgr).load(signal, "sha256:key", 1), undefined);
  // A pull of the same base layer unpacks its own rather than reuse a lazy ref it can't serve.
  assert.equal(await c.mgr.findLayer(layers[0]!.digest, undefined), undefined);
  await top.release();

  // With a blob here (a later import brought it), prune removes the lazy refs and the blob.
  await c.content.ingest(signal, store.createReadStream(layers[0]!.digest), { digest: layers[0]!.digest, size: layers[0]!.size });
  const base = await c.mgr.findLayer(layers[0]!.digest, undefined);
  assert.equal(base?.record.lazy, true, "with its blob here the lazy base layer is reused");
  await base?.release();
  const removed = await c.gc.prune(signal, { all: true });
  assert.equal(removed.length, 2);
  assert.deepEqual(c.db.allRefs(), []);
  assert.equal(await c.content.has(layers[0]!.digest), false);
});

test("two processes mount one lazy ref at once: one extracts, both see it; a crash's half-made snapshot is redone", async () => {
  await using root = await tempRoot();
  const { store, layers } = await remoteLayers(path.join(root.path, "src"));
  const dst = path.join(root.path, "dst");
  await using a = await openCache(dst, defaultGCPolicies({}));
  await using b = await openCache(dst, defaultGCPolicies({}));
  const fetched: string[] = [];
  using scopeA = a.mgr.providerScope();
  using scopeB = b.mgr.providerScope();
  const topA = await a.mgr.lazyChain(signal, layers, "pulled from remote cache", scopeA, providerFrom(store, a.content, fetched));
  const topB = await b.mgr.lazyChain(signal, layers, "pulled from remote cache", scopeB, providerFrom(store, b.content, fetched));
  assert.ok(topA && topB);
  assert.equal(topA.id, topB.id);

  // A crash halfway through extracting the base: an active snapshot under its id, the row still lazy.
  const base = topA.chain()[0]!;
  await a.snapshotter.prepare(base.id, undefined);
  await writeFile(path.join(a.snapshotter.upperDir(base.id), "junk"), "half");

  const [ma, mb] = await Promise.all([topA.mount(signal), topB.mount(signal)]);
  try {
    assert.equal(await readFile(path.join(ma.path, "b.txt"), "utf8"), "new\n");
    assert.equal(await readFile(path.join(mb.path, "a.txt"), "utf8"), "first\n");
    await assert.rejects(readFile(path.join(ma.path, "junk")), /ENOENT/);
  } finally {
    await ma[Symbol.asyncDispose]();
    await mb[Symbol.asyncDispose]();
  }
  const snaps = await readdir(path.join(dst, "snapshots", "snapshots"));
  assert.equal(snaps.filter((n) => !n.startsWith(".")).length, 2, "one snapshot per layer");
  assert.ok(a.db.allRefs().every((r) => !r.lazy));
  await topA.release();
  await topB.release();
});

test("an extraction claimed by a process that died is taken over", async () => {
  await using root = await tempRoot();
  const { store, layers } = await remoteLayers(path.join(root.path, "src"));
  await using c = await openCache(path.join(root.path, "dst"), defaultGCPolicies({}));
  using scope = c.mgr.providerScope();
  const top = await c.mgr.lazyChain(signal, layers, "pulled from remote cache", scope, providerFrom(store, c.content, []));
  assert.ok(top);
  const other = await otherProcess();
  c.db.insertLease({ id: "dead-extractor", pid: other.pid, start: other.start, createdAt: Date.now() });
  c.db.addLeaseResource("dead-extractor", "extract", top.id);
  await other.kill();
  await top.extract(AbortSignal.timeout(10_000));
  assert.equal(top.lazy, false);
  assert.equal(c.db.allLeases().some((l) => l.id === "dead-extractor"), false);
  await top.release();
});
