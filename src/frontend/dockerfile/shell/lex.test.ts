import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ShellLex, envsFromSlice, type EnvGetter } from "./index.js";

const env = (m: Record<string, string>): EnvGetter => new Map(Object.entries(m));

interface Case {
  input: string;
  envs: Record<string, string>;
  expected?: string;
  matched?: string[];
  unmatched?: string[];
}

// Expected values follow BuildKit's lexer (frontend/dockerfile/shell at the vectors' commit).
const cases: Case[] = [
  { input: "x", envs: { DUMMY: "d" }, expected: "x" },
  { input: "x ${UNUSED}", envs: { DUMMY: "d" }, expected: "x ", unmatched: ["UNUSED"] },
  { input: "x ${FOO}", envs: { FOO: "y" }, expected: "x y", matched: ["FOO"] },
  { input: "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", envs: { FOO: "xxx", BAR: "" }, expected: "xxx  ccc", matched: ["FOO", "BAR"], unmatched: ["BAZ"] },
  { input: "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", envs: { FOO: "xxx", BAR: "" }, expected: "xxx bbb ccc", matched: ["FOO", "BAR"], unmatched: ["BAZ"] },
  { input: "${FOO:-}", envs: {}, expected: "", unmatched: ["FOO"] },
  { input: "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", envs: { FOO: "xxx", BAR: "" }, expected: "aaa bbb ", matched: ["FOO", "BAR"], unmatched: ["BAZ"] },
  { input: "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", envs: { FOO: "xxx", BAR: "" }, expected: "aaa  ", matched: ["FOO", "BAR"], unmatched: ["BAZ"] },
  { input: "${FOO?aaa}", envs: { FOO: "xxx" }, expected: "xxx", matched: ["FOO"] },
  { input: "${BAR?bbb}", envs: { BAR: "" }, expected: "", matched: ["BAR"] },
  { input: "${BAZ?ccc}", envs: {} },
  { input: "${FOO:?aaa}", envs: { FOO: "xxx" }, expected: "xxx", matched: ["FOO"] },
  { input: "${BAR:?bbb}", envs: { BAR: "" } },
  { input: "${BAZ:?}", envs: {} },
  { input: "${FOO=aaa}", envs: { FOO: "xxx" } },
  { input: "${FOO=}", envs: {} },
  { input: "${FOO#()[]{\\}^$.\\*\\?|\\\\}", envs: { FOO: "()[]{}^$.*?|\\x" }, expected: "x", matched: ["FOO"] },
  { input: "${FOO%%\\**}", envs: { FOO: "xx**" }, expected: "xx", matched: ["FOO"] },
  { input: "${FOO#*x*y}", envs: { FOO: "xxyy" }, expected: "y", matched: ["FOO"] },
  { input: "${FOO#*}", envs: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
  { input: "${FOO#$BAR}", envs: { FOO: "xxyy", BAR: "x" }, expected: "xyy", matched: ["FOO", "BAR"] },
  { input: "${FOO##*x}", envs: { FOO: "xxyy" }, expected: "yy", matched: ["FOO"] },
  { input: "${FOO##}", envs: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
  { input: "${FOO#?\\?}", envs: { FOO: "???y" }, expected: "?y", matched: ["FOO"] },
  { input: "${ABC:-.}${FOO%x}${ABC:-.}", envs: { FOO: "xxyy" }, expected: ".xxyy.", matched: ["FOO"], unmatched: ["ABC"] },
  { input: "${FOO%%\\**\\*}", envs: { FOO: "a***yy*" }, expected: "a", matched: ["FOO"] },
  { input: "${FOO%y*}", envs: { FOO: "xxyy" }, expected: "xxy", matched: ["FOO"] },
  { input: "${FOO%%y*}", envs: { FOO: "xxyy" }, expected: "xx", matched: ["FOO"] },
  { input: "${FOO:#}", envs: {} },
  { input: "${FOO:%%}", envs: {} },
  { input: "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", envs: { FOO: "/foo*/*/*.txt", NEEDLE: "\\*/" }, expected: "/foo.*/*.txt - /foo..*.txt", matched: ["FOO", "NEEDLE"] },
  { input: "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", envs: { FOO: "/tmp/tmp/bar.txt", NEEDLE: "/tmp" }, expected: "/tmp/bar.txt - /bar.txt", matched: ["FOO", "NEEDLE"] },
  { input: "${FOO/$N/$R} - ${FOO//$N/$R}", envs: { FOO: "/a/foo/b/c.txt", N: "/?/", R: "/" }, expected: "/foo/b/c.txt - /foo/c.txt", matched: ["FOO", "N", "R"] },
  { input: "${FOO//\\//\\/}", envs: { FOO: "/tmp/foo.txt" }, expected: "\\/tmp\\/foo.txt", matched: ["FOO"] },
  { input: "${FOO/$BAR/ww}", envs: { FOO: "xxyy", BAR: "" }, expected: "wwxxyy", matched: ["FOO", "BAR"] },
  { input: "${FOO//ww}", envs: { FOO: "xxyy" } },
  { input: "${FOO///}", envs: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
  // Go's ReplaceAll skips an empty match right after a match and expands $0 in the replacement.
  { input: "${FOO//*/R}", envs: { FOO: "abc" }, expected: "R", matched: ["FOO"] },
  { input: "${FOO//b/<\\$0>}", envs: { FOO: "abc" }, expected: "a<\\b>c", matched: ["FOO"] },
  { input: "${FOO/b/<\\$0>}", envs: { FOO: "abc" }, expected: "a<\\$0>c", matched: ["FOO"] },
  { input: "${V:+-${V}}", envs: { V: "v7" }, expected: "-v7", matched: ["V"] },
];

void describe("shell lexer: modifiers and matches", () => {
  const lex = new ShellLex("\\");
  for (const c of cases) {
    void test(c.input, () => {
      if (c.expected === undefined) {
        assert.throws(() => lex.processWordWithMatches(c.input, env(c.envs)), { code: "KILN_DOCKERFILE_EXPAND" });
        return;
      }
      const r = lex.processWordWithMatches(c.input, env(c.envs));
      assert.equal(r.result, c.expected);
      assert.deepEqual([...r.matched].sort(), [...(c.matched ?? [])].sort());
      assert.deepEqual([...r.unmatched].sort(), [...(c.unmatched ?? [])].sort());
    });
  }
});

void describe("shell lexer: behaviour", () => {
  void test("mandatory variables report their message", () => {
    const lex = new ShellLex();
    assert.equal(lex.processWord("${VAR:?message here$ARG}", envsFromSlice(["VAR=plain", "ARG=x"])), "plain");
    assert.throws(() => lex.processWord("${VAR:?message here$ARG}", envsFromSlice(["VAR=", "ARG=x"])), /VAR: message herex/);
    assert.equal(lex.processWord("${VAR?message here$ARG}", envsFromSlice(["VAR=", "ARG=x"])), "");
    assert.throws(() => lex.processWord("${VAR?}", envsFromSlice([])), /failed to process "\$\{VAR\?\}": VAR: is not allowed to be unset/);
  });

  void test("later duplicates win in envsFromSlice", () => {
    assert.equal(new ShellLex().processWord("$car", envsFromSlice(["car=hat", "car=bike"])), "bike");
  });

  void test("skipUnsetEnv keeps unset references as written", () => {
    const lex = new ShellLex("\\", { skipUnsetEnv: true });
    const e = env({ SET: "v" });
    assert.equal(lex.processWord("$SET $UNSET ${UNSET} ${UNSET:-d} ${UNSET/a/b} ${UNSET:zz}", e), "v $UNSET ${UNSET} ${UNSET:-d} ${UNSET/a/b} ${UNSET:zz}");
  });

  void test("rawQuotes and rawEscapes keep the characters", () => {
    const e = env({});
    assert.equal(new ShellLex("\\", { rawQuotes: true }).processWord(`a"b c"'d'`, e), `a"b c"'d'`);
    assert.equal(new ShellLex("\\", { rawEscapes: true }).processWord("a\\ b", e), "a\\ b");
    assert.equal(new ShellLex("\\", { skipProcessQuotes: true }).processWord(`'$X'`, env({ X: "1" })), "'1'");
  });

  void test("backtick escape token", () => {
    const lex = new ShellLex("`");
    assert.equal(lex.processWord("a`$b\\c", env({ b: "B" })), "a$b\\c");
    assert.equal(lex.processWord('"x`"y"', env({})), 'x"y');
  });

  void test("processWords splits after expansion and keeps text before nested expansions", () => {
    const lex = new ShellLex();
    const e = env({ S: "a  b", E: "" });
    assert.deepEqual(lex.processWords("pre${X:-in}post tail", e), ["preinpost", "tail"]);
    assert.deepEqual(lex.processWords('x$S "$S" $E', e), ["xa", "b", "a  b"]);
    assert.deepEqual(lex.processWords('"" a', e), ["a"]);
    assert.deepEqual(lex.processWords("<< EOF x", e), ["<< EOF", "x"]);
  });

  void test("error messages", () => {
    const lex = new ShellLex();
    const e = env({});
    assert.throws(() => lex.processWord("${", e), /syntax error: missing '}'/);
    assert.throws(() => lex.processWord("${}", e), /bad substitution/);
    assert.throws(() => lex.processWord("${a:-b", e), /missing '}'/);
    assert.throws(() => lex.processWord("${a=b}", e), /unsupported modifier \(=\) in substitution/);
    assert.throws(() => lex.processWord("${a:#b}", e), /unsupported modifier \(:#\) in substitution/);
    assert.throws(() => lex.processWord("'abc", e), /matching single-quote/);
    assert.throws(() => lex.processWord('"abc', e), /matching double-quote/);
    assert.throws(() => lex.processWord("${a#\\x}", env({ a: "v" })), /invalid pattern/);
  });
});
