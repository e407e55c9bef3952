import { test } from "node:test";
import assert from "node:assert/strict";
import { comparePath, compareUtf8 } from "./pathorder.js";

const sign = (n: number) => Math.sign(n);
const bytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

test("pathorder: compareUtf8 orders as the UTF-8 bytes do, surrogate pairs included", () => {
  const words = ["", "a", "ab", "a/b", "a-b", "B", "é", "\u{1F600}", "\uFF21", "z\uE000", "z\u{10000}", "a.b", "A"];
  for (const a of words) for (const b of words) assert.equal(sign(compareUtf8(a, b)), sign(bytes(a, b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
});

test("pathorder: comparePath sorts / before every other byte", () => {
  assert.ok(comparePath("a/b", "a-b") < 0);
  assert.ok(comparePath("a-b", "a/b") > 0);
  assert.ok(comparePath("a", "a/b") < 0);
  assert.equal(comparePath("a/b", "a/b"), 0);
  assert.ok(comparePath("\u{1F600}/x", "\u{1F600}-x") < 0);
  assert.ok(comparePath("\uFF21", "\u{1F600}") < 0);
});
