// The client-side model of a build's progress, as BuildKit's progressui keeps it: every vertex
// seen (by digest), the order they started in, their run intervals, statuses, warnings and log
// lines (stamped with seconds since the vertex started), and which vertices changed since the
// plain printer last looked. Both the plain printer and the tty display read it.
import type { Digest } from "../../../util/index.js";
import type { LogChunk, ProgressEvent, StatusUpdate, VertexStatus } from "../../../solver/types.js";
import { goBytes, goFixed, goSeconds } from "./gofmt.js";
import { VT100 } from "./vt100.js";

export const canceledSuffix = "context canceled";
/** Columns the tty display keeps free left of a step's log window. */
export const termPad = 10;
const logsBufferSize = 10;

/** A span of time in milliseconds since the epoch; no start means not started, no stop means still running. */
export interface Interval {
  start?: number;
  stop?: number;
}

/** Milliseconds an interval lasted (or has lasted, if still running, at `now`). */
export function intervalMs(i: Interval, now: number): number {
  if (i.start === undefined) return 0;
  return (i.stop ?? now) - i.start;
}

/** Sorts intervals and merges the overlapping ones; an open interval swallows every later one. */
export function mergeIntervals(list: Interval[]): Interval[] {
  const ivals = list.filter((i) => i.start !== undefined).sort((a, b) => a.start! - b.start!);
  if (ivals.length === 0) return [];
  const merged: Interval[] = [];
  let cur = ivals[0]!;
  for (const next of ivals.slice(1)) {
    if (cur.stop === undefined) {
      merged.push(cur);
      return merged;
    }
    if (cur.stop < next.start!) {
      merged.push(cur);
      cur = next;
      continue;
    }
    if (next.stop === undefined) {
      merged.push({ start: cur.start });
      return merged;
    }
    if (cur.stop >= next.stop) continue;
    cur = { start: cur.start, stop: next.stop };
  }
  merged.push(cur);
  return merged;
}

export interface StatusState {
  status: StatusUpdate;
  /** When the client saw this update: BuildKit's status timestamp when the producer gave none. */
  timestamp: number;
}

export interface Warning {
  vertex: Digest;
  level: number;
  short: string;
  detail?: string[];
}

export class VertexState {
  vertex: VertexStatus;
  /** Statuses in the order they started. */
  readonly statuses: StatusState[] = [];
  readonly byID = new Map<string, StatusState>();
  /** The `#N` of the plain printer, given when the vertex is first printed. */
  index = 0;
  /** Log lines not yet printed, each "SECONDS TEXT"; the last one may be incomplete. */
  logs: string[] = [];
  logsPartial = false;
  /** How much of logs[0] the plain printer has already written. */
  logsOffset = 0;
  /** The last lines printed, for the error summary. */
  readonly logsBuffer: (string | undefined)[] = new Array<string | undefined>(logsBufferSize).fill(undefined);
  logsBufferPos = 0;
  logsBufferUsed = false;
  prev: VertexStatus | undefined;
  lastBlockTime: number | undefined;
  count = 0;
  readonly statusUpdates = new Set<string>();
  readonly warnings: Warning[] = [];
  warningIdx = 0;
  term: VT100 | undefined;
  termBytes = 0;
  termCount = 0;
  /** Run intervals keyed by start time (a restarted vertex gets a new one). */
  readonly intervals = new Map<number, Interval>();
  mergedIntervals: Interval[] = [];
  private readonly decoder = new TextDecoder("utf-8");

  constructor(v: VertexStatus) {
    this.vertex = v;
  }

  /** Counts a change; the plain printer favours vertices with many recent changes. */
  update(c: number, now: number): void {
    if (this.count === 0) this.lastBlockTime = now;
    this.count += c;
  }

  mostRecentInterval(): Interval | undefined {
    return this.mergedIntervals[this.mergedIntervals.length - 1];
  }

  isStarted(): boolean {
    return this.mergedIntervals.length > 0;
  }

  isCompleted(): boolean {
    const i = this.mostRecentInterval();
    return i !== undefined && i.stop !== undefined;
  }

  /** Text of a log chunk, carrying a character split across chunks over to the next one. */
  decode(data: Uint8Array): string {
    return this.decoder.decode(data, { stream: true });
  }
}

