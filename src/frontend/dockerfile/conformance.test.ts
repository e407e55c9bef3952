// BuildKit's own Dockerfile vectors (../shared/conformance/dockerfile): parser dumps, rejected
// inputs, and shell-expansion tables. Skipped when the folder is not there.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { dump, envsFromSlice, parse, ShellLex } from "./index.js";

const root = path.resolve(import.meta.dirname, "../../../../shared/conformance/dockerfile");
const present = existsSync(root);
const skip = present ? false : `conformance vectors not found at ${root}`;

function cases(dir: string): string[] {
  const full = path.join(root, dir);
  return existsSync(full) ? readdirSync(full).sort() : [];
}

void describe("dockerfile conformance: parser testfiles", { skip }, () => {
  for (const name of cases("parser/testfiles")) {
    void test(name, () => {
      const dir = path.join(root, "parser/testfiles", name);
      const text = readFileSync(path.join(dir, "Dockerfile"), "utf8");
      const want = readFileSync(path.join(dir, "result"), "utf8");
      assert.equal(dump(parse(text).ast) + "\n", want);
    });
  }
});

void describe("dockerfile conformance: parser testfiles-negative", { skip }, () => {
  for (const name of cases("parser/testfiles-negative")) {
    void test(name, () => {
      const text = readFileSync(path.join(root, "parser/testfiles-negative", name, "Dockerfile"), "utf8");
      assert.throws(() => parse(text), { code: "KILN_DOCKERFILE_PARSE" });
    });
  }
});

void describe("dockerfile conformance: shell envVarTest", { skip }, () => {
  if (!present) return;
  const lex = new ShellLex("\\");
  const env = envsFromSlice(["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]);
  const lines = readFileSync(path.join(root, "shell/envVarTest"), "utf8").split("\n");
  lines.forEach((raw, i) => {
    if (raw.startsWith("#")) return;
    const line = raw.trim();
    if (line === "") return;
    const parts = line.split("|");
    assert.equal(parts.length, 3, `line ${i + 1}`);
    const [platform, source, expected] = parts.map((p) => p.trim()) as [string, string, string];
    // A: every platform, U: Unix, W: Windows (where variable names are case-insensitive).
    if (platform !== "A" && platform !== "U") return;
    void test(`line ${i + 1}: ${source}`, () => {
      if (expected === "error") assert.throws(() => lex.processWord(source, env), { code: "KILN_DOCKERFILE_EXPAND" });
      else assert.equal(lex.processWord(source, env), expected);
    });
  });
});

void describe("dockerfile conformance: shell wordsTest", { skip }, () => {
  if (!present) return;
  // BuildKit's test also names a raw-quotes mode, but it re-reads an exhausted file there, so
  // only the normal mode is what the vectors actually check.
  const lex = new ShellLex("\\");
  const envs: string[] = [];
  const lines = readFileSync(path.join(root, "shell/wordsTest"), "utf8").split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  lines.forEach((line, i) => {
    if (line.startsWith("#")) return;
    if (line.startsWith("ENV ")) {
      envs.push(line.slice(3).replace(/^ +/, ""));
      return;
    }
    const parts = line.split("|");
    assert.equal(parts.length, 2, `line ${i + 1}`);
    const source = parts[0]!.trim();
    const expected = parts[1]!.replace(/^ +/, "").split(",");
    const env = envsFromSlice([...envs]);
    void test(`line ${i + 1}: ${source}`, () => {
      let got: string[];
      try {
        got = lex.processWords(source, env);
      } catch {
        got = ["error"];
      }
      assert.deepEqual(got, expected);
    });
  });
});
