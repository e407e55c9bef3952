// `kiln build --addr` against BuildKit's own buildkitd v0.11.6: one output travels in v0.11's
// Exporter fields and comes back over the session (a tarball, a directory), with secrets and the
// metadata file; several outputs, which that daemon would silently cut to the first, are refused.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";
import { spawnKiln } from "../helpers/kilnd.js";

const sh = promisify(execFile);
const bin = process.env.BUILDKIT_BIN ?? "/opt/bk/bin";
const missing = !existsSync(path.join(bin, "buildkitd")) && `no buildkitd in ${bin}`;

// The shared registry outlives this file's describe: other files in the same run still use it.
after(async () => {
  await stopSharedRegistry();
});

describe("kiln build through BuildKit's buildkitd", { concurrency: false, skip: missing }, () => {
  let env: KilnEnv;
  let daemon: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  let addr = "";

  before(async () => {
    env = await kilnEnv();
    const sock = path.join(env.tmp, "buildkitd.sock");
    addr = `unix://${sock}`;
    const config = path.join(env.tmp, "buildkitd-bk.toml");
    await writeFile(config, `[registry."docker.io"]\n  mirrors = ["${env.registryHost}"]\n[registry."${env.registryHost}"]\n  http = true\n`);
    daemon = spawn(path.join(bin, "buildkitd"), ["--root", path.join(env.tmp, "buildkit-root"), "--addr", addr, "--config", config, "--oci-worker-gc=false"], { stdio: "ignore" });
    exited = new Promise((r) => daemon!.once("exit", r));
    for (let i = 0; (await spawnKiln(["--addr", addr, "--timeout", "1", "debug", "workers"]).done).code !== 0; i++) {
      if (i > 100) throw new Error("buildkitd did not start");
      await sleep(200);
    }
  });

  after(async () => {
    daemon?.kill("SIGTERM");
    await exited;
    await env?.close();
  });

  test("one output (oci tarball, local directory) with a secret and the metadata file; several outputs refused", async () => {
    const ctx = await env.context({ Dockerfile: "FROM busybox\nCOPY f /f\nRUN --mount=type=secret,id=tok cp /run/secrets/tok /tok\n", f: "from kiln\n" });
    const secret = path.join(env.tmp, "tok");
    await writeFile(secret, "buildkit-secret");
    const tar = path.join(env.tmp, "bk.oci.tar");
    const md = path.join(env.tmp, "bk-md.json");
    const r = await spawnKiln(["--addr", addr, "build", ctx, "--secret", `id=tok,src=${secret}`, "-o", `type=oci,dest=${tar}`, "--metadata-file", md]).done;
    assert.equal(r.code, 0, r.stderr);
    const index = JSON.parse((await sh("tar", ["-xOf", tar, "index.json"])).stdout) as { manifests: { digest: string }[] };
    assert.equal((JSON.parse(await readFile(md, "utf8")) as Record<string, string>)["containerimage.digest"], index.manifests[0]?.digest);

    const dir = path.join(env.tmp, "bk-local");
    const l = await spawnKiln(["--addr", addr, "build", ctx, "--secret", `id=tok,src=${secret}`, "-o", `type=local,dest=${dir}`]).done;
    assert.equal(l.code, 0, l.stderr);
    assert.equal(await readFile(path.join(dir, "f"), "utf8"), "from kiln\n");
    assert.equal(await readFile(path.join(dir, "tok"), "utf8"), "buildkit-secret");

    const several = await spawnKiln(["--addr", addr, "build", ctx, "--secret", `id=tok,src=${secret}`, "-o", `type=oci,dest=${tar}.2`, "-o", `type=local,dest=${dir}.2`]).done;
    assert.equal(several.code, 1);
    assert.match(several.stderr, /^error: several outputs need a daemon that takes a list of exporters \(kilnd, or BuildKit v0\.13 or later\); unix:\/\/.* runs BuildKit /m);
    assert.equal(existsSync(`${dir}.2`), false);
  });
});
