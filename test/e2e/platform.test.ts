// Foreign platforms: RUN steps for arm64 execute under QEMU registered through binfmt_misc; a
// platform with no emulator fails before anything runs, saying how to enable one.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

let env: KilnEnv;
before(async () => {
  env = await kilnEnv();
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

test("kiln binfmt registers QEMU for arm64 and an arm64 RUN runs under it", async () => {
  const reg = await env.run(["binfmt", "--install", "arm64"]);
  assert.equal(reg.code, 0, reg.stderr);
  const status = JSON.parse(reg.stdout) as { supported: string[]; emulators: string[] };
  assert.ok(status.supported.includes("linux/arm64"), reg.stdout);
  assert.ok(status.emulators.includes("qemu-aarch64"));
  const ctx = await env.context({ Dockerfile: "FROM --platform=linux/arm64 busybox\nRUN uname -m > /m\n" });
  const dest = path.join(env.tmp, "arm64-out");
  const r = await env.run(["build", ctx, "-o", `type=local,dest=${dest}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(path.join(dest, "m"), "utf8"), "aarch64\n");
});

test("a platform with no emulator fails before anything runs", async () => {
  const ctx = await env.context({ Dockerfile: "FROM --platform=linux/s390x scratch\nRUN true\n" });
  const r = await env.run(["build", ctx]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no emulator for linux\/s390x: this machine runs linux\//);
  assert.match(r.stderr, /kiln binfmt --install/);
  assert.doesNotMatch(r.stderr, /RUN true/, "no step started");
});
