// Garbage collection through the CLI: the cap holds across many builds, also while concurrent
// processes commit more than the headroom (sampled from the database as they run), `kiln du`
// accounts for the whole root, and a running build's data survives a prune.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
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

const MiB = 1024 * 1024;

async function gcConfig(name: string, extra: string): Promise<string> {
  const file = path.join(env.tmp, `${name}.toml`);
  await writeFile(file, `${await readFile(env.config, "utf8")}\n[worker.oci]\n${extra}\n`);
  return file;
}

interface DuRecord {
  id: string;
  size: number;
  inUse: boolean;
  recordType: string;
}

async function du(root: string, config: string): Promise<DuRecord[]> {
  const r = await env.run(["--root", root, "--config", config, "du", "--format", "{{json .}}"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as DuRecord[];
}

/** The sum of the cache records `kiln du` lists (its internal record for the rest of the root left out). */
async function recordsBytes(root: string, config: string): Promise<number> {
  return (await du(root, config)).filter((x) => x.recordType !== "internal").reduce((a, x) => a + x.size, 0);
}

async function duBytes(dir: string, apparent: boolean): Promise<number> {
  return Number((await sh("du", apparent ? ["-sb", dir] : ["-s", "-B1", dir])).stdout.split("\t")[0]);
}

/**
 * Committed bytes as the database records them (snapshots, distinct layer blobs), read by an
 * observer while builds run: what the cap is about.
 */
function committedBytes(db: Database.Database): number {
  const row = db
    .prepare(
      `SELECT (SELECT COALESCE(SUM(size), 0) FROM refs) +
              (SELECT COALESCE(SUM(s), 0) FROM (SELECT MAX(blob_size) AS s FROM refs WHERE blob_digest IS NOT NULL GROUP BY blob_digest)) AS n`,
    )
    .get() as { n: number };
  return row.n;
}

/** Samples committedBytes every few ms until stopped; returns the peak. */
function sampler(root: string): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    let db: Database.Database | undefined;
    try {
      while (running) {
        try {
          db ??= new Database(path.join(root, "metadata.db"), { readonly: true, fileMustExist: true });
          peak = Math.max(peak, committedBytes(db));
        } catch {
          // not created yet, or busy for a moment
        }
        await sleep(10);
      }
    } finally {
      db?.close();
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

test("maxUsedSpace holds across 20 builds, and while 4 concurrent builds each write more than the headroom", async () => {
  const cap = 30 * MiB;
  const config = await gcConfig("cap", `maxUsedSpace = "30MB"`);
  const root = path.join(env.tmp, "gc-root");
  const t0 = Date.now();
  const ctx = await env.context({ Dockerfile: `FROM busybox\nARG N\nRUN head -c 3000000 /dev/urandom > /data-$N\n` });
  const seq = sampler(root);
  let maxRoot = 0;
  for (let i = 0; i < 20; i++) {
    const r = await env.run(["--root", root, "--config", config, "build", ctx, "--build-arg", `N=${i}`]);
    assert.equal(r.code, 0, r.stderr);
    maxRoot = Math.max(maxRoot, await duBytes(root, true));
  }
  const seqPeak = await seq.stop();
  const seqMs = Date.now() - t0;
  assert.ok(seqPeak <= cap, `while building one at a time: ${seqPeak} committed bytes > cap ${cap}`);
  const before = await recordsBytes(root, config);
  assert.ok(before <= cap && before > cap - 6 * MiB, `${before} bytes kept: near the cap, not over it`);

  // Four at once, 6 MB each: more than the headroom left, so collection has to make room first
  // — before the commits, while the other builds are running.
  const t1 = Date.now();
  const big = await env.context({ Dockerfile: `FROM busybox\nARG N\nRUN head -c 6000000 /dev/urandom > /big-$N\n` });
  const conc = sampler(root);
  const runs = await Promise.all([0, 1, 2, 3].map((i) => env.run(["--root", root, "--config", config, "build", big, "--build-arg", `N=c${i}`])));
  const concPeak = await conc.stop();
  const concMs = Date.now() - t1;
  for (const r of runs) assert.equal(r.code, 0, r.stderr);
  assert.ok(concPeak <= cap, `while 4 builds ran at once: ${concPeak} committed bytes > cap ${cap}`);
  const after = await du(root, config);
  assert.ok(after.filter((x) => x.recordType !== "internal").reduce((a, x) => a + x.size, 0) <= cap);
  assert.ok(after.every((x) => x.recordType === "internal" || !x.inUse), "nothing stays held once the builds are done");

  // `kiln du` counts the whole root: its total matches du -sb (and du -s) within 5%.
  const total = after.reduce((a, x) => a + x.size, 0);
  const apparent = await duBytes(root, true);
  const allocated = await duBytes(root, false);
  const dApparent = (total - apparent) / apparent;
  const dAllocated = (total - allocated) / allocated;
  assert.ok(Math.abs(dApparent) < 0.05, `kiln du ${total} vs du -sb ${apparent}`);
  assert.ok(Math.abs(dAllocated) < 0.05, `kiln du ${total} vs du -s -B1 ${allocated}`);
  // The numbers, for the record.
  console.log(
    `# gc: cap ${cap}; 20 builds in ${seqMs} ms, peak committed ${seqPeak}, peak du -sb ${maxRoot}; ` +
      `4 concurrent in ${concMs} ms, peak committed ${concPeak}; kiln du ${total} vs du -sb ${apparent} (${(dApparent * 100).toFixed(2)}%) vs du -s ${allocated} (${(dAllocated * 100).toFixed(2)}%)`,
  );
});

test("kiln du prints buildctl's table; prune --all empties the cache", async () => {
  const root = path.join(env.tmp, "du-root");
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo hi > /hi\n" });
  const r = await env.run(["--root", root, "--config", env.config, "build", ctx]);
  assert.equal(r.code, 0, r.stderr);
  const out = await env.run(["--root", root, "--config", env.config, "du"]);
  assert.equal(out.code, 0, out.stderr);
  const lines = out.stdout.split("\n");
  assert.equal(lines[0], "ID\t\t\t\t\t\t\t\t\tRECLAIMABLE\tSIZE\t\tLAST ACCESSED");
  assert.match(lines[1]!, /^[0-9a-f]{24} {47}\ttrue {7}\t[\d.]+(kB|MB|B)\t+$/);
  assert.match(out.stdout, /\nkiln-metadata\* {57}\tfalse {6}\t[\d.]+(kB|MB)\t+\n/);
  assert.match(out.stdout, /\nReclaimable:\t[\d.]+(kB|MB)\nTotal:\t\t[\d.]+(kB|MB)\n$/);
  // Sorted by size, as buildctl sorts them.
  const records = await du(root, env.config);
  assert.deepEqual(records.map((x) => x.size), records.map((x) => x.size).sort((a, b) => a - b));
  const verbose = await env.run(["--root", root, "--config", env.config, "du", "-v"]);
  assert.match(verbose.stdout, /^ID:\t\t[0-9a-f]{24}\nParents:\t[0-9a-f]{24}\nCreated at:\t\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC\nMutable:\tfalse\nReclaimable:\ttrue\nShared:\t\tfalse\nSize:\t\t[\d.]+k?B\nDescription:\t/m);
  assert.match(verbose.stdout, /\nUsage count:\t\d+\nLast used:\t.* \+0000 UTC\nType:\t\tregular\n\n/);
  const filtered = await env.run(["--root", root, "--config", env.config, "du", "--filter", "type==regular"]);
  assert.doesNotMatch(filtered.stdout, /Total:/, "no summary with a filter, as buildctl");

  const prune = await env.run(["--root", root, "--config", env.config, "prune", "--all"]);
  assert.equal(prune.code, 0, prune.stderr);
  assert.match(prune.stdout, /^ID\t+RECLAIMABLE\tSIZE\t+LAST ACCESSED\n([0-9a-f]{24} +\ttrue +\t[\d.]+k?M?B\t+\n)+Total:\t[\d.]+(kB|MB)\n$/);
  assert.equal(await recordsBytes(root, env.config), 0);
  const empty = await env.run(["--root", root, "--config", env.config, "prune"]);
  assert.equal(empty.stdout, "Total:\t0B\n");
});

test("a running build's refs survive a prune from another process", async () => {
  const root = path.join(env.tmp, "prune-root");
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN head -c 2000000 /dev/urandom > /a\nRUN sleep 3 && cp /a /b\n" });
  const dest = path.join(env.tmp, "prune-out");
  let pid = 0;
  const building = env.run(["--root", root, "--config", env.config, "build", ctx, "-o", `type=local,dest=${dest}`], { onSpawn: (p) => (pid = p) });
  // Wait until the second RUN is running, then prune everything that can go.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { stdout } = await sh("runc", ["list", "-q"]);
    if (stdout.includes(`kiln-${pid}-`)) break;
    if (Date.now() > deadline) throw new Error("the build never reached its RUN");
    await sleep(100);
  }
  await sleep(500);
  const prune = await env.run(["--root", root, "--config", env.config, "prune", "--all"]);
  assert.equal(prune.code, 0, prune.stderr);
  const r = await building;
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await readFile(path.join(dest, "b")), await readFile(path.join(dest, "a")));
  // Once it is done, its refs can go.
  const again = await env.run(["--root", root, "--config", env.config, "prune", "--all"]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^[0-9a-f]{24} +\ttrue /m);
  assert.equal(await recordsBytes(root, env.config), 0);
});
