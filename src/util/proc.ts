// Telling whether a process that left a record (a lock, a lease) is still the same live process:
// a pid alone can be reused after a crash, so the kernel's start time for it is recorded too.
import { readFile } from "node:fs/promises";

/** The process's start time in clock ticks since boot (/proc/PID/stat field 22), or undefined if it is gone. */
export async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is parenthesised and may hold spaces; fields count from after it.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19];
  } catch {
    return undefined;
  }
}

/** True when `pid` is alive and started at `startTime` (so it is the process that wrote the record). */
export async function processIsAlive(pid: number, startTime: string): Promise<boolean> {
  return (await processStartTime(pid)) === startTime;
}
