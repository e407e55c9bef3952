// RUN --mount: cache mounts persist across builds and stay out of keys and images; sharing modes
// hold across concurrent builds; bind mounts from stages and the context; tmpfs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { access, readFile } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stepStates, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

let env: KilnEnv;
before(async () => {
  env = await kilnEnv();
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

async function buildTo(ctx: string, name: string, args: string[] = []): Promise<{ dest: string; stderr: string }> {
  const dest = path.join(env.tmp, name);
  const r = await env.run(["build", ctx, "-o", `type=local,dest=${dest}`, ...args]);
  assert.equal(r.code, 0, r.stderr);
  return { dest, stderr: r.stderr };
}

test("a cache mount keeps its content across builds and stays out of the image and the key", async () => {
  const ctx = await env.context({
    Dockerfile: "FROM busybox\nARG N\nRUN --mount=type=cache,target=/c echo $N >> /c/log && wc -l < /c/log > /count\n",
  });
  const a = await buildTo(ctx, "cache-1", ["--build-arg", "N=1"]);
  assert.equal((await readFile(path.join(a.dest, "count"), "utf8")).trim(), "1");
  await assert.rejects(access(path.join(a.dest, "c", "log")), "the cache's files are not in the image");
  const b = await buildTo(ctx, "cache-2", ["--build-arg", "N=2"]);
  assert.equal((await readFile(path.join(b.dest, "count"), "utf8")).trim(), "2", "the second build saw the first one's file");
  // The cache changed since build 1, yet build 1's step is still a hit: contents aren't keyed.
  const again = await buildTo(ctx, "cache-3", ["--build-arg", "N=1"]);
  const states = stepStates(again.stderr);
  assert.equal([...states].find(([n]) => n.includes("RUN --mount"))?.[1], "CACHED");
});

test("sharing=locked serialises two concurrent builds; sharing=private gives each its own", async () => {
  const locked = await env.context({
    Dockerfile:
      "FROM busybox\nARG N\nRUN --mount=type=cache,target=/c,id=lk,sharing=locked sh -c 'if [ -e /c/busy ]; then echo overlap >> /c/overlaps; fi; touch /c/busy; sleep 1; rm /c/busy; echo $N > /done'\n" +
      "RUN --mount=type=cache,target=/c,id=lk,sharing=locked sh -c 'cat /c/overlaps 2>/dev/null | wc -l > /overlaps'\n",
  });
  const [x, y] = await Promise.all([buildTo(locked, "locked-a", ["--build-arg", "N=a"]), buildTo(locked, "locked-b", ["--build-arg", "N=b"])]);
  for (const r of [x, y]) assert.equal((await readFile(path.join(r.dest, "overlaps"), "utf8")).trim(), "0");

  const priv = await env.context({
    Dockerfile: "FROM busybox\nARG N\nRUN --mount=type=cache,target=/c,id=pv,sharing=private sh -c 'touch /c/$N; sleep 1; ls /c > /seen'\n",
  });
  const [p, q] = await Promise.all([buildTo(priv, "private-a", ["--build-arg", "N=a"]), buildTo(priv, "private-b", ["--build-arg", "N=b"])]);
  assert.equal((await readFile(path.join(p.dest, "seen"), "utf8")).trim(), "a");
  assert.equal((await readFile(path.join(q.dest, "seen"), "utf8")).trim(), "b");
});

test("bind mounts from a stage and from the context; writes to them are discarded; tmpfs", async () => {
  const ctx = await env.context({
    Dockerfile: [
      "FROM busybox AS gen",
      "RUN mkdir /out && echo generated > /out/f",
      "FROM busybox",
      "RUN --mount=type=bind,from=gen,source=/out,target=/mnt cp /mnt/f /from-stage",
      "RUN --mount=type=bind,target=/ctx,rw cp /ctx/input.txt /from-context && echo scribble > /ctx/input.txt",
      "RUN --mount=type=bind,target=/ctx cat /ctx/input.txt > /after",
      "RUN --mount=type=tmpfs,target=/t sh -c 'grep \" /t tmpfs \" /proc/mounts > /tmpfs && echo x > /t/x'",
    ].join("\n"),
    "input.txt": "from the context\n",
  });
  const r = await buildTo(ctx, "binds");
  assert.equal(await readFile(path.join(r.dest, "from-stage"), "utf8"), "generated\n");
  assert.equal(await readFile(path.join(r.dest, "from-context"), "utf8"), "from the context\n");
  assert.equal(await readFile(path.join(r.dest, "after"), "utf8"), "from the context\n", "a rw bind's writes are discarded");
  assert.match(await readFile(path.join(r.dest, "tmpfs"), "utf8"), / \/t tmpfs /);
  await assert.rejects(access(path.join(r.dest, "t", "x")));
});

test("a RUN that only reads a stage stays cached when the stage is rebuilt to the same files", async () => {
  const df = [
    "FROM busybox AS build",
    "COPY cachebust /",
    "RUN mkdir out && echo foo > out/foo",
    "FROM busybox",
    "RUN --mount=from=build,src=out,target=/out,rw touch /out/bar && head -c 16 /dev/urandom | od -x > /unique",
    "",
  ].join("\n");
  const a = await buildTo(await env.context({ Dockerfile: df, cachebust: "0" }), "rw-content-1");
  const b = await buildTo(await env.context({ Dockerfile: df, cachebust: "1" }), "rw-content-2");
  const states = stepStates(b.stderr);
  assert.notEqual([...states].find(([n]) => n.includes("mkdir out"))?.[1], "CACHED", "the stage itself ran again");
  assert.equal([...states].find(([n]) => n.includes("RUN --mount"))?.[1], "CACHED");
  assert.equal(await readFile(path.join(b.dest, "unique"), "utf8"), await readFile(path.join(a.dest, "unique"), "utf8"));
  // Different files in the mounted directory are a different step.
  const c = await buildTo(await env.context({ Dockerfile: df.replace("echo foo", "echo other"), cachebust: "1" }), "rw-content-3");
  assert.notEqual(await readFile(path.join(c.dest, "unique"), "utf8"), await readFile(path.join(a.dest, "unique"), "utf8"));
});
