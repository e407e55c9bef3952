// Outputs and local caches that live on the client go through the session's content store, as
// buildctl attaches them: `-o type=oci|docker,tar=false` is store `export`, a local cache
// `local:DIR`. kilnd runs in a mount namespace of its own with an empty tmpfs over the directory
// the outputs go to, so the path means nothing to it: whatever it wrote there directly would be
// invisible to the client (and a cache import read from it would find nothing). The client's
// directory is then read by skopeo and umoci.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";
import { startKilnd, type Kilnd } from "../helpers/kilnd.js";

const sh = promisify(execFile);

after(async () => {
  await stopSharedRegistry();
});

/** bin/kilnd in its own mount namespace, with `masked` covered by an empty tmpfs there. */
function startMaskedKilnd(masked: string, args: string[]): Promise<Kilnd> {
  return startKilnd(args, {}, ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount -t tmpfs kiln-masked "$1" && shift && exec "$@"', "sh", masked]);
}

interface IndexJSON {
  schemaVersion: number;
  manifests: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[];
}

/** Every blob in the layout has the digest its name says. */
async function assertBlobsIntact(dir: string): Promise<string[]> {
  const names = await readdir(path.join(dir, "blobs", "sha256"));
  for (const n of names) assert.equal(createHash("sha256").update(await readFile(path.join(dir, "blobs", "sha256", n))).digest("hex"), n);
  return names;
}

/** The steps that ran (not CACHED), from plain progress. */
function ranSteps(stderr: string): string[] {
  const ran: string[] = [];
  for (const m of stderr.matchAll(/^#(\d+) \[[^\]]*\] (RUN .*)$/gm)) if (!new RegExp(`^#${m[1]} CACHED$`, "m").test(stderr)) ran.push(m[2]!);
  return ran;
}

describe("client-side outputs and caches through the session's content store", { concurrency: false }, () => {
  let env: KilnEnv;
  let kilnd: Kilnd;
  let addr = "";
  let masked = "";

  before(async () => {
    env = await kilnEnv();
    masked = path.join(env.tmp, "client-only");
    await mkdir(masked);
    addr = `unix://${path.join(env.tmp, "kilnd.sock")}`;
    kilnd = await startMaskedKilnd(masked, ["--root", path.join(env.tmp, "kilnd-root"), "--config", env.config, "--addr", addr]);
  });

  after(async () => {
    await kilnd?.stop();
    await env?.close();
  });

  test("type=oci,tar=false: the layout is the client's store, index.json written by the client from the response", async () => {
    const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo oci-layout > /proof\n" });
    const dir = path.join(masked, "oci");
    const r = await env.run(["--addr", addr, "build", ctx, "--progress", "plain", "-o", `type=oci,dest=${dir},tar=false`]);
    assert.equal(r.code, 0, r.stderr + kilnd.log());
    const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as IndexJSON;
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0]!.annotations?.["org.opencontainers.image.ref.name"], "latest");
    assert.ok(index.manifests[0]!.annotations?.["org.opencontainers.image.created"], "the response's descriptor, as the daemon annotated it");
    assert.deepEqual(JSON.parse(await readFile(path.join(dir, "oci-layout"), "utf8")), { imageLayoutVersion: "1.0.0" });
    const blobs = await assertBlobsIntact(dir);
    assert.ok(blobs.includes(index.manifests[0]!.digest.slice("sha256:".length)));
    // containerd's local-store layout: an empty ingest/ once every write committed.
    assert.deepEqual(await readdir(path.join(dir, "ingest")), []);
    const inspected = JSON.parse((await sh("skopeo", ["inspect", `oci:${dir}:latest`])).stdout) as { Layers: string[] };
    assert.ok(inspected.Layers.length >= 2);
    assert.match((await sh("umoci", ["ls", "--layout", dir])).stdout, /^latest$/m);
    const bundle = path.join(env.tmp, "bundle-oci");
    await sh("umoci", ["unpack", "--image", `${dir}:latest`, bundle]);
    assert.equal(await readFile(path.join(bundle, "rootfs", "proof"), "utf8"), "oci-layout\n");
  });

  test("type=docker,tar=false with a name: tagged with the response's image.name, as buildctl tags it", async () => {
    const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo docker-layout > /proof\n" });
    const dir = path.join(masked, "docker");
    const r = await env.run(["--addr", addr, "build", ctx, "--progress", "plain", "-o", `type=docker,dest=${dir},tar=false,name=app:v1`]);
    assert.equal(r.code, 0, r.stderr + kilnd.log());
    const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as IndexJSON;
    assert.deepEqual(
      index.manifests.map((m) => [m.mediaType, m.annotations?.["org.opencontainers.image.ref.name"]]),
      [["application/vnd.docker.distribution.manifest.v2+json", "docker.io/library/app:v1"]],
    );
    await assertBlobsIntact(dir);
    assert.match((await sh("umoci", ["ls", "--layout", dir])).stdout, /^docker\.io\/library\/app:v1$/m);
    // skopeo's oci: transport reads only OCI media types; the manifest's blobs are checked here instead.
    const manifest = JSON.parse(await readFile(path.join(dir, "blobs", "sha256", index.manifests[0]!.digest.slice("sha256:".length)), "utf8")) as { config: { digest: string }; layers: { digest: string }[] };
    const have = await readdir(path.join(dir, "blobs", "sha256"));
    for (const d of [manifest.config, ...manifest.layers]) assert.ok(have.includes(d.digest.slice("sha256:".length)), `${d.digest} is in the layout`);
    // A second build into the same directory replaces its tag's entry, and keeps the blobs it shares.
    const again = await env.run(["--addr", addr, "build", await env.context({ Dockerfile: "FROM busybox\nRUN echo second > /proof\n" }), "-o", `type=docker,dest=${dir},tar=false,name=app:v1`]);
    assert.equal(again.code, 0, again.stderr);
    const index2 = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as IndexJSON;
    assert.equal(index2.manifests.length, 1);
    assert.notEqual(index2.manifests[0]!.digest, index.manifests[0]!.digest);
    await assertBlobsIntact(dir);
  });

  test("local cache export and import: written and read through the client's store", async () => {
    const files = { Dockerfile: "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n" };
    const cache = path.join(masked, "cache");
    const first = await env.run(["--addr", addr, "build", await env.context(files), "--progress", "plain", "--export-cache", `type=local,dest=${cache},mode=max`]);
    assert.equal(first.code, 0, first.stderr + kilnd.log());
    const index = JSON.parse(await readFile(path.join(cache, "index.json"), "utf8")) as IndexJSON;
    assert.equal(index.manifests.length, 1);
    const top = index.manifests[0]!;
    assert.equal(top.annotations?.["org.opencontainers.image.ref.name"], "latest");
    assert.equal(top.mediaType, "application/vnd.oci.image.index.v1+json");
    const blobs = await assertBlobsIntact(cache);
    const cacheIndex = JSON.parse(await readFile(path.join(cache, "blobs", "sha256", top.digest.slice("sha256:".length)), "utf8")) as IndexJSON;
    for (const m of cacheIndex.manifests) assert.ok(blobs.includes(m.digest.slice("sha256:".length)), `${m.digest} is in the client's store`);
    assert.ok(cacheIndex.manifests.some((m) => m.mediaType === "application/vnd.buildkit.cacheconfig.v0"));

    // Nothing left in the daemon: the steps can only come from the imported cache.
    const prune = await env.run(["--addr", addr, "prune", "--all"]);
    assert.equal(prune.code, 0, prune.stderr);
    const second = await env.run(["--addr", addr, "build", await env.context(files), "--progress", "plain", "--import-cache", `type=local,src=${cache}`, "-o", `type=oci,dest=${path.join(masked, "from-cache")},tar=false`]);
    assert.equal(second.code, 0, second.stderr + kilnd.log());
    assert.deepEqual(ranSteps(second.stderr), [], second.stderr);
    const bundle = path.join(env.tmp, "bundle-cache");
    await sh("umoci", ["unpack", "--image", `${path.join(masked, "from-cache")}:latest`, bundle]);
    assert.equal(await readFile(path.join(bundle, "rootfs", "two"), "utf8"), "two\n");
  });
});
