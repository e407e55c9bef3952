// applyLayer: GNU tar layers (whiteouts, opaque dirs, hardlinks, devices, xattrs, long names)
// checked through a real overlay mount, and hostile tars that must write nothing outside.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmod, chown, link, lstat, mkdir, readFile, readdir, readlink, stat, symlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { getAttribute, setAttribute } from "@napi-rs/xattr";
import { makeTempDir } from "../util/index.js";
import { applyLayer, UnsafeLayerError } from "./apply.js";
import { chunked, craftTar, gnuTar, runOk, testEnv } from "./testhelpers.js";
import { TypeDir, TypeLink, TypeSymlink } from "./tarwriter.js";
import type { OverlaySnapshotter } from "./overlay.js";

const signal = new AbortController().signal;
const CAP = Buffer.from([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // cap_net_raw+p
const T = 1_600_000_000;

async function stage(root: string, name: string): Promise<string> {
  const d = path.join(root, name);
  await mkdir(d, { recursive: true });
  return d;
}

async function put(root: string, rel: string, content: string | Buffer, mode = 0o644): Promise<void> {
  const p = path.join(root, rel);
  await mkdir(path.dirname(p), { recursive: true });
  await writeFile(p, content);
  await chmod(p, mode);
}

async function layer(s: OverlaySnapshotter, id: string, parent: string | undefined, tar: Buffer): Promise<{ diffId: string; size: number }> {
  await s.prepare(id, parent);
  const r = await applyLayer(signal, s, id, chunked(tar, 3000));
  await s.commit(id);
  return r;
}

test("apply GNU tar layers and check the merged view through overlay", async () => {
  await using env = await testEnv();
  await using work = await makeTempDir(env.dir, "stage-");
  const s = env.snapshotter;

  const b = await stage(work.path, "base");
  await put(b, "etc/passwd", "root:x:0:0\n");
  await put(b, "keep.txt", "keep");
  await put(b, "gone.txt", "gone");
  await put(b, "var/lib/data/a", "a");
  await put(b, "var/lib/data/b", "b");
  await put(b, "opt/old/x", "x");
  await put(b, "opt/stay", "stay");
  await symlink("/usr/lib", path.join(b, "lib"));
  const baseTar = await gnuTar(b);
  const r1 = await layer(s, "l1", undefined, baseTar);
  assert.equal(r1.diffId, `sha256:${createHash("sha256").update(baseTar).digest("hex")}`);
  assert.equal(r1.size, baseTar.length);

  const t = await stage(work.path, "top");
  await put(t, ".wh.gone.txt", "");
  await put(t, "var/lib/data/.wh..wh..opq", "");
  await put(t, "var/lib/data/c", "c");
  await put(t, "opt/.wh.old", "");
  await put(t, "hl/a", "hardlinked");
  await link(path.join(t, "hl/a"), path.join(t, "hl/b"));
  await mkdir(path.join(t, "usr/bin"), { recursive: true });
  await symlink("../usr/bin/tool", path.join(t, "usr/sym"));
  await put(t, "usr/bin/tool", "#!/bin/sh\n", 0o755);
  await put(t, "usr/bin/su", "su", 0o755);
  await chown(path.join(t, "usr/bin/su"), 1000, 1001);
  await chmod(path.join(t, "usr/bin/su"), 0o4755);
  await mkdir(path.join(t, "tmp"));
  await chmod(path.join(t, "tmp"), 0o1777);
  await mkdir(path.join(t, "run"));
  await runOk("mkfifo", ["-m", "0640", path.join(t, "run/fifo")]);
  await mkdir(path.join(t, "dev"));
  await runOk("mknod", ["-m", "0666", path.join(t, "dev/null"), "c", "1", "3"]);
  await put(t, "usr/bin/ping", "ping", 0o755);
  await setAttribute(path.join(t, "usr/bin/ping"), "user.kiln", "hello");
  await setAttribute(path.join(t, "usr/bin/ping"), "security.capability", CAP);
  const longRel = Array.from({ length: 6 }, (_, i) => `directory-level-${i}-${"n".repeat(30)}`).join("/") + "/file.txt";
  await put(t, longRel, "deep");
  await put(t, "keep2.txt", "k2");
  await utimes(path.join(t, "keep2.txt"), T, T);
  await utimes(path.join(t, "usr/bin"), T + 5, T + 5);
  const topTar = await gnuTar(t);
  assert.ok(topTar.includes(Buffer.from("SCHILY.xattr.security.capability")), "GNU tar recorded the capability");
  await layer(s, "l2", "l1", topTar);

  // Overlay form in the upper dir.
  const up = s.upperDir("l2");
  const wh = await lstat(path.join(up, "gone.txt"));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0);
  assert.equal((await getAttribute(path.join(up, "var/lib/data"), "trusted.overlay.opaque"))?.toString(), "y");
  assert.ok((await lstat(path.join(up, "opt/old"))).isCharacterDevice());
  await assert.rejects(lstat(path.join(up, "var/lib/data/.wh..wh..opq")));

  await using m = await s.mount(signal, "l2", true);
  const r = (p: string) => path.join(m.path, p);
  assert.deepEqual((await readdir(m.path)).sort(), [
    "dev",
    "directory-level-0-" + "n".repeat(30),
    "etc",
    "hl",
    "keep.txt",
    "keep2.txt",
    "lib",
    "opt",
    "run",
    "tmp",
    "usr",
    "var",
  ]);
  assert.deepEqual(await readdir(r("var/lib/data")), ["c"]);
  assert.deepEqual(await readdir(r("opt")), ["stay"]);
  assert.equal(await readFile(r("etc/passwd"), "utf8"), "root:x:0:0\n");
  assert.equal(await readlink(r("lib")), "/usr/lib");
  const [ha, hb] = [await stat(path.join(up, "hl/a")), await stat(path.join(up, "hl/b"))];
  assert.equal(ha.ino, hb.ino);
  assert.equal(ha.nlink, 2);
  assert.equal(await readFile(r("hl/b"), "utf8"), "hardlinked");
  assert.equal(await readlink(r("usr/sym")), "../usr/bin/tool");
  const su = await stat(r("usr/bin/su"));
  assert.equal(su.mode & 0o7777, 0o4755);
  assert.equal(su.uid, 1000);
  assert.equal(su.gid, 1001);
  assert.equal((await stat(r("tmp"))).mode & 0o7777, 0o1777);
  const fifo = await lstat(r("run/fifo"));
  assert.ok(fifo.isFIFO());
  assert.equal(fifo.mode & 0o7777, 0o640);
  const dev = await lstat(r("dev/null"));
  assert.ok(dev.isCharacterDevice());
  assert.equal(dev.rdev, (1 << 8) | 3);
  assert.equal(dev.mode & 0o7777, 0o666);
  assert.equal((await getAttribute(r("usr/bin/ping"), "user.kiln"))?.toString(), "hello");
  assert.deepEqual(await getAttribute(r("usr/bin/ping"), "security.capability"), CAP);
  assert.equal(await readFile(r(longRel), "utf8"), "deep");
  assert.equal((await stat(r("keep2.txt"))).mtimeMs, T * 1000);
  assert.equal((await stat(r("usr/bin"))).mtimeMs, (T + 5) * 1000, "directory mtimes are set after their children");
});

test("hostile tars are rejected and write nothing outside", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  const outside = path.join(env.dir, "outside");
  await mkdir(outside);

  const cases: { name: string; tar: Buffer; code?: string }[] = [
    { name: "dotdot", tar: craftTar([{ hdr: { name: "../escape" }, data: Buffer.from("x") }]) },
    { name: "dotdot-deep", tar: craftTar([{ hdr: { name: "a/../../escape" }, data: Buffer.from("x") }]) },
    {
      name: "symlink-abs-then-write",
      tar: craftTar([{ hdr: { name: "evil", typeflag: TypeSymlink, linkname: outside } }, { hdr: { name: "evil/pwned" }, data: Buffer.from("x") }]),
    },
    {
      name: "symlink-rel-then-write",
      tar: craftTar([
        { hdr: { name: "d", typeflag: TypeDir, mode: 0o755 } },
        { hdr: { name: "d/evil", typeflag: TypeSymlink, linkname: "../../../../../../../../" + outside } },
        { hdr: { name: "d/evil/pwned" }, data: Buffer.from("x") },
      ]),
    },
    {
      name: "symlink-then-whiteout",
      tar: craftTar([{ hdr: { name: "evil", typeflag: TypeSymlink, linkname: outside } }, { hdr: { name: "evil/.wh.victim" } }]),
    },
    {
      name: "symlink-then-opaque",
      tar: craftTar([{ hdr: { name: "evil", typeflag: TypeSymlink, linkname: outside } }, { hdr: { name: "evil/.wh..wh..opq" } }]),
    },
    { name: "hardlink-dotdot", tar: craftTar([{ hdr: { name: "h", typeflag: TypeLink, linkname: "../outside/victim" } }]) },
    {
      name: "hardlink-through-symlink",
      tar: craftTar([{ hdr: { name: "evil", typeflag: TypeSymlink, linkname: outside } }, { hdr: { name: "h", typeflag: TypeLink, linkname: "evil/victim" } }]),
    },
    { name: "hardlink-absolute", tar: craftTar([{ hdr: { name: "h", typeflag: TypeLink, linkname: path.join(outside, "victim") } }]), code: "KILN_LAYER_HARDLINK" },
    { name: "whiteout-dotdot", tar: craftTar([{ hdr: { name: "a/.wh..." } }]) },
  ];
  await writeFile(path.join(outside, "victim"), "original");
  for (const [i, c] of cases.entries()) {
    const id = `hostile-${i}`;
    await s.prepare(id, undefined);
    await assert.rejects(
      applyLayer(signal, s, id, chunked(c.tar)),
      (e: unknown) => (c.code ? (e as { code?: string }).code === c.code : e instanceof UnsafeLayerError),
      c.name,
    );
    assert.deepEqual(await readdir(outside), ["victim"], c.name);
    assert.equal(await readFile(path.join(outside, "victim"), "utf8"), "original", c.name);
    await assert.rejects(lstat(path.join(env.dir, "escape")), c.name);
    await assert.rejects(lstat(path.join(env.dir, "snapshots", "escape")), c.name);
    await s.remove(id);
  }
  assert.equal((await stat(path.join(outside, "victim"))).nlink, 1);
});

