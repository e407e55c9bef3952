// `kiln prune`: buildctl's command and flags (--keep-duration, --keep-storage, --keep-storage-min,
// --free-storage in MB, --filter, --all), printing each removed record as it goes and the total.
import type { Command } from "commander";
import { CanceledError, KilnError, formatBytes, parseGoDuration } from "../../util/index.js";
import { printError } from "./errors.js";
import { TabWriter } from "./tabwriter.js";
import { daemonOptions, withClient } from "./daemon.js";
import { checkFormat, collect, printTableHeader, printTableRow, printVerbose, usageJSON, withWorker, type GlobalFlags, type UsageRecordInfo } from "./du.js";

interface PruneFlags {
  keepDuration?: string;
  keepStorage?: string;
  keepStorageMin?: string;
  freeStorage?: string;
  filter: string[];
  all?: boolean;
  verbose?: boolean;
  format?: string;
}

/** urfave/cli's Float64Flag in MB, as buildctl turns it into bytes (×1e6). */
function megabytes(flag: string, v: string | undefined): number {
  if (v === undefined) return 0;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new KilnError("KILN_FLAGS", `invalid value ${JSON.stringify(v)} for flag --${flag}`);
  return Math.trunc(n * 1e6);
}

export function registerPrune(program: Command, setExit: (code: number) => void): void {
  program
    .command("prune")
    .description("clean up build cache")
    .option("--keep-duration <duration>", "Keep data newer than this limit")
    .option("--keep-storage <MB>", "Keep data below this limit (in MB)")
    .option("--keep-storage-min <MB>", "Always allow data above this limit (in MB)")
    .option("--free-storage <MB>", "Keep free data below this limit (in MB)")
    .option("-f, --filter <filter>", "Filter records", collect, [])
    .option("--all", "Include internal/frontend references")
    .option("-v, --verbose", "Verbose output")
    .option("--format <format>", "Format the output using the given Go template, e.g, '{{json .}}'")
    .action(async (flags: PruneFlags) => {
      const g = program.opts<GlobalFlags>();
      const ac = new AbortController();
      const onSignal = () => ac.abort(new CanceledError("interrupted"));
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      try {
        checkFormat(flags.format);
        const opts = {
          all: flags.all ?? false,
          filters: flags.filter,
          keepDurationMs: flags.keepDuration ? parseGoDuration(flags.keepDuration) : 0,
          maxUsedSpace: megabytes("keep-storage", flags.keepStorage),
          reservedSpace: megabytes("keep-storage-min", flags.keepStorageMin),
          minFreeSpace: megabytes("free-storage", flags.freeStorage),
        };
        const tw = new TabWriter(process.stdout);
        let first = true;
        let total = 0;
        const onRemoved = (r: UsageRecordInfo) => {
          total += r.size;
          if (flags.format) process.stdout.write(JSON.stringify(usageJSON(r)) + "\n");
          else if (flags.verbose) printVerbose(tw, [r]);
          else {
            if (first) printTableHeader(tw);
            first = false;
            printTableRow(tw, r);
            tw.flush();
          }
        };
        const daemon = daemonOptions(g);
        if (daemon) {
          // The Control API of BuildKit 0.11 carries one size limit (keepBytes).
          if (opts.reservedSpace || opts.minFreeSpace) throw new KilnError("KILN_FLAGS", "--keep-storage-min and --free-storage are not supported with --addr: the daemon's API has only --keep-storage");
          await withClient(ac.signal, daemon, (c) => c.prune(ac.signal, { all: opts.all, filters: opts.filters, keepDurationMs: opts.keepDurationMs, keepBytes: opts.maxUsedSpace }, onRemoved));
        } else {
          await withWorker(g, (opened) => opened.gc.prune(ac.signal, opts, onRemoved));
        }
        if (!flags.format) {
          tw.write(`Total:\t${formatBytes(total)}\n`);
          tw.flush();
        }
        setExit(0);
      } catch (err) {
        setExit(printError(err, g.debug ?? false, ac.signal.aborted));
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });
}
