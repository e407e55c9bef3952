// Pushes to a real docker-registry and reads the result back with skopeo, an independent client.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { MediaType, type Descriptor } from "../api/oci.js";
import { LocalContentStore } from "../content/index.js";
import { digestOf } from "../util/index.js";
import { pushBusybox, startRegistry, type RunningRegistry } from "../../test/fixtures/registry.js";
import { RegistryResolver, pullImage, pushImage } from "./index.js";

const run = promisify(execFile);
const never = new AbortController().signal;

async function skopeoInspect(ref: string, raw = false): Promise<string> {
  const { stdout } = await run("skopeo", ["inspect", "--tls-verify=false", ...(raw ? ["--raw"] : []), `docker://${ref}`]);
  return stdout;
}

function blobOf(data: Buffer, mediaType: string): Descriptor {
  return { mediaType, digest: digestOf(data), size: data.length };
}

describe("remotes: push", () => {
  let reg: RunningRegistry;
  let tmp: string;

  before(async () => {
    reg = await startRegistry();
    tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-push-"));
  });
  after(async () => {
    await reg?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("pushes blobs and a manifest that skopeo reads back", async () => {
    const resolver = new RegistryResolver();
    const ref = { domain: reg.host, path: "kiln/pushed", tag: "v1" };
    const layer = gzipSync(Buffer.from("not really a tar, but a blob all the same\n"));
    const layerDesc = blobOf(layer, MediaType.ociLayerGzip);
    const config = Buffer.from(JSON.stringify({ architecture: "arm64", os: "linux", config: { Cmd: ["sh"] }, rootfs: { type: "layers", diff_ids: [digestOf("x")] } }));
    const configDesc = blobOf(config, MediaType.ociConfig);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: configDesc, layers: [layerDesc] }));
    const manifestDesc = blobOf(manifest, MediaType.ociManifest);

    let opened = 0;
    assert.equal(await resolver.exists(never, ref, layerDesc), false);
    await resolver.pushBlob(never, ref, layerDesc, () => (opened++, Readable.from([layer])));
    await resolver.pushBlob(never, ref, configDesc, () => (opened++, Readable.from([config])));
    assert.equal(opened, 2);
    // Already there: HEAD says so, nothing is uploaded.
    await resolver.pushBlob(never, ref, layerDesc, () => (opened++, Readable.from([layer])));
    assert.equal(opened, 2);
    await resolver.pushManifest(never, ref, manifestDesc, manifest);
    assert.ok(await resolver.exists(never, ref, layerDesc));
    assert.ok(await resolver.exists(never, { domain: reg.host, path: "kiln/pushed" }, manifestDesc));

    const info = JSON.parse(await skopeoInspect(`${reg.host}/kiln/pushed:v1`)) as { Digest: string; Architecture: string; Layers: string[] };
    assert.equal(info.Digest, manifestDesc.digest);
    assert.equal(info.Architecture, "arm64");
    assert.deepEqual(info.Layers, [layerDesc.digest]);
    assert.equal(await skopeoInspect(`${reg.host}/kiln/pushed:v1`, true), manifest.toString());

    // Cross-repo mount: the registry links the blob without an upload.
    const other = { domain: reg.host, path: "kiln/other" };
    await resolver.pushBlob(never, other, layerDesc, () => (opened++, Readable.from([layer])), { mountFrom: ["kiln/pushed"] });
    assert.equal(opened, 2);
    assert.ok(await resolver.exists(never, other, layerDesc));
  });

  it("uploads large blobs in chunks", async () => {
    const resolver = new RegistryResolver({ chunkSize: 64 * 1024 });
    const ref = { domain: reg.host, path: "kiln/chunked" };
    const data = randomBytes(300 * 1024 + 17);
    const desc = blobOf(data, "application/octet-stream");
    // Chunks that do not line up with the upload's chunk size.
    const pieces: Buffer[] = [];
    for (let i = 0; i < data.length; i += 50_000) pieces.push(data.subarray(i, i + 50_000));
    await resolver.pushBlob(never, ref, desc, () => Readable.from(pieces));
    const back = Buffer.concat(await (await resolver.fetch(never, ref, desc)).toArray());
    assert.equal(digestOf(back), desc.digest);
  });

  it("rejects a manifest whose bytes do not match its descriptor, and reports registry refusals", async () => {
    const resolver = new RegistryResolver();
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: blobOf(Buffer.from("{}"), MediaType.ociConfig), layers: [] }));
    await assert.rejects(resolver.pushManifest(never, { domain: reg.host, path: "kiln/bad", tag: "t" }, { ...blobOf(body, MediaType.ociManifest), size: 1 }, body), /descriptor says/);
    // The config blob was never pushed: the registry refuses the manifest, and says so.
    await assert.rejects(resolver.pushManifest(never, { domain: reg.host, path: "kiln/bad", tag: "t" }, blobOf(body, MediaType.ociManifest), body), (err: unknown) => {
      assert.match((err as Error).message, new RegExp(`pushing ${reg.host}/kiln/bad:t: .*${reg.host} answered 400 Bad Request to PUT /v2/kiln/bad/manifests/t \\(MANIFEST_BLOB_UNKNOWN`));
      return true;
    });
  });

  it("copies a multi-platform image with pushImage, digests intact", async () => {
    const { indexDigest } = await pushBusybox(reg.host, { repository: "library/busybox" });
    const resolver = new RegistryResolver();
    const store = new LocalContentStore(await mkdtemp(path.join(tmp, "store-")));
    let top: Descriptor | undefined;
    for (const architecture of ["amd64", "arm64"]) {
      const img = await pullImage(never, { resolver, store, ref: `${reg.host}/library/busybox`, platform: { os: "linux", architecture } });
      for (const l of img.layers) await img.fetchBlob(never, l);
      top = img.descriptor;
    }
    await pushImage(never, { resolver, store, ref: `${reg.host}/kiln/copy:latest`, descriptor: top! });
    const raw = await skopeoInspect(`${reg.host}/kiln/copy:latest`, true);
    assert.equal(digestOf(raw), indexDigest);
    const arm = JSON.parse((await run("skopeo", ["inspect", "--tls-verify=false", "--override-arch", "arm64", `docker://${reg.host}/kiln/copy:latest`])).stdout) as { Architecture: string };
    assert.equal(arm.Architecture, "arm64");
  });
});
