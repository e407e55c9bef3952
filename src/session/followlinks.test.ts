import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DiskLocalDirs } from "./localdirs.js";
import { followLinks, matchSegment } from "./followlinks.js";

async function tree(files: Record<string, string>, links: Record<string, string>): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-follow-"));
  for (const [f, data] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, f)), { recursive: true });
    await writeFile(path.join(root, f), data);
  }
  for (const [l, target] of Object.entries(links)) {
    await mkdir(path.dirname(path.join(root, l)), { recursive: true });
    await symlink(target, path.join(root, l));
  }
  return root;
}

void test("followpaths gain the symlink targets on their way, deduplicated", async () => {
  const root = await tree({ "real/target.txt": "t", "dir/a.txt": "a", "other/x": "x" }, { "link.txt": "real/target.txt", "viadir": "dir", "abs": "/other/x" });
  try {
    assert.deepEqual(await followLinks(root, ["link.txt"]), ["link.txt", "real/target.txt"]);
    assert.deepEqual(await followLinks(root, ["viadir/a.txt", "dir"]), ["dir", "viadir"]);
    assert.deepEqual(await followLinks(root, ["abs", "*.txt"]), ["*.txt", "abs", "other/x", "real/target.txt"]);
    assert.equal(await followLinks(root, ["dir", "."]), undefined, "the root means everything");
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

void test("a local directory listed with followpaths sends only what they select", async () => {
  const root = await tree({ "a.txt": "a", "big/blob": "b", "dir/sub/y.txt": "y", "dir/z.md": "z", "real/t.txt": "t" }, { "l.txt": "real/t.txt" });
  try {
    const dirs = new DiskLocalDirs({ ctx: root });
    const list = await dirs.list(AbortSignal.timeout(5000), "ctx", { followPaths: ["a.txt", "dir/sub", "l.txt"] });
    assert.deepEqual(
      list!.map((e) => e.path),
      ["a.txt", "dir", "dir/sub", "dir/sub/y.txt", "l.txt", "real", "real/t.txt"],
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

void test("matchSegment follows Go's filepath.Match", () => {
  assert.ok(matchSegment("*.txt", "a.txt"));
  assert.ok(!matchSegment("*.txt", "a.md"));
  assert.ok(matchSegment("[ab].txt", "b.txt"));
  assert.ok(matchSegment("[^ab].txt", "c.txt"));
  assert.ok(!matchSegment("[!ab].txt", "c.txt"), "only ^ negates a class in Go");
  assert.ok(matchSegment("[a-c]?", "bz"));
  assert.ok(matchSegment("\\*", "*"));
  assert.ok(!matchSegment("[", "["), "a malformed pattern matches nothing");
  // Punctuation outside a class is literal (a `-` once made the expression invalid: no match).
  assert.ok(matchSegment("arch-*", "arch-x"));
  assert.ok(matchSegment("a-?.{1}(x)", "a-b.{1}(x)"));
  assert.ok(matchSegment("[\\-x]", "-"), "an escaped dash in a class is literal");
  assert.ok(!matchSegment("[\\-x]", "c"));
  assert.ok(matchSegment("[a\\]]", "]"));
});
