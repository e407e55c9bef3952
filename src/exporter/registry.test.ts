// Pushing through failures: registries that answer 401/404/500 give errors naming the registry,
// the repository and the status; 5xx answers and dropped connections are retried; a push stopped
// half-way leaves nothing the registry serves, and the next push succeeds with the same digests.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { MediaType, type Descriptor } from "../api/oci.js";
import { LocalContentStore } from "../content/index.js";
import { digestOf, isAbortError } from "../util/index.js";
import { RegistryError, RegistryResolver, pushImage } from "../remotes/index.js";
import { startRegistry, type RunningRegistry } from "../../test/fixtures/registry.js";

const run = promisify(execFile);
const never = new AbortController().signal;
const fastRetry = { attempts: 4, baseDelayMs: 10, maxDelayMs: 20 };

interface Image {
  store: LocalContentStore;
  manifest: Descriptor;
  layer: Descriptor;
}

async function makeImage(dir: string, layerBytes: number): Promise<Image> {
  const store = new LocalContentStore(dir);
  const layer = gzipSync(randomBytes(layerBytes), { level: 0 });
  const layerInfo = await store.put(never, layer);
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: [digestOf("x")] } }));
  const configInfo = await store.put(never, config);
  const layerDesc = { mediaType: MediaType.dockerLayerGzip, digest: layerInfo.digest, size: layerInfo.size };
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.dockerManifest, config: { mediaType: MediaType.dockerConfig, digest: configInfo.digest, size: configInfo.size }, layers: [layerDesc] }),
  );
  const m = await store.put(never, manifest);
  return { store, manifest: { mediaType: MediaType.dockerManifest, digest: m.digest, size: m.size }, layer: layerDesc };
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; host: string; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    server,
    host,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A proxy in front of a real registry; `intercept` may answer (or cut) a request itself. */
