// Builds driven through the gateway API (LLBBridge), as buildctl ≥ 0.11 and buildx drive every
// build: kiln's own client against a real kilnd, BuildKit's buildctl when it is installed, and
// `kiln debug llb`'s Definition.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { gateway, pb, type control } from "../../src/api/index.js";
import { ControlClient, gatewayBuild } from "../../src/client/index.js";
import { kilnEnv, repoRoot, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

const sh = promisify(execFile);
const buildctl = process.env.BUILDCTL ?? "/opt/bk/bin/buildctl";
let env: KilnEnv;
let daemon: { proc: ChildProcess; sock: string; log: () => string; exited: Promise<number | null> };

// A suite, so the shared registry and this daemon start when these tests run, not when the file loads
// beside other e2e files (whose suites stop the shared registry when they end).
void describe("gateway builds", () => {
  before(async () => {
    env = await kilnEnv();
    const sock = path.join(env.tmp, "kilnd-gw.sock");
    const proc = spawn(process.execPath, [path.join(repoRoot, "bin", "kilnd"), "--root", path.join(env.tmp, "kilnd-root"), "--config", env.config, "--addr", `unix://${sock}`], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    proc.stderr!.on("data", (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
    daemon = { proc, sock, log: () => log, exited };
    for (let i = 0; !log.includes("running server on"); i++) {
      if (i > 600 || proc.exitCode !== null) throw new Error(`kilnd did not start:\n${log}`);
      await sleep(50);
    }
  });

  after(async () => {
    if (daemon && daemon.proc.exitCode === null && daemon.proc.signalCode === null) {
      daemon.proc.kill("SIGTERM");
      const code = await Promise.race([daemon.exited, sleep(20_000).then(() => "timeout" as const)]);
      if (code === "timeout") {
        daemon.proc.kill("SIGKILL");
        await daemon.exited;
      }
    }
    await env?.close();
    await stopSharedRegistry();
  });

  async function connect(signal: AbortSignal): Promise<ControlClient> {
    return ControlClient.connect(signal, { addr: `unix://${daemon.sock}` });
  }

  const goModeSymlink = 1 << 27;

  test("kiln's client drives kilnd as buildctl does: Ping, Solve with dockerfile.v0, ReadFile/ReadDir/StatFile on the result, Warn, Return → exported", async () => {
    const signal = AbortSignal.timeout(120_000);
    using client = await connect(signal);
    const ctx = await env.context({ Dockerfile: 'FROM busybox\nARG WHO\nRUN mkdir /out && echo "hi $WHO" > /out/greeting && ln -s greeting /out/link\n' });
    const out = path.join(env.tmp, "gw-local-out");
    const statuses: control.StatusResponse[] = [];
    const seen: Record<string, unknown> = {};
    const res = await gatewayBuild(signal, client, { Exporter: "local", FrontendAttrs: { "build-arg:WHO": "gw" } }, { dirs: { context: ctx, dockerfile: ctx }, dirTarget: out }, (s) => statuses.push(s), async (gw, s) => {
      const pong = await gw.ping(s);
      const fe = new Map(pong.FrontendAPICaps.map((c) => [c.ID, c.Enabled]));
      seen.caps = [fe.get("return"), fe.get("proto.refarray"), fe.get("readdir"), pong.LLBCaps.some((c) => c.ID === "file.base")];
      seen.workers = pong.Workers.length;
      const r = await gw.solve(s, { Frontend: "dockerfile.v0", FrontendOpt: { "build-arg:WHO": "gw" } });
      const ref = r.result?.result.case === "ref" ? r.result.result.value : undefined;
      assert.ok(ref && ref.id !== "", "a ref for the frontend's result");
      assert.ok((ref.def?.def.length ?? 0) > 1, "the ref carries its definition");
      assert.ok(r.result?.metadata["containerimage.config"], "the frontend's image config comes back as metadata");
      seen.greeting = Buffer.from(await gw.readFile(s, ref.id, "/out/greeting")).toString();
      seen.range = Buffer.from(await gw.readFile(s, ref.id, "out/greeting", { offset: 3, length: 2 })).toString();
      seen.dir = (await gw.readDir(s, ref.id, "/out")).map((e) => e.path);
      seen.glob = (await gw.readDir(s, ref.id, "/out", "l*")).map((e) => e.path);
      // ReadDir lists entries as they are; StatFile follows a final symlink, as BuildKit's (fs.RootPath).
      const link = (await gw.readDir(s, ref.id, "/out")).find((e) => e.path === "link");
      seen.link = [link?.linkname, ((link?.mode ?? 0) & goModeSymlink) !== 0];
      const st = await gw.statFile(s, ref.id, "/out/link");
      seen.stat = [st?.path, Number(st?.size), ((st?.mode ?? 0) & goModeSymlink) !== 0];
      const missing = await gw.readFile(s, ref.id, "/nope").then(() => undefined, (e: grpc.ServiceError) => e);
      seen.missing = [missing?.code, missing?.details];
      const unknown = await gw.readFile(s, "not-a-ref", "/x").then(() => undefined, (e: grpc.ServiceError) => e);
      seen.unknown = unknown?.details;
      const img = await gw.resolveImageConfig(s, { Ref: "docker.io/library/busybox:latest" });
      seen.image = [img.Digest.startsWith("sha256:"), JSON.parse(Buffer.from(img.Config).toString()).os];
      await gw.warn(s, { digest: "", level: 1n, short: Buffer.from("a warning from the build function") });
      seen.inputs = Object.keys(await gw.inputs(s));
      return r.result;
    });
    assert.deepEqual(seen.caps, [true, true, true, true]);
    assert.equal(seen.workers, 1);
    assert.equal(seen.greeting, "hi gw\n");
    assert.equal(seen.range, "gw");
    assert.deepEqual(seen.dir, ["greeting", "link"]);
    assert.deepEqual(seen.glob, ["link"]);
    assert.deepEqual(seen.link, ["greeting", true]);
    assert.deepEqual(seen.stat, ["greeting", 6, false]);
    assert.deepEqual(seen.missing, [grpc.status.NOT_FOUND, "open /nope: no such file or directory"]);
    assert.match(String(seen.unknown), /no such ref: not-a-ref/);
    assert.deepEqual(seen.image, [true, "linux"]);
    assert.deepEqual(seen.inputs, []);
    assert.deepEqual(res, {});
    assert.equal(await readFile(path.join(out, "out", "greeting"), "utf8"), "hi gw\n");
    const warnings = statuses.flatMap((s) => s.warnings).map((w) => Buffer.from(w.short).toString());
    assert.ok(warnings.includes("a warning from the build function"), `warnings: ${JSON.stringify(warnings)}`);
    const names = statuses.flatMap((s) => s.vertexes).map((v) => v.name);
    assert.ok(names.some((n) => n.includes('RUN mkdir /out && echo "hi gw"')), names.join("\n"));
  });

  test("an error the build function returns fails the solve with its message; a failing RUN fails it after Return", async () => {
    const signal = AbortSignal.timeout(120_000);
    using client = await connect(signal);
    const bad = await env.context({ Dockerfile: "FROM busybox\nBOGUS x\n" });
    const err = await gatewayBuild(signal, client, {}, { dirs: { context: bad, dockerfile: bad } }, () => undefined, async (gw, s) => {
      const r = await gw.solve(s, { Frontend: "dockerfile.v0" });
      return r.result;
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /^failed to solve: dockerfile parse error on line 2: unknown instruction: BOGUS/);

    const thrown = await gatewayBuild(signal, client, {}, {}, () => undefined, () => Promise.reject(new Error("the build function gave up"))).then(() => undefined, (e: unknown) => e);
    assert.match((thrown as Error).message, /^failed to solve: the build function gave up/);

    const failing = await env.context({ Dockerfile: "FROM busybox\nRUN echo about to fail && exit 3\n" });
    const runErr = await gatewayBuild(signal, client, {}, { dirs: { context: failing, dockerfile: failing } }, () => undefined, async (gw, s) => (await gw.solve(s, { Frontend: "dockerfile.v0" })).result).then(() => undefined, (e: unknown) => e);
    assert.match((runErr as Error).message, /process "\/bin\/sh -c echo about to fail && exit 3" did not complete successfully: exit code: 3/);

    // The daemon is still fine: an empty result (buildx's capability probe) finishes cleanly.
    assert.deepEqual(await gatewayBuild(signal, client, {}, {}, () => undefined, async (gw, s) => (await gw.ping(s), undefined)), {});
  });

  test("a FrontendInputs entry sent without a value (Go's nil definition) fails as BuildKit's does, not as an empty context", async () => {
    const signal = AbortSignal.timeout(120_000);
    using client = await connect(signal);
    const err = await gatewayBuild(signal, client, {}, {}, () => undefined, async (gw) => {
      // protobuf-es cannot write a value-less map entry, so the request is put together by hand,
      // as gogo writes map[string]*pb.Definition{"dockerfile": nil, "context": nil}.
      const head = toBinary(gateway.SolveRequestSchema, create(gateway.SolveRequestSchema, { Frontend: "dockerfile.v0", allowResultReturn: true }));
      const nilEntry = (key: string) => Buffer.concat([Buffer.from([0x6a, key.length + 2, 0x0a, key.length]), Buffer.from(key)]);
      const body = Buffer.concat([head, nilEntry("dockerfile"), nilEntry("context")]);
      const metadata = new grpc.Metadata();
      metadata.set("buildkit-controlapi-buildid", gw.buildId);
      await new Promise((resolve, reject) => {
        client.api.raw.makeUnaryRequest("/moby.buildkit.v1.frontend.LLBBridge/Solve", (b: Buffer) => b, (b: Buffer) => b, body, metadata, (e, r) => (e ? reject(e) : resolve(r)));
      });
      return undefined;
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Error);
    assert.match(err.message, /invalid nil input definition to definition op/);
  });

  test("# syntax=: docker/dockerfile builds with the built-in frontend; another image fails at the directive's line, a missing one with the registry's error", async () => {
    const addr = ["--addr", `unix://${daemon.sock}`];
    const ok = await env.context({ Dockerfile: "# syntax=docker/dockerfile:1.4\nFROM busybox\nRUN true\n" });
    const built = await env.run([...addr, "build", ok]);
    assert.equal(built.code, 0, built.stderr);

    const missing = await env.context({ Dockerfile: "#syntax=foobar\nfrom busybox" });
    const r1 = await env.run([...addr, "build", missing]);
    assert.notEqual(r1.code, 0);
    assert.match(r1.stderr, /foobar/);
    assert.match(r1.stderr, /Dockerfile:1\n/);
    assert.match(r1.stderr, />>>\s+#syntax=foobar/);

    const other = await env.context({ Dockerfile: "# syntax=busybox\nFROM busybox\n" });
    const r2 = await env.run([...addr, "build", other]);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /frontend image busybox cannot run on kiln/);
    assert.match(r2.stderr, />>>\s+# syntax=busybox/);
  });

  test("buildctl: cache-from names an image whose inline cache (every platform's) makes a rebuild after prune --all cached; du then lists nothing", { skip: existsSync(buildctl) ? false : `no ${buildctl}` }, async () => {
    const addr = `unix://${daemon.sock}`;
    const ctx = await env.context({ Dockerfile: "FROM --platform=$BUILDPLATFORM busybox AS base\nARG TARGETARCH\nRUN echo -n $TARGETARCH > arch && head -c 64 /dev/urandom | sha256sum > unique\nFROM scratch\nCOPY --from=base unique /\nCOPY --from=base arch /\n" });
    const ref = `${env.registryHost}/kiln/inline-multi:${Date.now()}`;
    const build = (...extra: string[]) => sh(buildctl, ["--addr", addr, "build", "--frontend", "dockerfile.v0", "--local", `context=${ctx}`, "--local", `dockerfile=${ctx}`, "--opt", "platform=linux/amd64,linux/arm64", "--output", `type=image,name=${ref},push=true`, "--export-cache", "type=inline", "--progress", "plain", ...extra], { timeout: 120_000 });
    await build();
    await sh(buildctl, ["--addr", addr, "prune", "--all"]);
    const du = await sh(buildctl, ["--addr", addr, "du"]);
    assert.doesNotMatch(du.stdout, /^[0-9a-z-]{12,}\*?\s/m, `prune --all leaves no record:\n${du.stdout}`);

    const again = await build("--opt", `cache-from=${ref}`);
    assert.match(again.stderr, /importing cache manifest from /);
    const steps = [...again.stderr.matchAll(/^#(\d+) \[linux\/(amd64|arm64)[^\]]*\] (RUN|COPY) .*$/gm)].map((m) => m[1]!);
    assert.equal(new Set(steps).size, 6, again.stderr);
    for (const n of new Set(steps)) assert.match(again.stderr, new RegExp(`^#${n} CACHED$`, "m"), `step #${n} is cached:\n${again.stderr}`);
  });

  test("build history: a finished build is listed (EarlyExit) with its frontend and step counts, and UpdateBuildHistory deletes it", async () => {
    const signal = AbortSignal.timeout(120_000);
    using client = await connect(signal);
    const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo history > /h\n" });
    const r = await env.run(["--addr", `unix://${daemon.sock}`, "build", ctx]);
    assert.equal(r.code, 0, r.stderr);
    const list = async (): Promise<control.BuildHistoryEvent[]> => {
      const events: control.BuildHistoryEvent[] = [];
      const stream = client.api.listenBuildHistory({ EarlyExit: true }, { signal });
      for await (const ev of stream) events.push(ev as control.BuildHistoryEvent);
      return events;
    };
    const records = (await list()).filter((e) => e.type === 1 && e.record?.Frontend === "dockerfile.v0");
    assert.ok(records.length > 0, "the build is recorded as completed");
    const rec = records.at(-1)!.record!;
    assert.ok(rec.CreatedAt && rec.CompletedAt && !rec.error);
    assert.ok(rec.numTotalSteps >= 2 && rec.numCompletedSteps === rec.numTotalSteps, `${rec.numCompletedSteps}/${rec.numTotalSteps} steps`);
    await client.api.updateBuildHistory({ Ref: rec.Ref, Delete: true }, { signal });
    assert.ok(!(await list()).some((e) => e.record?.Ref === rec.Ref), "the deleted record is gone");
    await assert.rejects(client.api.updateBuildHistory({ Ref: rec.Ref, Delete: true }, { signal }), /not found/);
  });

  /** `kiln debug llb` with stdout as bytes. */
  async function debugLLB(args: string[]): Promise<Buffer> {
    const child = spawn(process.execPath, [path.join(repoRoot, "bin", "kiln"), "--root", env.root, "--config", env.config, "debug", "llb", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    const chunks: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => chunks.push(d));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, stderr);
    return Buffer.concat(chunks);
  }

  test("kiln debug llb writes a Definition whose last op is a bare reference to the result", async () => {
    const ctx = await env.context({ Dockerfile: "FROM busybox AS base\nARG MSG=x\nRUN echo $MSG > /m\nFROM base AS final\nRUN cat /m\n", "data.txt": "d\n" });
    const bytes = await debugLLB([ctx, "--target", "base", "--build-arg", "MSG=hello"]);
    const def = fromBinary(pb.DefinitionSchema, bytes);
    const ops = def.def.map((b) => ({ digest: `sha256:${createHash("sha256").update(b).digest("hex")}`, op: fromBinary(pb.OpSchema, b) }));
    const last = ops.at(-1)!;
    assert.equal(last.op.op.case, undefined, "the terminal op has no body");
    assert.equal(last.op.inputs.length, 1);
    const result = ops.find((o) => o.digest === last.op.inputs[0]!.digest);
    assert.ok(result, "the terminal op points at an op of the definition");
    assert.equal(result.op.op.case, "exec");
    assert.deepEqual(result.op.op.case === "exec" ? result.op.op.value.meta?.args : [], ["/bin/sh", "-c", "echo $MSG > /m"]);
    assert.ok(result.op.op.case === "exec" && result.op.op.value.meta?.env.includes("MSG=hello"));
    assert.equal(def.metadata[result.digest]?.description["llb.customname"], "[base 2/2] RUN echo hello > /m");
    // Without a session, local sources are pinned with local.unique, as LLB marshalled by a Go client.
    for (const o of ops) if (o.op.op.case === "source" && o.op.op.value.identifier.startsWith("local://")) assert.ok(o.op.op.value.attrs["local.unique"]);
  });

  test("kiln build reads a Definition from stdin (buildctl's form without --frontend), in process and through kilnd", async () => {
    const ctx = await env.context({ Dockerfile: "FROM busybox\nCOPY data.txt /data.txt\nRUN cat /data.txt > /copy.txt\n", "data.txt": "from stdin llb\n" });
    const def = await debugLLB([ctx]);
    for (const [i, where] of [[], ["--addr", `unix://${daemon.sock}`]].entries()) {
      const out = path.join(env.tmp, `stdin-llb-${i}`);
      const child = spawn(process.execPath, [path.join(repoRoot, "bin", "kiln"), ...(where.length > 0 ? where : ["--root", env.root, "--config", env.config]), "build", "--local", `context=${ctx}`, "-o", `type=local,dest=${out}`, "--progress", "plain"], { stdio: ["pipe", "ignore", "pipe"] });
      let err = "";
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      child.stdin.end(def);
      assert.equal(await new Promise((resolve) => child.on("close", resolve)), 0, err);
      assert.equal(await readFile(path.join(out, "copy.txt"), "utf8"), "from stdin llb\n");
    }
  });

  test("BuildKit's buildctl builds through kilnd: oci tarball, build args, target, a failing RUN, and kiln's LLB on stdin", { skip: existsSync(buildctl) ? false : `no ${buildctl}` }, async () => {
    const addr = `unix://${daemon.sock}`;
    const ctx = await env.context({ Dockerfile: "FROM busybox AS base\nARG WHO=nobody\nRUN echo \"hi $WHO\" > /who\nFROM base AS other\nRUN exit 1\n", "f.txt": "x\n" });
    const tar = path.join(env.tmp, "buildctl.oci.tar");
    const md = path.join(env.tmp, "buildctl-md.json");
    const r = await sh(buildctl, ["--addr", addr, "build", "--frontend", "dockerfile.v0", "--local", `context=${ctx}`, "--local", `dockerfile=${ctx}`, "--opt", "target=base", "--opt", "build-arg:WHO=buildctl", "--output", `type=oci,dest=${tar}`, "--metadata-file", md, "--progress", "plain"], { timeout: 120_000 });
    assert.match(r.stderr, /RUN echo "hi buildctl" > \/who\n#\d+ DONE/);
    const meta = JSON.parse(await readFile(md, "utf8")) as Record<string, unknown>;
    assert.match(String(meta["containerimage.digest"]), /^sha256:[0-9a-f]{64}$/);
    const { stdout } = await sh("skopeo", ["inspect", "--config", `oci-archive:${tar}`]);
    assert.equal((JSON.parse(stdout) as { os: string }).os, "linux");

    const failed = await sh(buildctl, ["--addr", addr, "build", "--frontend", "dockerfile.v0", "--local", `context=${ctx}`, "--local", `dockerfile=${ctx}`, "--opt", "target=other", "--progress", "plain"], { timeout: 120_000 }).then(
      () => undefined,
      (e: { stderr: string; code: number }) => e,
    );
    assert.ok(failed, "the build fails");
    // BuildKit's message, not kiln's step-named one (the step travels as an errdefs.Vertex detail).
    assert.match(failed.stderr, /\nerror: failed to solve: process "\/bin\/sh -c exit 1" did not complete successfully: exit code: 1\n/);

    // kiln's LLB through buildctl's stdin path (LLBBridge Solve with a Definition).
    const def = await debugLLB([ctx, "--target", "base"]);
    const outDir = path.join(env.tmp, "buildctl-llb-out");
    const child = spawn(buildctl, ["--addr", addr, "build", "--local", `context=${ctx}`, "--output", `type=local,dest=${outDir}`], { stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.stdin.end(def);
    assert.equal(await new Promise((resolve) => child.on("close", resolve)), 0, err);
    assert.equal(await readFile(path.join(outDir, "who"), "utf8"), "hi nobody\n");
    assert.ok((await readdir(outDir)).includes("bin"));
  });
});
