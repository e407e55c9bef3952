// Heredocs end to end: RUN scripts (plain, shebang, fed to a command, chomped), COPY/ADD inline
// files with and without expansion, several heredocs on one line.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

let env: KilnEnv;
before(async () => {
  env = await kilnEnv();
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

test("RUN and COPY heredocs lower as BuildKit's converter does", async () => {
  const ctx = await env.context({
    Dockerfile: [
      "FROM busybox",
      "ARG NAME=world",
      "RUN <<EOF",
      'echo "hello $NAME" > /greeting',
      "echo second line >> /greeting",
      "EOF",
      "RUN <<EOF",
      "#!/bin/sh",
      'echo "run as $0" > /shebang',
      "EOF",
      "RUN cat > /fed <<EOF",
      "value=$NAME",
      "EOF",
      "RUN <<-EOF sh",
      "\techo chomped > /chomped",
      "\tEOF",
      "COPY <<EOF /copied.txt",
      "name=${NAME}",
      "EOF",
      "COPY <<'EOF' /literal.txt",
      "name=${NAME}",
      "EOF",
      "ADD --chmod=755 <<A <<B /dir/",
      "first",
      "A",
      "second",
      "B",
      "RUN <<EOF cat /dir/A /dir/B > /both && echo done >> /both",
      "EOF",
    ].join("\n"),
  });
  const dest = path.join(env.tmp, "heredoc");
  const r = await env.run(["build", ctx, "-o", `type=local,dest=${dest}`]);
  assert.equal(r.code, 0, r.stderr);
  const read = (f: string) => readFile(path.join(dest, f), "utf8");
  assert.equal(await read("greeting"), "hello world\nsecond line\n");
  assert.equal(await read("shebang"), "run as /dev/pipes/EOF\n");
  assert.equal(await read("fed"), "value=world\n");
  assert.equal(await read("chomped"), "chomped\n");
  assert.equal(await read("copied.txt"), "name=world\n");
  assert.equal(await read("literal.txt"), "name=${NAME}\n");
  assert.equal(await read("dir/A"), "first\n");
  assert.equal(await read("dir/B"), "second\n");
  assert.equal((await stat(path.join(dest, "dir/A"))).mode & 0o777, 0o755);
  assert.equal(await read("both"), "first\nsecond\ndone\n");
  // The shebang script ran from a read-only mount that leaves nothing behind.
  await assert.rejects(stat(path.join(dest, "dev/pipes/EOF")));
  // Progress names the step by its first line, variables expanded.
  assert.match(r.stderr, /\[2\/9\] RUN <<EOF \(echo "hello world" > \/greeting\.\.\.\)/);
});
