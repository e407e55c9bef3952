// The progress display: BuildKit's tty view in a real terminal (tmux), its colours and NO_COLOR,
// and the rawjson stream.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { kilnEnv, repoRoot, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

const sh = promisify(execFile);
let env: KilnEnv;
before(async () => {
  env = await kilnEnv();
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

/** Runs a kiln build in a detached 120×40 tmux session; returns the final screen (text and with escapes). */
async function inTmux(ctx: string, extraEnv: Record<string, string> = {}): Promise<{ text: string; ansi: string }> {
  const session = `kiln-tty-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const envs = Object.entries(extraEnv).map(([k, v]) => `${k}=${v}`);
  const cmd = ["env", "-u", "BUILDKIT_PROGRESS", ...envs, process.execPath, path.join(repoRoot, "bin", "kiln"), "--root", env.root, "--config", env.config, "build", ctx];
  const quoted = cmd.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  await sh("tmux", ["new-session", "-d", "-x", "120", "-y", "40", "-s", session, `${quoted}; echo EXIT=$?; sleep 60`]);
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { stdout } = await sh("tmux", ["capture-pane", "-p", "-t", session]);
      if (/EXIT=\d+/.test(stdout)) {
        const { stdout: ansi } = await sh("tmux", ["capture-pane", "-p", "-e", "-t", session]);
        return { text: stdout, ansi };
      }
      if (Date.now() > deadline) throw new Error(`build did not finish:\n${stdout}`);
      await sleep(100);
    }
  } finally {
    await sh("tmux", ["kill-session", "-t", session]).catch(() => undefined);
  }
}

test("tty: BuildKit's frame in a real terminal, blue finished steps, CACHED on a rebuild", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo tty-test > /x\n" });
  const first = await inTmux(ctx);
  assert.match(first.text, /EXIT=0/);
  assert.match(first.text, /^\[\+\] Building \d+\.\ds \(\d+\/\d+\) FINISHED/m);
  assert.match(first.text, /^ => \[stage-0 2\/2\] RUN echo tty-test > \/x +\d+\.\ds$/m);
  // Lines end at the terminal's right edge: the timer is right-aligned in 120 columns.
  const line = first.text.split("\n").find((l) => l.includes("RUN echo tty-test"))!;
  assert.equal(line.length, 119, JSON.stringify(line));
  assert.ok(first.ansi.includes("\x1b[34m"), "finished steps are blue");
  const second = await inTmux(ctx);
  assert.match(second.text, /^ => CACHED \[stage-0 2\/2\] RUN echo tty-test/m);
});

test("tty: NO_COLOR turns colours off; BUILDKIT_COLORS changes them", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo colours > /x\n" });
  const plain = await inTmux(ctx, { NO_COLOR: "1" });
  assert.match(plain.text, /FINISHED/);
  assert.ok(!/\x1b\[3\dm/.test(plain.ansi), "no colour codes");
  const ctx2 = await env.context({ Dockerfile: "FROM busybox\nRUN echo colours2 > /x\n" });
  const green = await inTmux(ctx2, { BUILDKIT_COLORS: "run=green" });
  assert.ok(green.ansi.includes("\x1b[32m"), "finished steps are green");
});

test("rawjson: one SolveStatus JSON object per line", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo raw-json-log\n" });
  const r = await env.run(["build", ctx, "--progress", "rawjson"]);
  assert.equal(r.code, 0, r.stderr);
  const events = r.stderr.trim().split("\n").map((l) => JSON.parse(l) as { vertexes?: { name: string; digest: string; completed?: string }[]; logs?: { data: string }[] });
  const names = events.flatMap((e) => e.vertexes ?? []).map((v) => v.name);
  assert.ok(names.includes("[stage-0 2/2] RUN echo raw-json-log"));
  const logs = events.flatMap((e) => e.logs ?? []).map((l) => Buffer.from(l.data, "base64").toString());
  assert.ok(logs.some((l) => l.includes("raw-json-log")));
  assert.ok(events.flatMap((e) => e.vertexes ?? []).some((v) => v.completed && /^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(v.completed)));
});
