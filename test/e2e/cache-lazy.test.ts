// Lazy refs from a cache import: a fully cached build whose output is a tarball downloads only the
// blobs of the image and unpacks none of them; a later RUN on top of the imported result unpacks
// it (once) and works.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import path from "node:path";
import Database from "better-sqlite3";
import { envPool, stepStates, type KilnEnv } from "../helpers/kiln.js";

const envs = envPool();
after(() => envs.closeAll());
const freshEnv = () => envs.fresh();

const dockerfile = [
  "FROM busybox AS build",
  "COPY a.txt /a",
  "RUN echo built-$(cat /a) > /out",
  "FROM busybox",
  "COPY --from=build /out /out",
  "RUN cat /out > /final",
].join("\n");

interface RefRow {
  id: string;
  parent: string | null;
  description: string;
  lazy: number | null;
  blob_digest: string | null;
  size: number | null;
}

function refsOf(env: KilnEnv): RefRow[] {
  const db = new Database(path.join(env.root, "metadata.db"), { readonly: true });
  try {
    return db.prepare("SELECT id, parent, description, lazy, blob_digest, size FROM refs").all() as RefRow[];
  } finally {
    db.close();
  }
}

/** Snapshot directories on disk (temp and trash entries aside). */
async function snapshotsOf(env: KilnEnv): Promise<string[]> {
  return (await readdir(path.join(env.root, "snapshots", "snapshots")).catch(() => [] as string[])).filter((n) => !n.startsWith("."));
}

/** The overlay snapshotter's directory name for a snapshot id. */
function snapshotDir(id: string): string {
  return createHash("sha256").update(id).digest("hex").slice(0, 12);
}

function layersOf(tar: string): string[] {
  const read = (name: string) => execFileSync("tar", ["-xOf", tar, name]).toString("utf8");
  const index = JSON.parse(read("index.json")) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(read(`blobs/${index.manifests[0]!.digest.replace(":", "/")}`)) as { layers: { digest: string }[] };
  return manifest.layers.map((l) => l.digest);
}

function ranSteps(stderr: string): string[] {
  return [...stepStates(stderr)].filter(([name, st]) => name.includes(" RUN ") && st === "DONE").map(([name]) => name);
}

test("a fully cached import into a tarball fetches only the image's blobs and unpacks none; a RUN on top unpacks them", async () => {
  const a = await freshEnv();
  const files = { Dockerfile: dockerfile, "a.txt": `lazy ${process.pid}\n` };
  const cacheDir = path.join(a.tmp, "cache");
  const first = await a.run(["build", await a.context(files), "-o", `type=oci,dest=${path.join(a.tmp, "out.tar")}`, "--export-cache", `type=local,dest=${cacheDir},mode=max`]);
  assert.equal(first.code, 0, first.stderr);

  const b = await freshEnv();
  const out = path.join(b.tmp, "out.tar");
  const second = await b.run(["build", await b.context(files), "-o", `type=oci,dest=${out}`, "--import-cache", `type=local,src=${cacheDir}`]);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(ranSteps(second.stderr), [], second.stderr);
  const image = layersOf(out);
  assert.deepEqual(image, layersOf(path.join(a.tmp, "out.tar")));

  // The imported chain is recorded as lazy refs with their blobs, and nothing was extracted.
  const refs = refsOf(b);
  const imported = refs.filter((r) => r.description === "pulled from remote cache");
  assert.equal(imported.length, image.length, JSON.stringify(refs));
  assert.ok(imported.every((r) => r.lazy === 1 && r.size === 0), JSON.stringify(imported));
  assert.deepEqual(imported.map((r) => r.blob_digest).sort(), [...image].sort());
  const dirs = await snapshotsOf(b);
  assert.deepEqual(imported.filter((r) => dirs.includes(snapshotDir(r.id))), [], "no imported layer was unpacked");
  assert.ok(refs.filter((r) => r.lazy !== 1).length === dirs.length, "every other ref (the build's local sources) has its snapshot");
  // Only the image's blobs were downloaded (and the tarball took them as they are).
  const blobs = (await readdir(path.join(b.root, "content", "blobs", "sha256"))).map((h) => `sha256:${h}`);
  for (const d of image) assert.ok(blobs.includes(d), `blob ${d} is in the content store`);
  const cacheBlobs = (await readdir(path.join(cacheDir, "blobs", "sha256"))).map((h) => `sha256:${h}`);
  assert.deepEqual(blobs.filter((d) => cacheBlobs.includes(d) && !image.includes(d)), [], "no other cache layer was fetched");

  // A RUN on top of the imported result: the lazy chain is unpacked, the RUN sees its files.
  const more = { ...files, Dockerfile: `${dockerfile}\nRUN cat /final /out > /again && test -s /again && echo saw-$(cat /final)` };
  const third = await b.run(["build", await b.context(more), "-o", `type=oci,dest=${out}`, "--import-cache", `type=local,src=${cacheDir}`]);
  assert.equal(third.code, 0, third.stderr);
  const ran = ranSteps(third.stderr);
  assert.equal(ran.length, 1, third.stderr);
  assert.match(third.stderr, new RegExp(`saw-built-lazy ${process.pid}`));
  const after = refsOf(b).filter((r) => r.description === "pulled from remote cache");
  assert.ok(after.every((r) => r.lazy === 0 && r.size !== null), JSON.stringify(after));
  const dirsAfter = await snapshotsOf(b);
  assert.deepEqual(after.filter((r) => !dirsAfter.includes(snapshotDir(r.id))), [], "the imported layers were unpacked for the RUN");
  const files2 = execFileSync("tar", ["-tf", out]).toString("utf8");
  assert.match(files2, /index\.json/);
});
