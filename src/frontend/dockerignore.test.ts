import { test } from "node:test";
import assert from "node:assert/strict";
import { parseIgnore } from "./dockerfile-frontend.js";

void test(".dockerignore is read as dockerignore.ReadAll reads it: BOM, comments, trimming, Clean, leading slash", () => {
  const text = "\uFEFF# comment\n  *.md  \n\n/abs/./x/\n! /neg/../keep \r\n ## not a comment once trimmed\nsub//dir/..\n/\n!\n";
  assert.deepEqual(parseIgnore(text), ["*.md", "abs/x", "!keep", "## not a comment once trimmed", "sub", "/", "!"]);
});
