// `kiln debug workers` and `kiln debug info`: buildctl's commands and output, from the daemon
// (--addr / BUILDKIT_HOST) or from the local root's worker.
import type { Command } from "commander";
import { create } from "@bufbuild/protobuf";
import type { workertypes } from "../../session/api.js";
import { kilnVersion } from "../../control/grpc/version.js";
import { formatPlatform, normalizePlatform } from "../../util/index.js";
import { printError } from "./errors.js";
import { TabWriter } from "./tabwriter.js";
import { collect, withWorker, type GlobalFlags } from "./du.js";
import { daemonOptions, withClient } from "./daemon.js";
import { KilnError } from "../../util/index.js";
import type { LLBFlags } from "./debug-llb.js";

/** Go's time.Duration.String for a whole number of nanoseconds: "48h0m0s", "1.5s", "300ms". */
export function goDuration(ns: bigint): string {
  if (ns === 0n) return "0s";
  const neg = ns < 0n;
  let u = neg ? -ns : ns;
  const sign = neg ? "-" : "";
  const frac = (v: bigint, digits: number) => {
    const s = v.toString().padStart(digits, "0").replace(/0+$/, "");
    return s ? `.${s}` : "";
  };
  if (u < 1_000_000_000n) {
    if (u < 1000n) return `${sign}${u}ns`;
    if (u < 1_000_000n) return `${sign}${u / 1000n}${frac(u % 1000n, 3)}µs`;
    return `${sign}${u / 1_000_000n}${frac(u % 1_000_000n, 6)}ms`;
  }
  const secFrac = frac(u % 1_000_000_000n, 9);
  u /= 1_000_000_000n;
  const s = u % 60n;
  u /= 60n;
  if (u === 0n) return `${sign}${s}${secFrac}s`;
  const m = u % 60n;
  const h = u / 60n;
  return h === 0n ? `${sign}${m}m${s}${secFrac}s` : `${sign}${h}h${m}m${s}${secFrac}s`;
}

/** tonistiigi/units' `%g` of a byte count: "512B", "1.2kB", "10GB" (decimal units, shortest digits). */
export function unitsBytesG(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
  let i = 0;
  let base = 1;
  while (i < units.length - 1 && Math.abs(n) >= base * 1000) {
    base *= 1000;
    i++;
  }
  return i === 0 ? `${Math.trunc(n)}B` : `${String(n / base)}${units[i]}`;
}

function platformsOf(w: workertypes.WorkerRecord): string {
  return w.platforms.map((p) => formatPlatform(normalizePlatform({ os: p.OS, architecture: p.Architecture, variant: p.Variant || undefined }))).join(",");
}

export function printWorkersTable(tw: TabWriter, workers: workertypes.WorkerRecord[]): void {
  tw.write("ID\tPLATFORMS\n");
  for (const w of workers) tw.write(`${w.ID}\t${platformsOf(w)}\n`);
  tw.flush();
}

export function printWorkersVerbose(tw: TabWriter, workers: workertypes.WorkerRecord[]): void {
  for (const w of workers) {
    const v = w.BuildkitVersion;
    tw.write(`ID:\t${w.ID}\n`);
    tw.write(`Platforms:\t${platformsOf(w)}\n`);
    tw.write(`BuildKit:\t${v?.package ?? ""} ${v?.version ?? ""} ${v?.revision ?? ""}\n`);
    tw.write("Labels:\n");
    for (const k of Object.keys(w.Labels).sort()) tw.write(`\t${k}:\t${w.Labels[k]}\n`);
    w.GCPolicy.forEach((rule, i) => {
      tw.write(`GC Policy rule#${i}:\n`);
      tw.write(`\tAll:\t${rule.all}\n`);
      if (rule.filters.length > 0) tw.write(`\tFilters:\t${rule.filters.join(" ")}\n`);
      if (rule.keepDuration > 0n) tw.write(`\tKeep Duration:\t${goDuration(rule.keepDuration)}\n`);
      if (rule.keepBytes > 0n) tw.write(`\tKeep Bytes:\t${unitsBytesG(Number(rule.keepBytes))}\n`);
    });
    tw.write("\n");
  }
  tw.flush();
}

/** client.WorkerInfo as buildctl's `{{json .}}` prints it. */
function workerJSON(w: workertypes.WorkerRecord): Record<string, unknown> {
  // encoding/json writes map keys sorted.
  const labels = Object.fromEntries(Object.keys(w.Labels).sort().map((k) => [k, w.Labels[k]]));
  return {
    id: w.ID,
    labels,
    platforms: w.platforms.map((p) => ({ architecture: p.Architecture, os: p.OS, ...(p.Variant ? { variant: p.Variant } : {}) })),
    gcPolicy: w.GCPolicy.map((g) => ({ filter: g.filters.length > 0 ? g.filters : null, all: g.all, keepDuration: Number(g.keepDuration), keepBytes: Number(g.keepBytes) })),
    buildkitVersion: { package: w.BuildkitVersion?.package ?? "", version: w.BuildkitVersion?.version ?? "", revision: w.BuildkitVersion?.revision ?? "" },
  };
}

