// RUN's flags end to end: --network=none|host and --security=insecure with their entitlements
// (granted by both --allow and the config's insecure-entitlements), proxy build args.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stepStates, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

let env: KilnEnv;
let permissive: string;
before(async () => {
  env = await kilnEnv();
  // Top-level keys come before the config's tables.
  permissive = path.join(env.tmp, "permissive.toml");
  await writeFile(permissive, `insecure-entitlements = ["network.host", "security.insecure"]\n` + (await readFile(env.config, "utf8")));
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

async function build(ctx: string, name: string, args: string[] = [], pre: string[] = []) {
  const dest = path.join(env.tmp, name);
  const r = await env.run([...pre, "build", ctx, "-o", `type=local,dest=${dest}`, ...args]);
  return { ...r, dest };
}

/** Interfaces the step saw: /proc/net/dev has two header lines, then one line per interface. */
async function interfaces(dest: string, file: string): Promise<number> {
  return (await readFile(path.join(dest, file), "utf8")).trim().split("\n").length - 2;
}

test("--network=none isolates the step; host needs network.host from --allow and the config", async () => {
  const ctx = await env.context({
    Dockerfile: "FROM busybox\nRUN --network=none cat /proc/net/dev > /none\nRUN cat /proc/net/dev > /default\n",
  });
  const ok = await build(ctx, "net-none");
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(await interfaces(ok.dest, "none"), 1, "only lo in a fresh network namespace");
  assert.ok((await interfaces(ok.dest, "default")) > 1);

  const hostCtx = await env.context({ Dockerfile: "FROM busybox\nRUN --network=host cat /proc/net/dev > /host\n" });
  const refused = await build(hostCtx, "net-host-refused");
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /network\.host is not allowed/);
  const notConfigured = await build(hostCtx, "net-host-noconfig", ["--allow", "network.host"]);
  assert.equal(notConfigured.code, 1);
  assert.match(notConfigured.stderr, /granting entitlement network\.host is not allowed by build daemon configuration/);
  const granted = await build(hostCtx, "net-host", ["--allow", "network.host"], ["--config", permissive]);
  assert.equal(granted.code, 0, granted.stderr);
  assert.ok((await interfaces(granted.dest, "host")) > 1);
});

test("--security=insecure runs with every capability and writable /sys once allowed", async () => {
  const ctx = await env.context({
    Dockerfile: [
      "FROM busybox",
      "RUN grep CapEff /proc/self/status > /sandbox-caps",
      "RUN --security=insecure sh -c 'grep CapEff /proc/self/status > /insecure-caps && grep \" /sys \" /proc/mounts > /sys-mount'",
    ].join("\n"),
  });
  const refused = await build(ctx, "insecure-refused");
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /security\.insecure is not allowed/);
  const r = await build(ctx, "insecure", ["--allow", "security.insecure"], ["--config", permissive]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(await readFile(path.join(r.dest, "sandbox-caps"), "utf8"), /CapEff:\s+00000000a80425fb/);
  // Every capability this machine lets us hand on (containers may lack some).
  const own = /^CapBnd:\s*([0-9a-f]+)$/m.exec(await readFile("/proc/self/status", "utf8"))![1]!;
  assert.match(await readFile(path.join(r.dest, "insecure-caps"), "utf8"), new RegExp(`CapEff:\\s+${own}`));
  assert.match(await readFile(path.join(r.dest, "sys-mount"), "utf8"), /sysfs rw/);
});

test("proxy build args reach RUN but neither the image history nor the cache key", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN env | grep -i _proxy | sort > /proxies\n" });
  const out = path.join(env.tmp, "proxy.tar");
  const r = await env.run(["build", ctx, "--build-arg", "HTTP_PROXY=http://proxy.example:3128", "--build-arg", "no_proxy=localhost", "-o", `type=oci,dest=${out}`]);
  assert.equal(r.code, 0, r.stderr);
  const local = await build(ctx, "proxy-local", ["--build-arg", "HTTP_PROXY=http://other.example:8080", "--build-arg", "no_proxy=localhost"]);
  assert.equal(local.code, 0, local.stderr);
  assert.equal(stepStates(local.stderr).get("[2/2] RUN env | grep -i _proxy | sort > /proxies"), "CACHED", "another proxy value is the same step");
  assert.equal(await readFile(path.join(local.dest, "proxies"), "utf8"), "HTTP_PROXY=http://proxy.example:3128\nNO_PROXY=localhost\nhttp_proxy=http://proxy.example:3128\nno_proxy=localhost\n");
  const { execFile } = await import("node:child_process");
  const { promisify } = await import("node:util");
  const dir = `${out}.d`;
  await promisify(execFile)("mkdir", ["-p", dir]);
  await promisify(execFile)("tar", ["-xf", out, "-C", dir]);
  const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(await readFile(path.join(dir, "blobs", index.manifests[0]!.digest.replace(":", "/")), "utf8")) as { config: { digest: string } };
  const config = await readFile(path.join(dir, "blobs", manifest.config.digest.replace(":", "/")), "utf8");
  assert.doesNotMatch(config, /proxy\.example/i);
});

