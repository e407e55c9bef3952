// `kiln du`: buildctl's command, same flags and same output bytes, run against the root
// in-process (the daemon form goes over the Control API). The printers are shared with prune.
import type { Command } from "commander";
import path from "node:path";
import type { OpenedWorker } from "../../worker/index.js";
import { KilnError, formatBytes } from "../../util/index.js";
import type { UsageInfo } from "../../cache/index.js";
import { printError } from "./errors.js";
import { TabWriter } from "./tabwriter.js";
import { daemonOptions, withClient, type DaemonFlags } from "./daemon.js";

export const collect = (v: string, prev: string[] = []) => [...prev, v];

export interface GlobalFlags extends DaemonFlags {
  root?: string;
  config?: string;
  debug?: boolean;
}

/** Go's time.Time String() for a UTC time: "2026-11-24 12:00:00.123 +0000 UTC"; `ns` (since the epoch) gives the full precision a daemon sent. */
export function goTime(d: Date, ns?: bigint): string {
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const frac = ns !== undefined ? fracDigits(ns) : d.getUTCMilliseconds() ? `.${p(d.getUTCMilliseconds(), 3).replace(/0+$/, "")}` : "";
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}${frac} +0000 UTC`;
}

function fracDigits(ns: bigint): string {
  const f = (((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "");
  return f ? `.${f}` : "";
}

/** time.Time's JSON (RFC 3339 with up to nanoseconds, trailing zeros dropped). */
function goTimeJSON(d: Date, ns?: bigint): string {
  const base = d.toISOString().replace(/\.\d+Z$/, "");
  return `${base}${ns !== undefined ? fracDigits(ns) : fracDigits(BigInt(d.getUTCMilliseconds()) * 1_000_000n)}Z`;
}

/** A record, with the nanosecond times a daemon's records carry. */
export type UsageRecordInfo = UsageInfo & { createdAtNs?: bigint; lastUsedAtNs?: bigint };

export function printVerbose(tw: TabWriter, records: UsageRecordInfo[]): void {
  for (const r of records) {
    tw.write(`ID:\t${r.id}\n`);
    if (r.parents.length > 0) tw.write(`Parents:\t${r.parents.join(";")}\n`);
    tw.write(`Created at:\t${goTime(r.createdAt, r.createdAtNs)}\n`);
    tw.write(`Mutable:\t${r.mutable}\n`);
    tw.write(`Reclaimable:\t${!r.inUse}\n`);
    tw.write(`Shared:\t${r.shared}\n`);
    tw.write(`Size:\t${formatBytes(r.size)}\n`);
    if (r.description) tw.write(`Description:\t${r.description}\n`);
    tw.write(`Usage count:\t${r.usageCount}\n`);
    if (r.lastUsedAt) tw.write(`Last used:\t${goTime(r.lastUsedAt, r.lastUsedAtNs)}\n`);
    if (r.recordType) tw.write(`Type:\t${r.recordType}\n`);
    tw.write("\n");
  }
  tw.flush();
}

export function printTableHeader(tw: TabWriter): void {
  tw.write("ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\n");
}

/** buildctl's row: `%-71s\t%-11v\t%s\t` (the LAST ACCESSED column stays empty, as there). */
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

/** A record as buildctl's `{{json .}}` prints client.UsageInfo (its field order and names). */
export function usageJSON(r: UsageRecordInfo): Record<string, unknown> {
  return {
    id: r.id,
    mutable: r.mutable,
    inUse: r.inUse,
    size: r.size,
    createdAt: goTimeJSON(r.createdAt, r.createdAtNs),
    lastUsedAt: r.lastUsedAt ? goTimeJSON(r.lastUsedAt, r.lastUsedAtNs) : null,
    usageCount: r.usageCount,
    parents: r.parents.length > 0 ? r.parents : null,
    description: r.description,
    recordType: r.recordType,
    shared: r.shared,
  };
}

/** `--format`: Go templates are not implemented; `{{json .}}` (or `json`) is. */
export function checkFormat(format: string | undefined): void {
  if (format !== undefined && !/^(json|\{\{\s*json\s+\.\s*\}\})$/.test(format.trim())) {
    throw new KilnError("KILN_FLAGS", `unsupported --format ${JSON.stringify(format)}: only '{{json .}}' is supported`);
  }
}

export async function withWorker<T>(g: GlobalFlags, fn: (opened: OpenedWorker) => Promise<T>): Promise<T> {
  // Loaded here, not at the top: a command talking to a daemon never initialises the engine.
  const [{ loadConfig }, { openWorker }] = await Promise.all([import("../config.js"), import("../../worker/index.js")]);
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
    .option("--format <format>", "Format the output using the given Go template, e.g, '{{json .}}'")
    .action(async (flags: { filter: string[]; verbose?: boolean; format?: string }) => {
      const g = program.opts<GlobalFlags>();
      try {
        checkFormat(flags.format);
        const daemon = daemonOptions(g);
        const signal = new AbortController().signal;
        const records = daemon ? await withClient(signal, daemon, (c) => c.diskUsage(signal, flags.filter)) : await withWorker(g, (opened) => opened.gc.diskUsage(flags.filter));
        if (flags.format) {
          process.stdout.write(JSON.stringify(records.map(usageJSON)) + "\n");
        } else {
          const tw = new TabWriter(process.stdout);
          if (flags.verbose) printVerbose(tw, records);
          else {
            printTableHeader(tw);
            for (const r of records) printTableRow(tw, r);
            tw.flush();
          }
          if (flags.filter.length === 0) printSummary(tw, records);
        }
        setExit(0);
      } catch (err) {
        setExit(printError(err, g.debug ?? false, false));
      }
    });
}
