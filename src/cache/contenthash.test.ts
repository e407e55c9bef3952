// Content checksums against values worked out by hand from BuildKit's formulas (tarsum header
// fields + bytes per entry; "\0" + header + "\0"+name+digest per child for a directory; the
// wildcard fold of base name + digest), on a real committed snapshot.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, chown, mkdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { checksumPath, entryHash, digestOfHash, emptyDigest, fileDigestsBucket, pathMatch } from "./contenthash.js";
import { defaultGCPolicies } from "./gc.js";
import { openCache, tempRoot } from "./testhelpers.js";

// Precomputed (see the comment above): entries of the tree built below.
const want = {
  a: "sha256:1b2ef0d28bbca0e623763500d2a7239d91ce41ff93bbb7160a5b8f24a2c49e13",
  link: "sha256:653b232d38441e60f35673ca781dca8fd169229d6500fa11cd461a7e10e02789",
  dir: "sha256:e22fc5a37bccef9b1eeb52c5f3db6fe2ed44cb8e1e65e0900dfa01a80bd75a26",
  root: "sha256:860100174cf3cebc16bf5e93050d6ba4d9e46b77814816d2fe1727d6db0dd066",
  rootTransferred: "sha256:05e36bb6e2a55b24aa49f131cc763c88dea4f91c1a89454b90b5c0bad7c2375a",
  txtWildcard: "sha256:6a30dbc8e8c0f5dd960054d5fc73505c850b58e930f2a6a93a3b87206cf42dc3",
  dirWildcard: "sha256:4c84fbca8c17e4cc48274cd8ac79d45db719b3e45f0abb2b485b540f0ff38e1c",
};

void test("entry hash: tarsum header fields, no mtime, then the bytes", () => {
  const h = entryHash({ mode: 0o644, uid: 0, gid: 0, type: "file", size: 6 });
  h.update("alpha\n");
  assert.equal(digestOfHash(h), want.a);
  // The same header by hand: the fields BuildKit's tarsum v1 selects, in its order.
  const byHand = entryHash({ mode: 0o100644, uid: 0, gid: 0, type: "file", size: 6, xattrs: new Map([["security.selinux", Buffer.from("x")]]) });
  byHand.update("alpha\n");
  assert.equal(digestOfHash(byHand), want.a, "file type bits and security labels do not count");
});

void test("Go path.Match semantics for wildcard selectors", () => {
  assert.ok(pathMatch("/*.txt", "/a.txt"));
  assert.ok(!pathMatch("/*.txt", "/d/a.txt"));
  assert.ok(pathMatch("/d?", "/d1"));
  assert.ok(pathMatch("/[a-c]x", "/bx"));
  assert.ok(!pathMatch("/[^a-c]x", "/bx"));
});

void test("checksums of a snapshot: files, links, directories and wildcards as BuildKit computes them", async () => {
  await using root = await tempRoot();
  await using c = await openCache(root.path, defaultGCPolicies({}));
  const mut = await c.mgr.newMutable(undefined, "contenthash test");
  const up = mut.upperDir();
  await chmod(up, 0o755);
  await writeFile(path.join(up, "a.txt"), "alpha\n");
  await chmod(path.join(up, "a.txt"), 0o644);
  await mkdir(path.join(up, "d"));
  await chmod(path.join(up, "d"), 0o755);
  await writeFile(path.join(up, "d", "b.txt"), "bravo\n");
  await chown(path.join(up, "d", "b.txt"), 1000, 1000);
  await chmod(path.join(up, "d", "b.txt"), 0o600);
  await symlink("a.txt", path.join(up, "l"));
  const ref = await mut.commit();
  const signal = new AbortController().signal;
  try {
    const sum = (p: string, followLinks = false, wildcard = false) => checksumPath(signal, c.db, ref, p, { followLinks, wildcard });
    assert.equal(await sum("/a.txt"), want.a);
    assert.equal(await sum("a.txt"), want.a, "relative selectors are rooted");
    assert.equal(await sum("/l"), want.link, "a link itself when not following");
    assert.equal(await sum("/l", true), want.a, "its target when following");
    assert.equal(await sum("/d"), want.dir);
    assert.equal(await sum("/"), want.root, "a scanned snapshot's root has its own header");
    assert.equal(await sum("/*.txt", false, true), want.txtWildcard);
    assert.equal(await sum("/d*", false, true), want.dirWildcard, "a matched directory counts as its header and its files");
    assert.equal(await sum("/nothing*", false, true), emptyDigest);
    assert.equal(await sum("/a.tx?", false, true), want.txtWildcard);

    // A tree a file transfer filled: known entry hashes, and a root without a header.
    const mut2 = await c.mgr.newMutable(undefined, "transferred");
    const up2 = mut2.upperDir();
    await chmod(up2, 0o700);
    await writeFile(path.join(up2, "a.txt"), "not what the hash says\n");
    await chmod(path.join(up2, "a.txt"), 0o644);
    await mkdir(path.join(up2, "d"));
    await chmod(path.join(up2, "d"), 0o755);
    await writeFile(path.join(up2, "d", "b.txt"), "bravo\n");
    await chown(path.join(up2, "d", "b.txt"), 1000, 1000);
    await chmod(path.join(up2, "d", "b.txt"), 0o600);
    await symlink("a.txt", path.join(up2, "l"));
    const ref2 = await mut2.commit();
    try {
      c.db.setKV(fileDigestsBucket, ref2.id, JSON.stringify({ "/a.txt": want.a }));
      assert.equal(await checksumPath(signal, c.db, ref2, "/", { followLinks: false, wildcard: false }), want.rootTransferred, "known hashes are used, the root header is sha256(\"\")");
    } finally {
      await ref2.release();
    }
  } finally {
    await ref.release();
  }
});
