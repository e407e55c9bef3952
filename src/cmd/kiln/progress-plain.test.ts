// `--progress plain` against recorded event sequences: the exact text buildctl's progressui
// prints for the same updates at the same times (100 ms render limit, 150 ms ticker).
import { test } from "node:test";
import assert from "node:assert/strict";
import { PlainPrinter, resolveProgressMode } from "./progress.js";
import { TestClock, dg, play } from "./progress/testclock.js";
import type { ProgressEvent, VertexStatus } from "../../solver/types.js";

const T0 = Date.UTC(2024, 0, 2, 3, 4, 5);
const at = (ms: number) => new Date(T0 + ms);

function vtx(n: number, name: string, st: { started?: number; completed?: number; cached?: boolean; error?: string; inputs?: number[] }): ProgressEvent {
  const v: VertexStatus = { digest: dg(n), name, inputs: (st.inputs ?? []).map(dg) };
  if (st.started !== undefined) v.started = at(st.started);
  if (st.completed !== undefined) v.completed = at(st.completed);
  if (st.cached) v.cached = true;
  if (st.error) v.error = st.error;
  return { vertexes: [v] };
}

function status(n: number, id: string, st: { started?: number; completed?: number; current?: number; total?: number }): ProgressEvent {
  return {
    statuses: [{ id, vertex: dg(n), current: st.current ?? 0, total: st.total, started: st.started !== undefined ? at(st.started) : undefined, completed: st.completed !== undefined ? at(st.completed) : undefined }],
  };
}

function log(n: number, t: number, data: string, stream: 1 | 2 = 1): ProgressEvent {
  return { logs: [{ vertex: dg(n), stream, data: Buffer.from(data), timestamp: at(t) }] };
}

function render(steps: [number, ProgressEvent][], finishAt?: number, env: NodeJS.ProcessEnv = {}): string {
  const clock = new TestClock(T0);
  let out = "";
  const p = new PlainPrinter({ write: (s: string) => ((out += s), true) } as NodeJS.WritableStream, { clock, env });
  play(clock, T0, p, steps, finishAt);
  return out;
}

test("plain: headers, statuses with sizes and times, logs with seconds since start, DONE, blank line between vertices", () => {
  const out = render([
    [0, vtx(1, "[internal] load build definition from Dockerfile", { started: 0 })],
    [20, vtx(1, "[internal] load build definition from Dockerfile", { started: 0, completed: 20 })],
    [200, vtx(2, "[1/2] FROM docker.io/library/busybox:latest", { started: 200 })],
    [200, status(2, "resolve docker.io/library/busybox:latest", { started: 200 })],
    [250, status(2, "resolve docker.io/library/busybox:latest", { started: 200, completed: 250 })],
    [260, status(2, "sha256:aaaa", { started: 260, total: 3_400_000 })],
    [400, status(2, "sha256:aaaa", { started: 260, current: 1_200_000, total: 3_400_000 })],
    [700, status(2, "sha256:aaaa", { started: 260, current: 3_400_000, total: 3_400_000, completed: 700 })],
    [720, status(2, "extracting sha256:aaaa", { started: 720 })],
    [900, status(2, "extracting sha256:aaaa", { started: 720, completed: 900 })],
    [910, vtx(2, "[1/2] FROM docker.io/library/busybox:latest", { started: 200, completed: 910 })],
    [1000, vtx(3, "[2/2] RUN echo hi", { started: 1000, inputs: [2] })],
    [1123, log(3, 1123, "hi\n")],
    [1500, log(3, 1500, "there\n", 2)],
    [2000, vtx(3, "[2/2] RUN echo hi", { started: 1000, completed: 2000, inputs: [2] })],
  ]);
  assert.equal(
    out,
    [
      "#1 [internal] load build definition from Dockerfile",
      "#1 DONE 0.0s",
      "",
      "#2 [1/2] FROM docker.io/library/busybox:latest",
      "#2 resolve docker.io/library/busybox:latest 0.1s done",
      "#2 sha256:aaaa 0B / 3.40MB",
      "#2 sha256:aaaa 1.20MB / 3.40MB 0.1s",
      "#2 sha256:aaaa 3.40MB / 3.40MB 0.4s done",
      "#2 extracting sha256:aaaa",
      "#2 extracting sha256:aaaa 0.2s done",
      "#2 DONE 0.7s",
      "",
      "#3 [2/2] RUN echo hi",
      "#3 0.123 hi",
      "#3 0.500 there",
      "#3 DONE 1.0s",
      "",
    ].join("\n"),
  );
});

