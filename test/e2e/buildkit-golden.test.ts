// Same result as BuildKit: each case of test/compare/cases.ts is built by kiln and compared with
// what the real BuildKit v0.11.6 produced from the same input (test/compare/golden/, recorded by
// scripts/record-buildkit-goldens.ts): the unpacked filesystem as changes from the base image,
// the image config and the history. Dockerfiles BuildKit rejects must fail with its message and
// the offending line.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { kilnEnv, stopSharedRegistry, repoRoot, type KilnEnv } from "../helpers/kiln.js";
import { busyboxLayout } from "../fixtures/busybox.js";
import { cases, caseFiles, checkFail, failCases, type FailGolden } from "../compare/cases.js";
import { imageFacts, layoutTree, diffFacts, type ImageFacts } from "../compare/facts.js";

let env: KilnEnv;
let base: Map<string, string>;

before(async () => {
  env = await kilnEnv();
  base = await layoutTree((await busyboxLayout()).dir);
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

for (const c of cases) {
  const goldenFile = path.join(repoRoot, "test/compare/golden", `${c.name}.json`);
  test(`as BuildKit: ${c.name}`, { skip: existsSync(goldenFile) ? false : "no golden recorded" }, async () => {
    const want = JSON.parse(readFileSync(goldenFile, "utf8")) as ImageFacts;
    const ctx = await env.context(caseFiles(c));
    const out = path.join(env.tmp, `${c.name}.tar`);
    const args = ["build", ctx, "-o", `type=oci,dest=${out}`];
    if (c.target) args.push("--target", c.target);
    for (const [k, v] of Object.entries(c.buildArgs ?? {})) args.push("--build-arg", `${k}=${v}`);
    const r = await env.run(args);
    assert.equal(r.code, 0, r.stderr);
    const got = await imageFacts(out, base);
    assert.deepEqual(diffFacts(want, got), []);
  });
}

for (const c of failCases) {
  const goldenFile = path.join(repoRoot, "test/compare/golden/fail", `${c.name}.json`);
  test(`rejected as BuildKit: ${c.name}`, { skip: existsSync(goldenFile) ? false : "no golden recorded" }, async () => {
    const want = JSON.parse(readFileSync(goldenFile, "utf8")) as FailGolden;
    const ctx = await env.context({ ...c.files, Dockerfile: c.dockerfile });
    const dest = path.join(env.tmp, `${c.name}.out`);
    const r = await env.run(["build", ctx, "-o", `type=local,dest=${dest}`]);
    assert.equal(r.code, 1, r.stderr);
    assert.deepEqual(checkFail(want, r.stderr), []);
    assert.doesNotMatch(r.stderr, /\n\s+at .*\.(ts|js|cjs|mjs):\d+/, "no stack trace");
    assert.equal(existsSync(dest), false, "nothing written");
  });
}
