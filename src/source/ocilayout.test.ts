import { test } from "node:test";
import assert from "node:assert/strict";
import type { ContentStores } from "../session/index.js";
import { OCILayoutResolver } from "./ocilayout.js";

void test("an OCI layout resolves by digest only, typed by the document itself", async () => {
  const index = Buffer.from('{"schemaVersion":2,"manifests":[]}');
  const manifest = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}');
  const blobs = new Map([
    ["sha256:" + "01".repeat(32), index],
    ["sha256:" + "02".repeat(32), manifest],
  ]);
  const stores: ContentStores = {
    info: async (_s, store, d) => (store === "lay" && blobs.has(d) ? { size: blobs.get(d)!.length } : undefined),
    async *read(_s, _store, d) {
      yield blobs.get(d)!;
    },
  };
  const r = new OCILayoutResolver(stores, "lay");
  const signal = AbortSignal.timeout(5000);
  const ref = { domain: "docker.io", path: "library/base" };
  assert.equal((await r.resolve(signal, { ...ref, digest: "sha256:" + "01".repeat(32) })).descriptor.mediaType, "application/vnd.oci.image.index.v1+json");
  const m = await r.resolve(signal, { ...ref, digest: "sha256:" + "02".repeat(32) });
  assert.deepEqual(m.descriptor, { mediaType: "application/vnd.docker.distribution.manifest.v2+json", digest: "sha256:" + "02".repeat(32), size: manifest.length });
  await assert.rejects(r.resolve(signal, { ...ref, tag: "latest" }), /has no digest/);
  await assert.rejects(r.resolve(signal, { ...ref, digest: "sha256:" + "03".repeat(32) }), /not found in OCI layout store lay/);
  await assert.rejects(new OCILayoutResolver(undefined, "lay").resolve(signal, { ...ref, digest: "sha256:" + "01".repeat(32) }), /no OCI layout store "lay" offered/);
  const chunks: Buffer[] = [];
  for await (const c of await r.fetch(signal, ref, m.descriptor)) chunks.push(c as Buffer);
  assert.deepEqual(Buffer.concat(chunks), manifest);
});
