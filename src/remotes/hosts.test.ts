// Registry host configuration: endpoint order and schemes, and TLS settings against a real
// https registry (custom CA, insecure, https→http fallback).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { LocalContentStore } from "../content/index.js";
import { pushBusybox, startRegistry, type RunningRegistry } from "../../test/fixtures/registry.js";
import { RegistryError, RegistryResolver, isLocalhost, pullImage, registryEndpoints } from "./index.js";

const never = new AbortController().signal;

it("hosts: endpoints follow BuildKit's registry config", () => {
  const hosts = {
    "docker.io": { mirrors: ["mirror.example.com", "https://m2.example.com:5000/cache/hub/"] },
    "m2.example.com:5000": { ca: ["/etc/ca.pem"] },
    "mirror.example.com": { http: true },
    "plain.example.com": { http: true },
    "127.0.0.1:5000": { http: false },
    "skip.example.com": { insecure: true },
  };
  const pull = registryEndpoints("docker.io", hosts, "pull").map((e) => `${e.scheme}://${e.host}${e.path}${e.mirror ? " mirror" : ""}${e.ca.length ? " ca" : ""}`);
  assert.deepEqual(pull, ["http://mirror.example.com/v2 mirror", "https://m2.example.com:5000/v2/cache/hub mirror ca", "https://registry-1.docker.io/v2"]);
  assert.deepEqual(
    registryEndpoints("docker.io", hosts, "push").map((e) => e.host),
    ["registry-1.docker.io"],
  );
  assert.equal(registryEndpoints("plain.example.com", hosts, "pull")[0]!.scheme, "http");
  assert.equal(registryEndpoints("localhost:5000", {}, "pull")[0]!.scheme, "http");
  assert.equal(registryEndpoints("127.0.0.1:5000", hosts, "pull")[0]!.scheme, "https");
  assert.equal(registryEndpoints("ghcr.io", {}, "pull")[0]!.scheme, "https");
  const skip = registryEndpoints("skip.example.com", hosts, "pull")[0]!;
  assert.deepEqual([skip.scheme, skip.insecure, skip.httpFallback], ["https", true, false]);
  const local = registryEndpoints("localhost", { localhost: { insecure: true } }, "pull")[0]!;
  assert.deepEqual([local.scheme, local.insecure, local.httpFallback], ["https", true, true]);
  for (const h of ["localhost", "localhost:5000", "127.0.0.1", "127.1.2.3:80", "[::1]:5000", "::1"]) assert.ok(isLocalhost(h), h);
  for (const h of ["example.com", "10.0.0.1:5000", "localhost.example.com"]) assert.ok(!isLocalhost(h), h);
});

describe("remotes: TLS registries", () => {
  let tlsReg: RunningRegistry;
  let plainReg: RunningRegistry;
  let tmp: string;

  before(async () => {
    [tlsReg, plainReg] = await Promise.all([startRegistry({ tls: true }), startRegistry()]);
    await Promise.all([pushBusybox(tlsReg.host), pushBusybox(plainReg.host)]);
    tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-tls-"));
  });
  after(async () => {
    await tlsReg?.stop();
    await plainReg?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  const pull = async (resolver: RegistryResolver, host: string) => {
    const store = new LocalContentStore(await mkdtemp(path.join(tmp, "store-")));
    try {
      const img = await pullImage(never, { resolver, store, ref: `${host}/library/busybox`, platform: { os: "linux", architecture: "amd64" } });
      await img.fetchBlob(never, img.layers[0]!);
      return img;
    } finally {
      await resolver.close();
    }
  };

  it("trusts a registry's CA from `ca`", async () => {
    const img = await pull(new RegistryResolver({ hosts: { [tlsReg.host]: { http: false, ca: [tlsReg.caFile!] } } }), tlsReg.host);
    assert.equal(img.config.architecture, "amd64");
  });

  it("refuses an unknown certificate, with a hint", async () => {
    await assert.rejects(pull(new RegistryResolver({ hosts: { [tlsReg.host]: { http: false } } }), tlsReg.host), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.match(err.message, new RegExp(`${tlsReg.host}/library/busybox:latest: failed to connect: ${tlsReg.host}: HEAD /v2/library/busybox/manifests/latest: .*(certificate|self.signed)`, "i"));
      assert.match(err.hint ?? "", /ca = /);
      return true;
    });
  });

  it("skips verification with `insecure`, and falls back to http for a plain one", async () => {
    assert.equal((await pull(new RegistryResolver({ hosts: { [tlsReg.host]: { insecure: true } } }), tlsReg.host)).config.os, "linux");
    assert.equal((await pull(new RegistryResolver({ hosts: { [plainReg.host]: { insecure: true } } }), plainReg.host)).config.os, "linux");
  });
});
