// buildctl's form without --frontend: `kiln build --local context=DIR < definition.pb` builds the
// LLB Definition read from stdin (what `kiln debug llb` or another LLB generator wrote).
import { fstat } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { KilnError } from "../../util/index.js";

/**
 * The Definition piped or redirected into stdin; undefined when stdin is a terminal or a device
 * (/dev/null), so `kiln build` with no PATH still builds the current directory.
 */
export async function readStdinDefinition(): Promise<Uint8Array | undefined> {
  if (process.stdin.isTTY) return undefined;
  const st = await promisify(fstat)(0).catch(() => undefined);
  if (!st || !(st.isFIFO() || st.isFile() || st.isSocket())) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const data = Buffer.concat(chunks);
  if (data.byteLength === 0) return undefined;
  return data;
}

/** `--local NAME=DIR` flags as the session's directories. */
export function localDirFlags(locals: string[]): Record<string, string> {
  const dirs: Record<string, string> = {};
  for (const l of locals) {
    const i = l.indexOf("=");
    if (i < 0) throw new KilnError("KILN_FLAGS", `invalid --local ${JSON.stringify(l)}: expected NAME=DIR`);
    dirs[l.slice(0, i)] = path.resolve(l.slice(i + 1));
  }
  return dirs;
}
