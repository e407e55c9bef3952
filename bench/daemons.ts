// The daemons benchmarks drive: buildkitd (when its binaries are found) and kilnd, each started
// on its own root and socket, ready when a probe command answers, stopped with SIGTERM.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { access, rm } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";

const sh = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "..");

export interface Daemon {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stopped, its root removed, started again: the only complete reset (prune keeps some records). */
  restartEmpty(): Promise<void>;
}

/** A daemon on `root` run as `cmd args`, ready once `probe` exits 0 (checked every 100 ms). */
export function daemon(cmd: string, args: string[], probe: [string, string[]], name: string, root: string): Daemon {
  let child: ChildProcess | undefined;
  const d: Daemon = {
    async start() {
      child = spawn(cmd, args, { stdio: "ignore" });
      for (let i = 0; i < 200; i++) {
        if (await sh(probe[0], probe[1]).then(() => true, () => false)) return;
        await sleep(100);
      }
      throw new Error(`${name} did not start`);
    },
    async stop() {
      if (!child) return;
      const c = child;
      child = undefined;
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      await exited;
    },
    async restartEmpty() {
      await d.stop();
      await rm(root, { recursive: true, force: true });
      await d.start();
    },
  };
  return d;
}

/** buildkitd and buildctl from `binDir` or PATH; undefined when either is missing. */
export async function findBuildkit(binDir: string | undefined): Promise<{ buildkitd: string; buildctl: string } | undefined> {
  const find = async (cmd: string) => {
    const p = binDir ? path.join(binDir, cmd) : (await sh("sh", ["-c", `command -v ${cmd}`]).catch(() => ({ stdout: "" }))).stdout.trim();
    return p && (await access(p).then(() => true, () => false)) ? p : undefined;
  };
  const buildkitd = await find("buildkitd");
  const buildctl = await find("buildctl");
  return buildkitd && buildctl ? { buildkitd, buildctl } : undefined;
}

/** buildkitd on `root`, listening on `sock`, with GC off so it never competes with a measurement. */
export function buildkitDaemon(bins: { buildkitd: string; buildctl: string }, root: string, sock: string, config: string): Daemon {
  return daemon(bins.buildkitd, ["--root", root, "--addr", `unix://${sock}`, "--config", config, "--oci-worker-gc=false"], [bins.buildctl, ["--addr", `unix://${sock}`, "debug", "workers"]], "buildkitd", root);
}

/** kilnd (this checkout's) on `root`, listening on `sock`. */
export function kilnDaemon(root: string, sock: string, config: string): Daemon {
  const kiln = path.join(repoRoot, "bin", "kiln");
  return daemon(process.execPath, [path.join(repoRoot, "bin", "kilnd"), "--root", root, "--config", config, "--addr", `unix://${sock}`], [process.execPath, [kiln, "--addr", `unix://${sock}`, "debug", "workers"]], "kilnd", root);
}
