// A manual clock for the progress tests: time moves only when told, and interval timers fire at
// their due times on the way.
import type { Digest } from "../../../util/index.js";
import type { ProgressEvent } from "../../../solver/types.js";
import type { Clock } from "../progress.js";

interface Timer {
  fn: () => void;
  ms: number;
  due: number;
}

export class TestClock implements Clock {
  private timers = new Map<number, Timer>();
  private nextId = 1;

  constructor(public t = Date.UTC(2024, 0, 2, 3, 4, 5)) {}

  now(): number {
    return this.t;
  }

  setInterval(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { fn, ms, due: this.t + ms });
    return id;
  }

  clearInterval(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Moves to `to` (absolute ms), firing due timers in order. */
  advanceTo(to: number): void {
    for (;;) {
      let next: [number, Timer] | undefined;
      for (const e of this.timers) if (e[1].due <= to && (!next || e[1].due < next[1].due)) next = e;
      if (!next) break;
      this.t = next[1].due;
      next[1].due += next[1].ms;
      next[1].fn();
    }
    this.t = Math.max(this.t, to);
  }
}

/** A fake digest for vertex `n`. */
export function dg(n: string | number): Digest {
  return `sha256:${String(n).padStart(64, "0")}` as Digest;
}

/** Feeds `[ms since t0, event]` pairs to a printer, moving the clock to each first. */
export function play(clock: TestClock, t0: number, printer: { write(ev: ProgressEvent): void; finish(): void }, steps: [number, ProgressEvent][], finishAt?: number): void {
  for (const [at, ev] of steps) {
    clock.advanceTo(t0 + at);
    printer.write(ev);
  }
  if (finishAt !== undefined) clock.advanceTo(t0 + finishAt);
  printer.finish();
}
