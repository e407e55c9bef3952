// `--progress plain`: the `#N` text buildctl prints. Output comes in blocks, one vertex at a time:
// a header `#N name`, its new status lines, warnings and log lines, and `#N DONE 1.2s` /
// `#N CACHED` / `#N ERROR: …` / `#N CANCELED` when it ends. When another vertex takes over before
// the current one ended, the current block is closed with `#N ...` and resumed later under a
// repeated header. Which vertex gets the floor follows BuildKit's progressui: finished vertices
// first (oldest finish first), then the one with the most recent activity, switching only after
// the current one has been quiet for a while.
import { goBytes, goFixed, goSeconds } from "./gofmt.js";
import { canceledSuffix, intervalMs, mergeIntervals, type Trace } from "./trace.js";

/** A status line in progress is reprinted only when it moved this much (of its total) … */
const minProgressDelta = 0.05;
/** … or this long (ms) after it was last printed. */
const minTimeDelta = 5000;
/** A vertex with pending output waits at most this long (ms) for the floor. */
const maxDelay = 10_000;
/** Seconds of fair share a busy vertex gets before another may take over. */
const antiFlicker = 5;

interface VtxStat {
  blockTime: number;
  speed: number;
  share: number;
  overLimit: boolean;
}

export class TextMux {
  private current: string | undefined;
  private readonly last = new Map<string, { current: number; timestamp: number }>();
  private notFirst = false;
  private nextIndex = 0;

  constructor(
    private readonly w: (s: string) => void,
    /** PROGRESS_NO_TRUNC=0 shortens names to 72 bytes. */
    private readonly truncateNames = false,
  ) {}

  private printVtx(t: Trace, dgst: string | undefined, now: number): void {
    if (dgst === undefined) return;
    const v = t.byDigest.get(dgst);
    if (!v) return;
    let out = "";
    if (v.index === 0) v.index = ++this.nextIndex;

    if (dgst !== this.current) {
      if (this.current !== undefined) {
        const old = t.byDigest.get(this.current)!;
        if (old.logsPartial) out += "\n";
        old.logsOffset = 0;
        old.count = 0;
        out += `#${old.index} ...\n`;
      }
      if (this.notFirst) out += "\n";
      else this.notFirst = true;
      const name = this.truncateNames && Buffer.byteLength(v.vertex.name) > 72 ? Buffer.from(v.vertex.name).subarray(0, 72).toString() + "..." : v.vertex.name;
      out += `#${v.index} ${name}\n`;
    }

    // Statuses: only those updated since the last print, and an unfinished one only when it moved enough.
    let isOpenStatus = false;
    for (const s of v.statuses) {
      const st = s.status;
      if (!v.statusUpdates.has(st.id)) continue;
      const last = this.last.get(st.id);
      if (last && !st.completed) {
        const progressDelta = st.total ? (st.current - last.current) / st.total : 0;
        const timeDelta = s.timestamp - last.timestamp;
        if (progressDelta < minProgressDelta && timeDelta < minTimeDelta) continue;
      }
      this.last.set(st.id, { current: st.current, timestamp: s.timestamp });
      let bytes = "";
      if (st.total) bytes = ` ${goBytes(st.current)} / ${goBytes(st.total)}`;
      else if (st.current) bytes = ` ${goBytes(st.current)}`;
      let tm = "";
      const end = st.completed?.getTime() ?? s.timestamp;
      if (st.started) {
        const diff = goSeconds(end - st.started.getTime());
        if (diff > 0.01) tm = ` ${goFixed(diff, 1)}s`;
      }
      if (st.completed) tm += " done";
      else isOpenStatus = true;
      out += `#${v.index} ${st.id}${bytes}${tm}\n`;
    }
    v.statusUpdates.clear();

    for (const w of v.warnings.slice(v.warningIdx)) {
      out += `#${v.index} WARN: ${w.short}\n`;
      v.warningIdx++;
    }

    v.logs.forEach((line, i) => {
      let l = line;
      if (i === 0 && v.logsOffset !== 0) {
        // The start of this line (and its `#N`) went out with the previous block.
        l = l.slice(v.logsOffset);
        out += l;
      } else {
        out += `#${v.index} ${l}`;
      }
      if (i !== v.logs.length - 1 || !v.logsPartial) out += "\n";
      v.logsBuffer[v.logsBufferPos] = l;
      v.logsBufferUsed = true;
      if (!v.logsPartial) v.logsBufferPos = (v.logsBufferPos + 1) % v.logsBuffer.length;
    });
    if (v.logs.length > 0) {
      if (v.logsPartial) {
        v.logs = v.logs.slice(-1);
        v.logsOffset = v.logs[0]!.length;
      } else {
        v.logs = [];
        v.logsOffset = 0;
      }
    }

    this.current = dgst;
    if (v.isCompleted() && !isOpenStatus) {
      this.current = undefined;
      v.count = 0;
      if (v.logsPartial) out += "\n";
      const err = v.vertex.error ?? "";
      if (err !== "") {
        out += err.endsWith(canceledSuffix) ? `#${v.index} CANCELED\n` : `#${v.index} ERROR: ${err}\n`;
      } else if (v.vertex.cached) {
        out += `#${v.index} CACHED\n`;
      } else {
        const ivals = mergeIntervals([...v.intervals.values()]);
        let tm = "";
        if (ivals.length > 0) {
          let dt = 0;
          for (const i of ivals) dt += goSeconds(intervalMs(i, now));
          tm = ` ${goFixed(dt, 1)}s`;
        }
        out += `#${v.index} DONE${tm}\n`;
      }
    }
    t.updates.delete(dgst);
    if (out !== "") this.w(out);
  }

