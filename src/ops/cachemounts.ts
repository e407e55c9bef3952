// Serialises `sharing=locked` cache mounts: one holder per cache id at a time.
import { CanceledError } from "../util/index.js";

export class CacheMountLocks {
  private readonly tails = new Map<string, Promise<void>>();

  async lock(signal: AbortSignal, id: string): Promise<() => void> {
    const prev = this.tails.get(id) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(id, tail);
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        // Give our turn away at once so later holders are not blocked by a build that left.
        release();
        reject(new CanceledError(signal.reason));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      void prev.then(() => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      });
    });
    return () => {
      release();
      if (this.tails.get(id) === tail) this.tails.delete(id);
    };
  }
}