test("a symlink in a lower layer is never written through", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  const outside = path.join(env.dir, "outside");
  await mkdir(outside);
  await layer(s, "l1", undefined, craftTar([{ hdr: { name: "lib", typeflag: TypeSymlink, linkname: outside } }]));
  await layer(s, "l2", "l1", craftTar([{ hdr: { name: "lib/evil.so" }, data: Buffer.from("x") }]));
  assert.deepEqual(await readdir(outside), []);
  assert.ok((await lstat(path.join(s.upperDir("l2"), "lib"))).isDirectory());
});

test("missing parents copy the attributes of the lower directory", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  await layer(
    s,
    "l1",
    undefined,
    craftTar([
      { hdr: { name: "srv/", typeflag: TypeDir, mode: 0o750, uid: 7, gid: 8, mtime: T } },
      { hdr: { name: "srv/www/", typeflag: TypeDir, mode: 0o711, uid: 9, gid: 10, mtime: T } },
    ]),
  );
  await layer(s, "l2", "l1", craftTar([{ hdr: { name: "srv/www/index.html" }, data: Buffer.from("hi") }]));
  const st = await stat(path.join(s.upperDir("l2"), "srv/www"));
  assert.equal(st.mode & 0o7777, 0o711);
  assert.equal(st.uid, 9);
  assert.equal(st.gid, 10);
  assert.equal((await stat(path.join(s.upperDir("l2"), "srv"))).mode & 0o7777, 0o750);
});

