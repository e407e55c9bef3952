// LocalContentStore against a real directory: verification, dedup, abort and crash-safety.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { digestOf, isAbortError, KilnError, type Digest } from "../util/index.js";
import { LocalContentStore } from "./index.js";

async function withStore(fn: (store: LocalContentStore, root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-content-"));
  try {
    await fn(new LocalContentStore(root), root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const never = new AbortController().signal;

async function ingestFiles(store: LocalContentStore): Promise<string[]> {
  return readdir(path.join(store.root, "ingest")).catch(() => []);
}

test("content: ingest verifies, stores, reads back and lists", async () => {
  await withStore(async (store, root) => {
    const data = Buffer.from("hello kiln\n".repeat(10000));
    const digest = digestOf(data);
    assert.equal(store.root, path.join(root, "content"));
    const info = await store.ingest(never, Readable.from([data.subarray(0, 1000), data.subarray(1000)]), { digest, size: data.length });
    assert.deepEqual(info, { digest, size: data.length });
    assert.equal(store.blobPath(digest), path.join(root, "content", "blobs", "sha256", digest.slice(7)));
    assert.ok(await store.has(digest));
    assert.deepEqual(await store.read(digest), data);
    const streamed: Buffer[] = [];
    for await (const c of store.createReadStream(digest)) streamed.push(c as Buffer);
    assert.deepEqual(Buffer.concat(streamed), data);

    const small = await store.put(never, JSON.stringify({ a: 1 }));
    assert.deepEqual(await store.readJSON(small.digest), { a: 1 });
    // Without an expected digest, the computed one names the blob.
    const free = await store.ingest(never, Readable.from([Buffer.from("x")]));
    assert.equal(free.digest, digestOf("x"));

    const listed = [];
    for await (const b of store.list()) listed.push(b.digest);
    assert.deepEqual(listed.sort(), [digest, small.digest, free.digest].sort());
    await store.delete(digest);
    assert.equal(await store.has(digest), false);
    assert.deepEqual(await ingestFiles(store), []);
  });
});

test("content: digest and size mismatches leave nothing behind", async () => {
  await withStore(async (store) => {
    const wrong = digestOf("something else");
    await assert.rejects(store.ingest(never, Readable.from([Buffer.from("payload")]), { digest: wrong }), (err: unknown) => {
      assert.ok(err instanceof KilnError);
      assert.equal(err.code, "KILN_DIGEST_MISMATCH");
      assert.match(err.message, new RegExp(`got ${digestOf("payload")}, expected ${wrong}`));
      return true;
    });
    assert.equal(await store.has(wrong), false);
    assert.equal(await store.has(digestOf("payload")), false);
    await assert.rejects(store.ingest(never, Readable.from([Buffer.from("payload")]), { digest: digestOf("payload"), size: 3 }), /size mismatch/);
    await assert.rejects(store.ingest(never, Readable.from([Buffer.from("payload")]), { digest: digestOf("payload"), size: 30 }), /size mismatch/);
    assert.deepEqual(await ingestFiles(store), []);
    const listed = [];
    for await (const b of store.list()) listed.push(b);
    assert.deepEqual(listed, []);
    assert.throws(() => store.blobPath("sha256:../../etc/passwd" as Digest), /invalid digest/);
  });
});

test("content: abort mid-stream removes the temp file", async () => {
  await withStore(async (store) => {
    const ac = new AbortController();
    let started!: () => void;
    const startedP = new Promise<void>((r) => (started = r));
    async function* slow(): AsyncGenerator<Uint8Array> {
      yield Buffer.alloc(1024, 1);
      started();
      // A stalled network source: nothing more ever arrives.
      await new Promise(() => undefined);
    }
    const p = store.ingest(ac.signal, Readable.from(slow()), { digest: digestOf("never"), size: 5000 });
    await startedP;
    assert.equal((await ingestFiles(store)).length, 1);
    ac.abort();
    await assert.rejects(p, (err: unknown) => isAbortError(err));
    assert.deepEqual(await ingestFiles(store), []);
  });
});

test("content: concurrent ingests of one digest share one write", async () => {
  await withStore(async (store) => {
    const data = Buffer.alloc(256 * 1024, 7);
    const digest = digestOf(data);
    let reads = 0;
    const make = () =>
      Readable.from(
        (async function* () {
          reads++;
          for (let i = 0; i < data.length; i += 16384) {
            await new Promise((r) => setImmediate(r));
            yield data.subarray(i, i + 16384);
          }
        })(),
      );
    const results = await Promise.all([1, 2, 3, 4].map(() => store.ingest(never, make(), { digest, size: data.length })));
    for (const r of results) assert.deepEqual(r, { digest, size: data.length });
    assert.equal(reads, 1);
    // Already present: the source is not read at all.
    await store.ingest(never, make(), { digest, size: data.length });
    assert.equal(reads, 1);
  });
});

test("content: one waiter aborting does not cancel the shared write", async () => {
  await withStore(async (store) => {
    const data = Buffer.alloc(64 * 1024, 3);
    const digest = digestOf(data);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const source = Readable.from(
      (async function* () {
        yield data.subarray(0, 1024);
        await gate;
        yield data.subarray(1024);
      })(),
    );
    const impatient = new AbortController();
    const a = store.ingest(impatient.signal, source, { digest, size: data.length });
    const b = store.ingest(never, Readable.from([data]), { digest, size: data.length });
    impatient.abort();
    await assert.rejects(a, (err: unknown) => isAbortError(err));
    release();
    assert.deepEqual(await b, { digest, size: data.length });
    assert.deepEqual(await store.read(digest), data);
  });
});
