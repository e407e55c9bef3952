// A mode=max cache export from kiln has the records BuildKit v0.11.6 exports for the same build
// (same digests, same links and selectors, results on the same records), recorded from the real
// BuildKit into test/compare/golden/cache/ by scripts/record-buildkit-cache-goldens.ts. Equal
// records are what let BuildKit import kiln's cache and kiln import BuildKit's.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, repoRoot, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";
import { cacheCases, diffGolden, normalizeCacheConfig, readLocalCacheConfig, writeCacheContext, type GoldenRecord } from "../compare/cache-cases.js";

let env: KilnEnv | undefined;
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

for (const c of cacheCases) {
  void test(`cache records of ${c.name} are BuildKit's`, async () => {
    env ??= await kilnEnv();
    const want = JSON.parse(await readFile(path.join(repoRoot, "test/compare/golden/cache", `${c.name}.json`), "utf8")) as GoldenRecord[];
    const ctx = path.join(env.tmp, "ctx", c.name);
    await writeCacheContext(ctx, c);
    const dest = path.join(env.tmp, `${c.name}-cache`);
    const r = await env.run(["build", ctx, "--export-cache", `type=local,dest=${dest},mode=${c.mode ?? "max"}`, ...(c.target ? ["--target", c.target] : [])]);
    assert.equal(r.code, 0, r.stderr);
    const got = normalizeCacheConfig(await readLocalCacheConfig(dest));
    assert.deepEqual(diffGolden(want, got), []);
    assert.ok(got.some((x) => x.layers > 0), "some records carry results");
  });
}
