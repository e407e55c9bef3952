// Renders the solver's progress events the way buildctl does: `plain` (#N lines) or a tty view.
import type { ProgressEvent, ProgressWriter, VertexStatus } from "../../solver/types.js";
import { formatBytes } from "../../util/index.js";

interface VertexView {
  index: number;
  status: VertexStatus;
  printedStart: boolean;
  printedEnd: boolean;
  logs: string[];
  partial?: string;
}

function seconds(a: Date, b: Date): string {
  return ((b.getTime() - a.getTime()) / 1000).toFixed(1) + "s";
}

/** buildctl's `--progress plain`: one `#N` block per vertex, logs prefixed with elapsed time. */
export class PlainPrinter implements ProgressWriter {
  private readonly vertexes = new Map<string, VertexView>();
  private next = 1;
  constructor(private readonly out: NodeJS.WritableStream) {}

  write(ev: ProgressEvent): void {
    for (const v of ev.vertexes ?? []) {
      let view = this.vertexes.get(v.digest);
      if (!view) {
        view = { index: this.next++, status: v, printedStart: false, printedEnd: false, logs: [] };
        this.vertexes.set(v.digest, view);
      }
      view.status = v;
      if (!view.printedStart && (v.started || v.cached)) {
        view.printedStart = true;
        this.out.write(`#${view.index} ${v.name}\n`);
      }
      if (!view.printedEnd && (v.completed || v.cached)) {
        view.printedEnd = true;
        if (v.cached) this.out.write(`#${view.index} CACHED\n\n`);
        else if (v.error) this.out.write(`#${view.index} ERROR: ${v.error}\n\n`);
        else if (v.started && v.completed) this.out.write(`#${view.index} DONE ${seconds(v.started, v.completed)}\n\n`);
      }
    }
    for (const l of ev.logs ?? []) {
      const view = this.vertexes.get(l.vertex);
      if (!view) continue;
      const t = view.status.started ? seconds(view.status.started, l.timestamp) : "0.0s";
      const text = Buffer.from(l.data).toString("utf8");
      for (const line of text.split("\n")) if (line !== "") this.out.write(`#${view.index} ${t} ${line}\n`);
    }
    for (const s of ev.statuses ?? []) {
      const view = this.vertexes.get(s.vertex);
      if (!view || !s.completed) continue;
      this.out.write(`#${view.index} ${s.id} done\n`);
    }
  }
}

interface Colors {
  run: string;
  cancel: string;
  error: string;
  warning: string;
  faint: string;
}

const namedColors: Record<string, number> = {
  default: 39, black: 30, red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, white: 37,
  "light-black": 90, "light-red": 91, "light-green": 92, "light-yellow": 93, "light-blue": 94, "light-magenta": 95, "light-cyan": 96, "light-white": 97,
};

/** BuildKit's colours: blue finished steps, yellow cancelled, red errors; BUILDKIT_COLORS overrides; NO_COLOR turns them off. */
export function terminalColors(env: NodeJS.ProcessEnv = process.env): Colors | undefined {
  if (env.NO_COLOR) return undefined;
  const c: Colors = { run: "\x1b[34m", cancel: "\x1b[33m", error: "\x1b[31m", warning: "\x1b[33m", faint: "\x1b[2m" };
  for (const field of (env.BUILDKIT_COLORS ?? "").split(":")) {
    const [k, v, extra] = field.split("=");
    if (!k || v === undefined || extra !== undefined) continue;
    let code: string | undefined;
    const named = namedColors[v.toLowerCase()];
    if (named !== undefined) code = `\x1b[${named}m`;
    else {
      const rgb = v.split(",").map(Number);
      if (rgb.length === 3 && rgb.every((n) => Number.isInteger(n) && n >= 0 && n <= 255)) {
        // aec's 8-bit colour: a 6×6×6 cube index.
        const idx = 16 + 36 * Math.round((rgb[0]! / 255) * 5) + 6 * Math.round((rgb[1]! / 255) * 5) + Math.round((rgb[2]! / 255) * 5);
        code = `\x1b[38;5;${idx}m`;
      }
    }
    const key = k.toLowerCase();
    if (code && (key === "run" || key === "cancel" || key === "error" || key === "warning")) c[key] = code;
  }
  return c;
}

