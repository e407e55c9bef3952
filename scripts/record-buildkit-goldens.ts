// Records what the real BuildKit produces for each case of test/compare/cases.ts into
// test/compare/golden/NAME.json, and (with --compare) builds the same cases with kiln and prints
// every difference. BuildKit itself is not part of this project: pass the directory holding
// `buildkitd` and `buildctl` v0.11.6 that you built yourself. Run as root.
// Usage: node --import tsx scripts/record-buildkit-goldens.ts --buildkit-bin DIR [--only NAME] [--write] [--compare]
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { startRegistry, pushBusybox, writeKilnConfig } from "../test/fixtures/registry.js";
import { buildkitDaemon, type Daemon } from "../bench/daemons.js";
import { cases, caseFiles, checkFail, failCases, failGolden, type CompareCase } from "../test/compare/cases.js";
import { imageFacts, layoutTree, diffFacts } from "../test/compare/facts.js";

const sh = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "..");
const { values } = parseArgs({ options: { "buildkit-bin": { type: "string" }, only: { type: "string" }, write: { type: "boolean" }, compare: { type: "boolean" } } });
if (!values["buildkit-bin"]) throw new Error("--buildkit-bin DIR is required");
const buildkitd = path.join(values["buildkit-bin"], "buildkitd");
const buildctl = path.join(values["buildkit-bin"], "buildctl");

async function writeContext(dir: string, c: CompareCase): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  for (const [name, content] of Object.entries(caseFiles(c))) {
    const p = path.join(dir, name);
    await mkdir(path.dirname(p), { recursive: true });
    await writeFile(p, content);
  }
}

const reg = await startRegistry();
const tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-goldens-"));
let failures = 0;
let daemon: Daemon | undefined;
try {
  const { layout } = await pushBusybox(reg.host);
  const base = await layoutTree(layout.dir);
  const config = await writeKilnConfig(tmp, reg.host);
  const sock = path.join(tmp, "buildkitd.sock");
  daemon = buildkitDaemon({ buildkitd, buildctl }, path.join(tmp, "bk-root"), sock, config);
  await daemon.start();
  for (const c of cases.filter((c) => !values.only || c.name === values.only)) {
    const ctx = path.join(tmp, "ctx", c.name);
    await writeContext(ctx, c);
    const bkOut = path.join(tmp, `${c.name}.bk.tar`);
    const opts = [...(c.target ? ["--opt", `target=${c.target}`] : []), ...Object.entries(c.buildArgs ?? {}).flatMap(([k, v]) => ["--opt", `build-arg:${k}=${v}`])];
    try {
      await sh(buildctl, ["--addr", `unix://${sock}`, "build", "--frontend", "dockerfile.v0", "--local", `context=${ctx}`, "--local", `dockerfile=${ctx}`, ...opts, "--output", `type=oci,dest=${bkOut}`], { maxBuffer: 64 << 20 });
    } catch (err) {
      failures++;
      console.log(`${c.name}: BuildKit failed: ${(err as { stderr?: string }).stderr?.split("\n").slice(-12).join("\n  ")}`);
      continue;
    }
    const want = await imageFacts(bkOut, base);
    if (values.write) {
      const file = path.join(repoRoot, "test/compare/golden", `${c.name}.json`);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, JSON.stringify(want, null, 2) + "\n");
    }
    if (!values.compare) {
      console.log(`${c.name}: recorded`);
      continue;
    }
    const kilnOut = path.join(tmp, `${c.name}.kiln.tar`);
    const args = [path.join(repoRoot, "bin/kiln"), "--root", path.join(tmp, "kiln-root"), "--config", config, "build", ctx, "--progress", "plain", "-o", `type=oci,dest=${kilnOut}`];
    if (c.target) args.push("--target", c.target);
    for (const [k, v] of Object.entries(c.buildArgs ?? {})) args.push("--build-arg", `${k}=${v}`);
    try {
      await sh(process.execPath, args, { maxBuffer: 64 << 20 });
    } catch (err) {
      failures++;
      console.log(`${c.name}: kiln failed: ${(err as { stderr?: string }).stderr?.split("\n").slice(-12).join("\n  ")}`);
      continue;
    }
    const got = await imageFacts(kilnOut, base);
    const diffs = diffFacts(want, got);
    if (JSON.stringify(want.buildinfo) !== JSON.stringify(got.buildinfo)) diffs.push(`buildinfo: want ${JSON.stringify(want.buildinfo)}\n   got ${JSON.stringify(got.buildinfo)}`);
    if (diffs.length) failures++;
    console.log(`${c.name}: ${diffs.length ? `${diffs.length} differences\n  ${diffs.join("\n  ")}` : "identical"}`);
  }
  for (const c of failCases.filter((c) => !values.only || c.name === values.only)) {
    const ctx = path.join(tmp, "ctx", c.name);
    await writeContext(ctx, { name: c.name, files: { ...c.files, Dockerfile: c.dockerfile } });
    const bk = await sh(buildctl, ["--addr", `unix://${sock}`, "build", "--frontend", "dockerfile.v0", "--local", `context=${ctx}`, "--local", `dockerfile=${ctx}`], { maxBuffer: 64 << 20 }).then(
      () => undefined,
      (err: { stderr?: string }) => err.stderr ?? "",
    );
    if (bk === undefined) {
      failures++;
      console.log(`${c.name}: BuildKit accepted it`);
      continue;
    }
    const want = failGolden(bk);
    if (values.write) {
      const file = path.join(repoRoot, "test/compare/golden/fail", `${c.name}.json`);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, JSON.stringify(want, null, 2) + "\n");
    }
    if (!values.compare) {
      console.log(`${c.name}: recorded`);
      continue;
    }
    const kiln = await sh(process.execPath, [path.join(repoRoot, "bin/kiln"), "--root", path.join(tmp, "kiln-root"), "--config", config, "build", ctx, "--progress", "plain"], { maxBuffer: 64 << 20 }).then(
      () => undefined,
      (err: { stderr?: string }) => err.stderr ?? "",
    );
    const diffs = kiln === undefined ? ["kiln accepted it"] : checkFail(want, kiln);
    if (diffs.length) failures++;
    console.log(`${c.name}: ${diffs.length ? `${diffs.join("\n  ")}` : "same error"}`);
  }
} finally {
  await daemon?.stop();
  await rm(tmp, { recursive: true, force: true });
  await reg.stop();
}
process.exitCode = failures ? 1 : 0;
