// kill -9 at awkward moments, then start again on the same root: the next build is correct, and
// nothing half-made survives — no corrupt blob, no ref without its snapshot, no snapshot without
// its ref, no mount, no container.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
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
    await sleep(50);
  }
}

async function sha256File(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** The root is consistent: every blob matches its digest, refs and snapshots match one to one. */
async function assertConsistent(root: string): Promise<void> {
  const blobs = path.join(root, "content", "blobs", "sha256");
  for (const name of await readdir(blobs).catch(() => [] as string[])) assert.equal(await sha256File(path.join(blobs, name)), name, `blob ${name} is corrupt`);
  assert.deepEqual(await readdir(path.join(root, "content", "ingest")).catch(() => []), [], "no partial blobs");
  const db = new Database(path.join(root, "metadata.db"), { readonly: true });
  let refs: string[];
  try {
    refs = (db.prepare("SELECT id FROM refs").all() as { id: string }[]).map((r) => r.id).sort();
  } finally {
    db.close();
  }
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
  assert.ok(!mounts.split("\n").some((m) => m.startsWith(root)), `mounts left under the root:\n${mounts}`);
  const { stdout: containers } = await sh("runc", ["list", "-q"]);
  assert.ok(!containers.split("\n").some((l) => l.startsWith("kiln-")), `containers left: ${containers}`);
}

test("kill -9 during a RUN, then rebuild: correct result, clean root", async () => {
  const root = path.join(env.tmp, "crash-run-root");
  const ctx = await env.context({
    Dockerfile: "FROM busybox\nRUN for i in $(seq 1 40); do head -c 100000 /dev/urandom >> /d; sleep 0.05; done; echo done > /marker\n",
  });
  let pid = 0;
  const first = env.run(["--root", root, "build", ctx], { onSpawn: (p) => (pid = p) });
  await waitFor("the RUN to start", async () => (await sh("runc", ["list", "-q"])).stdout.includes(`kiln-${pid}-`));
  await sleep(500);
  process.kill(pid, "SIGKILL");
  await first;
  const dest = path.join(env.tmp, "crash-run-out");
  const second = await env.run(["--root", root, "build", ctx, "-o", `type=local,dest=${dest}`]);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(await readFile(path.join(dest, "marker"), "utf8"), "done\n");
  assert.equal((await readFile(path.join(dest, "d"))).length, 4_000_000);
  await assertConsistent(root);
});

test("kill -9 during export, then rebuild: a valid image, clean root", async () => {
  const root = path.join(env.tmp, "crash-export-root");
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN head -c 80000000 /dev/urandom > /big\n" });
  const outDir = path.join(env.tmp, "crash-export-out");
  await sh("mkdir", ["-p", outDir]);
  const dest = path.join(outDir, "image.tar");
  let pid = 0;
  const first = env.run(["--root", root, "build", ctx, "-o", `type=oci,dest=${dest}`], { onSpawn: (p) => (pid = p) });
  await waitFor("the export to start", async () => (await readdir(outDir)).some((f) => f.endsWith(".tmp")));
  process.kill(pid, "SIGKILL");
  await first;
  const second = await env.run(["--root", root, "build", ctx, "-o", `type=oci,dest=${dest}`]);
  assert.equal(second.code, 0, second.stderr);
  const inspect = JSON.parse((await sh("skopeo", ["inspect", `oci-archive:${dest}`])).stdout) as { Layers: string[] };
  assert.equal(inspect.Layers.length, 2);
  await assertConsistent(root);
});