const reset = "\x1b[0m";

/**
 * BuildKit's tty display: `[+] Building 1.2s (7/7) FINISHED`, one line per step with its timer
 * at the right edge, finished steps coloured, and under each running step the last lines of its
 * output (BUILDKIT_TTY_LOG_LINES, default 6). Redrawn in place at most every 100 ms.
 */
export class TtyPrinter implements ProgressWriter {
  private readonly vertexes = new Map<string, VertexView & { statuses: Map<string, StatusView> }>();
  private next = 1;
  private start: Date | undefined;
  private lineCount = 0;
  private repeated = false;
  private timer: NodeJS.Timeout | undefined;
  private finished = false;
  private readonly logLines: number;
  private readonly colors: Colors | undefined;

  constructor(
    private readonly out: NodeJS.WritableStream & { columns?: number; rows?: number },
    env: NodeJS.ProcessEnv = process.env,
  ) {
    const n = Number(env.BUILDKIT_TTY_LOG_LINES);
    this.logLines = Number.isInteger(n) && n >= 0 && env.BUILDKIT_TTY_LOG_LINES !== "" ? n : 6;
    this.colors = terminalColors(env);
    const rate = Number(env.TTY_DISPLAY_RATE);
    this.timer = setInterval(() => this.render(false), Number.isFinite(rate) && rate > 0 ? rate : 100);
    this.timer.unref();
  }

  write(ev: ProgressEvent): void {
    for (const v of ev.vertexes ?? []) {
      let view = this.vertexes.get(v.digest);
      if (!view) {
        view = { index: this.next++, status: v, printedStart: false, printedEnd: false, logs: [], statuses: new Map() };
        this.vertexes.set(v.digest, view);
      }
      view.status = v;
      if (v.started && (!this.start || v.started < this.start)) this.start = v.started;
    }
    for (const st of ev.statuses ?? []) {
      const view = this.vertexes.get(st.vertex);
      if (view) view.statuses.set(st.id, { ...view.statuses.get(st.id), ...st });
    }
    for (const l of ev.logs ?? []) {
      const view = this.vertexes.get(l.vertex);
      if (!view) continue;
      const text = (view.partial ?? "") + Buffer.from(l.data).toString("utf8");
      const parts = text.split(/\r?\n|\r/);
      view.partial = parts.pop() ?? "";
      for (const line of parts) view.logs.push(line);
      if (view.logs.length > 100) view.logs.splice(0, view.logs.length - 100);
    }
  }

  finish(): void {
    this.finished = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.render(true);
  }

  private color(s: string, c: string | undefined): string {
    return c ? `${c}${s}${reset}` : s;
  }

  private render(all: boolean): void {
    const width = this.out.columns || 80;
    const now = new Date();
    const views = [...this.vertexes.values()];
    const total = views.length;
    const completed = views.filter((v) => v.status.completed || v.status.cached).length;
    let s = "";
    // Back to the top of the previous frame.
    s += "\x1b[1A".repeat(this.lineCount + 1);
    if (!this.repeated) s += "\x1b[1B";
    this.repeated = true;
    s += "\x1b[0G\x1b[?25l";
    const status = completed > 0 && completed === total && all ? "FINISHED" : "";
    const elapsed = this.start ? (now.getTime() - this.start.getTime()) / 1000 : 0;
    s += align(`[+] Building ${elapsed.toFixed(1)}s (${completed}/${total}) ${status}`, "", width) + "\n";
    let lines = 0;
    for (const v of views) {
      const st = v.status;
      if (!st.started && !st.cached) continue;
      let name = st.name.replace(/\t/g, " ");
      let c: string | undefined;
      const done = Boolean(st.completed || st.cached);
      if (st.error) {
        const canceled = st.error.endsWith("context canceled");
        name = `${canceled ? "CANCELED" : "ERROR"} ${name}`;
        c = canceled ? this.colors?.cancel : this.colors?.error;
      } else if (done) c = this.colors?.run;
      if (st.cached) name = `CACHED ${name}`;
      const secs = st.started && !st.cached ? ((st.completed ?? now).getTime() - st.started.getTime()) / 1000 : 0;
      s += this.jobLine(name, secs < 0.05 ? 0 : secs, "", width, done ? c : undefined);
      lines++;
      for (const sub of v.statuses.values()) {
        const subSecs = sub.started ? ((sub.completed ?? now).getTime() - sub.started.getTime()) / 1000 : 0;
        const amount = sub.total ? `${formatBytes(sub.current)} / ${formatBytes(sub.total)}` : sub.current ? formatBytes(sub.current) : "";
        s += this.jobLine(`=> ${sub.id}`, subSecs < 0.05 ? 0 : subSecs, amount, width, sub.completed ? c : undefined);
        lines++;
      }
      if (!done && this.logLines > 0) {
        const tail = [...v.logs, ...(v.partial ? [v.partial] : [])].filter((l) => l.trim() !== "").slice(-this.logLines);
        for (const l of tail) {
          const text = ` => => # ${l.slice(0, Math.max(0, width - 10))}`;
          s += (this.colors ? this.color(text, this.colors.faint) : text) + "\n";
          lines++;
        }
      }
    }
    // Blank out what is left of a longer previous frame.
    if (this.lineCount > lines) {
      const diff = this.lineCount - lines;
      s += `${" ".repeat(width)}\n`.repeat(diff);
      s += `\x1b[${diff}A\x1b[0G`;
    }
    s += "\x1b[?25h";
    this.lineCount = lines;
    this.out.write(s);
  }

