// s3 and azblob caches against real servers started here: s3rver (S3 API; it refuses bad SigV4 signatures) and
// Azurite (Azure Blob API, Shared Key-checked), both on 127.0.0.1. Export from one root, import
// into a fresh one: every step cached, no RUN, the same image.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { envPool, repoRoot, stepStates, type KilnEnv } from "../helpers/kiln.js";
import { freePort } from "../fixtures/registry.js";

const envs = envPool();
let tmp = "";
let s3rver: ChildProcess | undefined;
let s3URL = "";
let azurite: ChildProcess | undefined;
let azURL = "";
const azKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/** Waits until something answers HTTP at `url` (any status). */
async function answering(url: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.status > 0,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer`);
}

// Both servers run as child processes: stopping them is a kill, never a wait for idle sockets.
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-objects-"));
  const s3Port = await freePort();
  await mkdir(path.join(tmp, "s3"), { recursive: true });
  s3rver = spawn(process.execPath, [path.join(repoRoot, "node_modules", "s3rver", "bin", "s3rver.js"), "-d", path.join(tmp, "s3"), "-a", "127.0.0.1", "-p", String(s3Port), "--silent", "--configure-bucket", "kiln-cache"], { stdio: "ignore" });
  s3URL = `http://127.0.0.1:${s3Port}`;
  const azPort = await freePort();
  azurite = spawn(process.execPath, [path.join(repoRoot, "node_modules", "azurite", "dist", "src", "blob", "main.js"), "--blobHost", "127.0.0.1", "--blobPort", String(azPort), "--location", path.join(tmp, "azurite"), "--silent", "--skipApiVersionCheck"], { stdio: "ignore" });
  azURL = `http://127.0.0.1:${azPort}/devstoreaccount1`;
  await Promise.all([answering(s3URL), answering(`${azURL}?comp=list`)]);
});

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await Promise.race([exited, new Promise((r) => setTimeout(r, 3000).unref())]);
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

after(async () => {
  await stop(azurite);
  await stop(s3rver);
  await envs.closeAll();
  await rm(tmp, { recursive: true, force: true });
});

const freshEnv = () => envs.fresh();

const dockerfile = ["FROM busybox AS build", "COPY a.txt /a", "RUN echo built-$(cat /a) > /out", "FROM busybox", "COPY --from=build /out /out", "RUN cat /out > /final"].join("\n");

async function build(env: KilnEnv, ctx: string, extra: string[], processEnv: Record<string, string> = {}) {
  const md = path.join(env.tmp, `md-${Math.random().toString(36).slice(2)}.json`);
  const r = await env.run(["build", ctx, "-o", `type=oci,dest=${path.join(env.tmp, "out.tar")}`, "--metadata-file", md, ...extra], { env: processEnv });
  assert.equal(r.code, 0, r.stderr);
  const meta = JSON.parse(await readFile(md, "utf8")) as Record<string, string>;
  const states = stepStates(r.stderr);
  return { stderr: r.stderr, digest: meta["containerimage.digest"], runs: [...states].filter(([n, st]) => n.includes(" RUN ") && st === "DONE").length };
}

async function roundTrip(exp: string, imp: string, processEnv: Record<string, string> = {}): Promise<void> {
  const files = { Dockerfile: dockerfile, "a.txt": `${exp}\n` };
  const a = await freshEnv();
  const first = await build(a, await a.context(files), ["--export-cache", exp], processEnv);
  assert.equal(first.runs, 2, first.stderr);
  const b = await freshEnv();
  const second = await build(b, await b.context(files), ["--import-cache", imp], processEnv);
  assert.equal(second.runs, 0, second.stderr);
  assert.equal(second.digest, first.digest);
}

test("s3 (s3rver): mode=max round trip with credentials, path style, prefixes and two names", async () => {
  const common = `type=s3,bucket=kiln-cache,region=us-east-1,endpoint_url=${s3URL},use_path_style=true,access_key_id=S3RVER,secret_access_key=S3RVER,prefix=proj/`;
  await roundTrip(`${common},mode=max,name=main;pr-1`, `${common},name=pr-1`);
});

test("s3: credentials and region from the AWS environment", async () => {
  const common = `type=s3,bucket=kiln-cache,endpoint_url=${s3URL},use_path_style=true,blobs_prefix=b/,manifests_prefix=m/`;
  await roundTrip(`${common},name=env`, `${common},name=env`, { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_REGION: "us-east-1" });
});

test("azblob (Azurite): mode=max round trip with shared key", async () => {
  const common = `type=azblob,account_url=${azURL},secret_access_key=${azKey},prefix=proj`;
  await roundTrip(`${common},mode=max,name=main`, `${common},name=main`);
});

test("an unreachable object store warns on import and fails the export unless ignore-error=true", async () => {
  const env = await freshEnv();
  const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo x > /x\n" });
  const dead = "type=s3,bucket=b,region=us-east-1,endpoint_url=http://127.0.0.1:9,use_path_style=true";
  const imp = await env.run(["build", ctx, "--import-cache", dead]);
  assert.equal(imp.code, 0, imp.stderr);
  const exp = await env.run(["build", ctx, "--export-cache", dead]);
  assert.notEqual(exp.code, 0);
  const ign = await env.run(["build", ctx, "--export-cache", `${dead},ignore-error=true`]);
  assert.equal(ign.code, 0, ign.stderr);
});
