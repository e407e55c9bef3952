// Export destinations on the local machine (daemonless): files and directories that appear only
// once the export succeeded (temp → fsync → rename), or stdout; and buildctl's --output and
// --metadata-file formats.
import { mkdir, rename, rm, stat, open, type FileHandle } from "node:fs/promises";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import type { DirectoryOutput, ExportOutputs, StreamOutput } from "../exporter/index.js";
import { KilnError } from "../util/index.js";

/** A Writable over a FileHandle that leaves the handle open, so it can be fsynced before rename. */
class HandleWriter extends Writable {
  private pos = 0;
  constructor(private readonly fh: FileHandle) {
    super({ highWaterMark: 4 << 20 });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writeAll(chunk).then(() => cb(), cb);
  }
  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.writeMany(chunks.map((c) => c.chunk)).then(() => cb(), cb);
  }
  private async writeMany(bufs: Buffer[]): Promise<void> {
    const total = bufs.reduce((n, b) => n + b.length, 0);
    const { bytesWritten } = await this.fh.writev(bufs, this.pos);
    this.pos += bytesWritten;
    // A short vectored write: finish the rest piece by piece.
    let skip = bytesWritten;
    if (skip === total) return;
    for (const b of bufs) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      await this.writeAll(b.subarray(skip));
      skip = 0;
    }
  }
  private async writeAll(b: Buffer): Promise<void> {
    let off = 0;
    while (off < b.length) {
      const { bytesWritten } = await this.fh.write(b, off, b.length - off, this.pos);
      off += bytesWritten;
      this.pos += bytesWritten;
    }
  }
}

async function endAndWait(stream: Writable): Promise<void> {
  if (!stream.writableEnded) stream.end();
  await finished(stream);
}

export function localOutputs(dest: string | undefined): ExportOutputs | undefined {
  if (dest === undefined || dest === "") return undefined;
  return {
    async openStream(): Promise<StreamOutput> {
      if (dest === "-") {
        if (process.stdout.isTTY) throw new KilnError("KILN_EXPORTER_ATTR", "refusing to write a tarball to a terminal; redirect stdout or set dest=FILE");
        const stream = new Writable({
          highWaterMark: 1 << 20,
          write(chunk: Buffer, _enc, cb) {
            process.stdout.write(chunk, (err) => cb(err ?? null));
          },
        });
        return { stream, commit: () => endAndWait(stream), abort: async () => void stream.destroy() };
      }
      const abs = path.resolve(dest);
      await mkdir(path.dirname(abs), { recursive: true });
      const tmp = `${abs}.kiln-${randomBytes(4).toString("hex")}.tmp`;
      const fh = await open(tmp, "wx", 0o644);
      const stream = new HandleWriter(fh);
      return {
        stream,
        async commit() {
          try {
            await endAndWait(stream);
            await fh.sync();
          } finally {
            await fh.close();
          }
          await rename(tmp, abs);
        },
        async abort() {
          stream.destroy();
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
    // buildctl/buildx accept a bare key as key= (e.g. `push`, `oci-mediatypes`); it means true.
    if (i < 0) {
      attrs[field.trim().toLowerCase()] = "";
      continue;
    }
    const key = field.slice(0, i).trim();
    // Annotation keys keep their case (annotation.org.opencontainers.image.title).
    attrs[key.startsWith("annotation") ? key : key.toLowerCase()] = field.slice(i + 1);
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

/**
 * buildctl's --metadata-file: the exporter response as JSON, with values that are base64-encoded
 * JSON objects (containerimage.descriptor, containerimage.buildinfo) decoded in place.
 */
export function metadataJSON(res: Record<string, string>): string {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(res).sort()) {
    const v = res[k]!;
    let decoded: unknown;
    if (/^[A-Za-z0-9+/]+=*$/.test(v) && v.length % 4 === 0) {
      try {
        const parsed = JSON.parse(Buffer.from(v, "base64").toString("utf8")) as unknown;
        if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) decoded = parsed;
      } catch {
        decoded = undefined;
      }
    }
    out[k] = decoded ?? v;
  }
  return JSON.stringify(out, null, 2);
}

/** Writes the metadata file atomically (temp → fsync → rename). */
export async function writeMetadataFile(file: string, res: Record<string, string>): Promise<void> {
  const abs = path.resolve(file);
  await mkdir(path.dirname(abs), { recursive: true });
  const tmp = `${abs}.kiln-${randomBytes(4).toString("hex")}.tmp`;
  try {
    const fh = await open(tmp, "wx", 0o644);
    try {
      await fh.writeFile(metadataJSON(res) + "\n");
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, abs);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
