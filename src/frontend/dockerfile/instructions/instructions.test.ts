import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KilnError } from "../../../util/index.js";
import { parse } from "../parser/index.js";
import { ShellLex } from "../shell/index.js";
import {
  expandCommand,
  expandRunMounts,
  parseCommand,
  parseDevice,
  parseGoDuration,
  parseInstruction,
  parseMount,
  parseRAMInBytes,
  parseStages,
  type Command,
  type Stage,
} from "./index.js";

function stagesOf(text: string): ReturnType<typeof parseStages> {
  return parseStages(parse(text, "Dockerfile.test"));
}

function only(text: string): Command {
  const { stages } = stagesOf("FROM scratch\n" + text + "\n");
  assert.equal(stages[0]!.commands.length, 1);
  return stages[0]!.commands[0]!;
}

function first(text: string): Command | Stage {
  return parseInstruction(parse(text).ast.children[0]!);
}

function errorOf(fn: () => unknown): KilnError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof KilnError, String(err));
    return err;
  }
  assert.fail("expected an error");
}

void describe("instructions: stages", () => {
  void test("meta args, named stages, platform, commands", () => {
    const r = stagesOf(
      [
        "# foo sets foo",
        "ARG foo=bar",
        "ARG BASE",
        "# base defines first stage",
        "FROM --platform=$BUILDPLATFORM ${BASE:-busybox} AS Base",
        "# bar defines bar",
        "# baz is something else",
        "ARG bar baz=123",
        "RUN echo hi",
        "from base",
        "COPY --from=base /a /b",
        "",
      ].join("\n"),
    );
    assert.equal(r.metaArgs.length, 2);
    assert.deepEqual(r.metaArgs[0]!.args, [{ key: "foo", value: "bar", docComment: "sets foo" }]);
    assert.deepEqual(r.metaArgs[1]!.args, [{ key: "BASE", value: undefined, docComment: "" }]);
    assert.equal(r.stages.length, 2);
    const [s0, s1] = r.stages as [Stage, Stage];
    assert.equal(s0.name, "base");
    assert.equal(s0.baseName, "${BASE:-busybox}");
    assert.equal(s0.platform, "$BUILDPLATFORM");
    assert.equal(s0.docComment, "defines first stage");
    assert.deepEqual(
      { file: s0.location.file, start: s0.location.startLine, lines: s0.location.lines },
      { file: "Dockerfile.test", start: 5, lines: ["FROM --platform=$BUILDPLATFORM ${BASE:-busybox} AS Base"] },
    );
    assert.deepEqual(s0.commands.map((c) => c.kind), ["arg", "run"]);
    const arg = s0.commands[0]!;
    assert.ok(arg.kind === "arg");
    assert.deepEqual(arg.args, [
      { key: "bar", value: undefined, docComment: "defines bar" },
      { key: "baz", value: "123", docComment: "is something else" },
    ]);
    assert.equal(s1.name, undefined);
    assert.equal(s1.platform, undefined);
    assert.equal(s1.origCmd, "from");
    const copy = s1.commands[0]!;
    assert.ok(copy.kind === "copy");
    assert.equal(copy.from, "base");
  });

  void test("instructions before FROM other than ARG are rejected", () => {
    const e = errorOf(() => stagesOf("RUN x\nFROM a\n"));
    assert.equal(e.message, "no build stage in current context");
    assert.equal(e.location?.startLine, 1);
  });

  void test("FROM argument rules", () => {
    assert.throws(() => stagesOf("FROM a AS 1x\n"), {
      message: 'dockerfile parse error on line 1: invalid name for build stage: "1x", name can\'t start with a number or contain symbols',
    });
    assert.throws(() => stagesOf("FROM a b\n"), { message: "dockerfile parse error on line 1: FROM requires either one or three arguments" });
    assert.throws(() => stagesOf("FROM --platfrom=x a\n"), { message: "dockerfile parse error on line 1: unknown flag: platfrom (did you mean platform?)" });
    assert.throws(() => stagesOf("FROM --plat=x a\n"), { message: "dockerfile parse error on line 1: unknown flag: plat" });
  });
});

