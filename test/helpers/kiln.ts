// Drives the real CLI (bin/kiln) against a fixture registry that serves busybox as docker.io's
// mirror, the way a user behind a mirror would configure it.
import { spawn } from "node:child_process";
import { mkdtemp, mkdir, writeFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startRegistry, pushBusybox, writeKilnConfig } from "../fixtures/registry.js";

export const repoRoot = path.resolve(import.meta.dirname, "../..");
const kilnBin = path.join(repoRoot, "bin", "kiln");

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface KilnEnv {
  root: string;
  config: string;
  registryHost: string;
  tmp: string;
  run(args: string[], opts?: { cwd?: string; env?: Record<string, string>; onSpawn?: (pid: number) => void }): Promise<RunResult>;
  /** Writes files into a fresh directory and returns its path. */
  context(files: Record<string, string | Buffer>): Promise<string>;
  close(): Promise<void>;
}

let shared: Promise<{ host: string; pid: number; stop(): Promise<void> }> | undefined;
// Every test file shares one registry, and test/run.ts runs them all in one process: a file (or
// suite) ending must not stop it under the others, so it stops when its last user lets go.
let users = 0;

async function registry() {
  shared ??= (async () => {
    const reg = await startRegistry();
    // A run that ends with users left (or crashes) still takes its registry down.
    process.once("exit", () => {
      try {
        process.kill(reg.pid);
      } catch {
        // Already gone.
      }
    });
    await pushBusybox(reg.host);
    return reg;
  })();
  return shared;
}

/** Lets go of the shared registry taken by kilnEnv(); the last user stops it. */
export async function stopSharedRegistry(): Promise<void> {
  users = Math.max(0, users - 1);
  if (users > 0 || !shared) return;
  const reg = shared;
  shared = undefined;
  await (await reg).stop();
}

export async function kilnEnv(): Promise<KilnEnv> {
  users++;
  const reg = await registry();
  const tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-e2e-"));
  const root = path.join(tmp, "root");
  const config = await writeKilnConfig(tmp, reg.host);
  let n = 0;
  return {
    root,
    config,
    registryHost: reg.host,
    tmp,
    run(args, opts = {}) {
      return new Promise((resolve, reject) => {
        const t0 = Date.now();
        const child = spawn(process.execPath, [kilnBin, "--root", root, "--config", config, ...args], {
          cwd: opts.cwd ?? tmp,
          env: { ...process.env, BUILDKIT_PROGRESS: "plain", ...opts.env },
          stdio: ["ignore", "pipe", "pipe"],
        });
        if (opts.onSpawn && child.pid) opts.onSpawn(child.pid);
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("error", reject);
        child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 }));
      });
    },
    async context(files) {
      const dir = path.join(tmp, `ctx-${++n}`);
      for (const [name, content] of Object.entries(files)) {
        const p = path.join(dir, name);
        await mkdir(path.dirname(p), { recursive: true });
        await writeFile(p, content);
      }
      await mkdir(dir, { recursive: true });
      return dir;
    },
    async close() {
      await rm(tmp, { recursive: true, force: true });
    },
  };
}

/** What the plain progress says happened to each step: "DONE", "CACHED" or "ERROR", by step name. */
/** Environments a test file makes as it goes, each closed (ending its use of the shared registry) by closeAll. */
export function envPool(): { fresh(): Promise<KilnEnv>; readonly all: readonly KilnEnv[]; closeAll(): Promise<void> } {
  const all: KilnEnv[] = [];
  return {
    all,
    async fresh() {
      const e = await kilnEnv();
      all.push(e);
      return e;
    },
    async closeAll() {
      for (const e of all.splice(0)) {
        await e.close();
        await stopSharedRegistry();
      }
    },
  };
}

export function stepStates(stderr: string): Map<string, string> {
  const names = new Map<string, string>();
  const states = new Map<string, string>();
  for (const line of stderr.split("\n")) {
    const head = /^#(\d+) (\[.*)$/.exec(line);
    if (head && !names.has(head[1]!)) names.set(head[1]!, head[2]!);
    const end = /^#(\d+) (DONE|CACHED|ERROR)\b/.exec(line);
    if (end && names.has(end[1]!)) states.set(names.get(end[1]!)!, end[2]!);
  }
  return states;
}