  /** Prints what changed since the last call (BuildKit calls this at most every 100 ms). */
  print(t: Trace, now: number): void {
    const completed: string[] = [];
    const rest: string[] = [];
    for (const dgst of t.updates) {
      const v = t.byDigest.get(dgst);
      if (!v) continue;
      if (v.isCompleted()) completed.push(dgst);
      else rest.push(dgst);
    }

    const current = this.current;
    if (current !== undefined && completed.includes(current)) this.printVtx(t, current, now);

    // Finished vertices, in the order they finished.
    const stop = (d: string) => t.byDigest.get(d)!.mostRecentInterval()?.stop ?? 0;
    for (const dgst of [...completed].sort((a, b) => stop(a) - stop(b))) {
      if (dgst !== current) this.printVtx(t, dgst, now);
    }

    if (rest.length === 0) {
      if (current !== undefined) {
        const v = t.byDigest.get(current);
        if (v && v.isStarted() && !v.isCompleted()) return;
      }
      // Give the floor to any vertex still running.
      for (const [dgst, v] of t.byDigest) {
        if (v.isStarted() && !v.isCompleted()) {
          this.printVtx(t, dgst, now);
          return;
        }
      }
      return;
    }

    if (current !== undefined && rest.includes(current)) this.printVtx(t, current, now);

    const stats = new Map<string, VtxStat>();
    let sum = 0;
    let max: string | undefined;
    const candidates = new Set(rest);
    if (current !== undefined) candidates.add(current);
    for (const dgst of candidates) {
      const v = t.byDigest.get(dgst);
      if (!v || v.lastBlockTime === undefined) continue;
      const blockTime = now - v.lastBlockTime;
      const speed = v.count / goSeconds(blockTime);
      const overLimit = blockTime > maxDelay && dgst !== current;
      stats.set(dgst, { blockTime, speed, share: 0, overLimit });
      sum += speed;
      if (overLimit || max === undefined || stats.get(max)!.speed < speed) max = dgst;
    }
    for (const s of stats.values()) s.share = s.speed / sum;

    if (current === undefined || completed.includes(current)) {
      this.printVtx(t, max, now);
      return;
    }
    // A vertex that waited too long gets its turn.
    for (const dgst of candidates) {
      if (stats.get(dgst)?.overLimit) {
        this.printVtx(t, dgst, now);
        return;
      }
    }
    // Otherwise the current vertex keeps the floor for its fair share of time.
    const cur = stats.get(current);
    if (cur && (1 / (1 - cur.share)) * antiFlicker < goSeconds(cur.blockTime)) this.printVtx(t, max, now);
  }
}
