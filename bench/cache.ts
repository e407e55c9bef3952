// Remote cache speed: the four-stage sample's mode=max cache exported to and imported from a local
// registry (Debian's docker-registry), on kiln (in-process CLI) and on BuildKit (a buildkitd this
// script starts, driven by buildctl) in the same run.
//   export: every step already cached locally; the build exports the cache to a new repository.
//   import: an empty root imports that cache; every step hits, the image is written to a tarball
//           (so the result's layers are pulled).
// Usage (root): node --import tsx bench/cache.ts [--runs 5] [--buildkit-bin DIR] [--engines kiln,kilnd,buildkit]
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { pushBusybox, startRegistry, writeKilnConfig } from "../test/fixtures/registry.js";
import { buildkitDaemon, findBuildkit, kilnDaemon } from "./daemons.js";
import { fourStageFiles, median, timed } from "./measure.js";

const repoRoot = path.resolve(import.meta.dirname, "..");
const { values } = parseArgs({ options: { runs: { type: "string", default: "5" }, "buildkit-bin": { type: "string" }, engines: { type: "string", default: "kiln,kilnd,buildkit" } } });
const wanted = new Set(values.engines.split(","));
const runs = Number(values.runs);

const files = fourStageFiles();

interface Engine {
  name: string;
  build(ctx: string, out: string, cacheArgs: string[]): Promise<number>;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

function kiln(tmp: string, config: string): Engine {
  const bin = path.join(repoRoot, "bin", "kiln");
  const root = path.join(tmp, "kiln-root");
  return {
    name: "kiln",
    build: (ctx, out, cacheArgs) => timed(process.execPath, [bin, "--root", root, "--config", config, "build", ctx, "--progress", "plain", "-o", `type=oci,dest=${out}`, ...cacheArgs]),
    reset: () => rm(root, { recursive: true, force: true }),
    stop: async () => {},
  };
}

/** kiln through a kilnd (the engine in a daemon, as BuildKit's): reset = a fresh root and a restarted daemon. */
async function kilnd(tmp: string, config: string): Promise<Engine> {
  const bin = path.join(repoRoot, "bin", "kiln");
  const root = path.join(tmp, "kilnd-root");
  const sock = path.join(tmp, "kilnd.sock");
  const d = kilnDaemon(root, sock, config);
  await d.start();
  return {
    name: "kilnd",
    build: (ctx, out, cacheArgs) => timed(process.execPath, [bin, "--addr", `unix://${sock}`, "build", ctx, "--progress", "plain", "-o", `type=oci,dest=${out}`, ...cacheArgs]),
    reset: () => d.restartEmpty(),
    stop: () => d.stop(),
  };
}

async function buildkit(tmp: string, config: string, binDir: string | undefined): Promise<Engine | undefined> {
  const bins = await findBuildkit(binDir);
  if (!bins) return undefined;
  const root = path.join(tmp, "buildkit-root");
  const sock = path.join(tmp, "buildkitd.sock");
  const d = buildkitDaemon(bins, root, sock, config);
  await d.start();
  return {
    name: "buildkit",
    build: (ctx, out, cacheArgs) => timed(bins.buildctl, ["--addr", `unix://${sock}`, "build", "--frontend", "dockerfile.v0", "--local", `context=${ctx}`, "--local", `dockerfile=${ctx}`, "--output", `type=oci,dest=${out}`, ...cacheArgs]),
    reset: () => d.restartEmpty(),
    stop: () => d.stop(),
  };
}

const reg = await startRegistry();
const tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-bench-cache-"));
const engines: Engine[] = [];
try {
  await pushBusybox(reg.host);
  const config = await writeKilnConfig(tmp, reg.host);
  const ctx = path.join(tmp, "ctx");
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(ctx, name)), { recursive: true });
    await writeFile(path.join(ctx, name), content);
  }
  if (wanted.has("kiln")) engines.push(kiln(tmp, config));
  if (wanted.has("kilnd")) engines.push(await kilnd(tmp, config));
  const bk = wanted.has("buildkit") ? await buildkit(tmp, config, values["buildkit-bin"]) : undefined;
  if (bk) engines.push(bk);
  else if (wanted.has("buildkit")) console.log("buildkitd/buildctl not found: kiln only (pass --buildkit-bin DIR or put them on PATH)");
  const out = path.join(tmp, "out.tar");
  const results = new Map<string, { export: number[]; import: number[] }>();
  for (const e of engines) results.set(e.name, { export: [], import: [] });
  const loadBefore = os.loadavg();
  // Engines take turns within each run, so a change in the machine's load (other work on a shared
  // host) falls on all of them alike rather than on whichever ran during it.
  for (let run = 0; run < runs; run++) {
    for (const e of engines) {
      const r = results.get(e.name)!;
      // A new repository each run: every blob is uploaded, none is found already there.
      const ref = `${reg.host}/bench-cache/${e.name}-${process.pid}-${run}:cache`;
      await e.reset();
      await e.build(ctx, out, []);
      r.export.push(await e.build(ctx, out, ["--export-cache", `type=registry,ref=${ref},mode=max`]));
      await e.reset();
      r.import.push(await e.build(ctx, out, ["--import-cache", `type=registry,ref=${ref}`]));
    }
  }
  const bkR = results.get("buildkit");
  const names = engines.map((e) => e.name);
  console.log(`\nfour-stage sample, mode=max cache to/from ${reg.host}; median wall time of ${runs} runs (ms)`);
  console.log(["scenario", ...names, ...(bkR ? names.filter((n) => n !== "buildkit").map((n) => `${n}/buildkit`) : [])].join("\t"));
  for (const k of ["export", "import"] as const) {
    const row = [k, ...names.map((n) => median(results.get(n)![k]).toFixed(0))];
    if (bkR) for (const n of names.filter((x) => x !== "buildkit")) row.push((median(results.get(n)![k]) / median(bkR[k])).toFixed(2));
    console.log(row.join("\t"));
  }
  for (const n of names) console.log(`${n} runs: export ${results.get(n)!.export.map((x) => x.toFixed(0)).join(" ")}; import ${results.get(n)!.import.map((x) => x.toFixed(0)).join(" ")}`);
  // The machine is shared: its load says how much to trust the numbers.
  console.log(`load average (1/5/15 min) before ${loadBefore.map((x) => x.toFixed(2)).join(" ")}, after ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  const sizes = await readFile(out).then((b) => b.length);
  console.log(`(image tarball ${Math.round(sizes / 1024)} KiB)`);
} finally {
  for (const e of engines) await e.stop().catch(() => {});
  await reg.stop();
  await rm(tmp, { recursive: true, force: true });
}
