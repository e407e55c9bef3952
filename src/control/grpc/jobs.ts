// Progress of solves by ref, for Control.Status. Clients call Status in parallel with Solve and
// may get there first, so a watcher waits for its job to appear; a job's events are kept until
// shortly after it ends, so a late watcher still gets the whole stream and then its end.
import type { ProgressEvent, ProgressWriter } from "../../solver/types.js";
import { KilnError } from "../../util/index.js";

/** How long Status waits for a Solve with its ref (BuildKit: 6 s, then "no such job"). */
export const jobWaitMs = 6000;
/** How long a finished job's events stay for late Status calls. */
export const jobLingerMs = 10_000;

interface Watcher {
  push(ev: ProgressEvent): void;
  end(): void;
}

class Job implements ProgressWriter {
  readonly events: ProgressEvent[] = [];
  readonly watchers = new Set<Watcher>();
  done = false;

  write(ev: ProgressEvent): void {
    if (this.done) return;
    this.events.push(ev);
    for (const w of this.watchers) w.push(ev);
  }

  finish(): void {
    if (this.done) return;
    this.done = true;
    for (const w of this.watchers) w.end();
    this.watchers.clear();
  }
}

export class JobRegistry {
  private readonly jobs = new Map<string, Job>();
  private readonly waiting = new Map<string, Set<() => void>>();
  private readonly timers = new Set<NodeJS.Timeout>();

  /** Registers a running solve; the caller ends it with `finish` in a finally. */
  start(ref: string): { progress: ProgressWriter; finish(): void } {
    if (this.jobs.get(ref)?.done === false) throw new KilnError("KILN_SOLVE", `job ID ${ref} exists`);
    const job = new Job();
    this.jobs.set(ref, job);
    for (const wake of this.waiting.get(ref) ?? []) wake();
    this.waiting.delete(ref);
    return {
      progress: job,
      finish: () => {
        job.finish();
        const t = setTimeout(() => {
          this.timers.delete(t);
          if (this.jobs.get(ref) === job) this.jobs.delete(ref);
        }, jobLingerMs);
        t.unref();
        this.timers.add(t);
      },
    };
  }

  /**
   * Streams the events of job `ref` to `onEvent`, from its first, until the job ends (resolves)
   * or `signal` fires (rejects). Rejects when no such job starts within `waitMs`.
   */
  async watch(signal: AbortSignal, ref: string, onEvent: (ev: ProgressEvent) => void, waitMs = jobWaitMs): Promise<void> {
    const job = this.jobs.get(ref) ?? (await this.waitFor(signal, ref, waitMs));
    for (const ev of job.events) onEvent(ev);
    if (job.done) return;
    await new Promise<void>((resolve, reject) => {
      const w: Watcher = {
        push: onEvent,
        end: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        job.watchers.delete(w);
        reject(signal.reason as Error);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      job.watchers.add(w);
    });
  }

  private waitFor(signal: AbortSignal, ref: string, waitMs: number): Promise<Job> {
    return new Promise<Job>((resolve, reject) => {
      let set = this.waiting.get(ref);
      if (!set) this.waiting.set(ref, (set = new Set()));
      const cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        set.delete(wake);
        if (set.size === 0 && this.waiting.get(ref) === set) this.waiting.delete(ref);
      };
      const wake = () => {
        cleanup();
        const job = this.jobs.get(ref);
        if (job) resolve(job);
        else reject(new KilnError("KILN_NO_JOB", `no such job ${ref}`));
      };
      const onAbort = () => {
        cleanup();
        reject(signal.reason as Error);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new KilnError("KILN_NO_JOB", `no such job ${ref}`));
      }, waitMs);
      set.add(wake);
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Drops lingering jobs and their timers (daemon shutdown). */
  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const j of this.jobs.values()) j.finish();
    this.jobs.clear();
  }
}
