// Wall time and peak memory of whole builds through the CLI, on kiln and, when they are on PATH,
// through kilnd (started once, driven by `kiln --addr`) and on BuildKit (a buildkitd this script
// starts, driven by buildctl) — same machine, same run.
// Workloads: a small Dockerfile cold and unchanged; four stages with a cache mount; a 5,000-file
// context cold, unchanged and with one file changed; 128 MB of new layers exported to an OCI tarball.
// Usage (root): node --import tsx bench/build.ts [--runs 5] [--only NAME] [--buildkit-bin DIR] [--also-without-extra-ca]
// --also-without-extra-ca: when NODE_EXTRA_CA_CERTS is set, also time kiln's clients with it
// unset (Node parses that file before any script runs, 60-80 ms kiln cannot avoid; Go does not).
import { execFile } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { pushBusybox, startRegistry, writeKilnConfig } from "../test/fixtures/registry.js";
import { buildkitDaemon, findBuildkit, kilnDaemon } from "./daemons.js";
import { fourStageFiles, measure, median, type Measured } from "./measure.js";

const sh = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "..");
const { values } = parseArgs({ options: { runs: { type: "string", default: "5" }, only: { type: "string" }, "buildkit-bin": { type: "string" }, "also-without-extra-ca": { type: "boolean" } } });
/** The environment a kiln client runs with in the "-noca" engines: the same, minus the extra CA file. */
const withoutExtraCA = { NODE_EXTRA_CA_CERTS: "" };
const runs = Number(values.runs);

interface Scenario {
  /** Label of this measurement, e.g. "cold". */
  name: string;
  /** Prepares the context before the timed build (edit a file, nothing, …). */
  before?: (ctx: string, run: number) => Promise<void>;
  /** Start from an empty cache. */
  cold?: boolean;
}

interface Workload {
  name: string;
  files: () => Record<string, string | Buffer>;
  scenarios: Scenario[];
}

const small: Workload = {
  name: "small",
  files: () => ({
    Dockerfile: ["FROM busybox", "WORKDIR /app", "COPY hello.txt .", "RUN cat hello.txt > out.txt", 'CMD ["cat", "/app/out.txt"]'].join("\n"),
    "hello.txt": "hello\n",
  }),
  scenarios: [{ name: "cold", cold: true }, { name: "unchanged" }],
};

const fourStages: Workload = {
  name: "4-stages+cache-mount",
  files: fourStageFiles,
  scenarios: [
    { name: "cold", cold: true },
    { name: "unchanged" },
    { name: "edit", before: (ctx, run) => writeFile(path.join(ctx, "src/m0.txt"), `edited ${run}\n`) },
  ],
};

const manyFiles: Workload = {
  name: "5000-file context",
  files: () => ({
    Dockerfile: "FROM busybox\nCOPY . /ctx\nRUN find /ctx -type f | wc -l > /n\n",
    ...Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`d${i % 50}/f${i}.txt`, `file ${i}\n`])),
  }),
  scenarios: [
    { name: "cold", cold: true },
    { name: "unchanged" },
    { name: "one changed", before: (ctx, run) => writeFile(path.join(ctx, "d7/f7.txt"), `edited ${run}\n`) },
  ],
};

const bigLayers: Workload = {
  name: "128MB new layers",
  files: () => ({
    Dockerfile: [
      "FROM busybox",
      "ARG N=0",
      // Half random, half text: compressors meet both kinds of data.
      "RUN head -c 67108864 /dev/urandom > /random.bin && echo $N > /n",
      "RUN i=0; while [ $i -lt 1048576 ]; do echo \"line $i of some quite compressible text\"; i=$((i+1)); done | head -c 67108864 > /text.txt",
    ].join("\n"),
  }),
  scenarios: [{ name: "cold", cold: true }],
};

const workloads = [small, fourStages, manyFiles, bigLayers].filter((w) => !values.only || w.name.includes(values.only));

async function writeFiles(dir: string, files: Record<string, string | Buffer>): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  for (const [name, content] of Object.entries(files)) {
    const p = path.join(dir, name);
    await mkdir(path.dirname(p), { recursive: true });
    await writeFile(p, content);
  }
}

