// Authentication against real docker-registry instances: htpasswd (Basic) and token (Bearer)
// auth, with credentials read from a temporary $DOCKER_CONFIG.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { LocalContentStore } from "../content/index.js";
import { digestOf, KilnError } from "../util/index.js";
import { pushBusybox, startRegistry, type RunningRegistry } from "../../test/fixtures/registry.js";
import { DockerConfigCredentials, RegistryError, RegistryResolver, parseChallenges, pullImage, type CredentialProvider } from "./index.js";

const never = new AbortController().signal;

async function dockerConfig(dir: string, config: unknown): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

function b64(s: string): string {
  return Buffer.from(s).toString("base64");
}

it("auth: parses WWW-Authenticate challenges", () => {
  assert.deepEqual(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), [
    { scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/busybox:pull" } },
  ]);
  assert.deepEqual(parseChallenges(['Basic realm="a \\"b\\", c"', "Bearer realm=x, error=insufficient_scope"]), [
    { scheme: "basic", params: { realm: 'a "b", c' } },
    { scheme: "bearer", params: { realm: "x", error: "insufficient_scope" } },
  ]);
});

describe("remotes: basic auth (htpasswd)", () => {
  let reg: RunningRegistry;
  let tmp: string;

  before(async () => {
    reg = await startRegistry({ htpasswd: { kiln: "s3cret pass" } });
    await pushBusybox(reg.host, { creds: "kiln:s3cret pass" });
    tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-auth-"));
  });
  after(async () => {
    await reg?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("pulls with credentials from $DOCKER_CONFIG", async () => {
    const dir = await dockerConfig(path.join(tmp, "good"), { auths: { [`http://${reg.host}/v2/`]: { auth: b64("kiln:s3cret pass") } } });
    const credentials = new DockerConfigCredentials({ env: { DOCKER_CONFIG: dir } });
    const resolver = new RegistryResolver({ credentials });
    const store = new LocalContentStore(await mkdtemp(path.join(tmp, "store-")));
    const img = await pullImage(never, { resolver, store, ref: `${reg.host}/library/busybox`, platform: { os: "linux", architecture: "arm64" } });
    assert.equal(img.config.architecture, "arm64");
    await img.fetchBlob(never, img.layers[0]!);
  });

  it("fails clearly without or with wrong credentials", async () => {
    const store = new LocalContentStore(await mkdtemp(path.join(tmp, "store-")));
    for (const credentials of [undefined, new DockerConfigCredentials({ configDir: await dockerConfig(path.join(tmp, "bad"), { auths: { [reg.host]: { username: "kiln", password: "wrong" } } }) })]) {
      const resolver = new RegistryResolver({ credentials });
      await assert.rejects(pullImage(never, { resolver, store, ref: `${reg.host}/library/busybox` }), (err: unknown) => {
        assert.ok(err instanceof RegistryError, String(err));
        assert.equal(err.status, 401);
        assert.match(err.message, new RegExp(`^${reg.host}/library/busybox:latest: pull access denied`));
        assert.match(err.message, new RegExp(`${reg.host} answered 401 Unauthorized`));
        assert.ok(err.hint?.includes("docker login"));
        return true;
      });
    }
  });
});

describe("remotes: token auth (Bearer)", () => {
  let reg: RunningRegistry;
  let tmp: string;

  before(async () => {
    reg = await startRegistry({ token: { users: { pusher: "pw" }, refreshTokens: { "refresh-123": "pusher" } } });
    tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-token-"));
  });
  after(async () => {
    await reg?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  const blob = Buffer.from("a blob pushed with a bearer token\n");
  const desc = { mediaType: "application/octet-stream", digest: digestOf(blob), size: blob.length };

  it("pushes with user/password exchanged for a token, and caches tokens per scope", async () => {
    const creds: CredentialProvider = { credentials: async (_s, host) => (host === reg.host ? { username: "pusher", password: "pw" } : undefined) };
    const resolver = new RegistryResolver({ credentials: creds });
    const ref = { domain: reg.host, path: "kiln/bearer" };
    const before = reg.tokenServer!.requests.length;
    await resolver.pushBlob(never, ref, desc, () => Readable.from([blob]));
    assert.ok(await resolver.exists(never, ref, desc));
    const body = await (await resolver.fetch(never, ref, desc)).toArray();
    assert.deepEqual(Buffer.concat(body), blob);
    const reqs = reg.tokenServer!.requests.slice(before);
    assert.ok(reqs.every((r) => r.user === "pusher"));
    // One token for pull+push, one for pull: each scope is fetched once and reused.
    const scopes = reqs.map((r) => r.scopes.join(" "));
    assert.deepEqual([...new Set(scopes)].sort(), scopes.sort());
  });

  it("pulls anonymously where the token server allows it, and cannot push", async () => {
    const resolver = new RegistryResolver();
    const ref = { domain: reg.host, path: "kiln/bearer" };
    assert.ok(await resolver.exists(never, ref, desc));
    await assert.rejects(resolver.pushBlob(never, { domain: reg.host, path: "kiln/anon" }, desc, () => Readable.from([blob])), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(err.status, 401);
      assert.match(err.message, /kiln\/anon/);
      return true;
    });
  });

  it("exchanges an identity token through the OAuth2 endpoint", async () => {
    const dir = await dockerConfig(path.join(tmp, "idtoken"), { auths: { [reg.host]: { identitytoken: "refresh-123" } } });
    const resolver = new RegistryResolver({ credentials: new DockerConfigCredentials({ configDir: dir }) });
    const other = Buffer.from("identity token push\n");
    await resolver.pushBlob(never, { domain: reg.host, path: "kiln/idtoken" }, { mediaType: "application/octet-stream", digest: digestOf(other), size: other.length }, () => Readable.from([other]));
    assert.ok(reg.tokenServer!.requests.some((r) => r.method === "POST" && r.user === "pusher"));
  });

  it("reports a refused token request", async () => {
    const creds: CredentialProvider = { credentials: async () => ({ username: "pusher", password: "nope" }) };
    const resolver = new RegistryResolver({ credentials: creds });
    await assert.rejects(resolver.exists(never, { domain: reg.host, path: "kiln/bearer" }, desc), (err: unknown) => {
      assert.ok(err instanceof KilnError);
      assert.match(err.message, new RegExp(`authentication for ${reg.host} failed: token server .* answered 401`));
      return true;
    });
  });
});

describe("remotes: docker config credentials", () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-creds-"));
  });
  after(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("reads auths: base64 auth, username/password, identity token, Docker Hub's key", async () => {
    const dir = await dockerConfig(path.join(tmp, "a"), {
      auths: {
        "https://index.docker.io/v1/": { auth: b64("hubuser:hub:pass") },
        "ghcr.io": { username: "gh", password: "tok" },
        "https://reg.example.com:5000/v2/": { identitytoken: "idt" },
      },
    });
    const c = new DockerConfigCredentials({ configDir: dir });
    assert.deepEqual(await c.credentials(never, "registry-1.docker.io"), { username: "hubuser", password: "hub:pass" });
    assert.deepEqual(await c.credentials(never, "docker.io"), { username: "hubuser", password: "hub:pass" });
    assert.deepEqual(await c.credentials(never, "ghcr.io"), { username: "gh", password: "tok" });
    assert.deepEqual(await c.credentials(never, "reg.example.com:5000"), { identityToken: "idt" });
    assert.equal(await c.credentials(never, "other.example.com"), undefined);
    assert.equal(await new DockerConfigCredentials({ configDir: path.join(tmp, "missing") }).credentials(never, "ghcr.io"), undefined);
  });

  it("runs credential helpers (credHelpers, credsStore) with the server on stdin", async () => {
    const bin = path.join(tmp, "bin");
    await mkdir(bin, { recursive: true });
    const helper = path.join(bin, "docker-credential-kilntest");
    await writeFile(
      helper,
      `#!/bin/sh
read server
case "$server" in
  https://index.docker.io/v1/) echo '{"ServerURL":"'"$server"'","Username":"hub","Secret":"from-helper"}' ;;
  tok.example.com) echo '{"ServerURL":"'"$server"'","Username":"<token>","Secret":"refresh"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`,
    );
    await chmod(helper, 0o755);
    const env = { PATH: `${bin}:${process.env.PATH ?? ""}` };
    const store = new DockerConfigCredentials({ configDir: await dockerConfig(path.join(tmp, "h1"), { credsStore: "kilntest", auths: { "fallback.example.com": { auth: b64("f:b") } } }), env });
    assert.deepEqual(await store.credentials(never, "registry-1.docker.io"), { username: "hub", password: "from-helper" });
    assert.deepEqual(await store.credentials(never, "tok.example.com"), { identityToken: "refresh" });
    assert.deepEqual(await store.credentials(never, "fallback.example.com"), { username: "f", password: "b" });
    assert.equal(await store.credentials(never, "none.example.com"), undefined);

    const perHost = new DockerConfigCredentials({ configDir: await dockerConfig(path.join(tmp, "h2"), { credHelpers: { "tok.example.com": "kilntest", "x.example.com": "absent" } }), env });
    assert.deepEqual(await perHost.credentials(never, "tok.example.com"), { identityToken: "refresh" });
    assert.equal(await perHost.credentials(never, "ghcr.io"), undefined);
    await assert.rejects(perHost.credentials(never, "x.example.com"), (err: unknown) => err instanceof KilnError && err.code === "KILN_CREDENTIALS" && /docker-credential-absent not found/.test(err.message));
  });
});
