// Records the local cache export (mode=max unless the case says min) of the real BuildKit for each case of
// test/compare/cache-cases.ts into test/compare/golden/cache/NAME.json (with --write), and with
// --compare exports the same builds from kiln and prints every record that differs. BuildKit
// itself is not part of this project: pass the directory holding `buildkitd` and `buildctl`
// v0.11.6 that you built yourself. Run as root.
// Usage: node --import tsx scripts/record-buildkit-cache-goldens.ts --buildkit-bin DIR [--only NAME] [--write] [--compare] [--keep]
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { startRegistry, pushBusybox, writeKilnConfig } from "../test/fixtures/registry.js";
import { buildkitDaemon, type Daemon } from "../bench/daemons.js";
import { cacheCases, diffGolden, normalizeCacheConfig, readLocalCacheConfig, writeCacheContext } from "../test/compare/cache-cases.js";

const sh = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "..");
const { values } = parseArgs({ options: { "buildkit-bin": { type: "string" }, only: { type: "string" }, write: { type: "boolean" }, compare: { type: "boolean" }, keep: { type: "boolean" } } });
if (!values["buildkit-bin"]) throw new Error("--buildkit-bin DIR is required");
const buildkitd = path.join(values["buildkit-bin"], "buildkitd");
const buildctl = path.join(values["buildkit-bin"], "buildctl");

const reg = await startRegistry();
const tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-cache-goldens-"));
let failures = 0;
let daemon: Daemon | undefined;
try {
  await pushBusybox(reg.host);
  const config = await writeKilnConfig(tmp, reg.host);
  const sock = path.join(tmp, "buildkitd.sock");
  daemon = buildkitDaemon({ buildkitd, buildctl }, path.join(tmp, "bk-root"), sock, config);
  await daemon.start();
  for (const c of cacheCases.filter((c) => !values.only || c.name === values.only)) {
    const ctx = path.join(tmp, "ctx", c.name);
    await writeCacheContext(ctx, c);
    const bkCache = path.join(tmp, `${c.name}.bk-cache`);
    const opts = c.target ? ["--opt", `target=${c.target}`] : [];
    try {
      await sh(buildctl, ["--addr", `unix://${sock}`, "build", "--frontend", "dockerfile.v0", "--local", `context=${ctx}`, "--local", `dockerfile=${ctx}`, ...opts, "--export-cache", `type=local,dest=${bkCache},mode=${c.mode ?? "max"}`], { maxBuffer: 64 << 20 });
    } catch (err) {
      failures++;
      console.log(`${c.name}: BuildKit failed: ${(err as { stderr?: string }).stderr?.split("\n").slice(-12).join("\n  ")}`);
      continue;
    }
    const want = normalizeCacheConfig(await readLocalCacheConfig(bkCache));
    if (values.write) {
      const file = path.join(repoRoot, "test/compare/golden/cache", `${c.name}.json`);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, JSON.stringify(want, null, 2) + "\n");
    }
    if (!values.compare) {
      console.log(`${c.name}: recorded (${want.length} records)`);
      continue;
    }
    const kilnCache = path.join(tmp, `${c.name}.kiln-cache`);
    const args = [path.join(repoRoot, "bin/kiln"), "--root", path.join(tmp, "kiln-root"), "--config", config, "build", ctx, "--progress", "plain", "--export-cache", `type=local,dest=${kilnCache},mode=${c.mode ?? "max"}`];
    if (c.target) args.push("--target", c.target);
    try {
      await sh(process.execPath, args, { maxBuffer: 64 << 20 });
    } catch (err) {
      failures++;
      console.log(`${c.name}: kiln failed: ${(err as { stderr?: string }).stderr?.split("\n").slice(-12).join("\n  ")}`);
      continue;
    }
    const diffs = diffGolden(want, normalizeCacheConfig(await readLocalCacheConfig(kilnCache)));
    if (diffs.length) failures++;
    console.log(`${c.name}: ${diffs.length ? `${diffs.length} differences\n  ${diffs.join("\n  ")}` : "identical"}`);
  }
} finally {
  await daemon?.stop();
  if (values.keep) console.log(`kept ${tmp}`);
  else await rm(tmp, { recursive: true, force: true });
  await reg.stop();
}
process.exitCode = failures ? 1 : 0;
