// ExecOp: runs a process in a container whose mounts are snapshots of the op's inputs; writable
// mounts with an output become new immutable refs.
import { chmod, chown, mkdir, mkdtemp, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import type { ExecOp, Mount } from "../api/index.js";
import { MountType, NetMode, CacheSharingOpt, SecurityMode, type ProxyEnv } from "../api/index.js";
import { checksumPath, type CacheManager, type ImmutableRef, type MutableRef } from "../cache/index.js";
import type { ContainerMount, Executor, NetworkMode } from "../executor/types.js";
import { ExitError } from "../executor/types.js";
import type { ActiveMount } from "../snapshot/types.js";
import type { CacheMap, CacheMapDep, Op, OpContext, Result } from "../solver/types.js";
import { KilnError, digestOf, secureJoin, sha256Hex, type Platform } from "../util/index.js";
import { execCacheDigest } from "./cachekeys.js";
import { copyAll } from "./fsops.js";
import type { KeyLocks } from "../cache/index.js";
import type { SecretStore, SSHAgents } from "../session/index.js";
import { mountAll, unmount } from "../snapshot/index.js";

export interface ExecOpDeps {
  mgr: CacheManager;
  executor: Executor;
  /** Directory that holds persistent `type=cache` mounts. */
  cacheMountRoot: string;
  cacheLocks: KeyLocks;
  /** The client's secrets and ssh agents, for `type=secret` / `type=ssh` mounts and secret env. */
  secrets?: SecretStore;
  ssh?: SSHAgents;
}

let containerSeq = 0;

export class ExecOpRunner implements Op {
  readonly outputs: number;

  constructor(
    private readonly deps: ExecOpDeps,
    private readonly execOp: ExecOp,
    /** The op's platform, or the worker's when the op names none. */
    private readonly platform: Platform,
  ) {
    let max = -1;
    for (const m of execOp.mounts) max = Math.max(max, Number(m.output));
    this.outputs = max + 1;
  }

  async cacheMap(): Promise<CacheMap> {
    return { digest: execCacheDigest(this.execOp, this.platform), deps: this.mountDeps() };
  }

  /**
   * Inputs the process only reads (read-only mounts, writable ones whose changes are dropped) are
   * keyed by the content of what is mounted, as BuildKit keys them: a stage rebuilt to the same
   * files leaves a RUN that mounts it cached. The rootfs and mounts with an output keep the
   * input's own key.
   */
  private mountDeps(): CacheMapDep[] {
    const byInput = new Map<number, { selectors: string[]; content: boolean }>();
    for (const m of this.execOp.mounts) {
      const i = Number(m.input);
      if (i < 0) continue;
      const e = byInput.get(i) ?? { selectors: [], content: true };
      if (m.selector !== "") e.selectors.push(path.posix.join("/", m.selector));
      if ((!m.readonly || m.dest === "/") && Number(m.output) !== -1) e.content = false;
      byInput.set(i, e);
    }
    const deps: CacheMapDep[] = [];
    for (const [i, e] of byInput) {
      const dep: CacheMapDep = {};
      if (e.selectors.length > 0) dep.selector = e.selectors.join("\0");
      if (e.content) {
        // BuildKit follows a mount source that is a symlink; with no selector the whole input counts.
        const paths = withoutNested(e.selectors);
        const selectors = paths.length > 0 ? paths : ["/"];
        dep.computeDigest = async (signal, res) => {
          const sums = await Promise.all(selectors.map((p) => checksumPath(signal, this.deps.mgr.db, res as ImmutableRef, p, { followLinks: true, wildcard: false })));
          return digestOf(sums.join("\0"));
        };
      }
      deps[i] = dep;
    }
    return deps;
  }

  async exec(signal: AbortSignal, ctx: OpContext, inputs: Result[]): Promise<Result[]> {
    const meta = this.execOp.meta;
    if (!meta) throw new KilnError("KILN_LLB", "exec op without meta");
    const refOf = (i: bigint): ImmutableRef | undefined => (i < 0n ? undefined : (inputs[Number(i)] as ImmutableRef | undefined));
    const mutables: { output: number; ref: MutableRef }[] = [];
    const active: ActiveMount[] = [];
    const releases: (() => void)[] = [];
    /** Secret tmpfs mounts and ssh relays, torn down once the process is gone. */
    const sideMounts: (() => Promise<void>)[] = [];
    const tail = new TailBuffer(20);
    try {
      const sorted = [...this.execOp.mounts].sort((a, b) => (a.dest === "/" ? -1 : b.dest === "/" ? 1 : 0));
      const root = sorted.find((m) => m.dest === "/");
      if (!root) throw new KilnError("KILN_LLB", "exec op has no root mount");
      let rootfs;
      const rootRef = refOf(root.input);
      if (Number(root.output) >= 0 && !root.readonly) {
        const m = await this.deps.mgr.newMutable(rootRef, `${meta.args.join(" ")}`);
        mutables.push({ output: Number(root.output), ref: m });
        rootfs = await m.mounts();
      } else if (rootRef) {
        rootfs = await rootRef.mounts(true);
      } else {
        const m = await this.deps.mgr.newMutable(undefined, "scratch rootfs");
        mutables.push({ output: -1, ref: m });
        rootfs = await m.mounts();
      }
      const mounts: ContainerMount[] = [];
      for (const m of sorted) {
        if (m === root) continue;
        if (m.mountType === MountType.SECRET || m.mountType === MountType.SSH) {
          const sm = m.mountType === MountType.SECRET ? await this.secretMount(signal, m, sideMounts) : await this.sshMount(signal, m, sideMounts);
          if (sm) mounts.push(sm);
          continue;
        }
        mounts.push(await this.containerMount(signal, m, refOf(m.input), mutables, active, releases));
      }
      const secretEnv = await this.secretEnv(signal);
      const stdout = new LogStream(ctx, 1, tail);
      const stderr = new LogStream(ctx, 2, tail);
      const net: NetworkMode = this.execOp.network === NetMode.NONE ? "none" : this.execOp.network === NetMode.HOST ? "host" : "sandbox";
      try {
        await this.deps.executor.run(signal, {
          id: `kiln-${process.pid}-${Date.now().toString(36)}-${++containerSeq}`,
          rootfs,
          rootfsReadonly: root.readonly,
          mounts,
          process: { args: meta.args, env: [...meta.env, ...proxyEnvList(meta.proxyEnv), ...secretEnv], cwd: meta.cwd || "/", user: meta.user },
          hostname: meta.hostname || undefined,
          network: net,
          security: this.execOp.security === SecurityMode.INSECURE ? "insecure" : "sandbox",
          extraHosts: meta.extraHosts.map((h) => ({ host: h.Host, ip: h.IP })),
          rlimits: meta.ulimit.map((u) => ({ type: `RLIMIT_${u.Name.toUpperCase()}`, soft: Number(u.Soft), hard: Number(u.Hard) })),
          stdout,
          stderr,
        });
      } catch (err) {
        if (err instanceof ExitError) {
          const lines = tail.lines();
          throw new KilnError("KILN_EXEC", `process "${meta.args.join(" ")}" did not complete successfully: exit code: ${err.exitCode}`, {
            cause: err,
            hint: lines.length > 0 ? lines.join("\n") : undefined,
          });
        }
        throw err;
      }
      for (const a of active.reverse()) await a[Symbol.asyncDispose]();
      active.length = 0;
      const outs: Result[] = new Array(this.outputs);
      for (const { output, ref } of mutables) {
        if (output < 0) await ref.discard();
        else outs[output] = await ref.commit();
      }
      mutables.length = 0;
      return outs;
    } finally {
      for (const undo of sideMounts.reverse()) await undo().catch(() => {});
      for (const a of active.reverse()) await Promise.resolve(a[Symbol.asyncDispose]()).catch(() => {});
      for (const { ref } of mutables) await ref.discard().catch(() => {});
      for (const r of releases) r();
    }
  }

  /** A secret as a read-only file on a private tmpfs: never in a snapshot, gone after the step. */
  private async secretMount(signal: AbortSignal, m: Mount, undo: (() => Promise<void>)[]): Promise<ContainerMount | undefined> {
    const opt = m.secretOpt;
    if (!opt) throw new KilnError("KILN_LLB", "invalid secret mount options");
    if (!opt.ID) throw new KilnError("KILN_LLB", "secret ID missing from mount options");
    const data = await this.deps.secrets?.get(signal, opt.ID);
    if (data === undefined) {
      if (opt.optional) return undefined;
      throw new KilnError("KILN_SECRET", `secret ${opt.ID}: not found`, { hint: `pass it with --secret id=${opt.ID},src=FILE (or env=VAR)` });
    }
    const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-secrets-"));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    await mountAll(signal, [{ type: "tmpfs", source: "tmpfs", options: ["nodev", "nosuid", "noexec", "mode=0700"] }], dir);
    undo.push(() => unmount(dir));
    const file = path.join(dir, "secret");
    await writeFile(file, data, { mode: 0o600 });
    await chown(file, opt.uid, opt.gid);
    await chmod(file, opt.mode & 0o777);
    return { destination: m.dest, mount: { type: "bind", source: file, options: ["ro", "rbind", "nodev", "nosuid", "noexec"] }, readonly: true };
  }

  /** An ssh agent socket relaying to the client's agent. */
  private async sshMount(signal: AbortSignal, m: Mount, undo: (() => Promise<void>)[]): Promise<ContainerMount | undefined> {
    const opt = m.SSHOpt;
    const id = opt?.ID || "default";
    const ssh = this.deps.ssh;
    // A remote client only knows its agents when asked (CheckAgent); a local one answers at once.
    if (!ssh || !(ssh.check ? await ssh.check(signal, id) : ssh.has(id))) {
      if (opt?.optional) return undefined;
      throw new KilnError("KILN_SSH", `no SSH key ${JSON.stringify(id)} forwarded from the client`, { hint: `forward an agent with --ssh ${id}[=SOCKET|KEY]` });
    }
    const sock = await ssh.listen(signal, id, { uid: opt?.uid ?? 0, gid: opt?.gid ?? 0, mode: opt?.mode ?? 0o600 });
    undo.push(async () => sock[Symbol.asyncDispose]());
    return { destination: m.dest, mount: { type: "bind", source: sock.path, options: ["rbind"] } };
  }

  /** `secretenv`: secrets given to the process as environment variables. */
  private async secretEnv(signal: AbortSignal): Promise<string[]> {
    const out: string[] = [];
    for (const s of this.execOp.secretenv) {
      const data = await this.deps.secrets?.get(signal, s.ID);
      if (data === undefined) {
        if (s.optional) continue;
        throw new KilnError("KILN_SECRET", `secret ${s.ID}: not found`, { hint: `pass it with --secret id=${s.ID},src=FILE (or env=VAR)` });
      }
      out.push(`${s.name}=${Buffer.from(data).toString("utf8")}`);
    }
    return out;
  }

  private async containerMount(
    signal: AbortSignal,
    m: Mount,
    ref: ImmutableRef | undefined,
    mutables: { output: number; ref: MutableRef }[],
    active: ActiveMount[],
    releases: (() => void)[],
  ): Promise<ContainerMount> {
    switch (m.mountType) {
      case MountType.TMPFS: {
        const size = m.TmpfsOpt?.size ?? 0n;
        const options = ["nosuid", "nodev"];
        if (size > 0n) options.push(`size=${size}`);
        return { destination: m.dest, mount: { type: "tmpfs", source: "tmpfs", options } };
      }
      case MountType.CACHE: {
        const id = m.cacheOpt?.ID || m.dest;
        // A cache seeded from an input (from=, or the directory carrying uid/gid/mode) is an
        // instance of its own per input, as in BuildKit.
        const base = sha256Hex(ref ? `${id}\0${ref.id}` : id).slice(0, 32);
        let key = base;
        // Locks are files under the root, so sharing modes hold across processes too.
        if (m.cacheOpt?.sharing === CacheSharingOpt.LOCKED) {
          const release = await this.deps.cacheLocks.lock(signal, `cachemount-${base}`);
          releases.push(() => void release());
        } else if (m.cacheOpt?.sharing === CacheSharingOpt.PRIVATE) {
          // Private: the first instance nobody else is using, a new one if all are busy.
          for (let n = 0; ; n++) {
            const name = n === 0 ? base : `${base}-${n}`;
            const release = await this.deps.cacheLocks.tryLock(`cachemount-${name}`);
            if (release) {
              key = name;
              releases.push(() => void release());
              break;
            }
          }
        }
        const dir = path.join(this.deps.cacheMountRoot, key);
        // Held while in use so GC (here or in another process) leaves it alone; its mtime is its last use.
        releases.push(this.deps.mgr.holdResource("cachemount", key));
        const db = this.deps.mgr.db;
        if (!db.getKV("cachemount", key)) db.setKV("cachemount", key, JSON.stringify({ id }));
        db.setKV("cachemount.uses", key, String(Number(db.getKV("cachemount.uses", key) ?? "0") + 1));
        if (ref) await seedCacheDir(signal, ref, dir);
        else await mkdir(dir, { recursive: true });
        const now = new Date();
        await utimes(dir, now, now);
        const source = m.selector ? await secureJoin(dir, m.selector) : dir;
        return { destination: m.dest, mount: { type: "bind", source, options: ["rbind"] }, readonly: m.readonly };
      }
      case MountType.BIND: {
        let mountRoot: string;
        if (!m.readonly) {
          // Writable: a layer of its own over the input, committed as an output or (no output,
          // `RUN --mount=type=bind,rw`) thrown away afterwards.
          const mut = await this.deps.mgr.newMutable(ref, `mount ${m.dest}`);
          mutables.push({ output: Number(m.output) >= 0 ? Number(m.output) : -1, ref: mut });
          const am = await mut.mount(signal);
          active.push(am);
          mountRoot = am.path;
        } else if (ref) {
          const am = await ref.mount(signal);
          active.push(am);
          mountRoot = am.path;
        } else {
          const mut = await this.deps.mgr.newMutable(undefined, `scratch mount ${m.dest}`);
          mutables.push({ output: Number(m.output) >= 0 ? Number(m.output) : -1, ref: mut });
          const am = await mut.mount(signal);
          active.push(am);
          mountRoot = am.path;
        }
        const source = m.selector ? await secureJoin(mountRoot, m.selector) : mountRoot;
        const options = ["rbind"];
        if (m.readonly) options.push("ro");
        return { destination: m.dest, mount: { type: "bind", source, options }, readonly: m.readonly };
      }
      default:
        throw new KilnError("KILN_UNSUPPORTED", `mount type ${MountType[m.mountType] ?? m.mountType} is not supported yet`);
    }
  }
}

/** Creates a cache directory from its input's files the first time it is used (atomically: a rename). */
async function seedCacheDir(signal: AbortSignal, ref: ImmutableRef, dir: string): Promise<void> {
  try {
    await stat(dir);
    return;
  } catch {
    // first use
  }
  await mkdir(path.dirname(dir), { recursive: true });
  const tmp = await mkdtemp(`${dir}.seed-`);
  try {
    {
      await using src = await ref.mount(signal);
      await copyAll(signal, src.path, tmp);
    }
    await rename(tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
      // Another build seeded it first.
      if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Proxy settings as both spellings of each variable, after the op's own env (BuildKit's proxyEnvList). */
function proxyEnvList(p: ProxyEnv | undefined): string[] {
  if (!p) return [];
  const out: string[] = [];
  const add = (name: string, v: string) => {
    if (v) out.push(`${name}=${v}`, `${name.toLowerCase()}=${v}`);
  };
  add("HTTP_PROXY", p.httpProxy);
  add("HTTPS_PROXY", p.httpsProxy);
  add("FTP_PROXY", p.ftpProxy);
  add("NO_PROXY", p.noProxy);
  add("ALL_PROXY", p.allProxy);
  return out;
}

/** Keeps the last lines of a process's output for error messages. */
class TailBuffer {
  private buf: string[] = [];
  private partial = "";
  constructor(private readonly max: number) {}
  push(s: string): void {
    const parts = (this.partial + s).split("\n");
    this.partial = parts.pop() ?? "";
    this.buf.push(...parts);
    if (this.buf.length > this.max) this.buf.splice(0, this.buf.length - this.max);
  }
  lines(): string[] {
    return this.partial ? [...this.buf, this.partial].slice(-this.max) : this.buf;
  }
}

class LogStream extends Writable {
  constructor(
    private readonly ctx: OpContext,
    private readonly stream: 1 | 2,
    private readonly tail: TailBuffer,
  ) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.tail.push(chunk.toString("utf8"));
    this.ctx.progress.write({ logs: [{ vertex: this.ctx.vertex.digest, stream: this.stream, data: chunk, timestamp: new Date() }] });
    cb();
  }
}

/** Sorted paths without those inside another listed one (whose content the parent's sum covers), as BuildKit's dedupePaths. */
function withoutNested(paths: string[]): string[] {
  const unique = [...new Set(paths)];
  return unique.filter((p1) => !unique.some((p2) => p1 !== p2 && p1.startsWith(p2 + "/"))).sort();
}
