// The engine end to end through the CLI: Dockerfile → OCI image, checked with skopeo, umoci and runc.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { readFile, writeFile, stat, readdir, lstat, mkdir, access } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stopSharedRegistry, repoRoot, type KilnEnv } from "../helpers/kiln.js";

const sh = promisify(execFile);
let env: KilnEnv;

before(async () => {
  env = await kilnEnv();
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

async function unpack(tarball: string, tag: string): Promise<{ rootfs: string; bundle: string; config: Record<string, unknown> }> {
  const dir = `${tarball}.d`;
  await mkdir(dir, { recursive: true });
  await sh("tar", ["-xf", tarball, "-C", dir]);
  const bundle = `${tarball}.bundle`;
  await sh("umoci", ["unpack", "--image", `${dir}:${tag}`, bundle]);
  const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(await readFile(path.join(dir, "blobs", index.manifests[0]!.digest.replace(":", "/")), "utf8")) as { config: { digest: string } };
  const config = JSON.parse(await readFile(path.join(dir, "blobs", manifest.config.digest.replace(":", "/")), "utf8")) as Record<string, unknown>;
  return { rootfs: path.join(bundle, "rootfs"), bundle, config };
}

test("multi-stage example builds to an OCI tarball that skopeo, umoci and runc accept", async () => {
  const out = path.join(env.tmp, "demo.tar");
  const r = await env.run(["build", path.join(repoRoot, "examples/multistage"), "-o", `type=oci,dest=${out},name=demo:v1`]);
  assert.equal(r.code, 0, r.stderr);
  const inspect = JSON.parse((await sh("skopeo", ["inspect", `oci-archive:${out}`])).stdout) as { Layers: string[]; Env: string[]; Labels: Record<string, string> };
  assert.ok(inspect.Layers.length >= 2);
  assert.equal(inspect.Labels["org.opencontainers.image.title"], "kiln demo");
  const { rootfs, bundle, config } = await unpack(out, "v1");
  const greeting = await readFile(path.join(rootfs, "app/greeting.txt"), "utf8");
  assert.match(greeting, /^hello from kiln\nbuilt on x86_64\n$/);
  await assert.rejects(access(path.join(rootfs, "src")), "build stage files stay out of the final image");
  const appStat = await stat(path.join(rootfs, "app"));
  assert.equal(appStat.uid, 1001, "RUN chown took effect");
  const cfg = config.config as Record<string, unknown>;
  assert.equal(cfg.User, "app");
  assert.equal(cfg.WorkingDir, "/app");
  assert.deepEqual(cfg.Cmd, ["sh", "-c", "cat $GREETING_FILE"]);
  assert.ok((cfg.Env as string[]).includes("GREETING_FILE=/app/greeting.txt"));
  // The image runs and does what its CMD says.
  const specPath = path.join(bundle, "config.json");
  const spec = JSON.parse(await readFile(specPath, "utf8")) as { process: { terminal: boolean } };
  spec.process.terminal = false;
  await writeFile(specPath, JSON.stringify(spec));
  const id = `kiln-e2e-${process.pid}`;
  try {
    const run = await sh("runc", ["run", "--bundle", bundle, id]);
    assert.equal(run.stdout, greeting);
  } finally {
    await sh("runc", ["delete", "-f", id]).catch(() => {});
  }
});

test("an unchanged rebuild runs no RUN and takes under a second", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo built > /built\nCOPY a.txt /a.txt\n", "a.txt": "A\n" });
  const first = await env.run(["build", ctx]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /RUN echo built/);
  const second = await env.run(["build", ctx]);
  assert.equal(second.code, 0, second.stderr);
  assert.doesNotMatch(second.stderr, /#\d+ DONE/, "nothing executed");
  assert.match(second.stderr, /CACHED/);
  assert.ok(second.ms < 1000, `rebuild took ${second.ms} ms`);
});

test("Dockerfile instructions produce BuildKit's config and filesystem", async () => {
  const ctx = await env.context({
    Dockerfile: [
      "ARG BASE=busybox",
      "FROM $BASE AS base",
      "ARG GREETING=hi",
      "ENV A=1 B=\"two words\"",
      "ENV C=${A}-$B",
      "WORKDIR /w/x",
      "WORKDIR sub",
      "RUN echo \"$GREETING $C\" > out.txt && pwd > pwd.txt",
      "COPY dir/ /copied/",
      "COPY a.txt b.txt /multi/",
      "COPY --chown=1000:1000 --chmod=600 a.txt /owned.txt",
      "ADD a.txt /added.txt",
      "USER nobody",
      "LABEL l1=v1 \"l 2\"=v2",
      "EXPOSE 8080 53/udp",
      "ENTRYPOINT [\"/bin/echo\"]",
      "CMD echo hello",
      "FROM base AS final",
      "RUN id -un > /tmp/whoami",
      "FROM busybox AS unused",
      "RUN exit 1",
    ].join("\n"),
    "a.txt": "A\n",
    "b.txt": "B\n",
    "dir/nested/f.txt": "F\n",
  });
  const out = path.join(env.tmp, "instr.tar");
  const r = await env.run(["build", ctx, "--target", "final", "--build-arg", "GREETING=hello", "-o", `type=oci,dest=${out},name=x:y`]);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /exit 1/, "the unused stage never ran");
  const { rootfs, config } = await unpack(out, "y");
  assert.equal(await readFile(path.join(rootfs, "w/x/sub/out.txt"), "utf8"), "hello 1-two words\n");
  assert.equal(await readFile(path.join(rootfs, "w/x/sub/pwd.txt"), "utf8"), "/w/x/sub\n");
  assert.equal(await readFile(path.join(rootfs, "copied/nested/f.txt"), "utf8"), "F\n");
  assert.deepEqual((await readdir(path.join(rootfs, "multi"))).sort(), ["a.txt", "b.txt"]);
  const owned = await lstat(path.join(rootfs, "owned.txt"));
  assert.equal(owned.uid, 1000);
  assert.equal(owned.mode & 0o777, 0o600);
  assert.equal(await readFile(path.join(rootfs, "added.txt"), "utf8"), "A\n");
  assert.equal(await readFile(path.join(rootfs, "tmp/whoami"), "utf8"), "nobody\n");
  // RUN leaves its mount points behind as directories, as BuildKit does.
  for (const d of ["dev", "proc", "sys"]) assert.ok((await lstat(path.join(rootfs, d))).isDirectory());
  const cfg = config.config as Record<string, unknown>;
  assert.equal(cfg.User, "nobody");
  assert.equal(cfg.WorkingDir, "/w/x/sub");
  assert.deepEqual(cfg.Entrypoint, ["/bin/echo"]);
  assert.deepEqual(cfg.Cmd, ["/bin/sh", "-c", "echo hello"]);
  assert.deepEqual(cfg.ExposedPorts, { "8080/tcp": {}, "53/udp": {} });
  assert.deepEqual(cfg.Labels, { l1: "v1", "l 2": "v2" });
  const envs = cfg.Env as string[];
  assert.ok(envs.includes("A=1") && envs.includes("B=two words") && envs.includes("C=1-two words"));
  assert.ok(!envs.some((e) => e.startsWith("GREETING=")), "build args stay out of the image env");
  assert.equal(config.architecture, "amd64");
  const history = config.history as { created_by: string; empty_layer?: boolean }[];
  const layers = (config.rootfs as { diff_ids: string[] }).diff_ids;
  assert.equal(history.filter((h) => !h.empty_layer).length, layers.length);
});

test("local exporter writes the filesystem", async () => {
  const ctx = await env.context({ Dockerfile: "FROM scratch\nCOPY . /\n", "x/y.txt": "Y\n", "z.txt": "Z\n", ".dockerignore": "z.txt\n" });
  const dest = path.join(env.tmp, "local-out");
  const r = await env.run(["build", ctx, "-o", `type=local,dest=${dest}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(path.join(dest, "x/y.txt"), "utf8"), "Y\n");
  await assert.rejects(access(path.join(dest, "z.txt")), ".dockerignore is honoured");
});

test("bad input fails with one clear message and writes nothing", async (t) => {
  const dest = path.join(env.tmp, "never.tar");
  const cases: { name: string; files: Record<string, string>; expect: RegExp }[] = [
    { name: "missing Dockerfile", files: { "a.txt": "" }, expect: /failed to read dockerfile/ },
    { name: "unknown instruction", files: { Dockerfile: "FROM busybox\nFOOBAR x\n" }, expect: /Dockerfile:2[\s\S]*FOOBAR x[\s\S]*unknown instruction: FOOBAR/i },
    { name: "missing image", files: { Dockerfile: "FROM nosuchimage:1.0\n" }, expect: /nosuchimage[\s\S]*(not found|404|unknown)/i },
    { name: "failing RUN", files: { Dockerfile: "FROM busybox\nRUN echo boom-output && exit 3\n" }, expect: /Dockerfile:2[\s\S]*exit code: 3[\s\S]*boom-output/ },
    { name: "COPY of a missing path", files: { Dockerfile: "FROM busybox\nCOPY nope.txt /\n" }, expect: /nope\.txt[\s\S]*not found/ },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const ctx = await env.context(c.files);
      const r = await env.run(["build", ctx, "-o", `type=oci,dest=${dest}`]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, c.expect);
      assert.doesNotMatch(r.stderr, /\n\s+at .*\.(ts|js|mjs):\d+/, "no stack trace");
      await assert.rejects(access(dest), "nothing written to the destination");
    });
  }
});

test("SIGINT during a RUN stops the container and leaves no mounts", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo started && sleep 300\n" });
  let pid = 0;
  const running = env.run(["build", ctx], { onSpawn: (p) => (pid = p) });
  // Wait for the RUN to start.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { stdout } = await sh("runc", ["list", "-q"]);
    if (stdout.split("\n").some((l) => l.startsWith("kiln-"))) break;
    if (Date.now() > deadline) throw new Error("RUN never started");
    await new Promise((r) => setTimeout(r, 100));
  }
  process.kill(pid, "SIGINT");
  const r = await running;
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /canceled/);
  const { stdout: mounts } = await sh("findmnt", ["-rn", "-o", "TARGET"]);
  assert.ok(!mounts.split("\n").some((m) => m.startsWith(env.root)), `mounts left under the root:\n${mounts}`);
  const { stdout: containers } = await sh("runc", ["list", "-q"]);
  assert.ok(!containers.split("\n").some((l) => l.startsWith("kiln-")), `containers left: ${containers}`);
});
