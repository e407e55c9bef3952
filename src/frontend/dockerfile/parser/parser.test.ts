import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KilnError } from "../../../util/index.js";
import {
  chompHeredocContent,
  detectSyntax,
  dump,
  findDirective,
  heredocsFromLine,
  nodeArgs,
  parse,
  parseHeredoc,
  parseWords,
  type Heredoc,
} from "./index.js";

function heredoc(name: string, content: string, extra: Partial<Heredoc> = {}): Heredoc {
  return { name, content, expand: true, chomp: false, fileDescriptor: 0, ...extra };
}

void describe("parser: heredocs", () => {
  void test("extracts bodies for RUN, COPY and ADD", () => {
    const text = [
      "FROM alpine:3.6",
      "USER <<INVALID",
      "INVALID",
      "RUN <<EMPTY",
      "EMPTY",
      "RUN 3<<EMPTY2",
      "EMPTY2",
      'RUN "<<NOHEREDOC"',
      "RUN <<INDENT",
      "\tfoo",
      "INDENT",
      "RUN <<-UNINDENT2",
      "\tbaz",
      "\tUNINDENT2",
      "RUN <<-'NOEXPAND'",
      "\tdon't expand $NAME",
      "NOEXPAND",
      "RUN --mount=type=cache,target=/foo <<MOUNT",
      "echo hello",
      "MOUNT",
      "COPY <<X <<Y /dest",
      "Y",
      "X",
      "X",
      "Y",
      "RUN <<eo'f'",
      "echo foo",
      "eof",
      "RUN <<eo\\'f",
      "echo foo",
      "eo'f",
      "RUN <<'one two'",
      "echo bar",
      "one two",
      "RUN <<$EOF",
      "$EOF",
      "RUN <<  EOF  > foo",
      "EOF",
      "ONBUILD RUN <<EOF",
      "x",
      "EOF",
      "",
    ].join("\n");
    const ast = parse(text).ast;
    const docs = ast.children.map((c) => c.heredocs);
    assert.deepEqual(docs, [
      [],
      [],
      [],
      [heredoc("EMPTY", "")],
      [heredoc("EMPTY2", "", { fileDescriptor: 3 })],
      [],
      [heredoc("INDENT", "\tfoo\n")],
      [heredoc("UNINDENT2", "\tbaz\n", { chomp: true })],
      [heredoc("NOEXPAND", "\tdon't expand $NAME\n", { chomp: true, expand: false })],
      [heredoc("MOUNT", "echo hello\n")],
      [heredoc("X", "Y\n"), heredoc("Y", "X\n")],
      [heredoc("eof", "echo foo\n", { expand: false })],
      [heredoc("eo'f", "echo foo\n")],
      [heredoc("one two", "echo bar\n", { expand: false })],
      [heredoc("$EOF", "")],
      [heredoc("EOF", "")],
      [heredoc("EOF", "x\n")],
    ]);
    // USER cannot carry heredocs, so its "body" line is an instruction of its own.
    assert.equal(ast.children[2]!.value, "INVALID");
    const copy = ast.children[10]!;
    assert.deepEqual([copy.startLine, copy.endLine], [21, 25]);
  });

  void test("JSON form never has heredocs", () => {
    const ast = parse('FROM a\nRUN ["<<EOF"]\nRUN ["<<\'EOF\'"]\n').ast;
    assert.deepEqual(ast.children[1]!.heredocs, []);
    assert.deepEqual(ast.children[2]!.heredocs, []);
  });

  void test("unterminated heredoc is an error located at the instruction", () => {
    assert.throws(
      () => parse("FROM a\nRUN <<EOF\necho\n"),
      (err: unknown) => err instanceof KilnError && err.message === "unterminated heredoc" && err.location?.startLine === 2 && err.location.endLine === 3,
    );
  });

  void test("parseHeredoc helpers", () => {
    for (const src of ["<<EOF", "<<'EOF'", '<<"EOF"', "<<-EOF", "<<-'EOF'", '<<-"EOF"', '<<EO"F"', "<< EOF", "<<- EOF"]) {
      assert.equal(parseHeredoc(src)?.name, "EOF", src);
    }
    for (const src of ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"]) assert.equal(parseHeredoc(src), undefined, src);
    for (const src of ["<<'EOF", '<<"EOF', "<<EOF'", '<<EOF"']) assert.throws(() => parseHeredoc(src), src);
    const names = (l: string): string[] => heredocsFromLine(l).map((h) => h.name);
    // The lexer glues blanks only directly after "<<", so "<<- EOF" is two words: no heredoc.
    assert.deepEqual(names("RUN <<- EOF"), []);
    assert.deepEqual(names("RUN << EOF"), ["EOF"]);
    assert.deepEqual(names("RUN << -EOF"), ["-EOF"]);
    assert.deepEqual(names("RUN 4<<EOF <<EOF2"), ["EOF", "EOF2"]);
    assert.deepEqual(names("RUN '<<EOF'"), []);
    assert.deepEqual(names('RUN "<<EOF"'), []);
    assert.equal(chompHeredocContent("\thello\n\t\tworld\n"), "hello\nworld\n");
  });
});

void describe("parser: lines, comments, directives", () => {
  void test("line numbers span continuations and skip comments", () => {
    const text = [
      "# ESCAPE=\\",
      "",
      "",
      "",
      "FROM brimstone/ubuntu:14.04",
      "",
      "",
      "# TORUN -v /var/run/docker.sock:/var/run/docker.sock",
      "",
      "",
      "ENV GOPATH \\",
      "/go",
      "",
      "# Install the packages",
      "RUN apt-get update \\",
      "\t&& echo a \\",
      "",
      "",
      "    && echo b \\",
      "# comment",
      "\t&& rm -rf $GOPATH",
      "",
    ].join("\n");
    const r = parse(text);
    assert.deepEqual([r.ast.startLine, r.ast.endLine], [5, 21]);
    assert.deepEqual(
      r.ast.children.map((c) => [c.startLine, c.endLine]),
      [
        [5, 5],
        [11, 12],
        [15, 21],
      ],
    );
    assert.deepEqual(r.directives, [{ name: "escape", value: "\\", line: 1 }]);
    assert.deepEqual(r.ast.children[2]!.prevComment, ["Install the packages"]);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0]!.short, /Empty continuation line found in: RUN apt-get update/);
  });

  void test("escape directive switches the continuation and escape character", () => {
    const r = parse("# escape=`\nFROM a\nRUN echo `\n  hi\nCOPY --from=a` b c d\n");
    assert.equal(r.escapeToken, "`");
    assert.equal(dump(r.ast), '(from "a")\n(run "echo   hi")\n(copy ["--from=a b"] "c" "d")');
  });

  void test("directives only count before the first instruction or comment", () => {
    assert.equal(parse("FROM a\n# escape=`\nRUN x \\\n y\n").escapeToken, "\\");
    assert.equal(parse("# hello\n# escape=`\nFROM a\n").escapeToken, "\\");
    const r = parse("# syntax=docker/dockerfile:1\n# check=skip=all\n#escape=`\nFROM a\n");
    assert.deepEqual(
      r.directives.map((d) => [d.name, d.value]),
      [
        ["syntax", "docker/dockerfile:1"],
        ["check", "skip=all"],
        ["escape", "`"],
      ],
    );
    assert.deepEqual(r.ast.children[0]!.prevComment, []);
  });

  void test("bad directives are errors", () => {
    assert.throws(() => parse("# escape=x\nFROM a\n"), /invalid escape token 'x' does not match ` or \\/);
    assert.throws(
      () => parse("# syntax=a\n# syntax=b\nFROM a\n"),
      (err: unknown) => err instanceof KilnError && /only one syntax parser directive can be used/.test(err.message) && err.location?.startLine === 2,
    );
  });

  void test("detectSyntax accepts #, // and JSON forms", () => {
    assert.deepEqual(detectSyntax("#!/bin/x\n# syntax = foo/bar:1 --opt\nFROM a"), { value: "foo/bar:1", cmdline: "foo/bar:1 --opt", line: 2 });
    assert.equal(detectSyntax("// syntax=x/y\n{}")?.value, "x/y");
    assert.equal(detectSyntax('{"syntax": "j/k"}')?.value, "j/k");
    assert.equal(detectSyntax("FROM a\n# syntax=x"), undefined);
    assert.equal(findDirective("check", "# check=error=true\nFROM a")?.cmdline, "error=true");
  });

  void test("BOM, CRLF and instruction case", () => {
    const r = parse("\ufeffFrom a\r\nrun echo \\\r\n  b\r\n");
    assert.equal(dump(r.ast), '(from "a")\n(run "echo   b")');
    assert.equal(r.ast.children[1]!.value, "run");
  });

  void test("empty input and comment-only input are rejected", () => {
    assert.throws(() => parse(""), { code: "KILN_DOCKERFILE_PARSE", message: "file with no instructions" });
    assert.throws(() => parse("# a\n\n"), { message: "file with no instructions" });
  });

  void test("too long lines are rejected", () => {
    assert.throws(() => parse(`FROM a\nLABEL a=${"x".repeat(65536)}\n`), { message: "dockerfile line greater than max allowed size of 65535" });
  });
});

void describe("parser: arguments", () => {
  void test("parseWords keeps quotes and escapes", () => {
    const d = { escapeToken: "\\" };
    assert.deepEqual(parseWords("foo bar 'abc xyz'", d), ["foo", "bar", "'abc xyz'"]);
    assert.deepEqual(parseWords(`föo bàr "âbc xÿz"`, d), ["föo", "bàr", `"âbc xÿz"`]);
    assert.deepEqual(parseWords("foo\\ bar", d), ["foo\\ bar"]);
    assert.deepEqual(parseWords('a="" b', d), ['a=""', "b"]);
  });

  void test("ONBUILD nests the instruction; flags belong to it", () => {
    const r = parse("FROM a\nONBUILD COPY --from=b x y\nONBUILD RUN [\"a\"]\n");
    assert.equal(dump(r.ast), '(from "a")\n(onbuild (copy ["--from=b"] "x" "y"))\n(onbuild (run "a"))');
    assert.deepEqual(nodeArgs(r.ast.children[1]!), ["COPY", "x", "y"]);
    assert.equal(r.ast.children[2]!.next!.children[0]!.attributes.json, true);
  });

  void test("ENV and LABEL forms", () => {
    const r = parse('FROM a\nENV A=1 B="x y"\nENV C d e\nLABEL "k"=v\n');
    assert.equal(dump(r.ast), '(from "a")\n(env "A" "1" "=" "B" "\\"x y\\"" "=")\n(env "C" "d e" "")\n(label "\\"k\\"" "v" "=")');
    assert.throws(() => parse("FROM a\nENV A=1 B\n"), { message: `Syntax error - can't find = in "B". Must be of the form: name=value` });
  });

  void test("unknown instructions are kept with no arguments; non-string JSON is an error", () => {
    assert.equal(dump(parse("FROM a\nFOO bar baz\n").ast), '(from "a")\n(foo "")');
    assert.throws(() => parse("CMD [1]\n"), { message: "when using JSON array syntax, arrays must be comprised of strings only" });
  });
});
