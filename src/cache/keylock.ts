// Cross-process locks on cache keys. Daemonless builds are separate processes that may share one
// root; a lock per key lets the first one run a vertex while the others wait and then take its
// cached result, so concurrent identical builds run each step once, as one daemon would.
import { mkdir, open, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { processIsAlive, processStartTime, type Digest } from "../util/index.js";

export class KeyLocks {
  private selfStart: Promise<string | undefined> | undefined;

  constructor(private readonly dir: string) {}

  /** Waits until this process holds the lock for `key`; the returned function releases it. */
  async lock(signal: AbortSignal, key: Digest | string): Promise<() => Promise<void>> {
    let delay = 20;
    for (;;) {
      signal.throwIfAborted();
      const release = await this.tryLock(key);
      if (release) return release;
      await sleep(delay, undefined, { signal });
      delay = Math.min(delay * 2, 250);
    }
  }

  /** Takes the lock if it is free (or its holder died); undefined when someone alive holds it. */
  async tryLock(key: Digest | string): Promise<(() => Promise<void>) | undefined> {
    await mkdir(this.dir, { recursive: true });
    const file = path.join(this.dir, key.replace(/[:/]/g, "-"));
    this.selfStart ??= processStartTime(process.pid);
    const owner = `${process.pid} ${(await this.selfStart) ?? ""}`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fh = await open(file, "wx");
        try {
          await fh.writeFile(owner);
        } finally {
          await fh.close();
        }
        return async () => {
          await rm(file, { force: true });
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const text = await readFile(file, "utf8").catch(() => undefined);
      if (text !== undefined) {
        const [pid, start] = text.split(" ");
        // A holder that died (kill -9) never releases: its lock is taken over. An empty file is a
        // holder between create and write, unless it has been empty for long.
        const dead = pid && start ? !(await processIsAlive(Number(pid), start)) : Date.now() - ((await stat(file).catch(() => undefined))?.mtimeMs ?? 0) > 10_000;
        if (dead) {
          await rm(file, { force: true });
          continue;
        }
      }
      return undefined;
    }
    return undefined;
  }
}