interface Engine {
  name: string;
  /** Builds `ctx` into an OCI tarball at `out`. */
  build(ctx: string, out: string): Promise<Measured>;
  /** Empties the build cache. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

async function kilnEngine(tmp: string, config: string, env: Record<string, string> = {}, suffix = ""): Promise<Engine> {
  const kiln = path.join(repoRoot, "bin", "kiln");
  const root = path.join(tmp, `kiln-root${suffix}`);
  return {
    name: `kiln${suffix}`,
    build: (ctx, out) => measure(process.execPath, [kiln, "--root", root, "--config", config, "build", ctx, "--progress", "plain", "-o", `type=oci,dest=${out}`], env),
    reset: () => rm(root, { recursive: true, force: true }),
    stop: async () => {},
  };
}

/** kiln through a kilnd started once (warm): the client is `kiln --addr`, the engine lives in the daemon. */
async function kilnDaemonEngine(tmp: string, config: string, env: Record<string, string> = {}, suffix = ""): Promise<Engine> {
  const kiln = path.join(repoRoot, "bin", "kiln");
  const sock = path.join(tmp, `kilnd${suffix}.sock`);
  const d = kilnDaemon(path.join(tmp, `kilnd-root${suffix}`), sock, config);
  await d.start();
  return {
    name: `kiln-daemon${suffix}`,
    build: (ctx, out) => measure(process.execPath, [kiln, "--addr", `unix://${sock}`, "build", ctx, "--progress", "plain", "-o", `type=oci,dest=${out}`], env),
    // Pruned, not restarted: the daemon stays warm (its JIT, its open database), as a daemon is.
    reset: async () => {
      await sh(process.execPath, [kiln, "--addr", `unix://${sock}`, "prune", "--all"]);
    },
    stop: () => d.stop(),
  };
}

async function buildkitEngine(tmp: string, config: string, binDir: string | undefined): Promise<Engine | undefined> {
  const bins = await findBuildkit(binDir);
  if (!bins) return undefined;
  const root = path.join(tmp, "buildkit-root");
  const sock = path.join(tmp, "buildkitd.sock");
  const d = buildkitDaemon(bins, root, sock, config);
  await d.start();
  return {
    name: "buildkit",
    build: (ctx, out) =>
      measure(bins.buildctl, ["--addr", `unix://${sock}`, "build", "--frontend", "dockerfile.v0", "--local", `context=${ctx}`, "--local", `dockerfile=${ctx}`, "--output", `type=oci,dest=${out}`]),
    reset: () => d.restartEmpty(),
    stop: () => d.stop(),
  };
}

const loadAtStart = os.loadavg();
const reg = await startRegistry();
const tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-bench-"));
const engines: Engine[] = [];
try {
  await pushBusybox(reg.host);
  const config = await writeKilnConfig(tmp, reg.host);
  engines.push(await kilnEngine(tmp, config));
  engines.push(await kilnDaemonEngine(tmp, config));
  if (values["also-without-extra-ca"] && process.env.NODE_EXTRA_CA_CERTS) {
    engines.push(await kilnEngine(tmp, config, withoutExtraCA, "-noca"));
    engines.push(await kilnDaemonEngine(tmp, config, withoutExtraCA, "-noca"));
  }
  const bk = await buildkitEngine(tmp, config, values["buildkit-bin"]);
  if (bk) engines.push(bk);
  else console.log("buildkitd/buildctl not found: kiln only (pass --buildkit-bin DIR or put them on PATH)");
  const out = path.join(tmp, "out.tar");
  // Ratios: each engine's median over the last engine's (BuildKit's when it runs).
  const last = engines[engines.length - 1]!;
  const table: string[][] = [["workload", "scenario", ...engines.flatMap((e) => [`${e.name} ms`, `${e.name} MB`]), ...engines.slice(0, -1).map((e) => `${e.name}/${last.name}`)]];
  for (const w of workloads) {
    const results = new Map<string, Map<string, Measured[]>>();
    try {
      for (let run = 0; run < runs; run++) {
        for (const e of engines) {
          const ctx = path.join(tmp, `ctx-${e.name}`);
          await writeFiles(ctx, w.files());
          for (const s of w.scenarios) {
            if (s.cold) await e.reset();
            await s.before?.(ctx, run);
            // Scenarios after the first build on the same cache: make sure that cache exists.
            if (!s.cold && s === w.scenarios[0]) await e.build(ctx, out);
            const m = await e.build(ctx, out);
            const byScenario = results.get(s.name) ?? new Map<string, Measured[]>();
            results.set(s.name, byScenario);
            byScenario.set(e.name, [...(byScenario.get(e.name) ?? []), m]);
          }
        }
      }
    } catch (err) {
      console.log(`${w.name}: failed: ${(err as Error).message.split("\n").slice(0, 6).join("\n  ")}`);
      continue;
    }
    for (const s of w.scenarios) {
      const row = [w.name, s.name];
      const medians = engines.map((e) => median(results.get(s.name)!.get(e.name)!.map((m) => m.ms)));
      for (const e of engines) {
        const ms = results.get(s.name)!.get(e.name)!;
        row.push(median(ms.map((m) => m.ms)).toFixed(0), (Math.max(...ms.map((m) => m.rssKB)) / 1024).toFixed(0));
      }
      for (const m of medians.slice(0, -1)) row.push((m / medians[medians.length - 1]!).toFixed(2));
      table.push(row);
    }
  }
  console.log(`\nmedian wall time of ${runs} runs per scenario; MB = peak RSS of the client process (kiln: the whole engine; kiln-daemon: kiln --addr only; buildkit: buildctl only)`);
  // Both matter to the reading: the machine's other work, and a start-up cost every Node process
  // here pays (Node parses that bundle before any script runs; Go binaries do not).
  console.log(`load average ${loadAtStart.map((l) => l.toFixed(2)).join(" ")} at the start, ${os.loadavg().map((l) => l.toFixed(2)).join(" ")} at the end (${os.cpus().length} CPUs)`);
  if (process.env.NODE_EXTRA_CA_CERTS) console.log(`NODE_EXTRA_CA_CERTS is set (${process.env.NODE_EXTRA_CA_CERTS}): every node process, kiln's included, loads it at start-up${values["also-without-extra-ca"] ? '; the "-noca" engines run kiln\'s client with it unset' : ""}`);
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => (r[i] ?? "").length)));
  for (const r of table) console.log(r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
} finally {
  for (const e of engines) await e.stop().catch(() => {});
  await rm(tmp, { recursive: true, force: true });
  await reg.stop();
}
