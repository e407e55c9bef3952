import { test } from "node:test";
import assert from "node:assert/strict";
import { PatternMatcher, mayMatchBelow, noMatchInfo, type MatchInfo } from "./patternmatcher.js";

/** Walks `paths` (sorted, parents first) as fsutil does and returns those the patterns select. */
function selected(patterns: string[], paths: string[]): string[] {
  const pm = new PatternMatcher(patterns);
  const infos = new Map<string, MatchInfo>();
  const out: string[] = [];
  for (const p of paths) {
    const slash = p.lastIndexOf("/");
    const parent = slash < 0 ? noMatchInfo : infos.get(p.slice(0, slash))!;
    const { matched, info } = pm.matchesUsingParentResults(p, parent);
    infos.set(p, info);
    if (matched) out.push(p);
  }
  return out;
}

const tree = ["README.md", "a.txt", "sub", "sub/x.md", "sub/deep", "sub/deep/y.md", "sub/deep/z.txt"];

void test("patternmatcher: Docker's semantics, not gitignore's: a pattern without a slash matches only at the top", () => {
  // gitignore would select sub/x.md and sub/deep/y.md as well.
  assert.deepEqual(selected(["*.md"], tree), ["README.md"]);
  assert.deepEqual(selected(["**/*.md"], tree), ["README.md", "sub/x.md", "sub/deep/y.md"]);
  // gitignore's `sub/` form: Go's Clean drops the slash, so it matches the directory and what it holds.
  assert.deepEqual(selected(["sub/"], tree), ["sub", "sub/x.md", "sub/deep", "sub/deep/y.md", "sub/deep/z.txt"]);
  // A leading slash is not stripped by the matcher (ReadAll does that); gitignore anchors it instead.
  assert.deepEqual(selected(["/a.txt"], tree), []);
  // `**` in the middle spans any number of directories, none included.
  assert.deepEqual(selected(["sub/**/y.md"], tree), ["sub/deep/y.md"]);
  assert.deepEqual(selected(["**/deep"], tree), ["sub/deep", "sub/deep/y.md", "sub/deep/z.txt"]);
});

void test("patternmatcher: `!` re-includes, later patterns win, and a re-included directory's contents follow it", () => {
  assert.deepEqual(selected(["**/*.md", "!sub/deep/y.md"], tree), ["README.md", "sub/x.md"]);
  assert.deepEqual(selected(["!sub/deep/y.md", "**/*.md"], tree), ["README.md", "sub/x.md", "sub/deep/y.md"]);
  assert.deepEqual(selected(["sub", "!sub/deep"], tree), ["sub", "sub/x.md"]);
  // gitignore cannot re-include below an excluded directory; Docker can.
  assert.deepEqual(selected(["sub", "!sub/deep/z.txt"], tree), ["sub", "sub/x.md", "sub/deep", "sub/deep/y.md"]);
});

void test("patternmatcher: mayMatchBelow prunes only directories no pattern of the kind can reach", () => {
  const literal = new PatternMatcher(["sub/deep/y.md", "other/**", "!sub/keep"]);
  assert.equal(mayMatchBelow(literal, "sub", false), true);
  assert.equal(mayMatchBelow(literal, "sub/deep", false), true);
  assert.equal(mayMatchBelow(literal, "other", false), true, "a trailing glob is a prefix");
  assert.equal(mayMatchBelow(literal, "subway", false), false);
  assert.equal(mayMatchBelow(literal, "a", false), false);
  assert.equal(mayMatchBelow(literal, "sub", true), true);
  assert.equal(mayMatchBelow(literal, "other", true), false);
  // Any wildcard before the last element could reach anywhere.
  const wild = new PatternMatcher(["*/x.md"]);
  assert.equal(mayMatchBelow(wild, "anything", false), true);
});