async function proxy(target: string, intercept: (req: IncomingMessage, res: ServerResponse) => boolean) {
  return listen((req, res) => {
    if (intercept(req, res)) return;
    const up = httpRequest({ host: "127.0.0.1", port: Number(target.split(":")[1]), method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
}

async function skopeoDigest(ref: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-skopeo-"));
  try {
    await run("skopeo", ["copy", "--src-tls-verify=false", `docker://${ref}`, `dir:${dir}`]);
    return digestOf(await readFile(path.join(dir, "manifest.json")));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("exporter: pushing through registry failures", () => {
  let reg: RunningRegistry;
  let tmp: string;
  let img: Image;

  before(async () => {
    reg = await startRegistry();
    tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-regtest-"));
    img = await makeImage(path.join(tmp, "store"), 3 << 20);
  });
  after(async () => {
    await reg?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  for (const [status, re] of [
    [401, /push access denied to .*\/kiln\/app.*answered 401 Unauthorized to HEAD \/v2\/kiln\/app\/blobs\//],
    [404, /kiln\/app.*answered 404 Not Found to POST \/v2\/kiln\/app\/blobs\/uploads\//],
    [500, /kiln\/app.*unexpected registry response.*answered 500 Internal Server Error to HEAD \/v2\/kiln\/app\/blobs\//],
  ] as const) {
    it(`names the registry, the repository and the status when the registry answers ${status}`, async () => {
      let requests = 0;
      const srv = await listen((req, res) => {
        requests++;
        if (status === 404 && req.method === "HEAD") return void res.writeHead(404).end();
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (status === 401) headers["www-authenticate"] = 'Basic realm="kiln-test"';
        res.writeHead(status, headers).end(req.method === "HEAD" ? undefined : JSON.stringify({ errors: [{ code: status === 404 ? "NAME_UNKNOWN" : "UNKNOWN", message: "nope" }] }));
      });
      try {
        const err = await pushImage(never, { resolver: new RegistryResolver(), store: img.store, ref: `${srv.host}/kiln/app:v1`, descriptor: img.manifest, retry: fastRetry }).then(
          () => assert.fail("push succeeded"),
          (e: unknown) => e,
        );
        assert.ok(err instanceof RegistryError, String(err));
        assert.match(err.message, re);
        assert.ok(err.message.includes(srv.host), "names the registry");
        assert.equal(err.status, status);
        // 5xx is retried (4 tries per request); 401/404 are not.
        if (status === 500) assert.ok(requests >= fastRetry.attempts, `${requests} requests`);
        else assert.ok(requests <= 4, `${requests} requests`);
      } finally {
        await srv.close();
      }
    });
  }

  it("retries 5xx answers and dropped connections, then pushes intact", async () => {
    let failures = 0;
    let drops = 0;
    const p = await proxy(reg.host, (req, res) => {
      if (req.method === "PUT" && req.url?.includes("/blobs/uploads/") && drops < 2) {
        drops++;
        // Take part of the body, then cut the connection.
        req.once("data", () => req.socket.destroy());
        return true;
      }
      if (req.method === "HEAD" && failures < 2) {
        failures++;
        res.writeHead(503).end();
        return true;
      }
      return false;
    });
    try {
      const retries: string[] = [];
      await pushImage(never, {
        resolver: new RegistryResolver(),
        store: img.store,
        ref: `${p.host}/kiln/flaky:v1`,
        descriptor: img.manifest,
        retry: fastRetry,
        onProgress: (ev) => (ev.state === "retry" ? retries.push(ev.descriptor.digest) : undefined),
      });
      assert.equal(drops, 2);
      assert.equal(failures, 2);
      assert.ok(retries.length >= 3, `retried ${retries.length} times`);
      assert.equal(await skopeoDigest(`${reg.host}/kiln/flaky:v1`), img.manifest.digest);
    } finally {
      await p.close();
    }
  });

  it("leaves nothing served after a push stopped half-way, and the next push succeeds", async () => {
    const ac = new AbortController();
    const p = await proxy(reg.host, (req) => {
      if (req.method === "PUT" && req.url?.includes("/blobs/uploads/")) req.once("data", () => ac.abort());
      return false;
    });
    const ref = `${p.host}/kiln/interrupted:v1`;
    try {
      await assert.rejects(pushImage(ac.signal, { resolver: new RegistryResolver(), store: img.store, ref, descriptor: img.manifest, retry: fastRetry }), (e: unknown) => isAbortError(e));
    } finally {
      await p.close();
    }
    const direct = new RegistryResolver();
    const repo = { domain: reg.host, path: "kiln/interrupted" };
    assert.equal(await direct.exists(never, repo, img.layer), false, "the half-sent layer is not in the repository");
    await assert.rejects(run("skopeo", ["inspect", "--tls-verify=false", `docker://${reg.host}/kiln/interrupted:v1`]), "no manifest was pushed");
    await pushImage(never, { resolver: direct, store: img.store, ref: `${reg.host}/kiln/interrupted:v1`, descriptor: img.manifest });
    assert.equal(await skopeoDigest(`${reg.host}/kiln/interrupted:v1`), img.manifest.digest);
  });

  it("pushes by digest (no tag), mounts blobs across repositories, and uploads big blobs in chunks", async () => {
    const seen: string[] = [];
    const p = await proxy(reg.host, (req) => {
      seen.push(`${req.method} ${req.url?.split("?")[0]}${req.url?.includes("mount=") ? " mount" : ""}`);
      return false;
    });
    try {
      const resolver = new RegistryResolver({ chunkSize: 1 << 20 });
      await pushImage(never, { resolver, store: img.store, ref: `${p.host}/kiln/bydigest`, descriptor: img.manifest, byDigest: true });
      assert.ok(seen.some((s) => s.startsWith("PATCH ")), "chunked upload used PATCH");
      assert.ok(seen.some((s) => s === `PUT /v2/kiln/bydigest/manifests/${img.manifest.digest}`), seen.join("\n"));
      assert.equal(await skopeoDigest(`${reg.host}/kiln/bydigest@${img.manifest.digest}`), img.manifest.digest);
      seen.length = 0;
      await pushImage(never, { resolver, store: img.store, ref: `${p.host}/kiln/mounted:v1`, descriptor: img.manifest, mountFrom: ["kiln/bydigest"] });
      assert.ok(seen.some((s) => s.startsWith("POST /v2/kiln/mounted/blobs/uploads/") && s.endsWith(" mount")), seen.join("\n"));
      assert.ok(!seen.some((s) => s.startsWith("PATCH ") || (s.startsWith("PUT ") && s.includes("/blobs/"))), "no blob was uploaded again");
      assert.equal(await skopeoDigest(`${reg.host}/kiln/mounted:v1`), img.manifest.digest);
    } finally {
      await p.close();
    }
  });
});
