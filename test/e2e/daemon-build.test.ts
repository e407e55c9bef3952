// An image build through kilnd: a registry base image, a RUN step, an OCI tarball streamed back
// over the session and the exporter's response in --metadata-file.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
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

test("kiln build --addr: FROM busybox + RUN, exported as an OCI tarball with buildctl's metadata", async () => {
  const sock = path.join(env.tmp, "kilnd-build.sock");
  const proc = spawn(process.execPath, [path.join(repoRoot, "bin", "kilnd"), "--root", path.join(env.tmp, "kilnd-root"), "--config", env.config, "--addr", `unix://${sock}`], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  proc.stderr.on("data", (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  try {
    for (let i = 0; !log.includes("running server on"); i++) {
      if (i > 600 || proc.exitCode !== null) throw new Error(`kilnd did not start:\n${log}`);
      await sleep(50);
    }
    const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo built-by-kilnd > /proof\nCMD [\"cat\", \"/proof\"]\n" });
    const out = path.join(env.tmp, "remote.oci.tar");
    const md = path.join(env.tmp, "md.json");
    const r = await env.run(["--addr", `unix://${sock}`, "build", ctx, "-o", `type=oci,dest=${out},name=example.com/kilnd/proof:v1`, "--metadata-file", md]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /RUN echo built-by-kilnd > \/proof\n#\d+ DONE/);
    const meta = JSON.parse(await readFile(md, "utf8")) as Record<string, unknown>;
    assert.match(String(meta["containerimage.digest"]), /^sha256:[0-9a-f]{64}$/);
    assert.equal(meta["image.name"], "example.com/kilnd/proof:v1");
    const { stdout } = await sh("skopeo", ["inspect", "--config", `oci-archive:${out}`]);
    const config = JSON.parse(stdout) as { config?: { Cmd?: string[] } };
    assert.deepEqual(config.config?.Cmd, ["cat", "/proof"]);
    proc.kill("SIGTERM");
    assert.equal(await exited, 0, log);
  } finally {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGKILL");
      await exited;
    }
  }
});