test("mounts from an image, cache mounts with uid/gid/mode or seeded from a stage", async () => {
  const ctx = await env.context({
    Dockerfile: [
      "FROM busybox AS seed",
      "RUN mkdir -p /s && echo seeded > /s/file",
      "FROM busybox",
      "RUN --mount=type=bind,from=busybox,source=/bin,target=/img ls /img/busybox > /from-image",
      "RUN --mount=type=cache,target=/owned,uid=1234,gid=2345,mode=0750 stat -c '%u %g %a' /owned > /owned-stat",
      "RUN --mount=type=cache,target=/seeded,from=seed,source=/s,id=seeded sh -c 'cat /seeded/file > /seed-content; echo added >> /seeded/file'",
      "ARG AGAIN",
      "RUN --mount=type=cache,target=/seeded,from=seed,source=/s,id=seeded cat /seeded/file > /seed-later",
    ].join("\n"),
  });
  const r = await build(ctx, "mount-kinds");
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await readFile(path.join(r.dest, "from-image"), "utf8")).trim(), "/img/busybox");
  assert.equal((await readFile(path.join(r.dest, "owned-stat"), "utf8")).trim(), "1234 2345 750");
  assert.equal(await readFile(path.join(r.dest, "seed-content"), "utf8"), "seeded\n");
  assert.equal(await readFile(path.join(r.dest, "seed-later"), "utf8"), "seeded\nadded\n", "the seeded cache keeps what the first step wrote");
});

test("frontend options hostname (or BUILDKIT_SANDBOX_HOSTNAME), shm-size and ulimit reach each RUN", async () => {
  const ctx = await env.context({
    Dockerfile: "FROM busybox\nRUN hostname > /host && grep -c foo /etc/hosts > /hosts && mount | grep /dev/shm > /shm && ulimit -n > /nofile\n",
  });
  const r = await build(ctx, "run-opts", ["--opt", "hostname=bar", "--opt", "build-arg:BUILDKIT_SANDBOX_HOSTNAME=foo", "--opt", "shm-size=134217728", "--opt", "ulimit=nofile=1062:1062"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await readFile(path.join(r.dest, "host"), "utf8")).trim(), "foo", "the build arg wins over the attr");
  assert.equal((await readFile(path.join(r.dest, "hosts"), "utf8")).trim(), "1");
  assert.match(await readFile(path.join(r.dest, "shm"), "utf8"), /size=131072k/);
  assert.equal((await readFile(path.join(r.dest, "nofile"), "utf8")).trim(), "1062");
  const bad = await build(ctx, "run-opts-bad", ["--opt", "ulimit=nofile=2:1"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /failed to parse ulimit: ulimit soft limit must be less than or equal to hard limit: 2 > 1/);
});
