// What every benchmark measures with: a command's wall time (and, under GNU time, its peak RSS),
// medians, and the four-stage sample both the build and the cache benchmarks run.
import { spawn } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

export interface Measured {
  ms: number;
  rssKB: number;
}

/** Runs `cmd` to completion and returns its wall time; fails loudly with the command's stderr. */
async function run(cmd: string, args: string[], env: Record<string, string>, label: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${label} failed (${code}):\n${err}`))));
  });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Wall time of a command. */
export function timed(cmd: string, args: string[], env: Record<string, string> = {}): Promise<number> {
  return run(cmd, args, env, `${cmd} ${args.join(" ")}`);
}

/** Wall time and peak RSS of a command, run under GNU time. */
export async function measure(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Measured> {
  const tfile = path.join(os.tmpdir(), `kiln-bench-time-${process.pid}`);
  try {
    const ms = await run("/usr/bin/time", ["-f", "%M", "-o", tfile, cmd, ...args], env, `${cmd} ${args.join(" ")}`);
    const rssKB = Number((await readFile(tfile, "utf8")).trim().split("\n").pop());
    return { ms, rssKB };
  } finally {
    await rm(tfile, { force: true });
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Four stages, two with a cache mount, over a 50-file context. */
export function fourStageFiles(): Record<string, string> {
  return {
    Dockerfile: [
      "FROM busybox AS deps",
      "RUN --mount=type=cache,target=/cache sh -c 'test -f /cache/dl || head -c 4000000 /dev/urandom > /cache/dl; cp /cache/dl /deps'",
      "FROM busybox AS build",
      "COPY src/ /src/",
      "RUN --mount=type=cache,target=/cache sh -c 'cat /src/* > /cache/obj && cp /cache/obj /built'",
      "FROM busybox AS test",
      "COPY --from=build /built /built",
      "RUN test -s /built && echo ok > /tested",
      "FROM busybox",
      "COPY --from=deps /deps /deps",
      "COPY --from=build /built /app",
      "COPY --from=test /tested /tested",
    ].join("\n"),
    ...Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`src/m${i}.txt`, `module ${i}\n`.repeat(200)])),
  };
}
