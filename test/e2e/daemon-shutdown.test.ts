// SIGTERM while kilnd runs a step: the solve is aborted, its container and mounts go, the client
// gets a cancellation, and kilnd exits 0.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { image } from "../../src/llb/index.js";
import { ControlClient } from "../../src/client/index.js";
import type { control } from "../../src/api/index.js";
import { kilnEnv, repoRoot, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

const sh = promisify(execFile);
let env: KilnEnv;
before(async () => {
  env = await kilnEnv();
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  return text
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(dir + "/"));
}

test("SIGTERM during a RUN: the solve is canceled, its container and mounts are gone, kilnd exits 0", async () => {
  const root = path.join(env.tmp, "kilnd-root");
  const sock = path.join(env.tmp, "kilnd.sock");
  const proc = spawn(process.execPath, [path.join(repoRoot, "bin", "kilnd"), "--root", root, "--config", env.config, "--addr", `unix://${sock}`], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  proc.stderr.on("data", (d: Buffer) => (log += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  try {
    for (let i = 0; !log.includes("running server on"); i++) {
      if (i > 600 || proc.exitCode !== null) throw new Error(`kilnd did not start:\n${log}`);
      await sleep(50);
    }
    const ac = new AbortController();
    using client = await ControlClient.connect(ac.signal, { addr: `unix://${sock}` });
    const def = image("docker.io/library/busybox:latest")
      .run({ args: ["/bin/sh", "-c", `echo started ${Date.now()}; sleep 120`] })
      .root()
      .marshal();
    const ref = `shutdown-${Date.now()}`;
    const statuses: control.StatusResponse[] = [];
    const status = client.api.status({ Ref: ref }, { signal: ac.signal });
    status.on("data", (s: control.StatusResponse) => statuses.push(s));
    status.on("error", () => undefined);
    const solving = client.api.solve({ Ref: ref, Definition: { def: def.def, metadata: def.metadata } }, { signal: ac.signal });
    solving.catch(() => undefined);

    // Wait until the step's process has printed, so a container is running.
    const started = () => statuses.some((s) => s.logs.some((l) => Buffer.from(l.msg).toString().includes("started")));
    for (let i = 0; !started(); i++) {
      if (i > 1200) throw new Error(`the RUN step did not start; log:\n${log}`);
      await sleep(50);
    }
    const pid = proc.pid!;
    const ours = async () => (await sh("runc", ["list", "-q"])).stdout.split("\n").filter((id) => id.includes(`kiln-${pid}-`));
    assert.ok((await ours()).length > 0, "a container runs the step");
    assert.ok((await mountsUnder(root)).length > 0, "the step's rootfs is mounted");

    const t0 = Date.now();
    proc.kill("SIGTERM");
    const { code, signal } = await exited;
    assert.equal(signal, null);
    assert.equal(code, 0, log);
    assert.ok(Date.now() - t0 < 30_000, "the 120 s step did not run to its end");
    await assert.rejects(solving, (err: { code?: number }) => err.code === 1 || err.code === 14, "the client's Solve ends with Canceled (or Unavailable, the connection being gone)");
    assert.deepEqual(await ours(), [], "no container is left");
    assert.deepEqual(await mountsUnder(root), [], "no mount is left under the root");
  } finally {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGKILL");
      await exited;
    }
  }
});
