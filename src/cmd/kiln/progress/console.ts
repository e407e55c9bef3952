// `--progress tty`: BuildKit's live view. Each frame moves the cursor back to the top of the
// previous one and redraws it: `[+] Building 1.2s (5/7)`, one line per started step and status
// with its time at the right edge (finished ones coloured), the last rows of the busiest running
// steps' output in a faint window under them, and blank lines over what is left of a taller
// previous frame. The final frame shows every step and says FINISHED when all are done.
import { byteLen, goFixed, goSeconds, padRight, sliceBytes } from "./gofmt.js";
import { intervalMs, termPad, type DisplayInfo, type Job } from "./trace.js";

export interface Colors {
  run?: string;
  cancel?: string;
  error?: string;
  warning?: string;
}

const namedColors: Record<string, number> = {
  default: 39,
  black: 30,
  blue: 34,
  cyan: 36,
  green: 32,
  magenta: 35,
  red: 31,
  white: 37,
  yellow: 33,
  "light-black": 90,
  "light-blue": 94,
  "light-cyan": 96,
  "light-green": 92,
  "light-magenta": 95,
  "light-red": 91,
  "light-white": 97,
  "light-yellow": 93,
};

const sgr = (n: number) => `\x1b[${n}m`;

/** Splits a BUILDKIT_COLORS-style list (CSV with the given separator); undefined if it does not parse. */
function csvFields(s: string, sep: string): string[] | undefined {
  if (s === "") return undefined;
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = "";
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) return undefined;
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += s[i++];
      }
      if (i < s.length && s[i] !== sep) return undefined;
    } else {
      const end = s.indexOf(sep, i);
      field = end < 0 ? s.slice(i) : s.slice(i, end);
      if (field.includes('"')) return undefined;
      i = end < 0 ? s.length : end;
    }
    fields.push(field);
    if (i >= s.length) return fields;
    i++; // the separator
  }
}

/** An xterm-256 colour from "R,G,B" (0–255 each), as aec maps it onto the 6×6×6 cube. */
function rgbColor(v: string): string | undefined {
  const parts = csvFields(v, ",");
  if (!parts || parts.length !== 3) return undefined;
  const nums = parts.map((p) => (/^[+-]?\d+$/.test(p) ? Number.parseInt(p, 10) : NaN));
  if (!nums.every((n) => Number.isInteger(n) && n >= 0 && n <= 255)) return undefined;
  const [r, g, b] = nums.map((n) => Math.floor(n / 43)) as [number, number, number];
  return `\x1b[38;5;${16 + 36 * r + 6 * g + b}m`;
}

/**
 * BuildKit's colours: finished steps blue, cancelled yellow, failed red, warnings yellow;
 * BUILDKIT_COLORS (`run=green:error=255,0,0`) overrides them; a non-empty NO_COLOR turns them off.
 */
export function terminalColors(env: NodeJS.ProcessEnv = process.env): Colors {
  if (env.NO_COLOR) return {};
  const c: Colors = { run: sgr(34), cancel: sgr(33), warning: sgr(33), error: sgr(31) };
  if (env.BUILDKIT_COLORS === undefined) return c;
  for (const field of csvFields(env.BUILDKIT_COLORS, ":") ?? []) {
    const eq = field.indexOf("=");
    if (eq < 0) continue;
    const k = field.slice(0, eq).toLowerCase();
    const v = field.slice(eq + 1);
    if (v.includes("=")) continue;
    const named = namedColors[v.toLowerCase()];
    const code = named !== undefined ? sgr(named) : v.includes(",") ? rgbColor(v) : undefined;
    if (code === undefined) continue;
    if (k === "run" || k === "cancel" || k === "error" || k === "warning") c[k] = code;
  }
  return c;
}

/** BUILDKIT_TTY_LOG_LINES: rows of output shown under a running step (default 6). */
export function ttyLogLines(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.BUILDKIT_TTY_LOG_LINES;
  if (v && /^[+-]?\d+$/.test(v)) {
    const n = Number.parseInt(v, 10);
    if (n > 0) return n;
  }
  return 6;
}

const reset = "\x1b[0m";
const faint = "\x1b[2m";
const hideCursor = "\x1b[?25l";
const showCursor = "\x1b[?25h";

function apply(s: string, color: string | undefined): string {
  return color ? color + s + reset : s;
}

/** Go's `fmt.Sprintf("%-*s %s", l, w-len(r)-1, r)`. */
function align(l: string, r: string, w: number): string {
  return `${padRight(l, w - byteLen(r) - 1)} ${r}`;
}

