// Garbage collection through the CLI: the cap holds across many builds (also concurrent ones),
// `kiln du` accounts for the whole root, and a running build's data survives a prune.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
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

const MB = 1024 * 1024;

async function gcConfig(name: string, extra: string): Promise<string> {
  const file = path.join(env.tmp, `${name}.toml`);
  await writeFile(file, `${await readFile(env.config, "utf8")}\n[worker.oci]\n${extra}\n`);
  return file;
}

/** The sum of the cache records `kiln du` lists (its internal metadata record left out). */
async function recordsBytes(root: string, config: string): Promise<number> {
  const r = await env.run(["--root", root, "--config", config, "du", "--format", "json"]);
  assert.equal(r.code, 0, r.stderr);
  const records = JSON.parse(r.stdout) as { id: string; size: number }[];
  return records.filter((x) => x.id !== "kiln-metadata").reduce((a, x) => a + x.size, 0);
}

async function duSb(dir: string): Promise<number> {
  return Number((await sh("du", ["-sb", dir])).stdout.split("\t")[0]);
}

const writer = (n: number, mb: number) => ({
  Dockerfile: `FROM busybox\nARG N\nRUN head -c ${mb * 1000000} /dev/urandom > /data-$N\n`,
  n: String(n),
});

test("maxUsedSpace holds across 20 builds, and with 4 concurrent builds that overshoot the headroom", async () => {
  const cap = 30 * MB;
  const config = await gcConfig("cap", `maxUsedSpace = "30MB"`);
  const root = path.join(env.tmp, "gc-root");
  const files = writer(0, 3);
  const ctx = await env.context({ Dockerfile: files.Dockerfile });
  for (let i = 0; i < 20; i++) {
    const r = await env.run(["--root", root, "--config", config, "build", ctx, "--build-arg", `N=${i}`]);
    assert.equal(r.code, 0, r.stderr);
    const used = await recordsBytes(root, config);
    assert.ok(used <= cap, `after build ${i + 1}: ${used} bytes in records > cap ${cap}`);
  }
  // Four at once, 10 MB each: more than the headroom left, so collection must make room first.
  const big = await env.context({ Dockerfile: writer(0, 10).Dockerfile });
  const runs = await Promise.all([0, 1, 2, 3].map((i) => env.run(["--root", root, "--config", config, "build", big, "--build-arg", `N=c${i}`])));
  for (const r of runs) assert.equal(r.code, 0, r.stderr);
  const used = await recordsBytes(root, config);
  assert.ok(used <= cap, `after the concurrent builds: ${used} > ${cap}`);
  // `kiln du` counts the whole root: its total matches du -sb within 5%.
  const du = await env.run(["--root", root, "--config", config, "du", "--format", "json"]);
  const total = (JSON.parse(du.stdout) as { size: number }[]).reduce((a, x) => a + x.size, 0);
  const real = await duSb(root);
  assert.ok(Math.abs(total - real) / real < 0.05, `kiln du ${total} vs du -sb ${real}`);
});

test("kiln du prints buildctl's table; prune --all empties the cache", async () => {
  const root = path.join(env.tmp, "du-root");
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo hi > /hi\n" });
  const r = await env.run(["--root", root, "--config", env.config, "build", ctx]);
  assert.equal(r.code, 0, r.stderr);
  const du = await env.run(["--root", root, "--config", env.config, "du"]);
  assert.equal(du.code, 0, du.stderr);
  const lines = du.stdout.split("\n");
  assert.equal(lines[0], "ID\t\t\t\t\t\t\t\t\tRECLAIMABLE\tSIZE\t\tLAST ACCESSED");
  assert.match(lines[1]!, /^[0-9a-f]{24} {47}\ttrue {7}\t[\d.]+(kB|MB|B)\t+$/);
  assert.match(du.stdout, /\nReclaimable:\t[\d.]+(kB|MB)\nTotal:\t\t[\d.]+(kB|MB)\n$/);
  const prune = await env.run(["--root", root, "--config", env.config, "prune", "--all"]);
  assert.equal(prune.code, 0, prune.stderr);
  assert.match(prune.stdout, /^ID\t+RECLAIMABLE\tSIZE\t+LAST ACCESSED\n/);
  assert.match(prune.stdout, /\nTotal:\t[\d.]+(kB|MB)\n$/);
  assert.equal(await recordsBytes(root, env.config), 0);
  const verbose = await env.run(["--root", root, "--config", env.config, "du", "-v"]);
  assert.match(verbose.stdout, /^ID:\t\tkiln-metadata\n/);
});

test("a running build's refs survive a prune from another process", async () => {
  const root = path.join(env.tmp, "prune-root");
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN head -c 2000000 /dev/urandom > /a\nRUN sleep 3 && cp /a /b\n" });
  const dest = path.join(env.tmp, "prune-out");
  const building = env.run(["--root", root, "--config", env.config, "build", ctx, "-o", `type=local,dest=${dest}`]);
  // Wait until the second RUN is running, then prune everything that can go.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { stdout } = await sh("runc", ["list", "-q"]);
    if (stdout.includes("kiln-")) break;
    if (Date.now() > deadline) throw new Error("the build never reached its RUN");
    await sleep(100);
  }
  await sleep(1500);
  const prune = await env.run(["--root", root, "--config", env.config, "prune", "--all"]);
  assert.equal(prune.code, 0, prune.stderr);
  const r = await building;
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await readFile(path.join(dest, "b")), await readFile(path.join(dest, "a")));
});