  private jobLine(name: string, secs: number, status: string, width: number, c: string | undefined): string {
    const timer = ` ${secs.toFixed(1)}s\n`;
    let left = width - 4 - timer.length - 1;
    let showStatus = false;
    if (status !== "" && left + status.length > 20) {
      showStatus = true;
      left -= status.length + 1;
    }
    let out = ` => ${name.length > Math.max(left, 0) ? name.slice(0, Math.max(left, 0)) : name}`;
    if (showStatus) out += ` ${status}`;
    out = align(out, timer, width);
    return c ? this.color(out, c) : out;
  }
}

interface StatusView {
  id: string;
  current: number;
  total?: number;
  started?: Date;
  completed?: Date;
}

/** Go's fmt "%-*s %s": `l` padded to leave room for `r` and one space. */
function align(l: string, r: string, w: number): string {
  return `${l.padEnd(w - r.length - 1)} ${r}`;
}

/** `--progress rawjson`: each update as the JSON of Go's client.SolveStatus, one per line. */
export class RawJsonPrinter implements ProgressWriter {
  constructor(private readonly out: NodeJS.WritableStream) {}

  write(ev: ProgressEvent): void {
    const time = (d: Date | undefined) => (d ? goTimeJSON(d) : undefined);
    const status: Record<string, unknown> = {};
    if (ev.vertexes?.length) {
      status.vertexes = ev.vertexes.map((v) => ({
        digest: v.digest,
        inputs: v.inputs.length ? v.inputs : undefined,
        name: v.name,
        started: time(v.started),
        completed: time(v.completed),
        cached: v.cached || undefined,
        error: v.error || undefined,
      }));
    }
    if (ev.statuses?.length) {
      status.statuses = ev.statuses.map((s) => ({
        id: s.id,
        vertex: s.vertex,
        name: s.name || undefined,
        total: s.total || undefined,
        current: s.current,
        timestamp: goTimeJSON(new Date()),
        started: time(s.started),
        completed: time(s.completed),
      }));
    }
    if (ev.logs?.length) {
      status.logs = ev.logs.map((l) => ({ vertex: l.vertex, stream: l.stream, data: Buffer.from(l.data).toString("base64"), timestamp: goTimeJSON(l.timestamp) }));
    }
    if (ev.warnings?.length) {
      status.warnings = ev.warnings.map((w) => ({ vertex: w.vertex, level: w.level, short: Buffer.from(w.short).toString("base64"), detail: w.detail?.map((d) => Buffer.from(d).toString("base64")) }));
    }
    if (Object.keys(status).length > 0) this.out.write(JSON.stringify(status) + "\n");
  }
}

/** Go's time.Time JSON (RFC 3339 with nanoseconds, trailing zeros trimmed), in UTC. */
function goTimeJSON(d: Date): string {
  return d.toISOString().replace(/\.(\d*?)0*Z$/, (_, f: string) => (f ? `.${f}Z` : "Z"));
}
