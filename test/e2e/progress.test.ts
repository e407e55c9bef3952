// The progress display end to end: BuildKit's tty view in a real terminal (tmux) — the final
// frame, live log windows, colours, NO_COLOR, a failed step — and the plain and rawjson streams.
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

interface Screen {
  text: string;
  ansi: string;
}

/**
 * Runs `kiln build CTX` in a detached 120×40 tmux session of its own and returns the final screen
 * (plain and with escapes). `during` may look at the screen while the build runs.
 */
async function inTmux(ctx: string, extraEnv: Record<string, string> = {}, during?: (s: Screen) => boolean): Promise<Screen & { seen: boolean }> {
  const session = `kiln-tty-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const envs = Object.entries(extraEnv).map(([k, v]) => `${k}=${v}`);
  const cmd = ["env", "-u", "BUILDKIT_PROGRESS", "-u", "NO_COLOR", "-u", "BUILDKIT_COLORS", ...envs, process.execPath, path.join(repoRoot, "bin", "kiln"), "--root", env.root, "--config", env.config, "build", ctx];
  const quoted = cmd.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  await sh("tmux", ["new-session", "-d", "-x", "120", "-y", "40", "-s", session, `${quoted}; echo EXIT=$?; sleep 60`]);
  const capture = async (): Promise<Screen> => ({
    text: (await sh("tmux", ["capture-pane", "-p", "-t", session])).stdout,
    ansi: (await sh("tmux", ["capture-pane", "-p", "-e", "-t", session])).stdout,
  });
  let seen = false;
  try {
    const deadline = Date.now() + 90_000;
    for (;;) {
      const s = await capture();
      if (/EXIT=\d+/.test(s.text)) return { ...(await capture()), seen };
      if (during && !seen) seen = during(s);
      if (Date.now() > deadline) throw new Error(`build did not finish:\n${s.text}`);
      await sleep(50);
    }
  } finally {
    await sh("tmux", ["kill-session", "-t", session]).catch(() => undefined);
  }
}

/** The screen's lines up to the shell's EXIT line. */
function frameLines(text: string): string[] {
  const lines = text.split("\n");
  return lines.slice(0, lines.findIndex((l) => l.startsWith("EXIT="))).filter((l) => l !== "");
}

test("tty: BuildKit's frame in a real terminal — live log window, right-aligned timers, blue finished steps, CACHED on a rebuild", async () => {
  const ctx = await env.context({
    Dockerfile: "FROM busybox AS base\nRUN echo base > /base\nFROM base\nRUN for i in 1 2 3 4 5 6 7 8 9 10; do echo tick-$i; sleep 0.2; done\nRUN echo tty-test > /x\n",
  });
  const first = await inTmux(ctx, {}, (s) => /^ => => # tick-[2-9]/m.test(s.text) && /^\[\+\] Building \d+\.\ds \(\d+\/\d+\) *$/m.test(s.text));
  assert.ok(first.seen, "the running step's output showed under it, under a header without FINISHED");
  assert.match(first.text, /EXIT=0/);
  const lines = frameLines(first.text);
  assert.match(lines[0]!, /^\[\+\] Building \d+\.\ds \((\d+)\/\1\) FINISHED$/);
  assert.ok(lines.some((l) => /^ => \[stage-1 2\/2\] RUN echo tty-test > \/x +\d+\.\ds$/.test(l)), first.text);
  assert.ok(lines.some((l) => /^ => \[base 1\/2\] FROM docker\.io\/library\/busybox/.test(l)), first.text);
  // The final frame shows no log windows, and every line ends at the terminal's right edge (timer right-aligned in 120 columns).
  assert.ok(!lines.some((l) => l.startsWith(" => => #")), first.text);
  for (const l of lines.slice(1)) assert.equal(l.length, 119, JSON.stringify(l));
  assert.ok(first.ansi.includes("\x1b[34m"), "finished steps are blue");

  const second = await inTmux(ctx);
  assert.match(second.text, /FINISHED/);
  assert.match(second.text, /^ => CACHED \[stage-1 2\/2\] RUN echo tty-test > \/x +0\.0s$/m);
  assert.match(second.text, /^ => CACHED \[base 2\/2\] RUN echo base > \/base +0\.0s$/m);
});

test("tty: NO_COLOR turns colours off; BUILDKIT_COLORS changes them", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo colours > /x\n" });
  const plain = await inTmux(ctx, { NO_COLOR: "1" });
  assert.match(plain.text, /FINISHED/);
  assert.ok(!plain.ansi.includes("\x1b["), "no escape codes at all: " + JSON.stringify(plain.ansi));
  const ctx2 = await env.context({ Dockerfile: "FROM busybox\nRUN echo colours2 > /x\n" });
  const green = await inTmux(ctx2, { BUILDKIT_COLORS: "run=green" });
  assert.ok(green.ansi.includes("\x1b[32m"), "finished steps are green");
  assert.ok(!green.ansi.includes("\x1b[34m"), "and not blue");
});

test("tty: a failed step is red, its output and the Dockerfile excerpt follow the finished frame", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo tty-boom && exit 4\n" });
  const r = await inTmux(ctx);
  assert.match(r.text, /EXIT=1/);
  const lines = frameLines(r.text);
  const err = lines.findIndex((l) => /^ => ERROR \[2\/2\] RUN echo tty-boom && exit 4 +\d+\.\ds$/.test(l));
  assert.ok(err > 0, r.text);
  assert.match(r.ansi, /\x1b\[31m => ERROR \[2\/2\] RUN echo tty-boom/);
  // After the frame: BuildKit's summary of the step's output, then the error with the Dockerfile excerpt.
  const rest = lines.slice(err + 1);
  assert.deepEqual(rest.slice(0, 2), ["------", " > [2/2] RUN echo tty-boom && exit 4:"]);
  assert.match(rest[2]!, /^\d+\.\d{3} tty-boom$/);
  assert.equal(rest[3], "------");
  assert.ok(rest.slice(4).some((l) => /^Dockerfile:2/.test(l)), r.text);
  assert.ok(rest.slice(4).some((l) => /^error: .*did not complete successfully/.test(l)), r.text);
  // The frame above stayed intact: header first, nothing after the summary redrawn over it.
  assert.match(lines[0]!, /^\[\+\] Building \d+\.\ds \(\d+\/\d+\)/);
});

test("plain: buildctl's #N blocks from a real build", async () => {
  // A root of its own, so the image is pulled and its layers show.
  const fresh = await kilnEnv();
  try {
    const ctx = await fresh.context({ Dockerfile: "FROM busybox\nRUN echo plain-one && sleep 0.2 && echo plain-two\n" });
    const r = await fresh.run(["build", ctx, "--progress", "plain"]);
    assert.equal(r.code, 0, r.stderr);
    const blocks = r.stderr.trimEnd().split("\n\n");
    for (const b of blocks) assert.match(b, /^#\d+ \S.*\n(#\d+ .*\n)*#\d+ (DONE \d+\.\ds|CACHED)$/, JSON.stringify(b));
    assert.match(blocks[0]!, /^#1 \[internal\] load (build definition from Dockerfile|\.dockerignore)/);
    const run = blocks.find((b) => b.includes("RUN echo plain-one"))!;
    const n = /^#(\d+) /.exec(run)![1];
    assert.match(run, new RegExp(`^#${n} \\[2/2\\] RUN echo plain-one && sleep 0\\.2 && echo plain-two\\n#${n} 0\\.\\d{3} plain-one\\n#${n} 0\\.\\d{3} plain-two\\n#${n} DONE 0\\.\\ds$`));
    // The pulled image's layer: its size as BuildKit writes it, and `done`.
    assert.match(r.stderr, /^#\d+ (\S+ )?sha256:[0-9a-f]{64} [\d.]+[kM]?B \/ [\d.]+[kM]?B( \d+\.\ds)? done$/m);
  } finally {
    await fresh.close();
    await stopSharedRegistry();
  }
});

