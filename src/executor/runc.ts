// RuncExecutor: one exec = bundle dir + host-mounted rootfs + config.json + `runc run`, torn down
// completely (container, mounts, bundle) whatever happens (BuildKit's executor/runcexecutor).
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import { access, chown, lstat, mkdir, readdir, readFile, rm, rmdir, stat, writeFile } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { CanceledError, KilnError, errorMessage, secureJoin, throwIfAborted } from "../util/index.js";
import type { MountSpec } from "../snapshot/types.js";
import { DEFAULT_HOSTNAME, hostsFileContent } from "./hosts.js";
import { collectMountStubs, isBind, mountOnHost, overlayFits, removeMountStubs, runCommand, unmountOnHost } from "./mount.js";
import { resolvConfContent, type DNSConfig } from "./resolvconf.js";
import { generateSpec, type OciMount, type OciRlimit } from "./spec.js";
import { ExitError, type ContainerMount, type Executor, type RunOptions } from "./types.js";
import { getUser, type ResolvedUser } from "./user.js";

export interface RuncExecutorOptions {
  /** State directory: one bundle per running exec lives beneath it. */
  root: string;
  /** Program name (looked up in PATH and the sbin dirs) or absolute path; default "runc". */
  runcBinary?: string;
  /** Hostname when an exec does not set one; default BuildKit's "buildkitsandbox". */
  defaultHostname?: string;
  dns?: DNSConfig;
  /** Cgroup parent of every container; default "/kiln" (BuildKit: "/buildkit"). */
  cgroupParent?: string;
  /** Explicit rlimits; by default the container inherits ours, as BuildKit's does. */
  rlimits?: OciRlimit[];
}

/** runc failed before or while starting the process; the exit code is runc's own (BuildKit reports it the same way). */
export class RuncError extends ExitError {
  constructor(
    exitCode: number,
    args: string[],
    readonly runcMessage: string,
  ) {
    super(exitCode, args);
    this.message = `${this.message}: runc run failed: ${runcMessage}`;
    this.name = "RuncError";
  }
}

const SBIN_DIRS = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/** Whether `dir` is a mount point (its device differs from its parent's, or it is listed in mountinfo). */
async function isMountPoint(dir: string): Promise<boolean> {
  const info = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  // Field 5 is the mount point, with spaces and the like octal-escaped.
  return info.split("\n").some((l) => l.split(" ")[4]?.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) === dir);
}

/** Where runc keeps container state when run as root without --root. */
const RUNC_STATE_ROOT = "/run/runc";

