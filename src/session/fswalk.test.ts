import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, link, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { walkTree, type WalkOptions } from "./fswalk.js";
import { fromGoMode, toGoMode } from "./fsmode.js";
import { PatternMatcher } from "./patternmatcher.js";

// Expected listings were produced by BuildKit v0.11.6's vendored fsutil.Walk (Go) on this same
// tree: the sender must list exactly what a Go receiver expects, in the same order.
async function tree(): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-fswalk-"));
  const files = ["a", "a.b", "a-b", "a.txt", "b.md", "B", "_x", "ä.txt", "z", ".hidden", "dir/x.txt", "dir/y.md", "dir/keep", "dir/sub/z.txt", "dir/sub/deep/w.md", "dir.txt", "dir-a/q", "node_modules/m/index.js", "node_modules/m/README.md", "real/t.txt", "real/u/v.txt", "x/y/z/w.txt"];
  for (const f of files) {
    await mkdir(path.dirname(path.join(root, f)), { recursive: true });
    await writeFile(path.join(root, f), f);
  }
  await mkdir(path.join(root, "emptydir"));
  await symlink("real/t.txt", path.join(root, "l.txt"));
  await symlink("real", path.join(root, "ldir"));
  await symlink("/real/u", path.join(root, "labs"));
  await link(path.join(root, "a.txt"), path.join(root, "dir/hl.txt"));
  await chmod(path.join(root, "dir/keep"), 0o4755);
  for (const d of ["dir", "dir/sub", "dir/sub/deep", "dir-a", "emptydir", "node_modules", "node_modules/m", "real", "real/u", "x", "x/y", "x/y/z"]) await chmod(path.join(root, d), 0o755);
  for (const f of files) if (f !== "dir/keep") await chmod(path.join(root, f), 0o644);
  return root;
}

async function list(root: string, opts: WalkOptions, full = false): Promise<string[]> {
  const out: string[] = [];
  for await (const e of walkTree(AbortSignal.timeout(10_000), root, opts)) {
    out.push(full ? `${e.stat.path} ${e.stat.mode.toString(8)} ${e.stat.size} ${e.stat.linkname}` : e.stat.path);
  }
  return out;
}

const all = [".hidden", "B", "_x", "a", "a-b", "a.b", "a.txt", "b.md", "dir", "dir/hl.txt", "dir/keep", "dir/sub", "dir/sub/deep", "dir/sub/deep/w.md", "dir/sub/z.txt", "dir/x.txt", "dir/y.md", "dir-a", "dir-a/q", "dir.txt", "emptydir", "l.txt", "labs", "ldir", "node_modules", "node_modules/m", "node_modules/m/README.md", "node_modules/m/index.js", "real", "real/t.txt", "real/u", "real/u/v.txt", "x", "x/y", "x/y/z", "x/y/z/w.txt", "z", "ä.txt"];