test("plain: CACHED, ERROR with the failed step's last lines after the display, CANCELED", () => {
  const err = 'process "/bin/sh -c false" did not complete successfully: exit code: 1';
  const out = render(
    [
      [0, vtx(1, "[internal] load build definition from Dockerfile", { started: 0, completed: 0, cached: true })],
      [0, vtx(2, "[1/3] FROM docker.io/library/busybox:latest", { started: 0, completed: 0, cached: true })],
      [300, vtx(3, "[2/3] RUN false", { started: 300 })],
      [300, vtx(4, "[stage-1 2/2] RUN sleep 10", { started: 300 })],
      [350, log(3, 350, "oops\n", 2)],
      [400, vtx(3, "[2/3] RUN false", { started: 300, completed: 400, error: err })],
      [400, vtx(4, "[stage-1 2/2] RUN sleep 10", { started: 300, completed: 400, error: "context canceled" })],
    ],
    400,
  );
  assert.equal(
    out,
    [
      "#1 [internal] load build definition from Dockerfile",
      "#1 CACHED",
      "",
      "#2 [1/3] FROM docker.io/library/busybox:latest",
      "#2 CACHED",
      "",
      "#3 [2/3] RUN false",
      "#3 0.050 oops",
      `#3 ERROR: ${err}`,
      "",
      "#4 [stage-1 2/2] RUN sleep 10",
      "#4 CANCELED",
      "------",
      " > [2/3] RUN false:",
      "0.050 oops",
      "------",
      "",
    ].join("\n"),
  );
});

test("plain: a partial line is finished without a new prefix", () => {
  const out = render([
    [0, vtx(1, "[1/1] RUN step", { started: 0 })],
    [50, log(1, 50, "abc")],
    [200, log(1, 200, "def\nghi")],
    [310, vtx(1, "[1/1] RUN step", { started: 0, completed: 310 })],
  ]);
  assert.equal(out, ["#1 [1/1] RUN step", "#1 0.050 abcdef", "#1 0.200 ghi", "#1 DONE 0.3s", ""].join("\n"));
});

