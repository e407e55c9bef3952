// writeDiff: changes made through a real overlay mount come out as an OCI layer that GNU tar and
// Python read, that applies back to the same tree, and that is byte-for-byte reproducible.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { appendFile, chmod, link, lstat, mkdir, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { setAttribute } from "@napi-rs/xattr";
import { applyLayer } from "./apply.js";
import { writeDiff } from "./diff.js";
import type { OverlaySnapshotter } from "./overlay.js";
import { chunked, collect, craftTar, gnuTar, run, runOk, testEnv } from "./testhelpers.js";
import { TypeChar, TypeDir, TypeFifo, TypeLink, TypeSymlink } from "./tarwriter.js";

const signal = new AbortController().signal;
const CAP = Buffer.from([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

/** Lists a tar with Python's tarfile: "name type mode uid:gid size linkname" per entry. */
async function pyList(tar: Buffer): Promise<string[]> {
  const script = [
    "import sys, tarfile, io",
    "t = tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read()), mode='r:', encoding='utf-8', errors='surrogateescape')",
    "for m in t:",
    "    print(m.name, m.type.decode(), oct(m.mode), '%d:%d' % (m.uid, m.gid), m.size, m.linkname)",
  ].join("\n");
  const out = await runOk("python3", ["-c", script], { input: tar, env: { ...process.env, PYTHONIOENCODING: "utf-8:surrogateescape" } });
  return out.toString("utf8").replace(/\n$/, "").split("\n");
}

async function baseLayer(s: OverlaySnapshotter, dir: string): Promise<void> {
  const b = path.join(dir, "stage");
  await mkdir(b);
  const sh = [
    `cd ${b}`,
    "mkdir -p etc var/lib/data opt/old usr/bin",
    "echo root > etc/passwd",
    "echo g > etc/group",
    "echo a > var/lib/data/a",
    "echo b > var/lib/data/b",
    "echo x > opt/old/x",
    "echo t > usr/bin/tool",
    "touch -d @1600000000 etc/passwd etc/group usr/bin/tool",
  ].join(" && ");
  await runOk("sh", ["-c", sh]);
  await s.prepare("l1", undefined);
  await applyLayer(signal, s, "l1", chunked(await gnuTar(b)));
  await s.commit("l1");
}

/** Makes every kind of change through a read-write overlay mount of `id` (on top of baseLayer). */
async function modify(s: OverlaySnapshotter, id: string): Promise<void> {
  await using m = await s.mount(signal, id);
  const r = (p: string) => path.join(m.path, p);
  await writeFile(r("new.txt"), "new");
  await appendFile(r("etc/passwd"), "more\n");
  await rm(r("etc/group"));
  await rm(r("opt/old"), { recursive: true });
  await chmod(r("usr/bin/tool"), 0o4755);
  await rm(r("var/lib/data"), { recursive: true });
  await mkdir(r("var/lib/data"));
  await writeFile(r("var/lib/data/c"), "c");
  await writeFile(r("var/lib/data/a"), "a\n");
  await mkdir(r("newdir/sub"), { recursive: true });
  await writeFile(r("newdir/sub/h1"), "h");
  await link(r("newdir/sub/h1"), r("newdir/h2"));
  await symlink("/etc/passwd", r("newdir/sym"));
  await writeFile(r("newdir/ping"), "ping");
  await setAttribute(r("newdir/ping"), "security.capability", CAP);
  await setAttribute(r("newdir/ping"), "user.dropped", "not in layers");
  await writeFile(r("newdir/" + "long-".repeat(30) + "name"), "long");
  await writeFile(r("newdir/caf\u00e9"), "x"); // non-ASCII: a PAX path record
  await writeFile(Buffer.concat([Buffer.from(r("newdir/l")), Buffer.from([0xe9])]), "y"); // not UTF-8 at all
  await runOk("mkfifo", [r("newdir/fifo")]);
}

/** A comparable listing of a mounted tree: type, mode, owner, size, mtime seconds, target, content hash. */
async function treeListing(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: Buffer) => {
    const dir = Buffer.concat([Buffer.from(root), rel]);
    for (const name of (await readdir(dir, { encoding: "buffer" })).sort(Buffer.compare)) {
      const relChild = Buffer.concat([rel, Buffer.from("/"), name]);
      const p = Buffer.concat([dir, Buffer.from("/"), name]);
      const st = await lstat(p, { bigint: true });
      let extra = "";
      if (st.isSymbolicLink()) extra = (await readlink(p, { encoding: "buffer" })).toString("hex");
      else if (st.isFile()) extra = createHash("sha256").update(await readFile(p)).digest("hex");
      out.push([relChild.toString("hex"), st.mode.toString(8), st.uid, st.gid, st.isDirectory() ? 0 : st.size, st.mtimeNs / 1_000_000_000n, st.rdev, extra].join(" "));
      if (st.isDirectory()) await walk(relChild);
    }
  };
  await walk(Buffer.alloc(0));
  return out;
}

test("diff of changes made through a mount", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  await baseLayer(s, env.dir);
  await s.prepare("l2", "l1");
  await modify(s, "l2");

  const tar = await collect(writeDiff(signal, s, "l2"));
  assert.equal(tar.length % 512, 0);
  const longName = "newdir/" + "long-".repeat(30) + "name";
  assert.deepEqual(await pyList(tar), [
    "etc 5 0o755 0:0 0 ",
    "etc/.wh.group 0 0o0 0:0 0 ",
    "etc/passwd 0 0o644 0:0 10 ",
    "new.txt 0 0o644 0:0 3 ",
    "newdir 5 0o755 0:0 0 ",
    "newdir/caf\u00e9 0 0o644 0:0 1 ",
    "newdir/fifo 6 0o644 0:0 0 ",
    "newdir/h2 0 0o644 0:0 1 ",
    `${longName} 0 0o644 0:0 4 `,
    "newdir/l\ufffd 0 0o644 0:0 1 ",
    "newdir/ping 0 0o644 0:0 4 ",
    "newdir/sub 5 0o755 0:0 0 ",
    "newdir/sub/h1 1 0o644 0:0 0 newdir/h2",
    "newdir/sym 2 0o777 0:0 0 /etc/passwd",
    "opt 5 0o755 0:0 0 ",
    "opt/.wh.old 0 0o0 0:0 0 ",
    "usr 5 0o755 0:0 0 ",
    "usr/bin 5 0o755 0:0 0 ",
    "usr/bin/tool 0 0o4755 0:0 2 ",
    "var 5 0o755 0:0 0 ",
    "var/lib 5 0o755 0:0 0 ",
    "var/lib/data 5 0o755 0:0 0 ",
    "var/lib/data/a 0 0o644 0:0 2 ",
    "var/lib/data/.wh.b 0 0o0 0:0 0 ",
    "var/lib/data/c 0 0o644 0:0 1 ",
  ]);
  // Only security.capability travels (as containerd writes layers); user.* stays behind.
  assert.ok(tar.includes(Buffer.from("SCHILY.xattr.security.capability=")));
  assert.ok(!tar.includes(Buffer.from("user.dropped")));

  // GNU tar reads it too, and agrees on the entries.
  const gnu = (await runOk("tar", ["-tf", "-"], { input: tar })).toString().trimEnd().split("\n");
  assert.equal(gnu.length, 25);
  assert.ok(gnu.includes("etc/.wh.group") && gnu.includes(longName));

  // Same tree, same bytes.
  assert.ok((await collect(writeDiff(signal, s, "l2"))).equals(tar), "diff is deterministic");

  // Applying the diff on the same parent reproduces the tree, and diffs back to the same bytes.
  await s.commit("l2");
  await s.prepare("l2b", "l1");
  const applied = await applyLayer(signal, s, "l2b", chunked(tar, 10_000));
  assert.equal(applied.diffId, `sha256:${createHash("sha256").update(tar).digest("hex")}`);
  await s.commit("l2b");
  {
    await using a = await s.mount(signal, "l2", true);
    await using b = await s.mount(signal, "l2b", true);
    assert.deepEqual(await treeListing(b.path), await treeListing(a.path));
  }
  assert.ok((await collect(writeDiff(signal, s, "l2b"))).equals(tar), "apply → diff round trip is byte-identical");
});

