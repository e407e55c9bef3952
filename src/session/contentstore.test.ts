import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { RemoteContentStores, contentStoreMethods } from "./contentstore.js";
import { LocalContentDir, addContentStoreService } from "./contentserve.js";

/** A client's content attachable: one store, "layout", holding one blob; written as containerd encodes its messages. */
async function serveStore(blob: Buffer, digest: string): Promise<{ address: string; seen: string[] } & AsyncDisposable> {
  const seen: string[] = [];
  const server = new grpc.Server();
  const raw = { requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b };
  const digestOf = (b: Buffer) => {
    const r = new BinaryReader(b);
    r.tag();
    return r.string();
  };
  server.addService(
    {
      Info: { path: contentStoreMethods.info, requestStream: false, responseStream: false, ...raw },
      Read: { path: contentStoreMethods.read, requestStream: false, responseStream: true, ...raw },
    },
    {
      Info: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        seen.push(`info ${String(call.metadata.get("buildkit-attachable-store-id")[0])}`);
        if (digestOf(call.request) !== digest) return cb({ code: grpc.status.NOT_FOUND, details: "not found" });
        const info = new BinaryWriter().uint32((1 << 3) | 2).string(digest).uint32((2 << 3) | 0).int64(blob.length).finish();
        cb(null, Buffer.from(new BinaryWriter().uint32((1 << 3) | 2).bytes(info).finish()));
      },
      Read: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        seen.push(`read ${String(call.metadata.get("buildkit-attachable-store-id")[0])}`);
        for (let off = 0; off < blob.length; off += 4) {
          call.write(Buffer.from(new BinaryWriter().uint32((1 << 3) | 0).int64(off).uint32((2 << 3) | 2).bytes(blob.subarray(off, off + 4)).finish()));
        }
        call.end();
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return { address: `127.0.0.1:${port}`, seen, [Symbol.asyncDispose]: async () => void server.forceShutdown() };
}

void test("the session content store: Info and Read of the client's store, named in the metadata", async () => {
  const blob = Buffer.from('{"schemaVersion":2,"manifests":[]}');
  const digest = "sha256:" + "ab".repeat(32);
  await using srv = await serveStore(blob, digest);
  const client = new grpc.Client(srv.address, grpc.credentials.createInsecure());
  try {
    const stores = new RemoteContentStores(client, new AbortController().signal);
    const signal = AbortSignal.timeout(5000);
    assert.deepEqual(await stores.info(signal, "layout", digest), { size: blob.length });
    assert.equal(await stores.info(signal, "layout", "sha256:" + "cd".repeat(32)), undefined);
    const chunks: Uint8Array[] = [];
    for await (const c of stores.read(signal, "layout", digest)) chunks.push(c);
    assert.deepEqual(Buffer.concat(chunks), blob);
    assert.deepEqual(srv.seen, ["info layout", "info layout", "read layout"]);
  } finally {
    client.close();
  }
});

void test("the session content store: blobs written through it land in the client's directory verified, once", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-cs-"));
  const server = new grpc.Server();
  const store = new LocalContentDir(dir);
  await store.init();
  const life = new AbortController();
  addContentStoreService(server, new Map([["local:cache", store]]), life.signal);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const stores = new RemoteContentStores(client, new AbortController().signal, true);
    const signal = AbortSignal.timeout(10000);
    // Larger than one Write message, in uneven pieces.
    const blob = Buffer.alloc(2.5 * (1 << 20) + 7, 0x5a);
    const digest = "sha256:" + createHash("sha256").update(blob).digest("hex");
    const pieces = async function* () {
      for (let o = 0; o < blob.length; o += 300_001) yield blob.subarray(o, o + 300_001);
    };
    assert.equal(await stores.write(signal, "local:cache", { digest, size: blob.length }, pieces), true);
    assert.equal(await stores.write(signal, "local:cache", { digest, size: blob.length }, pieces), false, "the second write finds it there");
    assert.deepEqual(await readFile(path.join(dir, "blobs", "sha256", digest.slice(7))), blob);
    assert.deepEqual(await stores.info(signal, "local:cache", digest), { size: blob.length });
    const chunks: Uint8Array[] = [];
    for await (const c of stores.read(signal, "local:cache", digest)) chunks.push(c);
    assert.deepEqual(Buffer.concat(chunks), blob);
    // Bytes that are not what the descriptor says never become a blob, and leave no ingest behind.
    const wrong = "sha256:" + "12".repeat(32);
    await assert.rejects(stores.write(signal, "local:cache", { digest: wrong, size: 5 }, async function* () {
      yield Buffer.from("hello");
    }), /unexpected commit digest/);
    assert.deepEqual((await readdir(path.join(dir, "blobs", "sha256"))).sort(), [digest.slice(7)]);
    assert.deepEqual(await readdir(path.join(dir, "ingest")), []);
    await assert.rejects(stores.write(signal, "nope", { digest, size: blob.length }, pieces), /unknown store nope/);
  } finally {
    life.abort();
    client.close();
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  }
});