test("plain: the error summary repeats the failed step's last 10 printed lines", () => {
  const steps: [number, ProgressEvent][] = [[0, vtx(1, "[1/1] RUN make", { started: 0 })]];
  for (let i = 1; i <= 12; i++) steps.push([i * 10, log(1, i * 10, `line ${i}\n`)]);
  steps.push([200, vtx(1, "[1/1] RUN make", { started: 0, completed: 200, error: "exit code: 2" })]);
  const out = render(steps);
  const summary = out.slice(out.indexOf("------\n"));
  const kept = Array.from({ length: 10 }, (_, i) => `${(0.03 + i * 0.01).toFixed(3)} line ${i + 3}`);
  assert.equal(summary, ["------", " > [1/1] RUN make:", ...kept, "------", ""].join("\n"));
  assert.match(out, /#1 0\.010 line 1\n(.*\n){11}#1 ERROR: exit code: 2\n------/);
});

test("plain: the running vertex keeps the floor; another one's output waits, then `#N ...` hands over", () => {
  const steps: [number, ProgressEvent][] = [
    [0, vtx(1, "[a 2/2] RUN a", { started: 0 })],
    [10, vtx(2, "[b 2/2] RUN b", { started: 10 })],
    [50, log(1, 50, "a1\n")],
    [60, log(2, 60, "b1\n")],
  ];
  // A stays busy; B says nothing more. BuildKit lets B wait up to 10 s.
  for (let t = 500; t <= 12_000; t += 500) steps.push([t, log(1, t, `a${t}\n`)]);
  steps.push([12_200, log(1, 12_200, "partial")]);
  steps.push([12_500, vtx(2, "[b 2/2] RUN b", { started: 10, completed: 12_500 })]);
  steps.push([13_000, vtx(1, "[a 2/2] RUN a", { started: 0, completed: 13_000 })]);
  const out = render(steps);
  const lines = out.split("\n");
  const idx = (s: string) => lines.indexOf(s);
  // B's first line appears only after ten seconds of A's output …
  assert.ok(idx("#1 10.00 a10000") >= 0 && idx("#1 10.00 a10000") < idx("#2 [b 2/2] RUN b"), out);
  assert.ok(idx("#1 9.500 a9500") >= 0, "seconds keep three decimals below 10 s, two below 100 s");
  assert.equal(lines[idx("#2 [b 2/2] RUN b") - 2], "#1 ...");
  assert.equal(lines[idx("#2 [b 2/2] RUN b") - 1], "");
  assert.equal(lines[idx("#2 [b 2/2] RUN b") + 1], "#2 0.050 b1");
  // … then A, busier, takes the floor back under a repeated header.
  const back = lines.indexOf("#1 [a 2/2] RUN a", idx("#2 [b 2/2] RUN b"));
  assert.deepEqual(lines.slice(back - 2, back + 2), ["#2 ...", "", "#1 [a 2/2] RUN a", "#1 10.50 a10500"]);
  // A finished vertex closes its block; the next header follows a blank line, without `...`.
  assert.deepEqual(lines.slice(lines.indexOf("#2 DONE 12.5s"), lines.indexOf("#2 DONE 12.5s") + 3), ["#2 DONE 12.5s", "", "#1 [a 2/2] RUN a"]);
  assert.ok(out.includes("#2 DONE 12.5s"), out);
  // The partial line is closed with a newline before DONE.
  assert.match(out, /#1 12\.20 partial\n(.*\n)*#1 DONE 13\.0s\n$/);
  // Every vertex header is preceded by a blank line (except the first).
  lines.forEach((l, i) => {
    if (i > 0 && /^#\d+ \[/.test(l)) assert.equal(lines[i - 1], "", `line ${i}: ${l}`);
  });
});

test("plain: unfinished status lines are reprinted only after 5% progress or 5 s", () => {
  const steps: [number, ProgressEvent][] = [
    [0, vtx(1, "[1/1] FROM x", { started: 0 })],
    [10, status(1, "sha256:bbbb", { started: 10, current: 0, total: 1000_000 })],
  ];
  // 0.1% every 200 ms: nothing new until 5 s have passed since the last printed line …
  for (let i = 1; i <= 25; i++) steps.push([10 + i * 200, status(1, "sha256:bbbb", { started: 10, current: i * 1000, total: 1000_000 })]);
  // … then 4.9% more is not enough, 5% is.
  steps.push([5210, status(1, "sha256:bbbb", { started: 10, current: 74_000, total: 1000_000 })]);
  steps.push([5410, status(1, "sha256:bbbb", { started: 10, current: 75_000, total: 1000_000 })]);
  steps.push([6200, status(1, "sha256:bbbb", { started: 10, current: 1000_000, total: 1000_000, completed: 6200 })]);
  steps.push([6300, vtx(1, "[1/1] FROM x", { started: 0, completed: 6300 })]);
  const out = render(steps);
  const sizes = [...out.matchAll(/^#1 sha256:bbbb (\S+) \/ 1\.00MB/gm)].map((m) => m[1]);
  assert.deepEqual(sizes, ["0B", "25.00kB", "75.00kB", "1.00MB"], out);
  assert.match(out, /#1 sha256:bbbb 25\.00kB \/ 1\.00MB 5\.0s\n/);
  assert.match(out, /#1 sha256:bbbb 1\.00MB \/ 1\.00MB 6\.2s done\n#1 DONE 6\.3s\n$/);
});

test("plain: warnings, and names cut at 72 bytes with PROGRESS_NO_TRUNC=0", () => {
  const long = "[2/2] RUN " + "x".repeat(100);
  const out = render(
    [
      [0, vtx(1, long, { started: 0 })],
      [0, { warnings: [{ vertex: dg(1), level: 1, short: "something odd" }] }],
      [50, log(1, 50, "out\n")],
      [120, vtx(1, long, { started: 0, completed: 120 })],
    ],
    undefined,
    { PROGRESS_NO_TRUNC: "0" },
  );
  assert.equal(out, [`#1 ${long.slice(0, 72)}...`, "#1 WARN: something odd", "#1 0.050 out", "#1 DONE 0.1s", ""].join("\n"));
});

test("progress mode: auto is tty on a terminal, BUILDKIT_PROGRESS replaces auto, tty needs a terminal", () => {
  assert.equal(resolveProgressMode("auto", true, {}), "tty");
  assert.equal(resolveProgressMode("auto", false, {}), "plain");
  assert.equal(resolveProgressMode("", false, {}), "plain");
  assert.equal(resolveProgressMode("auto", true, { BUILDKIT_PROGRESS: "plain" }), "plain");
  assert.equal(resolveProgressMode("auto", false, { BUILDKIT_PROGRESS: "rawjson" }), "rawjson");
  assert.equal(resolveProgressMode("tty", true, { BUILDKIT_PROGRESS: "plain" }), "tty");
  assert.equal(resolveProgressMode("plain", true, {}), "plain");
  assert.throws(() => resolveProgressMode("tty", false, {}), /failed to get console/);
  assert.throws(() => resolveProgressMode("auto", false, { BUILDKIT_PROGRESS: "fancy" }), /invalid progress mode fancy/);
});
