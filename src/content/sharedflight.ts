// Single-flight whose shared work is cancelled only when every caller waiting on it has given up,
// so one impatient caller cannot fail a download another caller still needs.
import { CanceledError, throwIfAborted } from "../util/index.js";

interface Entry<T> {
  promise: Promise<T>;
  controller: AbortController;
  waiters: number;
}

export class SharedFlight<T> {
  private readonly inflight = new Map<string, Entry<T>>();

  run(signal: AbortSignal, key: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    throwIfAborted(signal);
    let entry = this.inflight.get(key);
    // An entry whose waiters all left is still winding down; don't join its doomed work.
    if (!entry || entry.controller.signal.aborted) {
      const controller = new AbortController();
      const created: Entry<T> = { controller, waiters: 0, promise: Promise.resolve() as Promise<T> };
      created.promise = (async () => fn(controller.signal))().finally(() => {
        if (this.inflight.get(key) === created) this.inflight.delete(key);
      });
      // The shared promise may settle after every waiter left; that rejection is nobody's to report.
      created.promise.catch(() => undefined);
      this.inflight.set(key, created);
      entry = created;
    }
    const joined = entry;
    joined.waiters++;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const leave = (): void => {
        settled = true;
        signal.removeEventListener("abort", onAbort);
        joined.waiters--;
      };
      const onAbort = (): void => {
        if (settled) return;
        leave();
        const canceled = new CanceledError(signal.reason);
        if (joined.waiters > 0) return reject(canceled);
        // The last waiter out waits for the work to wind down, so its cleanup (temp files,
        // sockets) is done by the time the caller sees the cancellation.
        joined.controller.abort(signal.reason);
        joined.promise.then(
          () => reject(canceled),
          () => reject(canceled),
        );
      };
      signal.addEventListener("abort", onAbort, { once: true });
      joined.promise.then(
        (v) => {
          if (settled) return;
          leave();
          resolve(v);
        },
        (err: unknown) => {
          if (settled) return;
          leave();
          reject(err);
        },
      );
    });
  }
}