test("applying into a committed snapshot or with an aborted signal fails", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  await s.prepare("c", undefined);
  await s.commit("c");
  await assert.rejects(applyLayer(signal, s, "c", chunked(craftTar([]))), (e: unknown) => (e as { code?: string }).code === "KILN_SNAPSHOT_COMMITTED");
  await s.prepare("a", undefined);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(applyLayer(ac.signal, s, "a", chunked(craftTar([]))), (e: unknown) => (e as { code?: string }).code === "KILN_CANCELED");
});

test("GNU-format long names and links, and v7 headers, unpack too", async () => {
  await using env = await testEnv();
  await using work = await makeTempDir(env.dir, "stage-");
  const s = env.snapshotter;
  const long = await stage(work.path, "long");
  const longDir = "d".repeat(120);
  await put(long, `${longDir}/${"f".repeat(120)}`, "long");
  await symlink("t".repeat(150), path.join(long, "longlink"));
  await layer(s, "gnu", undefined, await runOk("tar", ["--format=gnu", "--numeric-owner", "-C", long, "-cf", "-", "."]));
  assert.equal(await readFile(path.join(s.upperDir("gnu"), longDir, "f".repeat(120)), "utf8"), "long");
  assert.equal(await readlink(path.join(s.upperDir("gnu"), "longlink")), "t".repeat(150));

  const short = await stage(work.path, "short");
  await put(short, "dir/file", "v7", 0o640);
  await layer(s, "v7", undefined, await runOk("tar", ["--format=v7", "--numeric-owner", "-C", short, "-cf", "-", "."]));
  assert.equal(await readFile(path.join(s.upperDir("v7"), "dir/file"), "utf8"), "v7");
  assert.equal((await stat(path.join(s.upperDir("v7"), "dir/file"))).mode & 0o7777, 0o640);
});
