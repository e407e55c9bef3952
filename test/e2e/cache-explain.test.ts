// --explain-cache: a step that runs says which of its inputs changed since the last build.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

let env: KilnEnv | undefined;
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

test("--explain-cache names the changed file, the changed input and the changed command", async () => {
  env = await kilnEnv();
  const dockerfile = (cmd: string) => ["FROM busybox", "COPY a.txt /a", "COPY b.txt /b", `RUN ${cmd}`].join("\n");
  const ctx = await env.context({ Dockerfile: dockerfile("cat /a /b > /c"), "a.txt": "A\n", "b.txt": "B\n" });
  const first = await env.run(["build", ctx, "--explain-cache"]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /cache miss: no earlier build of this step in this cache/);

  await writeFile(path.join(ctx, "b.txt"), "B2\n");
  const second = await env.run(["build", ctx, "--explain-cache"]);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /cache miss: content changed: \/b\.txt from \[internal\] load build context/);
  assert.match(second.stderr, /cache miss: input 0 changed: \[3\/4\] COPY b\.txt \/b/);
  assert.doesNotMatch(second.stderr, /COPY a\.txt[^\n]*\n#\d+ [\d.]+ cache miss/);

  await writeFile(path.join(ctx, "Dockerfile"), dockerfile("cat /b /a > /c"));
  const third = await env.run(["build", ctx], { env: { KILN_EXPLAIN_CACHE: "1" } });
  assert.equal(third.code, 0, third.stderr);
  assert.match(third.stderr, /cache miss: the step changed: was "\[4\/4\] RUN cat \/a \/b > \/c"/);
});
