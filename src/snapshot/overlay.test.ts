// OverlaySnapshotter against real overlayfs mounts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { link, mkdir, readFile, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../util/index.js";
import { mountsUnder, testEnv } from "./testhelpers.js";

const signal = new AbortController().signal;

test("prepare, write through a mount, commit, stack and remove", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;

  await s.prepare("base", undefined);
  assert.deepEqual(await s.stat("base"), { id: "base", parent: undefined, kind: "active" });
  assert.deepEqual((await s.mounts("base")).map((m) => m.type), ["bind"]);
  await writeFile(path.join(s.upperDir("base"), "a.txt"), "from base");
  await s.commit("base");
  await assert.rejects(s.commit("base"), (e: unknown) => e instanceof KilnError && e.code === "KILN_SNAPSHOT_COMMITTED");
  await assert.rejects(s.prepare("base", undefined), (e: unknown) => e instanceof KilnError && e.code === "KILN_SNAPSHOT_EXISTS");

  // A committed single layer is a read-only bind.
  {
    await using m = await s.mount(signal, "base", true);
    assert.equal(await readFile(path.join(m.path, "a.txt"), "utf8"), "from base");
    await assert.rejects(writeFile(path.join(m.path, "b.txt"), "x"), /EROFS/);
  }

  const longId = "sha256:" + "f".repeat(64) + "/with/slashes and spaces";
  await s.prepare(longId, "base");
  const specs = await s.mounts(longId);
  assert.equal(specs.length, 1);
  assert.equal(specs[0]!.type, "overlay");
  assert.ok(specs[0]!.options.includes("index=off"));
  assert.ok(specs[0]!.options.some((o) => o.startsWith("upperdir=") && o.endsWith(s.upperDir(longId))));
  {
    await using m = await s.mount(signal, longId);
    assert.equal(await readFile(path.join(m.path, "a.txt"), "utf8"), "from base");
    await writeFile(path.join(m.path, "c.txt"), "from child");
    assert.equal((await mountsUnder(env.dir)).length, 1);
  }
  assert.deepEqual(await mountsUnder(env.dir), []);
  assert.deepEqual(await readdir(s.upperDir(longId)), ["c.txt"]);
  await s.commit(longId);

  const ro = await s.mounts(longId, true);
  assert.equal(ro[0]!.type, "overlay");
  assert.ok(ro[0]!.options.some((o) => o === `lowerdir=${s.upperDir(longId)}:${s.upperDir("base")}`));

  await assert.rejects(s.prepare("orphan", "missing"), (e: unknown) => e instanceof KilnError && e.code === "KILN_SNAPSHOT_NOT_FOUND");
  await s.prepare("active-parent", undefined);
  await assert.rejects(s.prepare("x", "active-parent"), (e: unknown) => e instanceof KilnError && e.code === "KILN_SNAPSHOT_PARENT_ACTIVE");

  await assert.rejects(s.remove("base"), (e: unknown) => e instanceof KilnError && e.code === "KILN_SNAPSHOT_HAS_CHILDREN");
  await s.remove(longId);
  assert.equal(await s.stat(longId), undefined);
  await s.remove("base");
  assert.equal(await s.stat("base"), undefined);
  assert.equal(await s.stat("never"), undefined);
});

test("read-only view of an active snapshot and mount disposal is idempotent", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  await s.prepare("l1", undefined);
  await writeFile(path.join(s.upperDir("l1"), "one"), "1");
  await s.commit("l1");
  await s.prepare("l2", "l1");
  await writeFile(path.join(s.upperDir("l2"), "two"), "2");
  const m = await s.mount(signal, "l2", true);
  assert.deepEqual((await readdir(m.path)).sort(), ["one", "two"]);
  await assert.rejects(writeFile(path.join(m.path, "three"), "3"));
  await m[Symbol.asyncDispose]();
  await m[Symbol.asyncDispose]();
  await assert.rejects(stat(m.path), /ENOENT/);
});

test("a 200-layer stack mounts (lowerdirs made relative past the page limit)", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  const n = 200;
  let parent: string | undefined;
  for (let i = 0; i < n; i++) {
    const id = `layer-${i}`;
    await s.prepare(id, parent);
    await writeFile(path.join(s.upperDir(id), `f${i}`), String(i));
    await s.commit(id);
    parent = id;
  }
  const opts = (await s.mounts(parent!, true))[0]!.options.join(",");
  assert.ok(opts.length > 4096, `options are ${opts.length} bytes`);
  await s.prepare("top", parent);
  await using m = await s.mount(signal, "top");
  const names = await readdir(m.path);
  assert.equal(names.length, n);
  assert.equal(await readFile(path.join(m.path, "f0"), "utf8"), "0");
  await writeFile(path.join(m.path, "new"), "x");
  assert.equal(await readFile(path.join(s.upperDir("top"), "new"), "utf8"), "x");
});

test("usage counts hardlinked data once", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  await s.prepare("u", undefined);
  const up = s.upperDir("u");
  const empty = await s.usage("u");
  await mkdir(path.join(up, "d"));
  await writeFile(path.join(up, "d", "big"), Buffer.alloc(1 << 20, 1));
  const one = await s.usage("u");
  assert.ok(one - empty >= 1 << 20, `${one} - ${empty}`);
  await link(path.join(up, "d", "big"), path.join(up, "big2"));
  assert.equal(await s.usage("u"), one);
});

test("an aborted signal mounts nothing", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  await s.prepare("a", undefined);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(s.mount(ac.signal, "a"), (e: unknown) => e instanceof KilnError && e.code === "KILN_CANCELED");
  assert.deepEqual(await mountsUnder(env.dir), []);
});