function checkJSONFormat(format: string | undefined): void {
  if (format !== undefined && !/^(json|\{\{\s*json\s+\.\s*\}\})$/.test(format.trim())) {
    throw new KilnError("KILN_FLAGS", `unsupported --format ${JSON.stringify(format)}: only '{{json .}}' is supported`);
  }
}

async function localWorkers(g: GlobalFlags): Promise<workertypes.WorkerRecord[]> {
  const { gcPolicyRecords, ociWorkerLabels, workerId, workerRecord } = await import("../../control/grpc/index.js");
  // Loaded here: the descriptors cost every other command's start-up.
  const { workertypes } = await import("../../session/api.js");
  return withWorker(g, async (opened) => {
    const ds = await opened.gc.diskStat();
    const rec = workerRecord({
      id: await workerId(opened.worker.opts.root),
      labels: ociWorkerLabels(),
      platforms: opened.worker.platforms,
      gcPolicy: gcPolicyRecords(opened.gc.policies, ds.total),
      version: kilnVersion,
    });
    return [create(workertypes.WorkerRecordSchema, rec)];
  });
}

export function registerDebug(program: Command, setExit: (code: number) => void): void {
  const debug = program.command("debug").description("debug utilities");
  debug
    .command("workers")
    .description("list workers")
    .option("-f, --filter <filter>", "containerd-style filter string slice", collect, [])
    .option("-v, --verbose", "Verbose output")
    .option("--format <format>", "Format the output using the given Go template, e.g, '{{json .}}'")
    .action(async (flags: { filter: string[]; verbose?: boolean; format?: string }) => {
      const g = program.opts<GlobalFlags>();
      try {
        checkJSONFormat(flags.format);
        const daemon = daemonOptions(g);
        const signal = new AbortController().signal;
        const workers = daemon ? await withClient(signal, daemon, (c) => c.listWorkers(signal, flags.filter)) : await localWorkers(g);
        if (flags.format) process.stdout.write(JSON.stringify(workers.map(workerJSON)) + "\n");
        else if (flags.verbose) printWorkersVerbose(new TabWriter(process.stdout), workers);
        else printWorkersTable(new TabWriter(process.stdout), workers);
        setExit(0);
      } catch (err) {
        setExit(printError(err, g.debug ?? false, false));
      }
    });
  debug
    .command("info")
    .description("display internal information")
    .option("--format <format>", "Format the output using the given Go template, e.g, '{{json .}}'")
    .action(async (flags: { format?: string }) => {
      const g = program.opts<GlobalFlags>();
      try {
        checkJSONFormat(flags.format);
        const daemon = daemonOptions(g);
        const signal = new AbortController().signal;
        const v = daemon ? await withClient(signal, daemon, (c) => c.info(signal)) : kilnVersion;
        const pkg = v?.package ?? "";
        const version = v?.version ?? "";
        const revision = v?.revision ?? "";
        if (flags.format) process.stdout.write(JSON.stringify({ buildkitVersion: { package: pkg, version, revision } }) + "\n");
        else process.stdout.write(`BuildKit: ${pkg} ${version} ${revision}\n`);
        setExit(0);
      } catch (err) {
        setExit(printError(err, g.debug ?? false, false));
      }
    });
  debug
    .command("llb")
    .description("write a Dockerfile's LLB definition (protobuf) to stdout, as `buildctl build` reads it on stdin")
    .argument("[path]", "build context directory")
    .option("-f, --file <file>", "Dockerfile path (default PATH/Dockerfile)")
    .option("--target <stage>", "stage to build")
    .option("--build-arg <k=v>", "build-time variable (repeatable)", collect, [])
    .option("--platform <list>", "target platform (one)", collect, [])
    .option("--opt <k=v>", "frontend option (repeatable)", collect, [])
    .option("--no-cache", "mark the steps to ignore the build cache")
    .action(async (ctxPath: string | undefined, flags: LLBFlags) => {
      const g = program.opts<GlobalFlags>();
      try {
        if (process.stdout.isTTY) throw new KilnError("KILN_FLAGS", "kiln debug llb writes binary protobuf: redirect stdout to a file or a pipe");
        const { dockerfileLLB } = await import("./debug-llb.js");
        const def = await dockerfileLLB(new AbortController().signal, g, ctxPath, flags);
        await new Promise<void>((resolve, reject) => process.stdout.write(def, (err) => (err ? reject(err) : resolve())));
        setExit(0);
      } catch (err) {
        setExit(printError(err, g.debug ?? false, false));
      }
    });
}
