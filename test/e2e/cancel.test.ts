// Ctrl-C at any stage stops the work and leaves nothing behind: no half-written output, no
// temp files in the content store, no mounts under the root, no containers.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

const sh = promisify(execFile);
let env: KilnEnv;
before(async () => {
  env = await kilnEnv();
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

async function waitFor(what: string, cond: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function assertClean(root: string): Promise<void> {
  const { stdout: mounts } = await sh("findmnt", ["-rn", "-o", "TARGET"]);
  assert.ok(!mounts.split("\n").some((m) => m.startsWith(root)), `mounts left under the root:\n${mounts}`);
  const ingest = await readdir(path.join(root, "content", "ingest")).catch(() => []);
  assert.deepEqual(ingest, [], "no partial blobs in the content store");
  const { stdout: containers } = await sh("runc", ["list", "-q"]);
  assert.ok(!containers.split("\n").some((l) => l.startsWith("kiln-")), `containers left: ${containers}`);
}

/** A TCP relay to `target` that passes at most `bytesPerSecond` each way, and counts what it passed. */
async function slowProxy(target: string, bytesPerSecond: number): Promise<{ host: string; passed: () => number; close(): Promise<void> }> {
  const [host, port] = target.split(":");
  let passed = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), host);
    sockets.add(client).add(upstream);
    const throttle = (from: net.Socket, to: net.Socket) => {
      from.on("data", (chunk: Buffer) => {
        from.pause();
        void (async () => {
          for (let off = 0; off < chunk.length; off += 4096) {
            const part = chunk.subarray(off, off + 4096);
            passed += part.length;
            if (!to.destroyed) to.write(part);
            await sleep((part.length / bytesPerSecond) * 1000);
          }
          from.resume();
        })();
      });
      from.on("close", () => to.destroy());
      from.on("error", () => to.destroy());
    };
    throttle(client, upstream);
    throttle(upstream, client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address() as net.AddressInfo;
  return {
    host: `127.0.0.1:${addr.port}`,
    passed: () => passed,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

test("SIGINT during an image pull stops the download and keeps the store clean", async () => {
  const proxy = await slowProxy(env.registryHost, 64 * 1024);
  try {
    const config = path.join(env.tmp, "slow.toml");
    await writeFile(config, `[registry."docker.io"]\n  mirrors = ["${proxy.host}"]\n[registry."${proxy.host}"]\n  http = true\n`);
    const root = path.join(env.tmp, "cancel-pull-root");
    const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN true\n" });
    let pid = 0;
    const running = env.run(["--root", root, "--config", config, "build", ctx], { onSpawn: (p) => (pid = p) });
    // Manifests and config are small; past 200 KB the layer is coming down.
    await waitFor("the layer download", async () => proxy.passed() > 200_000);
    process.kill(pid, "SIGINT");
    const r = await running;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /canceled/);
    await assertClean(root);
  } finally {
    await proxy.close();
  }
});

test("SIGINT during export leaves no output and no temp file", async () => {
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN head -c 100000000 /dev/urandom > /big\n" });
  const outDir = path.join(env.tmp, "cancel-export");
  await sh("mkdir", ["-p", outDir]);
  const dest = path.join(outDir, "image.tar");
  let pid = 0;
  const running = env.run(["build", ctx, "-o", `type=oci,dest=${dest}`], { onSpawn: (p) => (pid = p) });
  // The exporter writes to a temp file beside the destination and renames it at the end.
  await waitFor("the export to start", async () => (await readdir(outDir)).some((f) => f.endsWith(".tmp")));
  process.kill(pid, "SIGINT");
  const r = await running;
  assert.equal(r.code, 130, r.stderr);
  assert.deepEqual(await readdir(outDir), [], "neither the output nor its temp file is left");
  await assertClean(env.root);
});
