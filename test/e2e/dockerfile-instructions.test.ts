// The config-only instructions and the rules around stages: ONBUILD triggers, HEALTHCHECK (options
// and NONE), SHELL, STOPSIGNAL, VOLUME, MAINTAINER, predefined platform args, unused stages, and
// errors shown the way BuildKit shows them (file:line, the line, the message).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdir, readFile, access, symlink } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

const sh = promisify(execFile);
let env: KilnEnv;
before(async () => {
  env = await kilnEnv();
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

async function imageConfig(out: string): Promise<Record<string, unknown>> {
  const dir = `${out}.d`;
  await mkdir(dir, { recursive: true });
  await sh("tar", ["-xf", out, "-C", dir]);
  const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(await readFile(path.join(dir, "blobs", index.manifests[0]!.digest.replace(":", "/")), "utf8")) as { config: { digest: string } };
  return JSON.parse(await readFile(path.join(dir, "blobs", manifest.config.digest.replace(":", "/")), "utf8")) as Record<string, unknown>;
}

test("ONBUILD, HEALTHCHECK, SHELL, STOPSIGNAL, VOLUME, MAINTAINER and platform args land as BuildKit writes them", async () => {
  const ctx = await env.context({
    Dockerfile: [
      "FROM busybox AS base",
      "ONBUILD RUN echo triggered > /onbuild",
      "ONBUILD ENV FROM_TRIGGER=yes",
      "FROM base AS final",
      "MAINTAINER someone@example.com",
      'SHELL ["/bin/sh", "-ec"]',
      "RUN echo shell=$0 > /shell",
      "ARG TARGETARCH",
      "ARG TARGETPLATFORM",
      "RUN echo $TARGETARCH $TARGETPLATFORM $BUILDARCH. > /platform",
      "HEALTHCHECK --interval=30s --timeout=5s --start-period=1m30s --retries=4 CMD wget -q localhost || exit 1",
      "STOPSIGNAL SIGQUIT",
      "VOLUME /data /cache",
      "FROM busybox AS never",
      "RUN exit 3",
    ].join("\n"),
  });
  const out = path.join(env.tmp, "instr.tar");
  const r = await env.run(["build", ctx, "--target", "final", "-o", `type=oci,dest=${out}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /exit 3/, "a stage the target does not need never runs");
  const config = await imageConfig(out);
  const cfg = config.config as Record<string, unknown>;
  assert.equal(config.author, "someone@example.com");
  assert.deepEqual(cfg.Healthcheck, { Test: ["CMD-SHELL", "wget -q localhost || exit 1"], Interval: 30e9, Timeout: 5e9, StartPeriod: 90e9, Retries: 4 });
  assert.equal(cfg.StopSignal, "SIGQUIT");
  assert.deepEqual(cfg.Volumes, { "/data": {}, "/cache": {} });
  assert.deepEqual(cfg.Shell, ["/bin/sh", "-ec"]);
  assert.equal(cfg.OnBuild, null, "triggers ran and are not passed on");
  assert.ok((cfg.Env as string[]).includes("FROM_TRIGGER=yes"));
  const history = (config.history as { created_by: string }[]).map((h) => h.created_by);
  assert.ok(history.includes("RUN /bin/sh -c echo triggered > /onbuild # buildkit"), history.join("\n"));
  assert.ok(history.includes("HEALTHCHECK &{[\"CMD-SHELL\" \"wget -q localhost || exit 1\"] \"30s\" \"5s\" \"1m30s\" '\\x04'}"), history.join("\n"));
  assert.ok(history.includes("RUN |2 TARGETARCH=amd64 TARGETPLATFORM=linux/amd64 /bin/sh -ec echo $TARGETARCH $TARGETPLATFORM $BUILDARCH. > /platform # buildkit"), history.join("\n"));
  assert.ok(!history.some((h) => h.includes("BUILDARCH=")), "undeclared platform args stay out of the history");

  const local = path.join(env.tmp, "instr-local");
  const l = await env.run(["build", ctx, "--target", "final", "-o", `type=local,dest=${local}`]);
  assert.equal(l.code, 0, l.stderr);
  assert.equal(await readFile(path.join(local, "onbuild"), "utf8"), "triggered\n");
  assert.equal(await readFile(path.join(local, "shell"), "utf8"), "shell=/bin/sh\n");
  assert.equal(await readFile(path.join(local, "platform"), "utf8"), "amd64 linux/amd64 .\n");

  const none = await env.context({ Dockerfile: "FROM busybox\nHEALTHCHECK CMD true\nHEALTHCHECK NONE\n" });
  const noneOut = path.join(env.tmp, "none.tar");
  const n = await env.run(["build", none, "-o", `type=oci,dest=${noneOut}`]);
  assert.equal(n.code, 0, n.stderr);
  assert.deepEqual(((await imageConfig(noneOut)).config as Record<string, unknown>).Healthcheck, { Test: ["NONE"] });
});

test("errors carry the Dockerfile line and BuildKit's message", async (t) => {
  const dest = path.join(env.tmp, "never-written");
  const cases: { name: string; dockerfile: string; expect: RegExp }[] = [
    { name: "unknown instruction", dockerfile: "FROM busybox\nRUNN echo\n", expect: /Dockerfile:2\n[\s\S]*>>> RUNN echo[\s\S]*unknown instruction: RUNN \(did you mean RUN\?\)/i },
    { name: "unknown --from stage", dockerfile: "FROM busybox AS builder\nFROM busybox\nCOPY --from=buildr /x /x\n", expect: /Dockerfile:3\n[\s\S]*buildr:[\s\S]*\(did you mean builder\?\)/ },
    { name: "bad flag value", dockerfile: "FROM busybox\nRUN --network=outer true\n", expect: /Dockerfile:2\n[\s\S]*invalid network mode "outer"/ },
    { name: "bad mount key", dockerfile: "FROM busybox\nRUN --mount=type=cache,target=/c,sharng=locked true\n", expect: /Dockerfile:2\n[\s\S]*unexpected key 'sharng'[\s\S]*did you mean sharing\?/ },
    { name: "bad stop signal", dockerfile: "FROM busybox\nSTOPSIGNAL SIGNOPE\n", expect: /Dockerfile:2\n[\s\S]*Invalid signal: SIGNOPE/ },
    { name: "instruction before FROM", dockerfile: "ARG A=1\nRUN true\nFROM busybox\n", expect: /Dockerfile:2\n[\s\S]*no build stage in current context/ },
    { name: "bad chmod", dockerfile: "FROM busybox\nCOPY --chmod=999 Dockerfile /\n", expect: /Dockerfile:2\n[\s\S]*invalid chmod parameter: '999'/ },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const ctx = await env.context({ Dockerfile: c.dockerfile });
      const r = await env.run(["build", ctx, "-o", `type=local,dest=${dest}`]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, c.expect);
      await assert.rejects(access(dest));
    });
  }
});

test("the Dockerfile may be spelled dockerfile, or be a symlink to another file of the directory", async () => {
  const lower = await env.context({ dockerfile: "FROM busybox\nRUN echo lower > /which\n" });
  const a = await env.run(["build", lower, "-o", `type=local,dest=${path.join(env.tmp, "df-lower")}`]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal((await readFile(path.join(env.tmp, "df-lower", "which"), "utf8")).trim(), "lower");
  const linked = await env.context({ "Dockerfile.web": "FROM busybox\nRUN echo web > /which\n" });
  await symlink("Dockerfile.web", path.join(linked, "Dockerfile"));
  const b = await env.run(["build", linked, "-o", `type=local,dest=${path.join(env.tmp, "df-link")}`]);
  assert.equal(b.code, 0, b.stderr);
  assert.equal((await readFile(path.join(env.tmp, "df-link", "which"), "utf8")).trim(), "web");
  // A name given with -f is exact.
  const c = await env.run(["build", lower, "-f", path.join(lower, "Dockerfile.x"), "-o", `type=local,dest=${path.join(env.tmp, "df-none")}`]);
  assert.notEqual(c.code, 0);
});

test("named contexts: context:NAME=local:DIR replaces a stage (its .dockerignore applied), docker-image:// an image", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox AS base\nRUN false\nFROM scratch\nCOPY --from=base /o* /\nCOPY --from=box /bin/busybox /bb\n" });
  const base = await env.context({ out: "dummy\n", out2: "ignored\n", ".dockerignore": "out2\n" });
  const dest = path.join(env.tmp, "named-ctx");
  const r = await env.run([
    "build",
    "--frontend",
    "dockerfile.v0",
    "--local",
    `context=${ctx}`,
    "--local",
    `dockerfile=${ctx}`,
    "--local",
    `basedir=${base}`,
    "--opt",
    "context:base=local:basedir",
    "--opt",
    "context:box=docker-image://busybox",
    "-o",
    `type=local,dest=${dest}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(path.join(dest, "out"), "utf8"), "dummy\n");
  await assert.rejects(access(path.join(dest, "out2")));
  await access(path.join(dest, "bb"));
  const scratch = await env.run(["build", "--frontend", "dockerfile.v0", "--local", `context=${ctx}`, "--local", `dockerfile=${ctx}`, "--opt", "context:base=docker-image://scratch", "--opt", "context:box=local:nosuch", "-o", `type=local,dest=${dest}-2`]);
  assert.notEqual(scratch.code, 0, "a local context the client doesn't offer fails");
});
