// Pulls the fixture busybox from a real docker-registry acting as docker.io's mirror.
import { after, before, describe, it, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { parse } from "smol-toml";
import type { Descriptor } from "../api/oci.js";
import { LocalContentStore } from "../content/index.js";
import { KilnError, digestOf, parsePlatform, type Digest } from "../util/index.js";
import { pushBusybox, startRegistry, writeKilnConfig, type RunningRegistry } from "../../test/fixtures/registry.js";
import type { BusyboxLayout } from "../../test/fixtures/busybox.js";
import { RegistryError, RegistryResolver, choosePlatform, parseReference, pullImage, type Reference, type ResolvedDescriptor, type Resolver } from "./index.js";

const never = new AbortController().signal;

/** Counts what reaches the registry, around a real resolver. */
class CountingResolver implements Resolver {
  resolves = 0;
  fetches = new Map<string, number>();
  constructor(private readonly inner: Resolver) {}
  resolve(signal: AbortSignal, ref: Reference): Promise<ResolvedDescriptor> {
    this.resolves++;
    return this.inner.resolve(signal, ref);
  }
  fetch(signal: AbortSignal, ref: Reference, desc: Descriptor): Promise<Readable> {
    this.fetches.set(desc.digest, (this.fetches.get(desc.digest) ?? 0) + 1);
    return this.inner.fetch(signal, ref, desc);
  }
  exists(signal: AbortSignal, ref: Reference, desc: Descriptor): Promise<boolean> {
    return this.inner.exists(signal, ref, desc);
  }
  pushBlob(signal: AbortSignal, ref: Reference, desc: Descriptor, open: () => Readable): Promise<void> {
    return this.inner.pushBlob(signal, ref, desc, open);
  }
  pushManifest(signal: AbortSignal, ref: Reference, desc: Descriptor, body: Uint8Array): Promise<void> {
    return this.inner.pushManifest(signal, ref, desc, body);
  }
}

describe("remotes: pull through a docker.io mirror", () => {
  let reg: RunningRegistry;
  let layout: BusyboxLayout;
  let tmp: string;
  let resolver: RegistryResolver;

  before(async () => {
    reg = await startRegistry();
    layout = (await pushBusybox(reg.host)).layout;
    tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-pull-"));
    resolver = new RegistryResolver({ hosts: { "docker.io": { mirrors: [reg.host] }, [reg.host]: { http: true } } });
  });
  after(async () => {
    await resolver?.close();
    await reg?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("writes a buildkitd.toml that names the mirror", async () => {
    const file = await writeKilnConfig(path.join(tmp, "cfg"), reg.host);
    const doc = parse(await readFile(file, "utf8")) as { registry: Record<string, { mirrors?: string[]; http?: boolean }> };
    assert.deepEqual({ ...doc.registry["docker.io"] }, { mirrors: [reg.host] });
    assert.deepEqual({ ...doc.registry[reg.host] }, { http: true });
  });

  for (const [platform, arch] of [
    [{ os: "linux", architecture: "amd64" }, "amd64"],
    [{ os: "linux", architecture: "arm64" }, "arm64"],
    [{ os: "linux", architecture: "arm64", variant: "v8" }, "arm64"],
    [{ os: "linux", architecture: "aarch64" }, "arm64"],
  ] as const) {
    it(`pulls busybox for ${Object.values(platform).join("/")}`, async () => {
      const store = new LocalContentStore(await mkdtemp(path.join(tmp, "store-")));
      const counting = new CountingResolver(resolver);
      const img = await pullImage(never, { resolver: counting, store, ref: "busybox", platform });
      assert.equal(img.ref.domain, "docker.io");
      assert.equal(img.ref.path, "library/busybox");
      assert.equal(img.ref.tag, "latest");
      assert.equal(img.ref.digest, layout.indexDigest);
      assert.equal(img.descriptor.mediaType, "application/vnd.oci.image.index.v1+json");
      const want = layout.manifests.find((m) => m.arch === arch)!;
      assert.equal(img.manifestDescriptor.digest, want.digest);
      assert.equal(img.configDescriptor.digest, want.configDigest);
      assert.equal(img.config.architecture, arch);
      assert.equal(img.config.os, "linux");
      assert.deepEqual(img.config.config.Cmd, ["sh"]);
      assert.equal(img.layers.length, 1);
      // Manifest and config are in the store, verified; the layer waits until asked for.
      assert.ok(await store.has(img.manifestDescriptor.digest as Digest));
      assert.ok(await store.has(img.configDescriptor.digest as Digest));
      const layer = img.layers[0]!;
      assert.equal(await store.has(layer.digest as Digest), false);
      // Concurrent fetches of one layer share one download.
      const infos = await Promise.all([1, 2, 3].map(() => img.fetchBlob(never, layer)));
      for (const i of infos) assert.deepEqual(i, { digest: layer.digest, size: layer.size });
      assert.equal(counting.fetches.get(layer.digest), 1);
      assert.equal(digestOf(await store.read(layer.digest as Digest)), layer.digest);
      // Present already: not fetched again.
      await img.fetchBlob(never, layer);
      assert.equal(counting.fetches.get(layer.digest), 1);
    });
  }

  it("pins by digest and reuses local content without asking the registry", async () => {
    const store = new LocalContentStore(await mkdtemp(path.join(tmp, "store-")));
    const counting = new CountingResolver(resolver);
    const ref = `busybox@${layout.indexDigest}`;
    const first = await pullImage(never, { resolver: counting, store, ref, platform: { os: "linux", architecture: "amd64" } });
    assert.equal(first.ref.digest, layout.indexDigest);
    assert.equal(counting.resolves, 1);
    const again = await pullImage(never, { resolver: counting, store, ref: parseReference(ref), platform: { os: "linux", architecture: "amd64" } });
    assert.equal(again.manifestDescriptor.digest, first.manifestDescriptor.digest);
    assert.equal(counting.resolves, 1);
  });

  it("pulls from the registry's own name too (plain http by config)", async () => {
    const store = new LocalContentStore(await mkdtemp(path.join(tmp, "store-")));
    const img = await pullImage(never, { resolver, store, ref: `${reg.host}/library/busybox`, platform: { os: "linux", architecture: "arm64" } });
    assert.equal(img.config.architecture, "arm64");
  });

  it("names host, repository and status when an image is missing", async () => {
    const store = new LocalContentStore(await mkdtemp(path.join(tmp, "store-")));
    await assert.rejects(pullImage(never, { resolver, store, ref: `${reg.host}/library/nope:latest` }), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(err.code, "KILN_REGISTRY");
      assert.equal(err.status, 404);
      assert.ok(err.notFound);
      assert.match(err.message, new RegExp(`^${reg.host}/library/nope:latest: not found: `));
      assert.match(err.message, new RegExp(`${reg.host} answered 404 Not Found to GET /v2/library/nope/manifests/latest`));
      assert.match(err.message, /MANIFEST_UNKNOWN|NAME_UNKNOWN/);
      return true;
    });
    // Through the mirror: both the mirror's answer and the upstream's failure are reported.
    await assert.rejects(pullImage(never, { resolver, store, ref: "nope" }), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.match(err.message, /^docker\.io\/library\/nope:latest: not found: /);
      assert.match(err.message, new RegExp(`${reg.host} \\(mirror\\) answered 404 Not Found`));
      assert.match(err.message, /registry-1\.docker\.io/);
      return true;
    });
  });

  it("reports the platforms an index offers when none matches", async () => {
    const store = new LocalContentStore(await mkdtemp(path.join(tmp, "store-")));
    await assert.rejects(pullImage(never, { resolver, store, ref: "busybox", platform: { os: "linux", architecture: "s390x" } }), (err: unknown) => {
      assert.ok(err instanceof KilnError);
      assert.match(err.message, /no image for platform linux\/s390x \(the index offers linux\/amd64, linux\/arm64\/v8\)/);
      return true;
    });
  });

  it("fetch verifies sizes and the store verifies digests", async () => {
    const store = new LocalContentStore(await mkdtemp(path.join(tmp, "store-")));
    const img = await pullImage(never, { resolver, store, ref: "busybox", platform: { os: "linux", architecture: "amd64" } });
    const layer = img.layers[0]!;
    await assert.rejects(img.fetchBlob(never, { ...layer, size: layer.size + 1 }), /size/);
    const bogus = { ...layer, digest: digestOf("not this layer") };
    await assert.rejects(img.fetchBlob(never, bogus), (err: unknown) => err instanceof RegistryError && err.status === 404);
    assert.equal(await store.has(layer.digest as Digest), false);
  });

  it("cancels a pull when the signal aborts", async () => {
    const store = new LocalContentStore(await mkdtemp(path.join(tmp, "store-")));
    const img = await pullImage(never, { resolver, store, ref: "busybox", platform: { os: "linux", architecture: "amd64" } });
    const ac = new AbortController();
    const p = img.fetchBlob(ac.signal, img.layers[0]!);
    ac.abort();
    await assert.rejects(p, (err: unknown) => err instanceof KilnError && err.code === "KILN_CANCELED");
    assert.equal(await store.has(img.layers[0]!.digest as Digest), false);
  });
});

test("choosePlatform takes the best image an index offers for the platform", () => {
  const m = (platform: string): Descriptor => {
    const p = parsePlatform(platform);
    return { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: `sha256:${platform}` as Digest, size: 1, platform: { os: p.os, architecture: p.architecture, ...(p.variant ? { variant: p.variant } : {}) } };
  };
  const index = [m("linux/386"), m("linux/amd64"), m("linux/arm/v6"), m("linux/arm/v7")];
  assert.equal(choosePlatform(index, parsePlatform("linux/amd64/v2"))?.digest, "sha256:linux/amd64");
  assert.equal(choosePlatform(index, parsePlatform("linux/amd64"))?.digest, "sha256:linux/amd64");
  assert.equal(choosePlatform([m("linux/386")], parsePlatform("linux/amd64"))?.digest, "sha256:linux/386");
  assert.equal(choosePlatform(index, parsePlatform("linux/arm64"))?.digest, "sha256:linux/arm/v7");
  assert.equal(choosePlatform(index, parsePlatform("linux/arm/v6"))?.digest, "sha256:linux/arm/v6");
  assert.equal(choosePlatform(index, parsePlatform("linux/ppc64le")), undefined);
});