test("a bottom layer diffs to its whole tree; stray whiteouts are left out", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  await s.prepare("b", undefined);
  await applyLayer(
    signal,
    s,
    "b",
    chunked(
      craftTar([
        { hdr: { name: "d/", typeflag: TypeDir, mode: 0o755 } },
        { hdr: { name: "d/f" }, data: Buffer.from("f") },
        { hdr: { name: "d/.wh.nothing" } },
        { hdr: { name: "d/.wh..wh..opq" } },
      ]),
    ),
  );
  const tar = await collect(writeDiff(signal, s, "b"));
  assert.deepEqual(await pyList(tar), ["d 5 0o755 0:0 0 ", "d/f 0 0o644 0:0 1 "]);
});

test("an opaque directory diffs to one whiteout per hidden lower entry (as BuildKit)", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  await s.prepare("l1", undefined);
  await applyLayer(
    signal,
    s,
    "l1",
    chunked(
      craftTar([
        { hdr: { name: "d/", typeflag: TypeDir, mode: 0o755 } },
        { hdr: { name: "d/keep" }, data: Buffer.from("same") },
        { hdr: { name: "d/old" }, data: Buffer.from("o") },
        { hdr: { name: "d/olddir/", typeflag: TypeDir, mode: 0o755 } },
        { hdr: { name: "d/olddir/inner" }, data: Buffer.from("i") },
      ]),
    ),
  );
  await s.commit("l1");
  await s.prepare("l2", "l1");
  await applyLayer(
    signal,
    s,
    "l2",
    chunked(
      craftTar([
        { hdr: { name: "d/", typeflag: TypeDir, mode: 0o755 } },
        { hdr: { name: "d/.wh..wh..opq" } },
        { hdr: { name: "d/keep" }, data: Buffer.from("same") },
        { hdr: { name: "d/new" }, data: Buffer.from("n") },
      ]),
    ),
  );
  const tar = await collect(writeDiff(signal, s, "l2"));
  // d/keep is unchanged against the lower one, so it is not repeated.
  assert.deepEqual(await pyList(tar), ["d 5 0o755 0:0 0 ", "d/new 0 0o644 0:0 1 ", "d/.wh.old 0 0o0 0:0 0 ", "d/.wh.olddir 0 0o0 0:0 0 "]);
});

