// A real kilnd process for end-to-end tests (bin/kilnd, the bundle), certificates for mutual TLS,
// and a kiln client spawned with the options these tests need (its own env, stdout kept as bytes).
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "./kiln.js";

const run = promisify(execFile);

export interface Kilnd {
  proc: ChildProcess;
  pid: number;
  log(): string;
  /** Resolves with the first match of `re` in the log (e.g. the bound TCP port). */
  waitFor(re: RegExp, ms?: number): Promise<RegExpExecArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resident memory, from /proc/PID/status VmRSS, in KiB. */
  rssKiB(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * bin/kilnd ARGS, not waited for: tests of refused starts watch it exit. `wrapper` is a command
 * that execs its trailing arguments (e.g. unshare into a namespace of the test's making).
 */
export function spawnKilnd(args: string[], env: Record<string, string> = {}, wrapper: string[] = []): Kilnd {
  const argv = [...wrapper, process.execPath, path.join(repoRoot, "bin", "kilnd"), ...args];
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } });
  let log = "";
  const waiters = new Set<() => void>();
  proc.stderr!.on("data", (d: Buffer) => {
    log += d.toString();
    for (const w of waiters) w();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  return {
    proc,
    pid: proc.pid!,
    log: () => log,
    exited,
    waitFor(re, ms = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(log);
          if (m) {
            cleanup();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`kilnd did not log ${re} within ${ms} ms; log:\n${log}`));
        }, ms);
        const onExit = () => {
          cleanup();
          reject(new Error(`kilnd exited before logging ${re}; log:\n${log}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
          proc.off("exit", onExit);
        };
        waiters.add(check);
        proc.on("exit", onExit);
        check();
      });
    },
    async rssKiB() {
      const st = await readFile(`/proc/${proc.pid}/status`, "utf8");
      return Number(/^VmRSS:\s+(\d+) kB/m.exec(st)?.[1] ?? NaN);
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** bin/kilnd ARGS, once it serves. */
export async function startKilnd(args: string[], env: Record<string, string> = {}, wrapper: string[] = []): Promise<Kilnd> {
  const d = spawnKilnd(args, env, wrapper);
  await d.waitFor(/running server on/);
  return d;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl (EC P-256). */
export async function makeCerts(dir: string): Promise<void> {
  const ossl = (args: string[]) => run("openssl", args, { cwd: dir });
  await ossl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=kiln-test-ca"]);
  const leaf = async (name: string, ext: string) => {
    await writeFile(path.join(dir, `${name}.ext`), ext);
    await ossl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`]);
    await ossl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`]);
  };
  await leaf("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  await leaf("client", "extendedKeyUsage=clientAuth\n");
}

export interface ClientResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  ms: number;
}

export interface ClientProc {
  child: ChildProcess;
  /** Everything the client printed on stderr so far. */
  stderr(): string;
  done: Promise<ClientResult>;
}

/** `bin/kiln ARGS` with exactly these arguments (no --root/--config: tests choose). */
export function spawnKiln(args: string[], opts: { cwd?: string; env?: Record<string, string>; readStdout?: boolean } = {}): ClientProc {
  const t0 = Date.now();
  const child = spawn(process.execPath, [path.join(repoRoot, "bin", "kiln"), ...args], {
    cwd: opts.cwd,
    env: { ...process.env, BUILDKIT_PROGRESS: "plain", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out: Buffer[] = [];
  let err = "";
  if (opts.readStdout !== false) child.stdout!.on("data", (d: Buffer) => out.push(d));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const done = new Promise<ClientResult>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout: Buffer.concat(out), stderr: err, ms: Date.now() - t0 }));
  });
  return { child, stderr: () => err, done };
}