export interface Job {
  intervals: Interval[];
  isCompleted: boolean;
  name: string;
  status: string;
  hasError: boolean;
  isCanceled: boolean;
  vertex?: VertexState;
  showTerm: boolean;
}

export interface DisplayInfo {
  startTime: number;
  jobs: Job[];
  countTotal: number;
  countCompleted: number;
}

export interface TraceOptions {
  /** The tty display: keep a terminal per vertex for its log window. */
  modeConsole: boolean;
  /** Rows of a step's log window (BUILDKIT_TTY_LOG_LINES). */
  termHeight?: number;
}

export class Trace {
  startTime: number | undefined;
  /** How far the client's clock is ahead of the producer's, measured at the first start. */
  localTimeDiff = 0;
  private localTimeDiffSet = false;
  /** Vertices in the order they started. */
  readonly vertexes: VertexState[] = [];
  readonly byDigest = new Map<string, VertexState>();
  /** Vertices changed since the plain printer last printed them, in the order they changed. */
  readonly updates = new Set<string>();
  readonly modeConsole: boolean;
  readonly termHeight: number;

  constructor(opts: TraceOptions) {
    this.modeConsole = opts.modeConsole;
    this.termHeight = opts.termHeight ?? 6;
  }

  update(ev: ProgressEvent, termWidth: number, now: number): void {
    for (const v of ev.vertexes ?? []) this.updateVertex(v, termWidth, now);
    for (const s of ev.statuses ?? []) this.updateStatus(s, now);
    for (const w of ev.warnings ?? []) {
      const v = this.byDigest.get(w.vertex);
      if (!v) continue;
      v.warnings.push(w);
      v.update(1, now);
    }
    for (const l of ev.logs ?? []) this.updateLog(l, termWidth, now);
  }

  private updateVertex(v: VertexStatus, termWidth: number, now: number): void {
    if (this.startTime === undefined) this.startTime = v.started?.getTime();
    const prev = this.byDigest.get(v.digest);
    let st = prev;
    if (!st) {
      st = new VertexState(v);
      if (this.modeConsole) st.term = new VT100(this.termHeight, termWidth - termPad);
      this.byDigest.set(v.digest, st);
    }
    this.vertexEvent(st, v, now);
    if (v.started && (!prev || !prev.isStarted())) {
      if (!this.localTimeDiffSet) {
        this.localTimeDiff = now - v.started.getTime();
        this.localTimeDiffSet = true;
      }
      this.vertexes.push(st);
    }
    // A repeated announcement without a start must not undo a vertex that already started.
    if (!(prev && prev.isStarted() && !v.started)) st.vertex = v;
    if (v.started) {
      const start = v.started.getTime();
      st.intervals.set(start, { start, stop: v.completed?.getTime() });
      st.mergedIntervals = mergeIntervals([...st.intervals.values()]);
    }
  }

  /** Marks the vertex as updated when anything the display shows changed. */
  private vertexEvent(st: VertexState, v: VertexStatus, now: number): void {
    if (!v.started) return;
    const old: Partial<VertexStatus> = st.prev ?? {};
    // A completion always counts: each message carries its own completion time.
    const changed =
      v.digest !== old.digest ||
      v.name !== old.name ||
      old.started === undefined ||
      v.started.getTime() !== old.started.getTime() ||
      v.completed !== undefined ||
      Boolean(v.cached) !== Boolean(old.cached) ||
      (v.error ?? "") !== (old.error ?? "");
    if (changed) {
      st.update(1, now);
      this.updates.add(v.digest);
    }
    st.prev = v;
  }

  private updateStatus(s: StatusUpdate, now: number): void {
    const v = this.byDigest.get(s.vertex);
    if (!v) return;
    const prev = v.byID.get(s.id);
    let state = prev;
    if (!state) {
      state = { status: s, timestamp: now };
      v.byID.set(s.id, state);
    }
    if (s.started && (!prev || !prev.status.started)) v.statuses.push(state);
    state.status = s;
    state.timestamp = s.timestamp?.getTime() ?? now;
    v.statusUpdates.add(s.id);
    this.updates.add(v.vertex.digest);
    v.update(1, now);
  }

