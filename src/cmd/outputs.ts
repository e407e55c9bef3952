// Export destinations on the local machine (daemonless): files and directories that appear only
// once the export succeeded, or stdout.
import { mkdir, rename, rm, stat, open } from "node:fs/promises";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import type { DirectoryOutput, ExportOutputs, StreamOutput } from "../exporter/index.js";
import { KilnError } from "../util/index.js";

export function localOutputs(dest: string | undefined): ExportOutputs | undefined {
  if (dest === undefined || dest === "") return undefined;
  return {
    async openStream(): Promise<StreamOutput> {
      if (dest === "-") {
        if (process.stdout.isTTY) throw new KilnError("KILN_EXPORTER_ATTR", "refusing to write a tarball to a terminal; redirect stdout or set dest=FILE");
        const stream = new Writable({
          write(chunk: Buffer, _enc, cb) {
            process.stdout.write(chunk, cb);
          },
        });
        return { stream, commit: async () => {}, abort: async () => {} };
      }
      const abs = path.resolve(dest);
      await mkdir(path.dirname(abs), { recursive: true });
      const tmp = `${abs}.kiln-${randomBytes(4).toString("hex")}.tmp`;
      const fh = await open(tmp, "wx", 0o644);
      const stream = fh.createWriteStream();
      return {
        stream,
        async commit() {
          await fh.sync().catch(() => {});
          await fh.close().catch(() => {});
          await rename(tmp, abs);
        },
        async abort() {
          await fh.close().catch(() => {});
          await rm(tmp, { force: true });
        },
      };
    },
    async openDirectory(): Promise<DirectoryOutput> {
      const abs = path.resolve(dest);
      const tmp = `${abs}.kiln-${randomBytes(4).toString("hex")}.tmp`;
      await mkdir(tmp, { recursive: true });
      return {
        path: tmp,
        async commit() {
          const exists = await stat(abs).then(
            () => true,
            () => false,
          );
          if (!exists) {
            await mkdir(path.dirname(abs), { recursive: true });
            await rename(tmp, abs);
            return;
          }
          await promisify(execFile)("cp", ["-a", "--", `${tmp}/.`, abs]);
          await rm(tmp, { recursive: true, force: true });
        },
        async abort() {
          await rm(tmp, { recursive: true, force: true });
        },
      };
    },
  };
}

/** Parses buildctl's `--output type=oci,dest=out.tar` (CSV with quotes) and buildx's shorthands. */
export function parseOutputSpec(spec: string): { type: string; attrs: Record<string, string> } {
  if (!spec.includes("=")) {
    if (spec === "-") return { type: "tar", attrs: { dest: "-" } };
    return { type: "local", attrs: { dest: spec } };
  }
  const attrs: Record<string, string> = {};
  for (const field of splitCSV(spec)) {
    const i = field.indexOf("=");
    if (i < 0) throw new KilnError("KILN_OUTPUT_SPEC", `invalid output field ${JSON.stringify(field)}: expected key=value`);
    attrs[field.slice(0, i).trim().toLowerCase()] = field.slice(i + 1);
  }
  const type = attrs.type;
  delete attrs.type;
  if (!type) throw new KilnError("KILN_OUTPUT_SPEC", `output ${JSON.stringify(spec)} has no type=`);
  return { type, attrs };
}

export function splitCSV(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"') {
      if (quoted && s[i + 1] === '"') {
        cur += '"';
        i++;
      } else quoted = !quoted;
    } else if (c === "," && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out.filter((f) => f !== "");
}