test("rewriteTimestamp clamps later mtimes only", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  await s.prepare("t", undefined);
  const up = s.upperDir("t");
  await writeFile(path.join(up, "old"), "o");
  await utimes(path.join(up, "old"), 1000, 1000);
  await writeFile(path.join(up, "new"), "n");
  const tar = await collect(writeDiff(signal, s, "t", { rewriteTimestamp: 5000 }));
  const out = await runOk("python3", ["-c", "import sys,tarfile,io\nfor m in tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read())): print(m.name, m.mtime)"], {
    input: tar,
  });
  assert.deepEqual(out.toString().trim().split("\n"), ["new 5000", "old 1000"]);
});

test("writeDiff stops on an aborted signal", async () => {
  await using env = await testEnv();
  const s = env.snapshotter;
  await s.prepare("x", undefined);
  await writeFile(path.join(s.upperDir("x"), "f"), "f");
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(collect(writeDiff(ac.signal, s, "x")), (e: unknown) => (e as { code?: string }).code === "KILN_CANCELED");
  const r = await run("true", []);
  assert.equal(r.code, 0);
});

test("diffs match BuildKit v0.11.6's overlay differ byte for byte", async () => {
  // The digests were produced by BuildKit v0.11.6's util/overlay.WriteUpperdir with containerd
  // 1.6.20's ChangeWriter (whiteout times pinned to the epoch, as containerd 2 writes them) over
  // the very same snapshot directories.
  await using env = await testEnv();
  const s = env.snapshotter;
  const T = 1_650_000_000;
  const L1 = craftTar([
    { hdr: { name: "a/", typeflag: TypeDir, mode: 0o755, mtime: T } },
    { hdr: { name: "a/f1", mtime: T }, data: Buffer.from("1") },
    { hdr: { name: "a/f2", mtime: T }, data: Buffer.from("2") },
    { hdr: { name: "a/hl1", mtime: T }, data: Buffer.from("h") },
    { hdr: { name: "a/hl2", typeflag: TypeLink, linkname: "a/hl1", mtime: T } },
    { hdr: { name: "a/sub/", typeflag: TypeDir, mode: 0o755, mtime: T } },
    { hdr: { name: "a/sub/deep", mtime: T }, data: Buffer.from("d") },
    { hdr: { name: "b/", typeflag: TypeDir, mode: 0o700, uid: 5, mtime: T } },
    { hdr: { name: "b/x", mtime: T }, data: Buffer.from("x") },
    { hdr: { name: "keep/", typeflag: TypeDir, mode: 0o755, mtime: T } },
    { hdr: { name: "keep/k", mtime: T }, data: Buffer.from("k") },
  ]);
  const L2 = craftTar([
    { hdr: { name: "a/", typeflag: TypeDir, mode: 0o755, mtime: T + 1 } },
    { hdr: { name: "a/.wh..wh..opq" } },
    { hdr: { name: "a/f1", mtime: T }, data: Buffer.from("1") },
    { hdr: { name: "a/hl1", mtime: T }, data: Buffer.from("h") },
    { hdr: { name: "a/hl2", typeflag: TypeLink, linkname: "a/hl1", mtime: T } },
    { hdr: { name: "a/hl3", typeflag: TypeLink, linkname: "a/hl1", mtime: T } },
    { hdr: { name: "a/sub", mode: 0o600, mtime: T + 2 }, data: Buffer.from("file now") },
    { hdr: { name: ".wh.b" } },
    { hdr: { name: "keep/", typeflag: TypeDir, mode: 0o755, mtime: T } },
    { hdr: { name: "keep/.wh.k" } },
    { hdr: { name: "z/", typeflag: TypeDir, mode: 0o751, uid: 1000, gid: 1000, mtime: T + 3 } },
    { hdr: { name: "z/n", mode: 0o4711, mtime: T + 4 }, data: Buffer.from("n") },
    { hdr: { name: "z/cap", mode: 0o755, mtime: T, pax: new Map([["SCHILY.xattr.security.capability", CAP]]) }, data: Buffer.from("c") },
    { hdr: { name: "z/" + "long-".repeat(30) + "x", mtime: T }, data: Buffer.from("l") },
    { hdr: { name: "z/caf\u00e9", mtime: T }, data: Buffer.from("e") },
    { hdr: { name: "z/sym", typeflag: TypeSymlink, linkname: "../a/f1", mode: 0o777, mtime: T } },
    { hdr: { name: "z/null", typeflag: TypeChar, devmajor: 1, devminor: 3, mode: 0o666, mtime: T } },
    { hdr: { name: "z/fifo", typeflag: TypeFifo, mode: 0o600, mtime: T } },
    { hdr: { name: "z/big-uid", uid: 3_000_000, mtime: T }, data: Buffer.from("u") },
  ]);
  const want = {
    l1: "f44eacc65d3048970f4354dc20234cfa46a163ce70e2c682dddc59b58eec7973",
    l2: "e7445ea3477ce749afa059fc8801a969d1a4607098a1d53937c4727792c3f9b8",
  };
  for (const [id, parent, tar] of [["l1", undefined, L1] as const, ["l2", "l1", L2] as const]) {
    await s.prepare(id, parent);
    await applyLayer(signal, s, id, chunked(tar));
    await s.commit(id);
    const diff = await collect(writeDiff(signal, s, id));
    assert.equal(createHash("sha256").update(diff).digest("hex"), want[id], id);
  }
});