test("progress modes: BUILDKIT_PROGRESS sets the default; tty needs a terminal", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo modes\n" });
  const raw = await env.run(["build", ctx], { env: { BUILDKIT_PROGRESS: "rawjson" } });
  assert.equal(raw.code, 0, raw.stderr);
  assert.ok(raw.stderr.trim().split("\n").every((l) => l.startsWith("{")), raw.stderr);
  const flagWins = await env.run(["build", ctx, "--progress", "plain"], { env: { BUILDKIT_PROGRESS: "rawjson" } });
  assert.match(flagWins.stderr, /^#1 /);
  const tty = await env.run(["build", ctx, "--progress", "tty"]);
  assert.equal(tty.code, 1);
  assert.match(tty.stderr, /failed to get console/);
});

test("rawjson: one SolveStatus JSON object per line", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo raw-json-log\n" });
  const r = await env.run(["build", ctx, "--progress", "rawjson"]);
  assert.equal(r.code, 0, r.stderr);
  type Ev = { vertexes?: { name: string; digest: string; inputs?: string[]; started?: string; completed?: string; cached?: boolean }[]; statuses?: { id: string; current: number; timestamp: string }[]; logs?: { vertex: string; stream: number; data: string; timestamp: string }[] };
  const events = r.stderr
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Ev);
  const vertexes = events.flatMap((e) => e.vertexes ?? []);
  const run = vertexes.filter((v) => v.name === "[2/2] RUN echo raw-json-log");
  assert.ok(run.length >= 2, "started, then completed");
  assert.equal(run[0]!.inputs?.length, 1, "the RUN's input is the FROM");
  const logs = events.flatMap((e) => e.logs ?? []);
  const log = logs.find((l) => Buffer.from(l.data, "base64").toString().includes("raw-json-log"));
  assert.ok(log);
  assert.equal(log.vertex, run[0]!.digest);
  assert.equal(log.stream, 1);
  const rfc3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$/;
  assert.match(log.timestamp, rfc3339);
  assert.ok(vertexes.some((v) => v.completed && rfc3339.test(v.completed)));
  for (const s of events.flatMap((e) => e.statuses ?? [])) {
    assert.equal(typeof s.current, "number");
    assert.match(s.timestamp, rfc3339);
  }
});
