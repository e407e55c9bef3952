// Export speed and memory: N MB of new layers (half random, half text) exported to an OCI tarball
// with gzip and with zstd, on kiln and (when buildkitd/buildctl are found) on BuildKit, in one run
// on the same machine. Each timed export follows an untimed build of the same Dockerfile without
// an output, so every step is a cache hit and the time is the export's: diffing the layers,
// compressing them and writing the tarball. Peak RSS is kiln's whole process (the engine runs in
// it); for BuildKit the work happens in buildkitd, whose RSS is not comparable and not shown.
// Usage (root): node --import tsx bench/export.ts [--runs 3] [--sizes 128,1024] [--buildkit-bin DIR] [--no-buildkit]
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { pushBusybox, startRegistry, writeKilnConfig } from "../test/fixtures/registry.js";
import { buildkitDaemon, findBuildkit } from "./daemons.js";
import { measure, median, type Measured } from "./measure.js";

const repoRoot = path.resolve(import.meta.dirname, "..");
const { values } = parseArgs({
  options: { runs: { type: "string", default: "3" }, sizes: { type: "string", default: "128,1024" }, "buildkit-bin": { type: "string" }, "no-buildkit": { type: "boolean", default: false }, "buildkit-sizes": { type: "string", default: "128" } },
});
const runs = Number(values.runs);
const sizes = values.sizes.split(",").map(Number);
const buildkitSizes = new Set(values["buildkit-sizes"].split(",").map(Number));
const compressions = ["gzip", "zstd"] as const;

function dockerfile(mb: number): string {
  const half = (mb * 1024 * 1024) / 2;
  return [
    "FROM busybox",
    `RUN head -c ${half} /dev/urandom > /random.bin`,
    // Text that compresses like text (numbers change), produced fast by awk.
    `RUN awk 'BEGIN { for (i = 0; ; i++) print "line " i " of some quite compressible text, value " (i * 7919) % 100003 }' | head -c ${half} > /text.txt`,
  ].join("\n");
}

interface Engine {
  name: string;
  prepare(ctx: string): Promise<void>;
  export(ctx: string, out: string, compression: string): Promise<Measured>;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

function kilnEngine(tmp: string, config: string): Engine {
  const kiln = path.join(repoRoot, "bin", "kiln");
  const root = path.join(tmp, "kiln-root");
  const base = ["--root", root, "--config", config, "build"];
  return {
    name: "kiln",
    prepare: async (ctx) => void (await measure(process.execPath, [kiln, ...base, ctx, "--progress", "plain"])),
    export: (ctx, out, c) => measure(process.execPath, [kiln, ...base, ctx, "--progress", "plain", "-o", `type=oci,dest=${out},compression=${c}`]),
    reset: () => rm(root, { recursive: true, force: true }),
    stop: async () => {},
  };
}

async function buildkitEngine(tmp: string, config: string, binDir: string | undefined): Promise<Engine | undefined> {
  const bins = await findBuildkit(binDir);
  if (!bins) return undefined;
  const root = path.join(tmp, "buildkit-root");
  const sock = path.join(tmp, "buildkitd.sock");
  const d = buildkitDaemon(bins, root, sock, config);
  await d.start();
  const base = (ctx: string) => ["--addr", `unix://${sock}`, "build", "--frontend", "dockerfile.v0", "--local", `context=${ctx}`, "--local", `dockerfile=${ctx}`];
  return {
    name: "buildkit",
    prepare: async (ctx) => void (await measure(bins.buildctl, base(ctx))),
    export: (ctx, out, c) => measure(bins.buildctl, [...base(ctx), "--output", `type=oci,dest=${out},compression=${c}`]),
    reset: () => d.restartEmpty(),
    stop: () => d.stop(),
  };
}

const reg = await startRegistry();
const tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-bench-export-"));
const engines: Engine[] = [];
try {
  await pushBusybox(reg.host);
  const config = await writeKilnConfig(tmp, reg.host);
  engines.push(kilnEngine(tmp, config));
  const bk = values["no-buildkit"] ? undefined : await buildkitEngine(tmp, config, values["buildkit-bin"]);
  if (bk) engines.push(bk);
  else console.log("buildkitd/buildctl not used: kiln only (pass --buildkit-bin DIR or put them on PATH)");
  const out = path.join(tmp, "out.tar");
  // results[size][engine][compression] = runs
  const results = new Map<number, Map<string, Map<string, (Measured & { bytes: number })[]>>>();
  for (const mb of sizes) {
    const ctx = path.join(tmp, `ctx-${mb}`);
    await mkdir(ctx, { recursive: true });
    await writeFile(path.join(ctx, "Dockerfile"), dockerfile(mb));
    for (let run = 0; run < runs; run++) {
      for (const e of engines) {
        if (e.name !== "kiln" && !buildkitSizes.has(mb)) continue;
        for (const c of compressions) {
          // A fresh cache holding the built layers but no compressed blobs, then the timed export.
          await e.reset();
          await e.prepare(ctx);
          const m = await e.export(ctx, out, c);
          const bytes = (await stat(out)).size;
          await rm(out, { force: true });
          const byEngine = results.get(mb) ?? new Map<string, Map<string, (Measured & { bytes: number })[]>>();
          results.set(mb, byEngine);
          const byComp = byEngine.get(e.name) ?? new Map<string, (Measured & { bytes: number })[]>();
          byEngine.set(e.name, byComp);
          byComp.set(c, [...(byComp.get(c) ?? []), { ...m, bytes }]);
          console.error(`${mb} MB ${e.name} ${c} run ${run + 1}: ${m.ms.toFixed(0)} ms, peak RSS ${(m.rssKB / 1024).toFixed(0)} MB, tarball ${(bytes / 1048576).toFixed(1)} MB`);
        }
      }
    }
  }
  console.log(`\nexport of new layers to an OCI tarball; median of ${runs} runs; RSS = kiln's peak (the whole engine)`);
  const rows: string[][] = [["layers", "engine", "gzip ms", "zstd ms", "gzip MB out", "zstd MB out", "peak RSS MB"]];
  for (const [mb, byEngine] of results) {
    for (const [name, byComp] of byEngine) {
      const med = (c: string) => median(byComp.get(c)!.map((m) => m.ms));
      rows.push([
        `${mb} MB`,
        name,
        med("gzip").toFixed(0),
        med("zstd").toFixed(0),
        (byComp.get("gzip")![0]!.bytes / 1048576).toFixed(1),
        (byComp.get("zstd")![0]!.bytes / 1048576).toFixed(1),
        name === "kiln" ? (Math.max(...[...byComp.values()].flat().map((m) => m.rssKB)) / 1024).toFixed(0) : "-",
      ]);
    }
    const k = byEngine.get("kiln");
    const b = byEngine.get("buildkit");
    if (k && b) {
      const kg = median(k.get("gzip")!.map((m) => m.ms));
      const kz = median(k.get("zstd")!.map((m) => m.ms));
      const bg = median(b.get("gzip")!.map((m) => m.ms));
      console.log(`${mb} MB: kiln gzip / buildkit gzip = ${(kg / bg).toFixed(2)} (goal ≤ 0.8); kiln zstd / buildkit gzip = ${(kz / bg).toFixed(2)} (goal ≤ 0.3)`);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
} finally {
  for (const e of engines) await e.stop().catch(() => {});
  await rm(tmp, { recursive: true, force: true });
  await reg.stop();
}
