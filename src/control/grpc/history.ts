// BuildKit's build history (Control.ListenBuildHistory / UpdateBuildHistory, v0.11): a record
// per build — what it was asked (frontend, attrs, exporters), when it ran, how it ended, how
// many of its steps ran or came from the cache. Clients list and delete records (buildx history,
// `buildctl debug monitor`, BuildKit's own tests before they prune). Kept in memory, the newest
// `maxEntries` completed records (BuildKit's default history size), so a restart forgets them.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { control, rpcstatus } from "../../api/index.js";
import type { ProgressEvent, ProgressWriter } from "../../solver/types.js";
import { KilnError } from "../../util/index.js";

type HistoryRecord = control.BuildHistoryRecord;
type Listener = (ev: control.BuildHistoryEvent) => void;

/** What a build is recorded with when it starts. */
export interface HistoryStart {
  ref: string;
  frontend: string;
  frontendAttrs: Record<string, string>;
  exporters: { type: string; attrs: Record<string, string> }[];
}

/** A running build's record: progress passes through it (step counts), `complete` closes it. */
export interface HistoryEntry {
  progress(inner: ProgressWriter): ProgressWriter;
  complete(error?: { code: number; message: string }): void;
}

export class BuildHistory {
  private readonly active = new Map<string, HistoryRecord>();
  /** Completed records, oldest first. */
  private readonly completed = new Map<string, HistoryRecord>();
  private readonly listeners = new Set<Listener>();

  constructor(private readonly maxEntries = 50) {}

  start(s: HistoryStart): HistoryEntry {
    const rec = create(control.BuildHistoryRecordSchema, {
      Ref: s.ref,
      Frontend: s.frontend,
      FrontendAttrs: s.frontendAttrs,
      Exporters: s.exporters.map((e) => ({ Type: e.type, Attrs: e.attrs })),
      CreatedAt: timestampFromDate(new Date()),
    });
    this.active.set(s.ref, rec);
    this.emit(control.BuildHistoryEventType.STARTED, rec);
    const steps = new Map<string, { completed: boolean; cached: boolean }>();
    let done = false;
    return {
      progress: (inner) => ({
        write(ev: ProgressEvent) {
          for (const v of ev.vertexes ?? []) {
            const st = steps.get(v.digest) ?? { completed: false, cached: false };
            if (v.completed) st.completed = true;
            if (v.cached) st.cached = true;
            steps.set(v.digest, st);
          }
          inner.write(ev);
        },
      }),
      complete: (error) => {
        if (done) return;
        done = true;
        rec.CompletedAt = timestampFromDate(new Date());
        rec.numTotalSteps = steps.size;
        rec.numCompletedSteps = [...steps.values()].filter((x) => x.completed).length;
        rec.numCachedSteps = [...steps.values()].filter((x) => x.cached).length;
        if (error) rec.error = create(rpcstatus.StatusSchema, error);
        this.active.delete(s.ref);
        this.completed.set(s.ref, rec);
        for (const ref of this.completed.keys()) {
          if (this.completed.size <= this.maxEntries) break;
          const r = this.completed.get(ref)!;
          if (r.pinned) continue;
          this.completed.delete(ref);
          this.emit(control.BuildHistoryEventType.DELETED, r);
        }
        this.emit(control.BuildHistoryEventType.COMPLETE, rec);
      },
    };
  }

  /**
   * Running builds (STARTED), then, unless `activeOnly`, completed ones (COMPLETE); with
   * `earlyExit` that is all, otherwise new events follow until `signal` aborts. `ref` narrows
   * everything to one build.
   */
  async listen(signal: AbortSignal, req: { ActiveOnly: boolean; Ref: string; EarlyExit: boolean }, send: (ev: MessageInitShape<typeof control.BuildHistoryEventSchema>) => void): Promise<void> {
    const wanted = (r: HistoryRecord) => req.Ref === "" || r.Ref === req.Ref;
    const queued: control.BuildHistoryEvent[] = [];
    let wake: (() => void) | undefined;
    const listener: Listener = (ev) => {
      if (!ev.record || !wanted(ev.record)) return;
      queued.push(ev);
      wake?.();
    };
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort, { once: true });
    // Subscribed before the snapshot, so nothing between the two is lost.
    if (!req.EarlyExit) this.listeners.add(listener);
    try {
      for (const r of this.active.values()) if (wanted(r)) send({ type: control.BuildHistoryEventType.STARTED, record: r });
      if (!req.ActiveOnly) for (const r of this.completed.values()) if (wanted(r)) send({ type: control.BuildHistoryEventType.COMPLETE, record: r });
      if (req.EarlyExit) return;
      while (!signal.aborted) {
        const ev = queued.shift();
        if (ev) {
          send(ev);
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      this.listeners.delete(listener);
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** UpdateBuildHistory: pin or unpin a completed record, or delete it. */
  update(req: { Ref: string; Pinned: boolean; Delete: boolean }): void {
    const rec = this.completed.get(req.Ref);
    if (!rec) throw new KilnError("KILN_NOT_FOUND", `build history record ${req.Ref} not found`);
    if (req.Delete) {
      this.completed.delete(req.Ref);
      this.emit(control.BuildHistoryEventType.DELETED, rec);
      return;
    }
    rec.pinned = req.Pinned;
  }

  private emit(type: control.BuildHistoryEventType, rec: HistoryRecord): void {
    const ev = create(control.BuildHistoryEventSchema, { type, record: rec });
    for (const l of this.listeners) l(ev);
  }
}