/** Picks the running steps whose log windows fit on screen and, unless drawing everything, keeps the frame to the screen's height. */
function setupTerminals(jobs: Job[], height: number, all: boolean, termHeight: number): Job[] {
  const candidates: Job[] = [];
  let numInUse = 0;
  for (const j of jobs) {
    if (j.vertex && j.vertex.termBytes > 0 && !j.isCompleted) candidates.push(j);
    if (!j.isCompleted) numInUse++;
  }
  const weight = (j: Job) => j.vertex!.termBytes + j.vertex!.termCount * 50;
  candidates.sort((a, b) => weight(b) - weight(a));
  let numFree = height - 2 - numInUse;
  let numToHide = 0;
  const termLimit = termHeight + 3;
  for (let i = 0; numFree > termLimit && i < candidates.length; i++) {
    candidates[i]!.showTerm = true;
    numToHide += candidates[i]!.vertex!.term!.usedHeight();
    numFree -= termLimit;
  }
  return all ? jobs : wrapHeight(jobs, height - 2 - numToHide);
}

/** The last `limit` jobs, with running jobs that would scroll off the top brought back in place of finished ones. */
export function wrapHeight(j: Job[], limit: number): Job[] {
  if (limit < 0) return [];
  let wrapped = [...j];
  if (j.length > limit) {
    wrapped = wrapped.slice(j.length - limit);
    const invisible = j.slice(0, j.length - limit).filter((x) => !x.isCompleted);
    let l = invisible.length;
    if (l > 0) {
      const rewrapped: Job[] = [];
      for (const x of wrapped) {
        if (!x.isCompleted || l <= 0) rewrapped.push(x);
        l--;
      }
      const freespace = wrapped.length - rewrapped.length;
      wrapped = [...invisible.slice(invisible.length - freespace), ...rewrapped];
    }
  }
  return wrapped;
}

export class ConsoleDisplay {
  private lineCount = 0;
  private repeated = false;

  constructor(
    private readonly colors: Colors,
    private readonly termHeight: number,
    private readonly phase = "Building",
  ) {}

  /** One frame as a string of text and escape sequences. */
  frame(d: DisplayInfo, width: number, height: number, all: boolean, now: number): string {
    const jobs = setupTerminals(d.jobs, height, all, this.termHeight);
    let s = "\x1b[1A".repeat(this.lineCount + 1);
    if (!this.repeated) s += "\x1b[1B";
    this.repeated = true;
    s += "\x1b[0G";
    s += hideCursor;

    const status = d.countCompleted > 0 && d.countCompleted === d.countTotal && all ? "FINISHED" : "";
    s += align(`[+] ${this.phase} ${goFixed(goSeconds(now - d.startTime), 1)}s (${d.countCompleted}/${d.countTotal}) ${status}`, "", width) + "\n";

    let lineCount = 0;
    for (const j of jobs) {
      if (j.intervals.length === 0) continue;
      let dt = 0;
      for (const i of j.intervals) dt += goSeconds(intervalMs(i, now));
      if (dt < 0.05) dt = 0;
      const pfx = " => ";
      const timer = ` ${goFixed(dt, 1).padStart(3)}s\n`;
      let showStatus = false;
      let left = width - pfx.length - timer.length - 1;
      if (j.status !== "" && left + byteLen(j.status) > 20) {
        showStatus = true;
        left -= byteLen(j.status) + 1;
      }
      if (left < 12) continue; // too narrow to show anything useful
      let out = pfx + (byteLen(j.name) > left ? sliceBytes(j.name, left) : j.name);
      if (showStatus) out += " " + j.status;
      out = align(out, timer, width);
      if (j.isCompleted) {
        const color = j.isCanceled ? this.colors.cancel : j.hasError ? this.colors.error : this.colors.run;
        out = apply(out, color);
      }
      s += out;
      lineCount++;
      if (j.showTerm && j.vertex?.term) {
        const term = j.vertex.term;
        term.resize(this.termHeight, width - termPad);
        for (const row of term.rows()) {
          if (!/[^ ]/.test(row)) continue;
          s += apply(` => => # ${row}\n`, faint);
          lineCount++;
        }
        j.vertex.termCount++;
        j.showTerm = false;
      }
    }
    // Blank out the rest of a taller previous frame and come back up.
    const diff = this.lineCount - lineCount;
    if (diff > 0) {
      s += `${" ".repeat(Math.max(width, 0))}\n`.repeat(diff);
      s += `\x1b[${diff}A\x1b[0G`;
    }
    this.lineCount = lineCount;
    s += showCursor;
    return s;
  }
}
