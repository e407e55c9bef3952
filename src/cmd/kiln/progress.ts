// Renders the solver's progress events the way buildctl does: `plain` (#N lines) or a tty view.
import type { ProgressEvent, ProgressWriter, VertexStatus } from "../../solver/types.js";

interface VertexView {
  index: number;
  status: VertexStatus;
  printedStart: boolean;
  printedEnd: boolean;
  logs: string[];
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

/** A compact live view for terminals: `[+] Building 1.2s (3/7)` and the running steps. */
export class TtyPrinter implements ProgressWriter {
  private readonly vertexes = new Map<string, VertexView>();
  private next = 1;
  private readonly start = new Date();
  private lines = 0;
  private timer: NodeJS.Timeout | undefined;
  private finished = false;

  constructor(private readonly out: NodeJS.WriteStream) {
    this.timer = setInterval(() => this.render(), 100);
    this.timer.unref();
  }

  write(ev: ProgressEvent): void {
    for (const v of ev.vertexes ?? []) {
      let view = this.vertexes.get(v.digest);
      if (!view) {
        view = { index: this.next++, status: v, printedStart: false, printedEnd: false, logs: [] };
        this.vertexes.set(v.digest, view);
      }
      view.status = v;
    }
    for (const l of ev.logs ?? []) {
      const view = this.vertexes.get(l.vertex);
      if (!view) continue;
      for (const line of Buffer.from(l.data).toString("utf8").split("\n")) if (line !== "") view.logs.push(line);
      if (view.logs.length > 6) view.logs.splice(0, view.logs.length - 6);
    }
  }

  finish(): void {
    this.finished = true;
    if (this.timer) clearInterval(this.timer);
    this.render();
  }

  private render(): void {
    const now = new Date();
    const all = [...this.vertexes.values()].filter((v) => v.status.started || v.status.cached);
    const done = all.filter((v) => v.status.completed || v.status.cached).length;
    const width = this.out.columns || 80;
    const rows: string[] = [`[+] Building ${seconds(this.start, now)} (${done}/${all.length})${this.finished ? " FINISHED" : ""}`];
    for (const v of all) {
      const st = v.status;
      const name = st.cached ? `CACHED ${st.name}` : st.error ? `ERROR ${st.name}` : st.name;
      const time = st.started && !st.cached ? seconds(st.started, st.completed ?? now) : "";
      let row = ` => ${name}`;
      const room = width - time.length - 1;
      if (row.length > room) row = row.slice(0, room);
      rows.push(row.padEnd(room) + " " + time);
      if (!st.completed && !st.cached) for (const l of v.logs) rows.push(` => => # ${l}`.slice(0, width));
    }
    let s = "";
    if (this.lines > 0) s += `\x1b[${this.lines}A`;
    for (const r of rows) s += `\x1b[2K${r}\n`;
    this.out.write(s);
    this.lines = rows.length;
  }
}
