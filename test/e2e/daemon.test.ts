// kilnd as a real process: a unix socket and TCP with mutual TLS (certificates made here with
// openssl), driven by `kiln --addr …` (buildctl's commands) and by the client library (Solve and
// Status), then stopped with SIGTERM.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { State, FileAction } from "../../src/llb/index.js";
import { ControlClient } from "../../src/client/index.js";
import { bindClient, gateway, health, type control } from "../../src/api/index.js";
import { spawnKilnd, type Kilnd } from "../helpers/kilnd.js";

const repoRoot = path.resolve(import.meta.dirname, "../..");
const kilnBin = path.join(repoRoot, "bin", "kiln");
const kilndBin = path.join(repoRoot, "bin", "kilnd");
const run = promisify(execFile);

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function kiln(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [kilnBin, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function stopDaemon(d: Kilnd): Promise<void> {
  if (d.proc.exitCode === null && d.proc.signalCode === null && d.proc.pid) {
    d.proc.kill("SIGKILL");
    await d.exited;
  }
}

/** A CA and certificates it signed, made with openssl (EC P-256). */
async function makeCerts(dir: string): Promise<void> {
  const ossl = (args: string[]) => run("openssl", args, { cwd: dir });
  const ca = async (name: string) => ossl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "2", "-subj", `/CN=${name}`]);
  const leaf = async (name: string, caName: string, ext: string) => {
    await writeFile(path.join(dir, `${name}.ext`), ext);
    await ossl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`]);
    await ossl(["x509", "-req", "-in", `${name}.csr`, "-CA", `${caName}.pem`, "-CAkey", `${caName}.key`, "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`]);
  };
  await ca("ca");
  await ca("otherca");
  await leaf("server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  await leaf("client", "ca", "extendedKeyUsage=clientAuth\n");
  await leaf("intruder", "otherca", "extendedKeyUsage=clientAuth\n");
}