  private updateLog(l: LogChunk, termWidth: number, now: number): void {
    const v = this.byDigest.get(l.vertex);
    if (!v) return;
    if (v.term) {
      if (v.term.width !== termWidth - termPad) v.term.resize(this.termHeight, termWidth - termPad);
      v.termBytes += l.data.length;
      v.term.write(l.data);
    }
    const text = v.decode(l.data);
    const segments = text.split("\n");
    // Data ending in a newline completes its last line; anything else leaves a partial line.
    const complete = l.data.length > 0 && text.endsWith("\n");
    if (complete) segments.pop();
    if (l.data.length === 0) segments.length = 0;
    segments.forEach((seg, i) => {
      if (i === 0 && v.logsPartial && v.logs.length > 0) {
        v.logs[v.logs.length - 1] += seg;
        return;
      }
      const ival = v.mostRecentInterval();
      const ms = ival?.start !== undefined ? l.timestamp.getTime() - ival.start : 0;
      const sec = goSeconds(ms);
      const prec = sec < 10 ? 3 : sec < 100 ? 2 : 1;
      v.logs.push(`${goFixed(sec, prec)} ${seg}`);
    });
    v.logsPartial = !complete;
    this.updates.add(v.vertex.digest);
    v.update(1, now);
  }

  /** The tty display's view: the header counts and one job per started vertex and status. */
  displayInfo(now: number): DisplayInfo {
    const d: DisplayInfo = { startTime: this.startTime !== undefined ? this.startTime + this.localTimeDiff : now, jobs: [], countTotal: this.byDigest.size, countCompleted: 0 };
    for (const v of this.byDigest.values()) if (v.isCompleted()) d.countCompleted++;
    const shift = (t: number | undefined) => (t === undefined ? undefined : t + this.localTimeDiff);
    for (const v of this.vertexes) {
      const j: Job = { intervals: [], isCompleted: true, name: v.vertex.name.replace(/\t/g, " "), status: "", hasError: false, isCanceled: false, vertex: v, showTerm: false };
      for (const ival of v.intervals.values()) {
        j.intervals.push({ start: shift(ival.start), stop: shift(ival.stop) });
        if (ival.stop === undefined) j.isCompleted = false;
      }
      j.intervals = mergeIntervals(j.intervals);
      const err = v.vertex.error ?? "";
      if (err !== "") {
        if (err.endsWith(canceledSuffix)) {
          j.isCanceled = true;
          j.name = "CANCELED " + j.name;
        } else {
          j.hasError = true;
          j.name = "ERROR " + j.name;
        }
      }
      if (v.vertex.cached) j.name = "CACHED " + j.name;
      d.jobs.push(j);
      for (const s of v.statuses) {
        const st = s.status;
        let status = "";
        if (st.total) status = `${goBytes(st.current)} / ${goBytes(st.total)}`;
        else if (st.current) status = goBytes(st.current);
        d.jobs.push({
          intervals: [{ start: shift(st.started?.getTime()), stop: shift(st.completed?.getTime()) }],
          isCompleted: st.completed !== undefined,
          name: "=> " + st.id,
          status,
          hasError: false,
          isCanceled: false,
          showTerm: false,
        });
      }
      for (const w of v.warnings) {
        const ival = v.mostRecentInterval() ?? {};
        d.jobs.push({
          intervals: [{ start: shift(ival.start), stop: shift(ival.stop) }],
          isCompleted: false,
          name: "WARN: " + w.short,
          status: "",
          hasError: false,
          isCanceled: true,
          showTerm: false,
        });
      }
    }
    return d;
  }

  /** The summary BuildKit prints after the display for each failed (not cancelled) step: its last log lines. */
  errorLogs(): string {
    let out = "";
    for (const v of this.vertexes) {
      const err = v.vertex.error ?? "";
      if (err === "" || err.endsWith(canceledSuffix)) continue;
      out += "------\n";
      out += ` > ${v.vertex.name}:\n`;
      // The tty display keeps every line; the plain printer the last ones it printed.
      for (const l of v.logs) out += l + "\n";
      if (v.logsBufferUsed) {
        for (let i = 0; i < logsBufferSize; i++) {
          const l = v.logsBuffer[(v.logsBufferPos + i) % logsBufferSize];
          if (l !== undefined) out += l + "\n";
        }
      }
      out += "------\n";
    }
    return out;
  }
}
