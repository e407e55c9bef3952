// kill -9 at awkward moments, then start again on the same root: the next build is correct, and
// nothing half-made survives — no corrupt blob, no ref without its snapshot, no snapshot without
// its ref, no mount, no container — while a live build sharing the root keeps its work.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readdir, readFile } from "node:fs/promises";
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

async function waitFor(what: string, cond: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

const containerOf = async (pid: number) => (await sh("runc", ["list", "-q"])).stdout.includes(`kiln-${pid}-`);

async function sha256File(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Every blob under `dir` (an OCI layout's or the content store's blobs/sha256) matches its name. */
async function assertBlobsIntact(dir: string): Promise<number> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) assert.equal(await sha256File(path.join(dir, name)), name, `blob ${name} is corrupt`);
  return names.length;
}

/**
 * The root is consistent: every blob matches its digest, no partial blob, refs and snapshots
 * match one to one (nothing is running, so no lease holds anything), no mount, no container.
 */
async function assertConsistent(root: string): Promise<void> {
  assert.ok((await assertBlobsIntact(path.join(root, "content", "blobs", "sha256"))) > 0);
  assert.deepEqual(await readdir(path.join(root, "content", "ingest")).catch(() => []), [], "no partial blobs");
  const db = new Database(path.join(root, "metadata.db"), { readonly: true });
  let refs: string[];
  let leases: number;
  try {
    refs = (db.prepare("SELECT id FROM refs").all() as { id: string }[]).map((r) => r.id).sort();
    leases = (db.prepare("SELECT COUNT(*) AS n FROM leases").get() as { n: number }).n;
    const dangling = db.prepare("SELECT COUNT(*) AS n FROM cache_keys WHERE ref NOT IN (SELECT id FROM refs)").get() as { n: number };
    assert.equal(dangling.n, 0, "no cache record without its ref");
  } finally {
    db.close();
  }
  assert.equal(leases, 0, "every lease ended with its process (or was reaped)");
  const snapDir = path.join(root, "snapshots", "snapshots");
  const snaps: string[] = [];
  for (const key of await readdir(snapDir)) {
    assert.ok(!key.startsWith(".tmp-"), `half-made snapshot dir ${key}`);
    const meta = JSON.parse(await readFile(path.join(snapDir, key, "meta.json"), "utf8")) as { id: string; kind: string };
    assert.equal(meta.kind, "committed", `snapshot ${meta.id} left active`);
    snaps.push(meta.id);
  }
  assert.deepEqual(snaps.sort(), refs, "refs and snapshots match one to one");
  const { stdout: mounts } = await sh("findmnt", ["-rn", "-o", "TARGET"]);
  assert.deepEqual(mounts.split("\n").filter((m) => m.startsWith(root)), [], "no mounts left under the root");
  const { stdout: containers } = await sh("runc", ["list", "-q"]);
  assert.ok(!containers.split("\n").some((l) => l.startsWith("kiln-")), `containers left: ${containers}`);
}

/** `seq` output, the deterministic data the builds below write. */
function seqBytes(from: number, to: number): string {
  let s = "";
  for (let i = from; i <= to; i++) s += `${i}\n`;
  return s;
}

const writerDockerfile = "FROM busybox\nRUN for i in $(seq 1 40); do seq 1 20000 >> /d; sleep 0.05; done; echo done > /marker\n";
const expectedD = createHash("sha256").update(seqBytes(1, 20000).repeat(40)).digest("hex");

test("kill -9 during a RUN that writes, then rebuild: the right result, a clean root", async () => {
  const root = path.join(env.tmp, "crash-run-root");
  const ctx = await env.context({ Dockerfile: writerDockerfile });
  let pid = 0;
  const first = env.run(["--root", root, "build", ctx], { onSpawn: (p) => (pid = p) });
  await waitFor("the RUN to start", () => containerOf(pid));
  await sleep(700);
  process.kill(pid, "SIGKILL");
  assert.equal((await first).signal, "SIGKILL");
  const dest = path.join(env.tmp, "crash-run-out");
  const second = await env.run(["--root", root, "build", ctx, "-o", `type=local,dest=${dest}`]);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(await readFile(path.join(dest, "marker"), "utf8"), "done\n");
  assert.equal(await sha256File(path.join(dest, "d")), expectedD);
  await assertConsistent(root);
});