describe("kilnd", { concurrency: false }, () => {
  let tmp = "";
  let root = "";
  let sock = "";
  let addr = "";
  let tcp = "";
  let daemon: Kilnd | undefined;
  const gid = 4242;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "kilnd-e2e-"));
    root = path.join(tmp, "root");
    sock = path.join(tmp, "run", "kilnd.sock");
    addr = `unix://${sock}`;
    await makeCerts(tmp);
    daemon = spawnKilnd([
      "--root", root, "--addr", addr, "--addr", "tcp://127.0.0.1:0", "--group", String(gid),
      "--tlscert", path.join(tmp, "server.pem"), "--tlskey", path.join(tmp, "server.key"), "--tlscacert", path.join(tmp, "ca.pem"),
      // buildkitd's own flags are accepted.
      "--oci-worker=true", "--containerd-worker=false", "--oci-worker-labels", "team=kiln",
    ]);
    await daemon.waitFor(/running server on .*kilnd\.sock/);
    const m = await daemon.waitFor(/running server on (127\.0\.0\.1:\d+)/);
    tcp = `tcp://${m[1]}`;
  });

  after(async () => {
    try {
      if (daemon) await stopDaemon(daemon);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });

  test("the unix socket is 0660 and owned by the configured group", async () => {
    const st = await stat(sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.gid, gid);
    assert.equal(st.uid, process.getuid!());
  });

  test("kiln --addr debug workers / info print buildctl's output from the daemon", async () => {
    const t = await kiln(["--addr", addr, "debug", "workers"]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^ID\t+PLATFORMS\n[0-9a-z]{25}\t+linux\/amd64(,[^\n]*)?\n$/);
    const id = /\n([0-9a-z]{25})\t/.exec(t.stdout)![1]!;

    const v = await kiln(["debug", "workers", "-v"], { BUILDKIT_HOST: addr });
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, new RegExp(`^ID:\\t+${id}\\n`));
    for (const label of [
      "org.mobyproject.buildkit.worker.executor:\t+oci",
      `org.mobyproject.buildkit.worker.hostname:\t+${os.hostname()}`,
      "org.mobyproject.buildkit.worker.snapshotter:\t+overlayfs",
      "org.mobyproject.buildkit.worker.network:\t+host",
      "org.mobyproject.buildkit.worker.oci.process-mode:\t+sandbox",
      "org.mobyproject.buildkit.worker.selinux.enabled:\t+false",
      "team:\t+kiln",
    ]) {
      assert.match(v.stdout, new RegExp(`\\n\\t${label.replaceAll(".", "\\.")}\\n`));
    }
    // BuildKit's default GC rules: local sources and cache mounts after 48 h, then everything.
    assert.match(v.stdout, /GC Policy rule#0:\n\tAll:\t+false\n\tFilters:\ttype==source\.local type==exec\.cachemount type==source\.git\.checkout\n\tKeep Duration:\t48h0m0s\n/);
    assert.match(v.stdout, /GC Policy rule#3:\n\tAll:\t+true\n/);

    // containerd-style filters over id and labels, as buildkitd's worker list takes them.
    const byLabel = await kiln(["--addr", addr, "debug", "workers", "-f", "labels.team==kiln"]);
    assert.equal(byLabel.stdout, t.stdout);
    const none = await kiln(["--addr", addr, "debug", "workers", "-f", `id!=${id}`]);
    assert.equal(none.stdout, "ID\tPLATFORMS\n");

    // The same worker id and labels as the daemonless view of the same root.
    const local = await kiln(["--root", root, "debug", "workers"]);
    assert.equal(local.code, 0, local.stderr);
    assert.equal(local.stdout, t.stdout);

    const info = await kiln(["--addr", addr, "debug", "info"]);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /^BuildKit: github\.com\/kiln-build\/kiln v\d+\.\d+\.\d+\S* ?\S*\n$/);
  });

  test("Status before Solve streams the solve's vertexes and ends with it; du and prune see the result", async () => {
    const ac = new AbortController();
    using client = await ControlClient.connect(ac.signal, { addr });
    const def = State.scratch().file(FileAction.mkfile("/hello", 0o644, `hello from kilnd ${Date.now()}\n`), { customName: "write /hello" }).marshal();
    const ref = `e2e-${Date.now()}`;
    const statuses: control.StatusResponse[] = [];
    const status = client.api.status({ Ref: ref }, { signal: ac.signal });
    const streamed = (async () => {
      for await (const s of status as AsyncIterable<control.StatusResponse>) statuses.push(s);
    })();
    await new Promise((r) => setTimeout(r, 200));
    const res = await client.api.solve({ Ref: ref, Definition: { def: def.def, metadata: def.metadata } }, { signal: ac.signal });
    assert.deepEqual(res.ExporterResponse, {});
    await streamed;
    const vertexes = statuses.flatMap((s) => s.vertexes);
    const mkfile = vertexes.filter((v) => v.name === "write /hello");
    assert.ok(mkfile.length > 0, `no "write /hello" vertex in ${JSON.stringify(vertexes.map((v) => v.name))}`);
    assert.ok(
      mkfile.some((v) => v.completed !== undefined && v.error === ""),
      "the vertex completed without error",
    );
    assert.match(mkfile[0]!.digest, /^sha256:[0-9a-f]{64}$/);

    // Records a daemonless build leaves in the same root (its process, and so its hold, is gone).
    const ctx = path.join(tmp, "ctx");
    await mkdir(ctx, { recursive: true });
    await writeFile(path.join(ctx, "Dockerfile"), "FROM scratch\nCOPY a.txt /a.txt\n");
    await writeFile(path.join(ctx, "a.txt"), `a ${Date.now()}\n`);
    const built = await kiln(["--root", root, "build", ctx, "--progress", "plain"]);
    assert.equal(built.code, 0, built.stderr);

    const du = await kiln(["--addr", addr, "du", "-v"]);
    assert.equal(du.code, 0, du.stderr);
    assert.match(du.stdout, /Description:\t+mkfile \/hello/);
    const table = await kiln(["--addr", addr, "du"]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^ID\t+RECLAIMABLE\tSIZE\t+LAST ACCESSED$/);
    assert.match(lines.at(-2)!, /^Reclaimable:\t[\d.]+[kMG]?B$/);
    assert.match(lines.at(-1)!, /^Total:\t+[\d.]+[kMG]?B$/);
    const ids = lines.slice(1, -2).map((l) => l.split(/\s+/)[0]!);
    assert.ok(ids.length >= 2, table.stdout);
    // The same cache records the daemonless `du` finds in the root; its record for the root's own
    // state (kiln-metadata) is no BuildKit record and stays off the wire.
    const localDu = await kiln(["--root", root, "du"]);
    const localIds = localDu.stdout.trimEnd().split("\n").slice(1, -2).map((l) => l.split(/\s+/)[0]!);
    assert.ok(localIds.includes("kiln-metadata*"), localDu.stdout);
    assert.ok(!ids.includes("kiln-metadata*"), table.stdout);
    assert.deepEqual(new Set(localIds.filter((id) => id !== "kiln-metadata*")), new Set(ids));

    const prune = await kiln(["--addr", addr, "prune"]);
    assert.equal(prune.code, 0, prune.stderr);
    const pruned = prune.stdout.trimEnd().split("\n");
    assert.match(pruned[0]!, /^ID\t+RECLAIMABLE\tSIZE\t+LAST ACCESSED$/);
    assert.match(pruned.at(-1)!, /^Total:\t[\d.]+[kMG]?B$/);
    const removed = pruned.slice(1, -1).map((l) => l.split(/\s+/)[0]!);
    assert.ok(removed.length >= 1, prune.stdout);
    for (const id of removed) assert.ok(ids.includes(id), `${id} was listed by du`);
    const after = await kiln(["--addr", addr, "du", "--format", "{{json .}}"]);
    const left = (JSON.parse(after.stdout) as { id: string }[]).map((r) => r.id);
    for (const id of removed) assert.ok(!left.includes(id), `${id} is gone after prune`);
  });

  test("Status for a ref no solve takes ends with NotFound", async () => {
    const ac = new AbortController();
    using client = await ControlClient.connect(ac.signal, { addr });
    const status = client.api.status({ Ref: "never-started" }, { signal: ac.signal });
    await assert.rejects(
      (async () => {
        for await (const _ of status as AsyncIterable<unknown>) void _;
      })(),
      (err: { code?: number; details?: string }) => err.code === 5 && /no such job never-started/.test(err.details ?? ""),
    );
  });

  test("kiln build --addr: the context travels over the session, outputs come back as a tarball and a directory", async () => {
    const ctx = path.join(tmp, "ctx-remote");
    await mkdir(path.join(ctx, "sub"), { recursive: true });
    await writeFile(path.join(ctx, "Dockerfile"), "FROM scratch\nCOPY hello.txt /hello.txt\nCOPY sub/ /sub/\n");
    await writeFile(path.join(ctx, "hello.txt"), "hello over the session\n");
    await writeFile(path.join(ctx, "sub", "data.bin"), Buffer.alloc(300_000, 7));
    const tarOut = path.join(tmp, "remote.tar");
    const tarBuild = await kiln(["--addr", addr, "build", ctx, "--progress", "plain", "-o", `type=tar,dest=${tarOut}`]);
    assert.equal(tarBuild.code, 0, tarBuild.stderr);
    assert.match(tarBuild.stderr, /#\d+ \[1\/2\] COPY hello\.txt \/hello\.txt\n#\d+ DONE/);
    assert.match(tarBuild.stderr, /exporting to client tarball/);
    const { stdout: listing } = await run("tar", ["tf", tarOut]);
    assert.deepEqual(listing.split("\n").filter(Boolean).sort(), ["hello.txt", "sub/", "sub/data.bin"]);

    const dirOut = path.join(tmp, "remote-dir");
    const dirBuild = await kiln(["--addr", addr, "build", ctx, "--progress", "plain", "-o", `type=local,dest=${dirOut}`]);
    assert.equal(dirBuild.code, 0, dirBuild.stderr);
    // The second build of the same context is all cache hits.
    assert.match(dirBuild.stderr, /COPY hello\.txt \/hello\.txt\n#\d+ CACHED/);
    assert.equal(await readFile(path.join(dirOut, "hello.txt"), "utf8"), "hello over the session\n");
    assert.deepEqual(await readFile(path.join(dirOut, "sub", "data.bin")), Buffer.alloc(300_000, 7));

    const broken = await kiln(["--addr", addr, "build", ctx, "--progress", "plain", "-f", path.join(ctx, "Dockerfile"), "--target", "nope"]);
    assert.equal(broken.code, 1);
    assert.match(broken.stderr, /error: .*nope/);
  });

  test("health check answers SERVING; a 6 MiB definition passes grpc-js's default 4 MiB limit", async () => {
    const ac = new AbortController();
    using client = await ControlClient.connect(ac.signal, { addr });
    const h = bindClient(health.Health, client.api.raw);
    assert.equal((await h.check({ service: "" }, { signal: ac.signal })).status, health.HealthCheckResponse_ServingStatus.SERVING);
    const big = Buffer.alloc(6 << 20, 0x61);
    big.write(String(Date.now()));
    const def = State.scratch().file(FileAction.mkfile("/big", 0o644, big)).marshal();
    const res = await client.api.solve({ Ref: `big-${Date.now()}`, Definition: { def: def.def, metadata: def.metadata } }, { signal: ac.signal });
    assert.deepEqual(res.ExporterResponse, {});
  });

  test("an empty Solve is a gateway-driven build: it waits for the client's LLBBridge calls until canceled", async () => {
    const ac = new AbortController();
    using client = await ControlClient.connect(ac.signal, { addr });
    const solving = client.api.solve({ Ref: `empty-${Date.now()}` }, { signal: ac.signal });
    const settled = await Promise.race([solving.then(() => "settled", () => "settled"), sleep(300).then(() => "waiting")]);
    assert.equal(settled, "waiting");
    // LLBBridge calls must name their build, as buildkitd's forwarder requires.
    const bridge = bindClient(gateway.LLBBridge, client.api.raw);
    await assert.rejects(bridge.ping({}), (err: { code?: number; details?: string }) => err.code === 5 && err.details === "forwarding Ping: no buildid found in context");
    ac.abort();
    await assert.rejects(solving, (err: { code?: number }) => err.code === 1);
  });

  test("TCP with mutual TLS: a client of the CA is served; another CA's client and a client without a certificate are refused", async () => {
    const tls = (name: string) => ["--tlscacert", path.join(tmp, "ca.pem"), "--tlscert", path.join(tmp, `${name}.pem`), "--tlskey", path.join(tmp, `${name}.key`)];
    const ok = await kiln(["--addr", tcp, ...tls("client"), "debug", "workers"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ID\t+PLATFORMS\n[0-9a-z]{25}\t/);

    const intruder = await kiln(["--addr", tcp, ...tls("intruder"), "--timeout", "3", "debug", "workers"]);
    assert.equal(intruder.code, 1);
    assert.equal(intruder.stdout, "");
    assert.match(intruder.stderr, /^error: failed to connect to tcp:\/\/127\.0\.0\.1:\d+: /m);

    const noCert = await kiln(["--addr", tcp, "--tlscacert", path.join(tmp, "ca.pem"), "--timeout", "3", "debug", "workers"]);
    assert.equal(noCert.code, 1);
    assert.match(noCert.stderr, /^error: failed to connect to tcp:/);

    // A server name the certificate doesn't carry is refused by the client.
    const wrongName = await kiln(["--addr", tcp, ...tls("client"), "--tlsservername", "elsewhere.example", "--timeout", "3", "debug", "info"]);
    assert.equal(wrongName.code, 1);
  });

  test("a second daemon on a live socket refuses to start", async () => {
    const second = spawnKilnd(["--root", path.join(tmp, "root2"), "--addr", addr]);
    try {
      const { code } = await second.exited;
      assert.equal(code, 1);
      assert.match(second.log(), /kilnd: .*kilnd\.sock is in use: is another kilnd running\?/);
      assert.ok((await stat(sock)).isSocket(), "the running daemon keeps its socket");
    } finally {
      await stopDaemon(second);
    }
  });

  test("SIGTERM: exits 0 and removes its socket", async () => {
    const d = daemon!;
    d.proc.kill("SIGTERM");
    const { code, signal } = await d.exited;
    assert.equal(signal, null);
    assert.equal(code, 0, d.log());
    await assert.rejects(stat(sock), { code: "ENOENT" });
    assert.match(d.log(), /SIGTERM received: stopping server/);
    const down = await kiln(["--addr", addr, "--timeout", "1", "du"]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /^error: failed to connect to unix:\/\//);
  });

  test("systemd socket activation: --addr fd:// serves the socket it is given", { skip: !existsSync("/usr/bin/systemd-socket-activate") && "no systemd-socket-activate" }, async () => {
    const dir = path.join(tmp, "activation");
    await mkdir(dir, { recursive: true });
    const asock = path.join(dir, "kilnd.sock");
    const proc = spawn("/usr/bin/systemd-socket-activate", ["-l", asock, process.execPath, kilndBin, "--addr", "fd://", "--root", path.join(dir, "root")], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    proc.stderr.on("data", (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
    try {
      for (let i = 0; i < 100 && !existsSync(asock); i++) await new Promise((r) => setTimeout(r, 50));
      // The first connection starts kilnd (systemd's Accept=no), which then answers on fd 3.
      const info = await kiln(["--addr", `unix://${asock}`, "--timeout", "30", "debug", "info"]);
      assert.equal(info.code, 0, info.stderr + log);
      assert.match(info.stdout, /^BuildKit: /);
      assert.match(log, /running server on fd:\/\/3/);
      proc.kill("SIGTERM");
      assert.equal(await exited, 0, log);
    } finally {
      if (proc.exitCode === null) {
        proc.kill("SIGKILL");
        await exited;
      }
    }
  });

  test("a stale socket file is replaced", async () => {
    await mkdir(path.dirname(sock), { recursive: true });
    // A socket nobody listens on: what a daemon killed with SIGKILL leaves behind.
    const script = `require("net").createServer().listen(process.argv[1], () => process.kill(process.pid, "SIGKILL"))`;
    await run(process.execPath, ["-e", script, sock]).catch(() => undefined);
    assert.ok((await stat(sock)).isSocket(), "a stale socket is left");
    const d = spawnKilnd(["--root", root, "--addr", addr]);
    try {
      await d.waitFor(/running server on .*kilnd\.sock/);
      const t = await kiln(["--addr", addr, "debug", "workers"]);
      assert.equal(t.code, 0, t.stderr);
    } finally {
      d.proc.kill("SIGTERM");
      await d.exited;
      await stopDaemon(d);
    }
  });
});