void describe("instructions: errors", () => {
  void test("unknown instruction with suggestion and location", () => {
    const e = errorOf(() => stagesOf("FROM a\n\nFORM b\n"));
    assert.equal(e.code, "KILN_DOCKERFILE_PARSE");
    assert.equal(e.message, "dockerfile parse error on line 3: unknown instruction: FORM (did you mean FROM?)");
    assert.deepEqual(e.location, { file: "Dockerfile.test", startLine: 3, endLine: 3, lines: ["FORM b"], allLines: ["FROM a", "", "FORM b"] });
    assert.equal(errorOf(() => first("foo bar")).message, "unknown instruction: foo (did you mean from?)");
    assert.equal(errorOf(() => first("BOGUS bar")).message, "unknown instruction: BOGUS");
    assert.equal(errorOf(() => first("cpy a b")).message, "unknown instruction: cpy (did you mean copy?)");
    assert.equal(errorOf(() => first("Workdri /x")).message, "unknown instruction: Workdri (did you mean workdir?)");
  });

  void test("argument counts", () => {
    for (const cmd of ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"]) {
      assert.equal(errorOf(() => first(cmd)).message, `${cmd} requires exactly one argument`);
    }
    for (const cmd of ["ENV", "LABEL", "ONBUILD", "HEALTHCHECK", "EXPOSE", "VOLUME", "ARG"]) {
      assert.equal(errorOf(() => first(cmd)).message, `${cmd} requires at least one argument`);
    }
    for (const cmd of ["ADD", "COPY"]) {
      assert.equal(
        errorOf(() => first(cmd + " arg1")).message,
        `${cmd} requires at least two arguments, but only one was provided. Destination could not be determined`,
      );
    }
    assert.match(errorOf(() => first("COPY\t\n\tquux \\\n bar")).message, /COPY requires at least two arguments/);
  });

  void test("flag errors", () => {
    assert.equal(errorOf(() => first("MAINTAINER --boo joe@example.com")).message, "unknown flag: boo");
    assert.equal(errorOf(() => first("COPY --chwon=1 a b")).message, "unknown flag: chwon (did you mean chown?)");
    assert.equal(errorOf(() => first("COPY --from=a --from=b a b")).message, "duplicate flag specified: --from");
    assert.equal(errorOf(() => first("COPY --from a b")).message, "missing a value on flag: --from");
    assert.equal(errorOf(() => first("COPY --link=maybe a b")).message, "expecting boolean value for flag --link, not: maybe");
    assert.equal(errorOf(() => first("COPY --link= a b")).message, "missing a value on flag: --link");
    assert.equal(errorOf(() => first("RUN --network=bridge x")).message, 'invalid network mode "bridge"');
    assert.equal(errorOf(() => first("RUN --security=x y")).message, 'security "x" is not valid');
  });

  void test("ONBUILD restrictions and SHELL form", () => {
    assert.equal(errorOf(() => first("ONBUILD FROM scratch")).message, "FROM isn't allowed as an ONBUILD trigger");
    assert.equal(errorOf(() => first("ONBUILD ONBUILD RUN x")).message, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
    assert.equal(errorOf(() => first("SHELL bash -c")).message, "SHELL requires the arguments to be in JSON form");
    assert.equal(errorOf(() => first("SHELL []")).message, "SHELL requires at least one argument");
    assert.equal(errorOf(() => first("COPY a <<EOF\nEOF")).message, "COPY cannot accept a heredoc as a destination");
    assert.equal(errorOf(() => first("HEALTHCHECK NONE x")).message, "HEALTHCHECK NONE takes no arguments");
    assert.equal(errorOf(() => first("HEALTHCHECK FOO x")).message, 'Unknown type "FOO" in HEALTHCHECK (try CMD)');
    assert.equal(errorOf(() => first("HEALTHCHECK CMD")).message, "Missing command after HEALTHCHECK CMD");
    assert.equal(errorOf(() => first("HEALTHCHECK --interval=50ns CMD x")).message, 'Interval "interval" cannot be less than 1ms');
    assert.equal(errorOf(() => first("HEALTHCHECK --retries=-1 CMD x")).message, "--retries cannot be negative (-1)");
    assert.equal(errorOf(() => first("HEALTHCHECK --timeout=3 CMD x")).message, 'time: missing unit in duration "3"');
  });

  void test("parseCommand refuses FROM", () => {
    assert.throws(() => parseCommand(parse("FROM a").ast.children[0]!), /is not a command type/);
  });
});

void describe("instructions: commands", () => {
  void test("ENV, LABEL, MAINTAINER, WORKDIR, USER, VOLUME, STOPSIGNAL, EXPOSE", () => {
    assert.deepEqual((only("ENV A=1 B=\"2 3\"") as { env: unknown }).env, [
      { key: "A", value: "1", noDelim: false },
      { key: "B", value: '"2 3"', noDelim: false },
    ]);
    assert.deepEqual((only("ENV A 1 2") as { env: unknown }).env, [{ key: "A", value: "1 2", noDelim: true }]);
    assert.deepEqual((only('LABEL "a b"=c') as { labels: unknown }).labels, [{ key: '"a b"', value: "c", noDelim: false }]);
    const m = only("MAINTAINER Jane <j@x>");
    assert.ok(m.kind === "maintainer" && m.maintainer === "Jane <j@x>" && m.code === "MAINTAINER Jane <j@x>");
    const w = only("WORKDIR /a b");
    assert.ok(w.kind === "workdir" && w.path === "/a b");
    const u = only("user root:root");
    assert.ok(u.kind === "user" && u.user === "root:root" && u.name === "user");
    const v = only('VOLUME ["/a", "/b"]');
    assert.ok(v.kind === "volume");
    assert.deepEqual(v.volumes, ["/a", "/b"]);
    const s = only("STOPSIGNAL SIGKILL");
    assert.ok(s.kind === "stopsignal" && s.signal === "SIGKILL");
    const e = only("EXPOSE 8080 80/udp 443");
    assert.ok(e.kind === "expose");
    assert.deepEqual(e.ports, ["443", "80/udp", "8080"]);
  });

  void test("CMD, ENTRYPOINT, SHELL, RUN forms", () => {
    const c = only("CMD echo  hi");
    assert.ok(c.kind === "cmd");
    assert.deepEqual([c.cmdLine, c.prependShell], [["echo  hi"], true]);
    const j = only('ENTRYPOINT ["a", "b"]');
    assert.ok(j.kind === "entrypoint");
    assert.deepEqual([j.cmdLine, j.prependShell], [["a", "b"], false]);
    const sh = only('SHELL ["pwsh", "-c"]');
    assert.ok(sh.kind === "shell");
    assert.deepEqual(sh.shell, ["pwsh", "-c"]);
    const r = only("RUN <<-EOF bash\n\techo $HOME\nEOF");
    assert.ok(r.kind === "run");
    assert.deepEqual(r.cmdLine, ["<<-EOF bash"]);
    assert.deepEqual(r.files, [{ name: "EOF", data: "\techo $HOME\n", chomp: true }]);
    assert.deepEqual([r.network, r.security, r.mounts, r.devices, r.flagsUsed], ["default", "sandbox", [], [], []]);
  });

  void test("RUN flags", () => {
    const r = only(
      "RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000 --mount=type=secret,id=tok,env=TOK,required --network=none --security=insecure --device=vendor.com/gpu=all,required=false cmd",
    );
    assert.ok(r.kind === "run");
    assert.deepEqual(r.flagsUsed.sort(), ["device", "mount", "network", "security"]);
    assert.equal(r.network, "none");
    assert.equal(r.security, "insecure");
    assert.deepEqual(r.devices, [{ name: "vendor.com/gpu=all", required: false }]);
    assert.equal(r.mountsNeedExpansion, false);
    assert.deepEqual(r.mounts[0], {
      type: "cache", from: "", source: "", target: "/root/.cache", readOnly: false, sizeLimit: 0, cacheId: "pip",
      cacheSharing: "locked", required: false, env: undefined, mode: 0o755, uid: 1000, gid: undefined,
    });
    assert.deepEqual(
      { type: r.mounts[1]!.type, id: r.mounts[1]!.cacheId, env: r.mounts[1]!.env, required: r.mounts[1]!.required, ro: r.mounts[1]!.readOnly },
      { type: "secret", id: "tok", env: "TOK", required: true, ro: true },
    );
  });

  void test("RUN mounts with variables wait for expansion", () => {
    const r = only("RUN --mount=type=$T,target=$DIR,uid=${UID} x");
    assert.ok(r.kind === "run");
    assert.equal(r.mountsNeedExpansion, true);
    assert.deepEqual(r.mounts, []);
    const lex = new ShellLex();
    const env = new Map([
      ["T", "tmpfs"],
      ["DIR", "/t"],
      ["UID", "0"],
    ]);
    assert.throws(() => expandRunMounts(r, (w) => lex.processWord(w, env)), { message: 'uid not allowed for "tmpfs" type mounts' });
    env.set("T", "cache");
    const [m] = expandRunMounts(r, (w) => lex.processWord(w, env));
    assert.deepEqual([m!.type, m!.target, m!.uid], ["cache", "/t", 0]);
    assert.equal(errorOf(() => first("RUN --mount=from=$X x")).message, "'from' doesn't support variable expansion, define alias stage instead");
  });

  void test("mount validation", () => {
    const id = (w: string): string => w;
    assert.equal(parseMount("target=/x", id).readOnly, true);
    assert.equal(parseMount("type=tmpfs,target=/x,size=64m", id).sizeLimit, 64 * 1024 * 1024);
    assert.equal(parseMount("type=bind,rw,target=/x", id).readOnly, false);
    assert.equal(parseMount('type=bind,"target=/a,b"', id).target, "/a,b");
    assert.throws(() => parseMount("type=cach,target=/x", id), { message: 'unsupported mount type "cach" (did you mean cache?)' });
    assert.throws(() => parseMount("type=cache,sharing=lock", id), { message: 'unsupported sharing value "lock" (did you mean locked?)' });
    assert.throws(() => parseMount("type=cache,targte=/x", id), { message: "unexpected key 'targte' in 'targte=/x' (did you mean target?)" });
    assert.throws(() => parseMount("type=bind,required", id), { message: "unexpected key 'required' for mount type 'bind'" });
    assert.throws(() => parseMount("type=bind,foo", id), { message: "invalid field 'foo' must be a key=value pair" });
    assert.throws(() => parseMount("type=secret", id), { message: "invalid secret mount. one of source, target required" });
    assert.throws(() => parseMount("type=bind,sharing=shared", id), { message: "invalid cache sharing set for bind mount" });
    assert.throws(() => parseMount("type=cache,mode=9", id), { message: "invalid value 9 for mode" });
    assert.throws(() => parseMount('a"b', id), /failed to parse csv mounts/);
    assert.deepEqual(parseDevice("name=x,required"), { name: "x", required: true });
  });

  void test("COPY and ADD flags and heredoc sources", () => {
    const c = only("COPY --from=build --chown=1:2 --chmod=755 --link --parents --exclude=*.md --exclude=tmp <<A src/ /dst/\nhello $X\nA");
    assert.ok(c.kind === "copy");
    assert.deepEqual(
      [c.from, c.chown, c.chmod, c.link, c.parents, c.excludePatterns, c.sourcePaths, c.destPath],
      ["build", "1:2", "755", true, true, ["*.md", "tmp"], ["src/"], "/dst/"],
    );
    assert.deepEqual(c.sourceContents, [{ path: "A", data: "hello $X\n", expand: true }]);
    const a = only("ADD --checksum=sha256:abc --keep-git-dir --unpack=false --chown=u https://x/y.tar /z");
    assert.ok(a.kind === "add");
    assert.deepEqual([a.checksum, a.keepGitDir, a.unpack, a.chown, a.link], ["sha256:abc", true, false, "u", false]);
    const plain = only("ADD a b");
    assert.ok(plain.kind === "add");
    assert.deepEqual([plain.keepGitDir, plain.unpack], [undefined, undefined]);
    const json = only('COPY ["a b", "c"]');
    assert.ok(json.kind === "copy");
    assert.deepEqual([json.sourcePaths, json.destPath], [["a b"], "c"]);
  });

  void test("HEALTHCHECK", () => {
    const h = only("HEALTHCHECK --interval=5s --timeout=1m30s --start-period=0s --start-interval=500ms --retries=3 CMD curl -f x");
    assert.ok(h.kind === "healthcheck");
    assert.deepEqual(h.health, { test: ["CMD-SHELL", "curl -f x"], interval: 5e9, timeout: 90e9, startPeriod: 0, startInterval: 5e8, retries: 3 });
    const j = only('HEALTHCHECK CMD ["a", "b"]');
    assert.ok(j.kind === "healthcheck");
    assert.deepEqual(j.health.test, ["CMD", "a", "b"]);
    const n = only("HEALTHCHECK none");
    assert.ok(n.kind === "healthcheck");
    assert.deepEqual(n.health.test, ["NONE"]);
  });

  void test("ONBUILD keeps the trigger text, with heredocs", () => {
    const o = only("onbuild  RUN <<EOF\necho hi\nEOF");
    assert.ok(o.kind === "onbuild");
    assert.equal(o.expression, "RUN <<EOF\necho hi\nEOF");
    const trig = parseCommand(parse(o.expression).ast.children[0]!);
    assert.ok(trig.kind === "run");
    assert.deepEqual(trig.files, [{ name: "EOF", data: "echo hi\n", chomp: false }]);
  });
});

void describe("instructions: expansion", () => {
  void test("expandCommand expands BuildKit's fields only", () => {
    const lex = new ShellLex();
    const env = new Map([
      ["V", "val"],
      ["D", "/dst"],
    ]);
    const expand = (w: string): string => lex.processWord(w, env);
    const rawLex = new ShellLex("\\", { skipProcessQuotes: true });
    const expandRaw = (w: string): string => rawLex.processWord(w, env);
    const c = only('COPY --chown=$V --from=$V <<A "$V" $D\n"$V"\nA');
    assert.ok(c.kind === "copy");
    const ec = expandCommand(c, expand, expandRaw);
    assert.deepEqual([ec.chown, ec.from, ec.sourcePaths, ec.destPath, ec.sourceContents[0]!.data], ["val", "$V", ["val"], "/dst", '"val"\n']);
    assert.equal(c.chown, "$V");
    const e = expandCommand(only('ENV K_$V="a $V"'), expand);
    assert.ok(e.kind === "env");
    assert.deepEqual(e.env, [{ key: "K_val", value: "a val", noDelim: false }]);
    const cmd = expandCommand(only("CMD echo $V"), expand);
    assert.ok(cmd.kind === "cmd");
    assert.deepEqual(cmd.cmdLine, ["echo $V"]);
  });

  void test("durations and sizes follow Go", () => {
    assert.equal(parseGoDuration("1h2m3.5s"), 3723.5e9);
    assert.equal(parseGoDuration("-1.5ms"), -1.5e6);
    assert.equal(parseGoDuration("0"), 0);
    assert.throws(() => parseGoDuration("1x"), { message: 'time: unknown unit "x" in duration "1x"' });
    assert.equal(parseRAMInBytes("1.5GiB"), 1.5 * 1024 ** 3);
    assert.equal(parseRAMInBytes("100"), 100);
    assert.throws(() => parseRAMInBytes("10q"));
  });
});
