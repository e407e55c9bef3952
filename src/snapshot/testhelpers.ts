// Helpers shared by this folder's tests: temp snapshotters, tar building, mount-leak checks.
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import os from "node:os";
import { makeTempDir, type TempDir } from "../util/index.js";
import { OverlaySnapshotter } from "./overlay.js";
import { encodeTarHeader, tarPadding, TAR_TRAILER, type TarHeader } from "./tarwriter.js";

export interface TestEnv extends AsyncDisposable {
  dir: string;
  snapshotter: OverlaySnapshotter;
}

/** A snapshotter in a fresh temp dir; disposing checks that no mount was left behind. */
export async function testEnv(): Promise<TestEnv> {
  const tmp: TempDir = await makeTempDir(os.tmpdir(), "kiln-snap-");
  const snapshotter = new OverlaySnapshotter(tmp.path);
  return {
    dir: tmp.path,
    snapshotter,
    async [Symbol.asyncDispose]() {
      const left = await mountsUnder(tmp.path);
      await tmp[Symbol.asyncDispose]();
      if (left.length > 0) throw new Error(`mounts left behind: ${left.join(", ")}`);
    },
  };
}

export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  return info
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m === dir || m.startsWith(dir + "/"));
}

export interface RunResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  input?: Buffer;
  env?: NodeJS.ProcessEnv;
}

export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
    child.stdin.on("error", () => {
      // a child that exits without reading all of its input is judged by its exit code
    });
    child.stdin.end(opts.input ?? Buffer.alloc(0));
  });
}

export async function runOk(cmd: string, args: string[], opts: RunOptions = {}): Promise<Buffer> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** A tar made by GNU tar from `dir` (PAX format, xattrs, numeric owners, sorted names). */
export async function gnuTar(dir: string): Promise<Buffer> {
  return runOk("tar", ["--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--sort=name", "-C", dir, "-cf", "-", "."]);
}

/** A tar built entry by entry with our writer (for archives GNU tar refuses to make). */
export function craftTar(entries: { hdr: Partial<TarHeader> & { name: string | Buffer }; data?: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0);
    const hdr: TarHeader = { typeflag: 0x30, mode: 0o644, mtime: 1_700_000_000, size: data.length, ...e.hdr };
    parts.push(encodeTarHeader(hdr), data, tarPadding(data.length));
  }
  parts.push(TAR_TRAILER);
  return Buffer.concat(parts);
}

export async function* chunked(b: Buffer, size = 4096): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

export async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}
