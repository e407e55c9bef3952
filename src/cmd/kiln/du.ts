// `kiln du` and `kiln prune`: buildctl's commands, same flags and same output bytes, run against
// the root in-process (the daemon form goes over the Control API).
import type { Command } from "commander";
import path from "node:path";
import { loadConfig } from "../config.js";
import { openWorker } from "../../worker/index.js";
import { CanceledError, formatBytes, parseGoDuration } from "../../util/index.js";
import type { UsageInfo } from "../../cache/index.js";
import { printError } from "./errors.js";
import { TabWriter } from "./tabwriter.js";

const collect = (v: string, prev: string[] = []) => [...prev, v];

interface GlobalFlags {
  root?: string;
  config?: string;
  debug?: boolean;
}

/** Go's time.Time String(): "2026-11-24 12:00:00.123456789 +0000 UTC". */
function goTime(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const frac = d.getUTCMilliseconds() ? `.${p(d.getUTCMilliseconds(), 3).replace(/0+$/, "")}` : "";
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}${frac} +0000 UTC`;
}

export function printVerbose(tw: TabWriter, records: UsageInfo[]): void {
  for (const r of records) {
    tw.write(`ID:\t${r.id}\n`);
    if (r.parents.length > 0) tw.write(`Parents:\t${r.parents.join(";")}\n`);
    tw.write(`Created at:\t${goTime(r.createdAt)}\n`);
    tw.write(`Mutable:\t${r.mutable}\n`);
    tw.write(`Reclaimable:\t${!r.inUse}\n`);
    tw.write(`Shared:\t${r.shared}\n`);
    tw.write(`Size:\t${formatBytes(r.size)}\n`);
    if (r.description) tw.write(`Description:\t${r.description}\n`);
    tw.write(`Usage count:\t${r.usageCount}\n`);
    if (r.lastUsedAt) tw.write(`Last used:\t${goTime(r.lastUsedAt)}\n`);
    if (r.recordType) tw.write(`Type:\t${r.recordType}\n`);
    tw.write("\n");
  }
  tw.flush();
}

export function printTableHeader(tw: TabWriter): void {
  tw.write("ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\n");
}

export function printTableRow(tw: TabWriter, r: UsageInfo): void {
  const id = r.mutable ? `${r.id}*` : r.id;
  const size = formatBytes(r.size) + (r.shared ? "*" : "");
  tw.write(`${id.padEnd(71)}\t${String(!r.inUse).padEnd(11)}\t${size}\t\n`);
}

export function printSummary(tw: TabWriter, records: UsageInfo[]): void {
  let total = 0;
  let reclaimable = 0;
  let shared = 0;
  for (const r of records) {
    if (r.size > 0) {
      total += r.size;
      if (!r.inUse) reclaimable += r.size;
    }
    if (r.shared) shared += r.size;
  }
  if (shared > 0) {
    tw.write(`Shared:\t${formatBytes(shared)}\n`);
    tw.write(`Private:\t${formatBytes(total - shared)}\n`);
  }
  tw.write(`Reclaimable:\t${formatBytes(reclaimable)}\n`);
  tw.write(`Total:\t${formatBytes(total)}\n`);
  tw.flush();
}

async function withWorker<T>(g: GlobalFlags, fn: (opened: Awaited<ReturnType<typeof openWorker>>) => Promise<T>): Promise<T> {
  const cfg = await loadConfig(g.config);
  const root = path.resolve(g.root ?? cfg.root);
  await using opened = await openWorker({ root, registries: cfg.registries, gc: cfg.gc });
  return await fn(opened);
}

export function registerDiskUsage(program: Command, setExit: (code: number) => void): void {
  program
    .command("du")
    .description("disk usage")
    .option("-f, --filter <filter>", "Filter records", collect, [])
    .option("-v, --verbose", "Verbose output")
    .option("--format <format>", "Format the output: json, or a Go-template-like {{json .}}")
    .action(async (flags: { filter: string[]; verbose?: boolean; format?: string }) => {
      const g = program.opts<GlobalFlags>();
      try {
        await withWorker(g, async (opened) => {
          const records = await opened.gc.diskUsage(flags.filter);
          if (flags.format) {
            process.stdout.write(JSON.stringify(records) + "\n");
            return;
          }
          const tw = new TabWriter(process.stdout);
          if (flags.verbose) printVerbose(tw, records);
          else {
            printTableHeader(tw);
            for (const r of records) printTableRow(tw, r);
            tw.flush();
          }
          if (flags.filter.length === 0) printSummary(tw, records);
        });
        setExit(0);
      } catch (err) {
        setExit(printError(err, g.debug ?? false, false));
      }
    });

  program
    .command("prune")
    .description("clean up build cache")
    .option("--keep-duration <duration>", "Keep data newer than this limit (Go duration, e.g. 48h)")
    .option("--keep-storage <MB>", "Keep data below this limit (in MB)")
    .option("-f, --filter <filter>", "Filter records", collect, [])
    .option("--all", "Include internal/frontend references")
    .option("-v, --verbose", "Verbose output")
    .option("--format <format>", "Format the output: json")
    .action(async (flags: { keepDuration?: string; keepStorage?: string; filter: string[]; all?: boolean; verbose?: boolean; format?: string }) => {
      const g = program.opts<GlobalFlags>();
      const ac = new AbortController();
      const onSignal = () => ac.abort(new CanceledError("interrupted"));
      process.on("SIGINT", onSignal);
      try {
        const keepBytes = flags.keepStorage ? Math.trunc(parseFloat(flags.keepStorage) * 1e6) : 0;
        if (flags.keepStorage && !Number.isFinite(keepBytes)) throw new Error(`invalid --keep-storage ${flags.keepStorage}`);
        const keepDurationMs = flags.keepDuration ? parseGoDuration(flags.keepDuration) : 0;
        await withWorker(g, async (opened) => {
          const tw = new TabWriter(process.stdout);
          let first = true;
          let total = 0;
          await opened.gc.prune(ac.signal, { all: flags.all, filters: flags.filter, keepDurationMs, keepBytes }, (r) => {
            total += r.size;
            if (flags.format) process.stdout.write(JSON.stringify(r) + "\n");
            else if (flags.verbose) printVerbose(tw, [r]);
            else {
              if (first) printTableHeader(tw);
              first = false;
              printTableRow(tw, r);
              tw.flush();
            }
          });
          if (!flags.format) {
            tw.write(`Total:\t${formatBytes(total)}\n`);
            tw.flush();
          }
        });
        setExit(0);
      } catch (err) {
        setExit(printError(err, g.debug ?? false, ac.signal.aborted));
      } finally {
        process.off("SIGINT", onSignal);
      }
    });
}
