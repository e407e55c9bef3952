// The tty display's frames (exact bytes and what a terminal shows after them), its colours, log
// windows, truncation, height limit and error summary; and the little terminal emulator behind
// the log windows. A real terminal (tmux) is exercised by test/e2e/progress.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TtyPrinter, terminalColors, ttyLogLines } from "./progress.js";
import { wrapHeight } from "./progress/console.js";
import type { Job } from "./progress/trace.js";
import { VT100 } from "./progress/vt100.js";
import { TestClock, dg } from "./progress/testclock.js";
import type { ProgressEvent } from "../../solver/types.js";

const T0 = Date.UTC(2024, 0, 2, 3, 4, 5);
const at = (ms: number) => new Date(T0 + ms);

/** Enough of a terminal to read frames back: text, newlines, cursor up/down/column, autowrap; SGR ignored. */
class Screen {
  rows: string[][];
  private y = 0;
  private x = 0;
  private wrapPending = false;
  constructor(
    private readonly w: number,
    private readonly h: number,
  ) {
    this.rows = Array.from({ length: h }, () => new Array<string>(w).fill(" "));
  }
  write(s: string): void {
    for (let i = 0; i < s.length; i++) {
      const ch = s[i]!;
      if (ch === "\x1b") {
        const m = /^\x1b\[(\??)(\d*)([A-Za-z])/.exec(s.slice(i))!;
        const n = m[2] === "" ? 1 : Number(m[2]);
        if (m[3] === "A") this.y = Math.max(0, this.y - n);
        else if (m[3] === "B") this.y = Math.min(this.h - 1, this.y + n);
        else if (m[3] === "G") this.x = Math.max(0, n - 1);
        this.wrapPending = false;
        i += m[0].length - 1;
      } else if (ch === "\n") {
        this.newline();
      } else {
        if (this.wrapPending) this.newline();
        this.rows[this.y]![this.x] = ch;
        if (this.x === this.w - 1) this.wrapPending = true;
        else this.x++;
      }
    }
  }
  private newline(): void {
    this.wrapPending = false;
    this.x = 0;
    if (this.y === this.h - 1) {
      this.rows.shift();
      this.rows.push(new Array<string>(this.w).fill(" "));
    } else this.y++;
  }
  /** The screen's text, without trailing spaces and without the blank line the first frame leaves above it. */
  text(): string {
    return this.rows
      .map((r) => r.join("").trimEnd())
      .join("\n")
      .replace(/^\n+/, "")
      .trimEnd();
  }
}

interface Harness {
  clock: TestClock;
  chunks: string[];
  screen: Screen;
  printer: TtyPrinter;
  send(ms: number, ev: ProgressEvent): void;
  finish(ms: number): string;
}

function harness(columns: number, rows: number, env: NodeJS.ProcessEnv = {}): Harness {
  const clock = new TestClock(T0);
  const chunks: string[] = [];
  const screen = new Screen(columns, rows);
  const out = {
    columns,
    rows,
    isTTY: true,
    write: (s: string) => {
      chunks.push(s);
      screen.write(s);
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  const printer = new TtyPrinter(out, { clock, env });
  return {
    clock,
    chunks,
    screen,
    printer,
    send(ms, ev) {
      clock.advanceTo(T0 + ms);
      printer.write(ev);
    },
    finish(ms) {
      clock.advanceTo(T0 + ms);
      printer.finish();
      return chunks[chunks.length - 1]!;
    },
  };
}

const vtx = (n: number, name: string, started: number, completed?: number, extra: { cached?: boolean; error?: string } = {}): ProgressEvent => ({
  vertexes: [{ digest: dg(n), name, inputs: [], started: at(started), completed: completed === undefined ? undefined : at(completed), ...extra }],
});
const log = (n: number, ms: number, data: string): ProgressEvent => ({ logs: [{ vertex: dg(n), stream: 1, data: Buffer.from(data), timestamp: at(ms) }] });

test("tty: the first frame, byte for byte, and the next one moving back over it", () => {
  const h = harness(60, 20);
  h.send(0, vtx(1, "[1/2] FROM docker.io/library/busybox", 0));
  const header = "[+] Building 0.0s (0/1) ".padEnd(59) + " \n";
  const line = " => [1/2] FROM docker.io/library/busybox".padEnd(53) + "  0.0s\n";
  assert.equal(h.chunks[0], "\x1b[1A\x1b[1B\x1b[0G\x1b[?25l" + header + line + "\x1b[?25h");
  // The ticker redraws 150 ms later with the timer moving; the cursor goes up over header + 1 line.
  h.clock.advanceTo(T0 + 150);
  assert.equal(h.chunks.length, 2);
  assert.ok(h.chunks[1]!.startsWith("\x1b[1A\x1b[1A\x1b[0G\x1b[?25l[+] Building 0.1s (0/1) "), JSON.stringify(h.chunks[1]));
  assert.ok(h.chunks[1]!.includes(" => [1/2] FROM docker.io/library/busybox".padEnd(53) + "  0.1s\n"));
  // Events within 100 ms of the last frame wait for the ticker.
  h.send(200, vtx(1, "[1/2] FROM docker.io/library/busybox", 0, 200));
  assert.equal(h.chunks.length, 2);
  h.send(260, vtx(2, "[2/2] RUN true", 260));
  assert.equal(h.chunks.length, 3);
  const final = h.finish(900);
  // The final frame: everything done, FINISHED, finished steps blue (colour around the whole line, newline included).
  assert.ok(final.includes("[+] Building 0.9s (1/2) ") && !final.includes("FINISHED"));
  assert.ok(final.includes("\x1b[34m" + " => [1/2] FROM docker.io/library/busybox".padEnd(53) + "  0.2s\n\x1b[0m"));
  assert.ok(final.includes(" => [2/2] RUN true".padEnd(53) + "  0.6s\n\x1b[?25h"));
});

test("tty: FINISHED when every step is done; CACHED, ERROR and CANCELED steps in their colours; the error summary after the frame", () => {
  const h = harness(70, 20);
  h.send(0, vtx(1, "[internal] load build definition from Dockerfile", 0, 0, { cached: true }));
  h.send(10, vtx(2, "[1/3] FROM docker.io/library/busybox", 10, 10, { cached: true }));
  h.send(20, vtx(3, "[2/3] RUN exit 1", 20));
  h.send(20, vtx(4, "[stage-1 1/1] RUN sleep 5", 20));
  h.send(100, log(3, 100, "bad thing\n"));
  h.send(1320, vtx(3, "[2/3] RUN exit 1", 20, 1320, { error: "exit code: 1" }));
  h.send(1330, vtx(4, "[stage-1 1/1] RUN sleep 5", 20, 1330, { error: "context canceled" }));
  const final = h.finish(1400);
  assert.match(final, /\[\+\] Building 1\.4s \(4\/4\) FINISHED/);
  assert.ok(final.includes("\x1b[34m => CACHED [internal] load build definition from Dockerfile"));
  assert.ok(final.includes("\x1b[31m" + " => ERROR [2/3] RUN exit 1".padEnd(63) + "  1.3s\n\x1b[0m"));
  assert.ok(final.includes("\x1b[33m => CANCELED [stage-1 1/1] RUN sleep 5"));
  assert.ok(final.endsWith("\x1b[?25h------\n > [2/3] RUN exit 1:\n0.080 bad thing\n------\n"), JSON.stringify(final));
  assert.equal(
    h.screen.text(),
    [
      "[+] Building 1.4s (4/4) FINISHED",
      " => CACHED [internal] load build definition from Dockerfile".padEnd(63) + "  0.0s",
      " => CACHED [1/3] FROM docker.io/library/busybox".padEnd(63) + "  0.0s",
      " => ERROR [2/3] RUN exit 1".padEnd(63) + "  1.3s",
      " => CANCELED [stage-1 1/1] RUN sleep 5".padEnd(63) + "  1.3s",
      "------",
      " > [2/3] RUN exit 1:",
      "0.080 bad thing",
      "------",
    ].join("\n"),
  );
});

test("tty: the last lines of a running step's output under it (carriage returns honoured), gone when it ends", () => {
  const h = harness(60, 30);
  h.send(0, vtx(1, "[1/1] RUN build", 0));
  for (let i = 1; i <= 9; i++) h.send(i * 10, log(1, i * 10, `line ${i}\n`));
  h.send(100, log(1, 100, "progress 10%\rprogress 99%"));
  h.clock.advanceTo(T0 + 250);
  const running = h.screen.text().split("\n");
  assert.deepEqual(running, [
    "[+] Building 0.2s (0/1)",
    " => [1/1] RUN build".padEnd(53) + "  0.2s",
    " => => # line 5",
    " => => # line 6",
    " => => # line 7",
    " => => # line 8",
    " => => # line 9",
    " => => # progress 99%",
  ]);
  // The window is faint and as wide as the terminal less 10 columns.
  assert.ok(h.chunks.at(-1)!.includes("\x1b[2m => => # " + "line 6".padEnd(50) + "\n\x1b[0m"));
  h.send(400, vtx(1, "[1/1] RUN build", 0, 400));
  h.finish(450);
  assert.equal(h.screen.text(), ["[+] Building 0.5s (1/1) FINISHED", " => [1/1] RUN build".padEnd(53) + "  0.4s"].join("\n"));
  // The shorter frame blanked the 6 rows the log window used, then went back up.
  assert.ok(h.chunks.at(-1)!.includes(`${" ".repeat(60)}\n`.repeat(6) + "\x1b[6A\x1b[0G"));
});

test("tty: BUILDKIT_TTY_LOG_LINES sets the window's height", () => {
  const h = harness(60, 30, { BUILDKIT_TTY_LOG_LINES: "2" });
  h.send(0, vtx(1, "[1/1] RUN build", 0));
  h.send(50, log(1, 50, "a\nb\nc\nd\n"));
  h.clock.advanceTo(T0 + 200);
  assert.deepEqual(h.screen.text().split("\n").slice(2), [" => => # c", " => => # d"]);
  assert.equal(ttyLogLines({}), 6);
  assert.equal(ttyLogLines({ BUILDKIT_TTY_LOG_LINES: "12" }), 12);
  assert.equal(ttyLogLines({ BUILDKIT_TTY_LOG_LINES: "0" }), 6);
  assert.equal(ttyLogLines({ BUILDKIT_TTY_LOG_LINES: "x" }), 6);
});

test("tty: long names are cut to the terminal's width; a transfer's size shows when there is room", () => {
  const h = harness(50, 20);
  const name = "[2/2] RUN " + "a".repeat(80);
  h.send(0, vtx(1, name, 0));
  h.send(0, { statuses: [{ id: "sha256:0123456789abcdef", vertex: dg(1), current: 1_200_000, total: 3_400_000, started: at(0) }] });
  h.clock.advanceTo(T0 + 150);
  const rows = h.screen.text().split("\n");
  assert.equal(rows[1], ` => ${name.slice(0, 50 - 4 - 6 - 1)}  0.1s`);
  assert.equal(rows[2], (" => => sha256:0123456789abcdef".slice(0, 4 + 50 - 4 - 6 - 1 - "1.20MB / 3.40MB".length - 1) + " 1.20MB / 3.40MB").padEnd(43) + "  0.1s");
  for (const r of rows) assert.ok(r.length <= 50);
});

test("tty: on a short terminal the frame keeps the last steps, and running ones stay visible", () => {
  const h = harness(60, 6);
  h.send(0, vtx(1, "[1/6] running since the start", 0));
  for (let i = 2; i <= 6; i++) h.send(i * 10, vtx(i, `[${i}/6] quick step`, i * 10, i * 10 + 5));
  h.clock.advanceTo(T0 + 300);
  const rows = h.screen.text().split("\n");
  assert.equal(rows[0], "[+] Building 0.3s (5/6)");
  assert.equal(rows.length, 5, rows.join("\n"));
  assert.match(rows[1]!, /running since the start/);
  assert.deepEqual(
    rows.slice(2).map((r) => r.slice(4, 21)),
    ["[4/6] quick step ", "[5/6] quick step ", "[6/6] quick step "],
  );
});

test("tty colours: BuildKit's defaults, BUILDKIT_COLORS names and RGB, NO_COLOR", () => {
  assert.deepEqual(terminalColors({}), { run: "\x1b[34m", cancel: "\x1b[33m", warning: "\x1b[33m", error: "\x1b[31m" });
  assert.deepEqual(terminalColors({ NO_COLOR: "1" }), {});
  assert.deepEqual(terminalColors({ NO_COLOR: "" }).run, "\x1b[34m");
  const c = terminalColors({ BUILDKIT_COLORS: "run=green:error=255,0,0:cancel=Light-Cyan:warning=bogus:x=red:run" });
  assert.deepEqual(c, { run: "\x1b[32m", cancel: "\x1b[96m", warning: "\x1b[33m", error: "\x1b[38;5;196m" });
  assert.equal(terminalColors({ BUILDKIT_COLORS: "run=128,128,255" }).run, "\x1b[38;5;105m");
  // A value that does not parse as a list leaves the defaults.
  assert.equal(terminalColors({ BUILDKIT_COLORS: 'run="green' }).run, "\x1b[34m");

  const h = harness(60, 20, { NO_COLOR: "1" });
  h.send(0, vtx(1, "[1/1] RUN true", 0, 10));
  h.send(0, vtx(2, "[1/1] RUN false", 0, 10, { error: "x" }));
  const final = h.finish(20);
  assert.doesNotMatch(final, /\x1b\[3\d/);
});

test("tty: wrapHeight keeps the newest jobs and brings running ones back from above", () => {
  const job = (name: string, done: boolean): Job => ({ name, isCompleted: done, intervals: [{ start: 0, stop: done ? 1 : undefined }], status: "", hasError: false, isCanceled: false, showTerm: false });
  const jobs = [job("a", false), job("b", true), job("c", true), job("d", true), job("e", false)];
  assert.deepEqual(wrapHeight(jobs, 3).map((j) => j.name), ["a", "d", "e"]);
  assert.deepEqual(wrapHeight(jobs, 5).map((j) => j.name), ["a", "b", "c", "d", "e"]);
  assert.deepEqual(wrapHeight(jobs, -1), []);
});

test("vt100: scrolling, wrapping, carriage return, backspace, cursor moves and erase", () => {
  const t = new VT100(3, 8);
  t.write(Buffer.from("one\ntwo\nthree\nfour"));
  assert.deepEqual(t.rows(), ["two     ", "three   ", "four    "]);
  t.write("\r12\x1b[K");
  assert.deepEqual(t.rows()[2], "12      ");
  t.write("\nabcdefghij");
  assert.deepEqual(t.rows(), ["12      ", "abcdefgh", "ij      "]);
  t.write("\x1b[1;1H\x1b[2KX\bY\x1b[31mZ\x1b[0m");
  assert.deepEqual(t.rows()[0], "YZ      ");
  assert.equal(t.usedHeight(), 3);
  // An escape sequence split across writes, and a character split across chunks.
  t.write("\x1b[2");
  t.write("J");
  assert.equal(t.usedHeight(), 0);
  const euro = Buffer.from("€");
  t.write(euro.subarray(0, 1));
  t.write(euro.subarray(1));
  assert.equal(t.rows()[0]!.trim(), "€");
  t.resize(2, 4);
  assert.deepEqual(t.rows().map((r) => r.length), [4, 4]);
});