test("kill -9 during export, then rebuild: a valid image, a clean root", async () => {
  const root = path.join(env.tmp, "crash-export-root");
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN head -c 80000000 /dev/urandom > /big\n" });
  const outDir = path.join(env.tmp, "crash-export-out");
  await mkdir(outDir, { recursive: true });
  const dest = path.join(outDir, "image.tar");
  let pid = 0;
  const first = env.run(["--root", root, "build", ctx, "-o", `type=oci,dest=${dest}`], { onSpawn: (p) => (pid = p) });
  await waitFor("the export to start", async () => (await readdir(outDir)).some((f) => f.endsWith(".tmp")));
  process.kill(pid, "SIGKILL");
  assert.equal((await first).signal, "SIGKILL");
  const second = await env.run(["--root", root, "build", ctx, "-o", `type=oci,dest=${dest}`]);
  assert.equal(second.code, 0, second.stderr);
  const inspect = JSON.parse((await sh("skopeo", ["inspect", `oci-archive:${dest}`])).stdout) as { Layers: string[] };
  assert.equal(inspect.Layers.length, 2);
  // Every blob of the exported image matches its digest.
  const layout = path.join(outDir, "layout");
  await mkdir(layout);
  await sh("tar", ["-xf", dest, "-C", layout]);
  assert.ok((await assertBlobsIntact(path.join(layout, "blobs", "sha256"))) >= 4);
  await assertConsistent(root);
});

test("kill -9 at random moments of a multi-step build; a live build sharing the root keeps its work", async () => {
  const root = path.join(env.tmp, "crash-random-root");
  const ctx = await env.context({
    Dockerfile: "FROM busybox\nARG N\nRUN seq 1 300000 > /a-$N\nCOPY f /f\nRUN for i in $(seq 1 10); do cat /a-$N >> /b; sleep 0.05; done\nRUN sleep 0.3 && wc -l < /b > /lines\n",
    f: "context file\n",
  });
  // A long build runs on the same root the whole time: the crashed builds' recovery must leave it alone.
  const liveCtx = await env.context({ Dockerfile: "FROM busybox\nRUN seq 1 100000 > /x && sleep 5 && cp /x /y\n" });
  const liveDest = path.join(env.tmp, "crash-live-out");
  const live = env.run(["--root", root, "build", liveCtx, "-o", `type=local,dest=${liveDest}`]);
  const delays = [150, 450, 800, 1200, 1700];
  for (const [i, ms] of delays.entries()) {
    let pid = 0;
    const run = env.run(["--root", root, "build", ctx, "--build-arg", `N=${i % 2}`, "-o", `type=local,dest=${path.join(env.tmp, `crash-random-${i}`)}`], { onSpawn: (p) => (pid = p) });
    await sleep(ms);
    assert.ok(pid > 0);
    try {
      process.kill(pid, "SIGKILL");
    } catch (err) {
      // A build that finished (cached) before its moment came is simply not killed.
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
    await run;
  }
  const dest = path.join(env.tmp, "crash-random-out");
  const final = await env.run(["--root", root, "build", ctx, "--build-arg", "N=1", "-o", `type=local,dest=${dest}`]);
  assert.equal(final.code, 0, final.stderr);
  assert.equal(await readFile(path.join(dest, "lines"), "utf8"), "3000000\n");
  assert.equal(await readFile(path.join(dest, "f"), "utf8"), "context file\n");
  const l = await live;
  assert.equal(l.code, 0, l.stderr);
  assert.equal(await sha256File(path.join(liveDest, "y")), createHash("sha256").update(seqBytes(1, 100000)).digest("hex"));
  // One more start cleans up whatever the last kill left while the live build still ran.
  const last = await env.run(["--root", root, "du"]);
  assert.equal(last.code, 0, last.stderr);
  await assertConsistent(root);
});
