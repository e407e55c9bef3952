// The progress display of `kiln build`, as buildctl shows it (BuildKit's progressui): `plain`
// (#N lines), `tty` (a frame redrawn in place), `rawjson` (each update as JSON), and `auto`
// (tty on a terminal, else plain; BUILDKIT_PROGRESS picks the default). The model and renderers
// live in ./progress/; this file drives them: updates are rendered at most every 100 ms, and a
// 150 ms ticker keeps timers moving while nothing happens (TTY_DISPLAY_RATE sets both, in ms).
import type { ProgressEvent, ProgressWriter } from "../../solver/types.js";
import { KilnError } from "../../util/index.js";
import { ConsoleDisplay, terminalColors, ttyLogLines } from "./progress/console.js";
import { solveStatusJSON } from "./progress/rawjson.js";
import { TextMux } from "./progress/textmux.js";
import { Trace } from "./progress/trace.js";

export { terminalColors, ttyLogLines, type Colors } from "./progress/console.js";

/** A progress display: takes events, and draws its last output when the build is over. */
export interface ProgressPrinter extends ProgressWriter {
  finish(): void;
}

/** Time and timers, replaceable in tests. */
export interface Clock {
  now(): number;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    t.unref();
    return t;
  },
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

export interface PrinterOptions {
  env?: NodeJS.ProcessEnv;
  clock?: Clock;
}

type Output = NodeJS.WritableStream & { columns?: number; rows?: number; isTTY?: boolean };

/** TTY_DISPLAY_RATE (ms) sets both the render limit and the ticker; by default 100 and 150 ms. */
function rates(env: NodeJS.ProcessEnv): { display: number; ticker: number } {
  const v = env.TTY_DISPLAY_RATE;
  if (v && /^[+-]?\d+$/.test(v)) {
    const r = Number.parseInt(v, 10);
    if (r > 0) return { display: r, ticker: r };
  }
  return { display: 100, ticker: 150 };
}

/** The shared loop: update the trace on every event, render when the limiter allows, tick in between. */
abstract class Display implements ProgressPrinter {
  protected readonly trace: Trace;
  protected readonly clock: Clock;
  private readonly displayMs: number;
  private readonly tickerMs: number;
  private ticker: unknown;
  private lastRender = -Infinity;
  private done = false;

  constructor(modeConsole: boolean, opts: PrinterOptions, termHeight?: number) {
    const env = opts.env ?? process.env;
    this.clock = opts.clock ?? systemClock;
    this.trace = new Trace({ modeConsole, termHeight });
    const r = rates(env);
    this.displayMs = r.display;
    this.tickerMs = r.ticker;
    this.startTicker();
  }

  write(ev: ProgressEvent): void {
    if (this.done) return;
    this.trace.update(ev, this.width(), this.clock.now());
    this.maybeRender();
  }

  finish(): void {
    if (this.done) return;
    this.done = true;
    this.clock.clearInterval(this.ticker);
    this.render(true);
  }

  protected width(): number {
    return 80;
  }

  protected abstract render(final: boolean): void;

  private startTicker(): void {
    this.ticker = this.clock.setInterval(() => this.maybeRender(), this.tickerMs);
  }

  private maybeRender(): void {
    if (this.done) return;
    const now = this.clock.now();
    if (now - this.lastRender < this.displayMs) return;
    this.lastRender = now;
    this.clock.clearInterval(this.ticker);
    this.startTicker();
    this.render(false);
  }
}

/** buildctl's `--progress plain`. */
export class PlainPrinter extends Display {
  private readonly mux: TextMux;

  constructor(
    private readonly out: NodeJS.WritableStream,
    opts: PrinterOptions = {},
  ) {
    super(false, opts);
    this.mux = new TextMux((s) => this.out.write(s), (opts.env ?? process.env).PROGRESS_NO_TRUNC === "0");
  }

  protected render(final: boolean): void {
    this.mux.print(this.trace, this.clock.now());
    if (final) {
      const logs = this.trace.errorLogs();
      if (logs) this.out.write(logs);
    }
  }
}

/** BuildKit's tty display, sized to the output terminal. */
export class TtyPrinter extends Display {
  private readonly console: ConsoleDisplay;

  constructor(
    private readonly out: Output,
    opts: PrinterOptions = {},
  ) {
    const env = opts.env ?? process.env;
    const termHeight = ttyLogLines(env);
    super(true, opts, termHeight);
    this.console = new ConsoleDisplay(terminalColors(env), termHeight);
  }

  protected override width(): number {
    return this.size().width;
  }

  private size(): { width: number; height: number } {
    const w = this.out.columns ?? 0;
    const h = this.out.rows ?? 0;
    return w > 0 && h > 0 ? { width: w, height: h } : { width: 80, height: 10 };
  }

  protected render(final: boolean): void {
    const { width, height } = this.size();
    const now = this.clock.now();
    let s = this.console.frame(this.trace.displayInfo(now), width, height, final, now);
    if (final) s += this.trace.errorLogs();
    this.out.write(s);
  }
}

/** `--progress rawjson`: one SolveStatus JSON object per line, unthrottled. */
export class RawJsonPrinter implements ProgressPrinter {
  private readonly clock: Clock;

  constructor(
    private readonly out: NodeJS.WritableStream,
    opts: PrinterOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
  }

  write(ev: ProgressEvent): void {
    const line = solveStatusJSON(ev, this.clock.now());
    if (line !== undefined) this.out.write(line + "\n");
  }

  finish(): void {}
}

export type ProgressMode = "tty" | "plain" | "rawjson";

/**
 * The display mode for `--progress MODE`, as buildctl picks it: BUILDKIT_PROGRESS replaces
 * `auto`; `auto` is tty on a terminal, else plain; tty without a terminal is an error.
 */
export function resolveProgressMode(mode: string | undefined, isTTY: boolean, env: NodeJS.ProcessEnv = process.env): ProgressMode {
  let m = mode ?? "";
  if (m === "") m = "auto";
  if (m === "auto" && env.BUILDKIT_PROGRESS) m = env.BUILDKIT_PROGRESS;
  switch (m) {
    case "auto":
    case "":
      return isTTY ? "tty" : "plain";
    case "tty":
      if (!isTTY) throw new KilnError("KILN_FLAGS", "failed to get console: provided file is not a console");
      return "tty";
    case "plain":
    case "rawjson":
      return m;
    default:
      throw new KilnError("KILN_FLAGS", `invalid progress mode ${m}`);
  }
}

/** The printer for `--progress MODE` writing to `out` (stderr). */
export function createPrinter(mode: string | undefined, out: Output, opts: PrinterOptions = {}): ProgressPrinter {
  const env = opts.env ?? process.env;
  switch (resolveProgressMode(mode, Boolean(out.isTTY), env)) {
    case "tty":
      return new TtyPrinter(out, opts);
    case "rawjson":
      return new RawJsonPrinter(out, opts);
    default:
      return new PlainPrinter(out, opts);
  }
}