void test("fswalk: the full listing matches Go's fsutil walk: byte order, Go mode bits, sizes, links", async () => {
  const root = await tree();
  try {
    assert.deepEqual(await list(root, {}, true), [
      ".hidden 644 7 ", "B 644 1 ", "_x 644 2 ", "a 644 1 ", "a-b 644 3 ", "a.b 644 3 ", "a.txt 644 5 ", "b.md 644 4 ",
      "dir 20000000755 0 ", "dir/hl.txt 644 5 a.txt", "dir/keep 40000755 8 ", "dir/sub 20000000755 0 ", "dir/sub/deep 20000000755 0 ",
      "dir/sub/deep/w.md 644 17 ", "dir/sub/z.txt 644 13 ", "dir/x.txt 644 9 ", "dir/y.md 644 8 ", "dir-a 20000000755 0 ", "dir-a/q 644 7 ",
      "dir.txt 644 7 ", "emptydir 20000000755 0 ", "l.txt 1000000777 10 real/t.txt", "labs 1000000777 7 /real/u", "ldir 1000000777 4 real",
      "node_modules 20000000755 0 ", "node_modules/m 20000000755 0 ", "node_modules/m/README.md 644 24 ", "node_modules/m/index.js 644 23 ",
      "real 20000000755 0 ", "real/t.txt 644 10 ", "real/u 20000000755 0 ", "real/u/v.txt 644 12 ", "x 20000000755 0 ", "x/y 20000000755 0 ",
      "x/y/z 20000000755 0 ", "x/y/z/w.txt 644 11 ", "z 644 1 ", "ä.txt 644 6 ",
    ]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

void test("fswalk: include, exclude and followpaths select as Go's fsutil does", async () => {
  const root = await tree();
  const without = (...drop: string[]) => all.filter((p) => !drop.includes(p));
  const cases: [WalkOptions, string[]][] = [
    [{ excludePatterns: ["dir/**", "!dir/keep"] }, without("dir/hl.txt", "dir/sub", "dir/sub/deep", "dir/sub/deep/w.md", "dir/sub/z.txt", "dir/x.txt", "dir/y.md")],
    [{ excludePatterns: ["*", "!a*"] }, ["a", "a-b", "a.b", "a.txt"]],
    [{ excludePatterns: ["**", "!**/*.txt"] }, ["a.txt", "dir", "dir/hl.txt", "dir/sub", "dir/sub/z.txt", "dir/x.txt", "dir.txt", "l.txt", "real", "real/t.txt", "real/u", "real/u/v.txt", "x", "x/y", "x/y/z", "x/y/z/w.txt", "ä.txt"]],
    [{ excludePatterns: ["dir", "!dir/sub/z.txt"] }, without("dir/hl.txt", "dir/keep", "dir/sub/deep", "dir/sub/deep/w.md", "dir/x.txt", "dir/y.md")],
    [{ excludePatterns: ["real", "!real/u"] }, without("real/t.txt")],
    [{ excludePatterns: ["/a.txt", "a?b", "[ab]*"] }, without("a", "a-b", "a.b", "a.txt", "b.md")],
    [{ includePatterns: ["dir/s*"] }, ["dir", "dir/sub", "dir/sub/deep", "dir/sub/deep/w.md", "dir/sub/z.txt"]],
    [{ includePatterns: ["dir", "!dir/x.txt"] }, ["dir", "dir/hl.txt", "dir/keep", "dir/sub", "dir/sub/deep", "dir/sub/deep/w.md", "dir/sub/z.txt", "dir/y.md"]],
    [{ includePatterns: ["**/*.txt"], excludePatterns: ["dir/sub"] }, ["a.txt", "dir", "dir/hl.txt", "dir/x.txt", "dir.txt", "l.txt", "real", "real/t.txt", "real/u", "real/u/v.txt", "x", "x/y", "x/y/z", "x/y/z/w.txt", "ä.txt"]],
    [{ followPaths: ["ldir/t.txt"] }, ["ldir", "real", "real/t.txt"]],
    [{ followPaths: ["labs/v.txt"] }, ["labs", "real", "real/u", "real/u/v.txt"]],
    [{ includePatterns: ["x"], followPaths: ["l.txt"] }, ["l.txt", "real", "real/t.txt", "x", "x/y", "x/y/z", "x/y/z/w.txt"]],
  ];
  try {
    for (const [opts, want] of cases) assert.deepEqual(await list(root, opts), want, JSON.stringify(opts));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

void test("fsmode: POSIX and Go file modes convert both ways", () => {
  const cases: [number, number][] = [
    [0o100644, 0o644],
    [0o104755, (1 << 23) | 0o755],
    [0o042750, ((1 << 31) | (1 << 22) | 0o750) >>> 0],
    [0o041777, ((1 << 31) | (1 << 20) | 0o777) >>> 0],
    [0o120777, (1 << 27) | 0o777],
    [0o020666, (1 << 26) | (1 << 21) | 0o666],
    [0o060660, (1 << 26) | 0o660],
    [0o010644, (1 << 25) | 0o644],
  ];
  for (const [posix, go] of cases) {
    assert.equal(toGoMode(posix), go, posix.toString(8));
    assert.equal(fromGoMode(go), posix, go.toString(8));
  }
});

void test("patternmatcher: parent results carry to children and exclusions re-include", () => {
  const pm = new PatternMatcher(["dir", "!dir/keep", "**/*.md"]);
  const d = pm.matchesUsingParentResults("dir", { parentMatched: [] });
  assert.equal(d.matched, true);
  assert.equal(pm.matchesUsingParentResults("dir/x", d.info).matched, true);
  assert.equal(pm.matchesUsingParentResults("dir/keep", d.info).matched, false);
  assert.equal(pm.matchesUsingParentResults("a/b/c.md", { parentMatched: [] }).matched, true);
  assert.equal(pm.matchesUsingParentResults("c.md", { parentMatched: [] }).matched, true, "a leading **/ also matches at the root");
  assert.equal(new PatternMatcher(["a?c"]).matchesUsingParentResults("a/c", { parentMatched: [] }).matched, false, "? never matches a slash");
  assert.throws(() => new PatternMatcher(["!"]), /illegal exclusion/);
});