/** Resolves the runc program to an absolute path, or undefined when there is none. */
async function findExecutable(name: string): Promise<string | undefined> {
  const candidates = name.includes("/")
    ? [path.resolve(name)]
    : [...(process.env.PATH ?? "").split(":").filter((d) => d !== ""), ...SBIN_DIRS].map((d) => path.join(d, name));
  for (const c of candidates) {
    try {
      await access(c, fsConstants.X_OK);
      if ((await stat(c)).isFile()) return c;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

/** True when the runc binary can be found and executed. */
export async function runcAvailable(signal: AbortSignal, runcBinary = "runc"): Promise<boolean> {
  throwIfAborted(signal);
  return (await findExecutable(runcBinary)) !== undefined;
}

let cgroupV2: Promise<boolean> | undefined;

/** BuildKit's cgroupV2NamespaceSupported: a kernel with cgroup namespaces on a unified hierarchy. */
function cgroupNamespaceSupported(): Promise<boolean> {
  cgroupV2 ??= Promise.all([exists("/proc/self/ns/cgroup"), exists("/sys/fs/cgroup/cgroup.subtree_control")]).then(([a, b]) => a && b);
  return cgroupV2;
}

const validId = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
}

/** Creates `dir` and its missing parents, owning each new one to uid:gid (moby's MkdirAllAndChown). */
async function mkdirAllAndChown(dir: string, uid: number, gid: number): Promise<void> {
  if (await exists(dir)) return;
  const first = await mkdir(dir, { recursive: true, mode: 0o755 });
  if (first === undefined) return;
  for (let p = dir; ; p = path.dirname(p)) {
    await chown(p, uid, gid);
    if (p === first || p === path.dirname(p)) break;
  }
}

/** The first error-level message in runc's JSON log, if any. */
async function runcLogError(logPath: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(logPath, "utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const entry = JSON.parse(line) as { level?: unknown; msg?: unknown };
      if ((entry.level === "error" || entry.level === "fatal") && typeof entry.msg === "string") return entry.msg;
    } catch {
      // runc may die mid-line; a torn entry says nothing useful
    }
  }
  return undefined;
}

function exitCodeOf(code: number | null, sig: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const n = sig ? osConstants.signals[sig] : undefined;
  return n === undefined ? 255 : 128 + n;
}

export class RuncExecutor implements Executor {
  private readonly root: string;
  private readonly defaultHostname: string;
  private runcPath: Promise<string> | undefined;

  constructor(private readonly opts: RuncExecutorOptions) {
    this.root = path.resolve(opts.root);
    this.defaultHostname = opts.defaultHostname ?? DEFAULT_HOSTNAME;
  }

  /**
   * Tears down what a killed process left: its containers (ids carry the pid), their rootfs
   * mounts and bundles. `isDead(pid)` decides whose they are. Returns how many were removed.
   */
  async cleanupStale(isDead: (pid: number) => Promise<boolean>): Promise<number> {
    const names = await readdir(this.root).catch(() => [] as string[]);
    let removed = 0;
    for (const id of names) {
      const pid = /^kiln-(\d+)-/.exec(id)?.[1];
      if (!pid || !(await isDead(Number(pid)))) continue;
      const runc = await this.runc().catch(() => undefined);
      if (runc) {
        await runCommand(runc, ["kill", id, "KILL"]).catch(() => undefined);
        await runCommand(runc, ["delete", "--force", id]).catch(() => undefined);
      }
      const bundle = path.join(this.root, id);
      const rootfs = path.join(bundle, "rootfs");
      // Several mounts may be stacked on the rootfs; peel them off one by one.
      for (let i = 0; i < 8 && (await isMountPoint(rootfs)); i++) await unmountOnHost(rootfs).catch(() => undefined);
      // Never recursive: if the rootfs is still mounted, removing through it would destroy a snapshot.
      for (const f of await readdir(bundle).catch(() => [] as string[])) {
        if (f !== "rootfs") await rm(path.join(bundle, f), { force: true }).catch(() => undefined);
      }
      await rmdir(rootfs).catch(() => undefined);
      await rmdir(bundle).catch(() => undefined);
      removed++;
    }
    return removed;
  }

  private runc(): Promise<string> {
    this.runcPath ??= findExecutable(this.opts.runcBinary ?? "runc").then((p) => {
      if (p === undefined) {
        this.runcPath = undefined;
        throw new KilnError("KILN_RUNC_MISSING", `failed to find ${this.opts.runcBinary ?? "runc"} binary`, {
          hint: "install runc (Debian: apt-get install runc) or set runcBinary to its path",
        });
      }
      return p;
    });
    return this.runcPath;
  }

  async run(signal: AbortSignal, opts: RunOptions): Promise<void> {
    throwIfAborted(signal);
    if (!validId.test(opts.id)) throw new KilnError("KILN_EXECUTOR", `invalid container id ${JSON.stringify(opts.id)}`);
    if (opts.process.tty) throw new KilnError("KILN_UNSUPPORTED", "running a process with a tty is not supported yet");
    if (opts.rootfs.length === 0) throw new KilnError("KILN_EXECUTOR", "no rootfs mounts given");
    const runc = await this.runc();

    // Undo actions, run in reverse order whatever happens.
    const undo: (() => Promise<void>)[] = [];
    let failure: unknown;
    let hadFailure = false;
    try {
      await mkdir(this.root, { recursive: true, mode: 0o711 });
      const bundle = path.join(this.root, opts.id);
      try {
        await mkdir(bundle, { mode: 0o711 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EEXIST") {
          throw new KilnError("KILN_EXECUTOR", `container ${opts.id} already exists`, { cause: err });
        }
        throw err;
      }
      // Only ever non-recursive removal: a bundle whose rootfs could not be unmounted must not be emptied through the mount.
      const files: string[] = [];
      const dirs: string[] = [bundle];
      undo.push(async () => {
        for (const f of files) await rm(f, { force: true });
        for (const d of dirs.reverse()) await rmdir(d).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== "ENOENT") throw err;
        });
      });

      const rootfs = path.join(bundle, "rootfs");
      await mkdir(rootfs, { mode: 0o700 });
      dirs.push(rootfs);
      for (const spec of opts.rootfs) {
        await mountOnHost(spec, rootfs);
        undo.push(() => unmountOnHost(rootfs));
      }
      throwIfAborted(signal);

      // Empty mount points runc creates are removed again before the rootfs is unmounted.
      const stubs = await collectMountStubs(
        rootfs,
        opts.mounts.map((m) => m.destination),
        true,
      );
      undo.push(() => removeMountStubs(rootfs, stubs));

      const user = await getUser(rootfs, opts.process.user);
      const hostname = opts.hostname || this.defaultHostname;
      const hostsPath = path.join(bundle, "hosts");
      const resolvPath = path.join(bundle, "resolv.conf");
      const logPath = path.join(bundle, "runc-log.json");
      files.push(hostsPath, resolvPath, logPath, path.join(bundle, "config.json"));
      await writeFile(hostsPath, hostsFileContent(hostname, opts.extraHosts ?? []), { mode: 0o644 });
      await writeFile(resolvPath, await resolvConfContent(opts.network, this.opts.dns), { mode: 0o644 });

      const mounts = await this.containerMounts(opts.mounts, bundle, dirs, undo);
      const cwd = path.posix.normalize("/" + (opts.process.cwd || "/"));
      await this.ensureCwd(rootfs, cwd, user);

      const spec = generateSpec({
        id: opts.id,
        rootfsPath: rootfs,
        rootfsReadonly: opts.rootfsReadonly ?? false,
        args: opts.process.args,
        env: opts.process.env,
        cwd,
        tty: false,
        user,
        hostname,
        network: opts.network,
        insecure: opts.security === "insecure",
        boundingCaps: opts.security === "insecure" ? await ownBoundingCaps() : undefined,
        hostsPath,
        resolvConfPath: resolvPath,
        mounts,
        cgroupParent: this.opts.cgroupParent ?? "/kiln",
        cgroupNamespace: await cgroupNamespaceSupported(),
        rlimits: opts.rlimits && opts.rlimits.length > 0 ? opts.rlimits : this.opts.rlimits,
      });
      await writeFile(path.join(bundle, "config.json"), JSON.stringify(spec), { mode: 0o600 });
      throwIfAborted(signal);

      // runc removes a container it ran to the end itself; one left behind (abort, runc crash) is deleted.
      undo.push(async () => {
        if (await exists(path.join(RUNC_STATE_ROOT, opts.id))) await this.deleteContainer(runc, opts.id);
      });
      const exitCode = await this.runContainer(signal, runc, opts, bundle, logPath);
      if (signal.aborted) throw new CanceledError(signal.reason);
      if (exitCode !== 0) {
        const runcMsg = await runcLogError(logPath);
        if (runcMsg !== undefined) throw new RuncError(exitCode, opts.process.args, runcMsg);
        throw new ExitError(exitCode, opts.process.args);
      }
    } catch (err) {
      hadFailure = true;
      failure = err;
    } finally {
      const cleanupErrors: unknown[] = [];
      for (const u of undo.reverse()) {
        try {
          await u();
        } catch (err) {
          cleanupErrors.push(err);
        }
      }
      if (cleanupErrors.length > 0) {
        const msg = cleanupErrors.map(errorMessage).join("; ");
        if (!hadFailure) {
          hadFailure = true;
          failure = new KilnError("KILN_EXECUTOR_CLEANUP", `cleaning up container ${opts.id}: ${msg}`, { cause: cleanupErrors[0] });
        }
      }
    }
    if (hadFailure) throw failure;
  }

  /**
   * The exec's mounts in runtime form, parents before children. Overlays whose options would not
   * fit in a page are mounted on the host first and bound in (BuildKit's compactLongOverlayMount).
   */
  private async containerMounts(mounts: readonly ContainerMount[], bundle: string, dirs: string[], undo: (() => Promise<void>)[]): Promise<OciMount[]> {
    const sorted = mounts
      .map((m) => ({ ...m, destination: path.posix.normalize("/" + m.destination) }))
      .sort((a, b) => (a.destination < b.destination ? -1 : a.destination > b.destination ? 1 : 0));
    const out: OciMount[] = [];
    let n = 0;
    for (const m of sorted) {
      let spec: MountSpec = m.mount;
      if (spec.type === "overlay" && !overlayFits(spec.options)) {
        if (n === 0) {
          await mkdir(path.join(bundle, "mounts"), { mode: 0o700 });
          dirs.push(path.join(bundle, "mounts"));
        }
        const target = path.join(bundle, "mounts", String(n++));
        await mkdir(target, { mode: 0o700 });
        dirs.push(target);
        await mountOnHost(spec, target);
        undo.push(() => unmountOnHost(target));
        spec = { type: "bind", source: target, options: ["rbind"] };
      }
      let options = [...spec.options];
      let type = spec.type;
      if (isBind(spec)) {
        type = "bind";
        if (!options.includes("bind") && !options.includes("rbind")) options.unshift("rbind");
      }
      if (m.readonly) options = [...options.filter((o) => o !== "rw"), ...(options.includes("ro") ? [] : ["ro"])];
      out.push({ destination: m.destination, type, source: spec.source, options });
    }
    return out;
  }

  /** BuildKit creates a missing working directory before start, owned by the exec's user. */
  private async ensureCwd(rootfs: string, cwd: string, user: ResolvedUser): Promise<void> {
    const p = await secureJoin(rootfs, cwd);
    try {
      await stat(p);
      return;
    } catch {
      // missing (or a dangling link): create it
    }
    try {
      await mkdirAllAndChown(p, user.uid, user.gid);
    } catch (err) {
      throw new KilnError("KILN_EXECUTOR", `failed to create working directory ${cwd}: ${errorMessage(err)}`, { cause: err });
    }
  }

  private async deleteContainer(runc: string, id: string): Promise<void> {
    const r = await runCommand(runc, ["delete", "--force", id]);
    if (r.code !== 0 && !/does not exist|not exist/i.test(r.stderr)) {
      throw new KilnError("KILN_RUNC", `runc delete ${id} failed: ${r.stderr}`);
    }
  }

  /** Runs the container to completion and returns its exit status (128+n for a signal). */
  private async runContainer(signal: AbortSignal, runc: string, opts: RunOptions, bundle: string, logPath: string): Promise<number> {
    // Our own session and process group: a terminal's Ctrl-C reaches us, not runc, and we decide.
    const child = spawn(runc, ["--log", logPath, "--log-format", "json", "run", "--bundle", bundle, opts.id], {
      stdio: ["ignore", opts.stdout ? "pipe" : "ignore", opts.stderr ? "pipe" : "ignore"],
      detached: true,
    });
    const pipeTo = (from: Readable | null, to: Writable | undefined) => {
      if (from && to) from.pipe(to, { end: false });
    };
    pipeTo(child.stdout, opts.stdout);
    pipeTo(child.stderr, opts.stderr);

    let exited = false;
    const done = new Promise<number>((resolve, reject) => {
      child.once("error", (err) => {
        exited = true;
        reject(new KilnError("KILN_RUNC", `starting ${runc}: ${errorMessage(err)}`, { cause: err }));
      });
      child.once("close", (code, sig) => {
        exited = true;
        resolve(exitCodeOf(code, sig));
      });
    });
    let killing: Promise<void> | undefined;
    const onAbort = () => {
      killing ??= this.kill(runc, opts.id, child, () => exited);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();
    try {
      return await done;
    } finally {
      signal.removeEventListener("abort", onAbort);
      if (child.stdout && opts.stdout) child.stdout.unpipe(opts.stdout);
      if (child.stderr && opts.stderr) child.stderr.unpipe(opts.stderr);
      await killing;
    }
  }

  /**
   * SIGKILLs the container's init (and with it the whole pid namespace). `runc kill` fails until
   * the container exists, so it is retried; if runc itself never gets that far, it is killed.
   */
  private async kill(runc: string, id: string, child: ChildProcess, exited: () => boolean): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!exited()) {
      const r = await runCommand(runc, ["kill", id, "KILL"]).catch(() => ({ code: 1, stderr: "" }));
      if (r.code === 0) return;
      if (Date.now() > deadline) {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
        } catch {
          // already gone
        }
        return;
      }
      await new Promise((res) => setTimeout(res, 20));
    }
  }
}

/** This process's capability bounding set, from /proc/self/status. */
async function ownBoundingCaps(): Promise<bigint | undefined> {
  try {
    const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(await readFile("/proc/self/status", "utf8"));
    return m ? BigInt(`0x${m[1]}`) : undefined;
  } catch {
    return undefined;
  }
}
