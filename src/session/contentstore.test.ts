import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { RemoteContentStores, contentStoreMethods } from "./contentstore.js";

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
