// git://REMOTE#REF[:SUBDIR]: a checkout of a repository at one commit, made with the git CLI the
// way BuildKit's git source does: a bare repository per remote under the root fetches what is
// asked for, the commit the ref names is the cache key, and the work tree (optionally with a
// .git directory, optionally only a subdirectory) becomes a snapshot.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, rename, rm, access } from "node:fs/promises";
import path from "node:path";
import type { CacheManager, ImmutableRef, KeyLocks } from "../cache/index.js";
import type { CacheMap, Op, OpContext, Result } from "../solver/types.js";
import { KilnError } from "../util/index.js";
import { sourceCacheDigest } from "./image.js";

export interface GitSourceSpec {
  /** The URL git fetches from (`git.fullurl`). */
  remote: string;
  /** Branch, tag or commit; "" for the remote's default branch. */
  ref: string;
  subdir: string;
  keepGitDir: boolean;
}

export interface GitSourceDeps {
  mgr: CacheManager;
  /** Where the per-remote bare repositories live. */
  root: string;
  locks: KeyLocks;
}

const isCommitSHA = (s: string) => /^[0-9a-f]{40}$/.test(s) || /^[0-9a-f]{64}$/.test(s);

/** Parses a `git://` identifier and its attributes into what to fetch. */
export function gitSourceSpec(identifier: string, attrs: Record<string, string>): GitSourceSpec {
  const rest = identifier.slice("git://".length);
  const hash = rest.indexOf("#");
  const fragment = hash < 0 ? "" : rest.slice(hash + 1);
  const colon = fragment.indexOf(":");
  const remote = attrs["git.fullurl"] || `https://${hash < 0 ? rest : rest.slice(0, hash)}`;
  return {
    remote,
    ref: colon < 0 ? fragment : fragment.slice(0, colon),
    subdir: colon < 0 ? "" : fragment.slice(colon + 1),
    keepGitDir: attrs["git.keepgitdir"] === "true",
  };
}

/** Credentials never show in messages. */
function redact(url: string): string {
  return url.replace(/^([a-z+]+:\/\/)[^/@]*@/i, "$1");
}

/**
 * Runs git; a remote that can't serve shallow fetches (the dumb http transport) is fetched again
 * in full, as BuildKit retries without --depth.
 */
async function git(signal: AbortSignal, args: string[], opts: { gitDir?: string; workTree?: string; cwd?: string } = {}): Promise<string> {
  try {
    return await gitOnce(signal, args, opts);
  } catch (err) {
    const deep = args.filter((a) => a !== "--depth=1");
    if (deep.length === args.length || signal.aborted || !(err instanceof KilnError) || !/--depth|shallow/.test(err.message)) throw err;
    return gitOnce(signal, deep, opts);
  }
}

function gitOnce(signal: AbortSignal, args: string[], opts: { gitDir?: string; workTree?: string; cwd?: string } = {}): Promise<string> {
  const pre: string[] = [];
  if (opts.gitDir) pre.push(`--git-dir=${opts.gitDir}`);
  if (opts.workTree) pre.push(`--work-tree=${opts.workTree}`);
  return new Promise((resolve, reject) => {
    const child = spawn("git", [...pre, ...args], {
      cwd: opts.cwd ?? opts.workTree ?? opts.gitDir,
      signal,
      stdio: ["ignore", "pipe", "pipe"],
      // No prompts, no user or system configuration: the same result on every machine.
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: "/nonexistent", GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1", GIT_CONFIG_GLOBAL: "/dev/null", LANG: "C" },
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      if (err.length < 8192) err += d.toString();
    });
    child.on("error", (e) => reject((e as NodeJS.ErrnoException).code === "ENOENT" ? new KilnError("KILN_GIT", "git is not installed", { hint: "apt-get install git", cause: e }) : e));
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new KilnError("KILN_GIT", `git ${args[0]} failed: ${redact(err.trim()) || `exit code ${code}`}`))));
  });
}

export class GitSourceOp implements Op {
  readonly outputs = 1;
  private commit: string | undefined;

  constructor(
    private readonly deps: GitSourceDeps,
    private readonly spec: GitSourceSpec,
  ) {}

  private get bareDir(): string {
    return path.join(this.deps.root, createHash("sha256").update(this.spec.remote).digest("hex").slice(0, 32));
  }

  /** The bare repository for this remote, created on first use; held under a lock across processes. */
  private async withRemote<T>(signal: AbortSignal, fn: (dir: string) => Promise<T>): Promise<T> {
    const dir = this.bareDir;
    const release = await this.deps.locks.lock(signal, `git-${path.basename(dir)}`);
    try {
      try {
        await access(path.join(dir, "HEAD"));
      } catch {
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
        await git(signal, ["-c", "init.defaultBranch=master", "init", "--bare", "-q"], { gitDir: dir });
        await git(signal, ["remote", "add", "origin", this.spec.remote], { gitDir: dir });
      }
      return await fn(dir);
    } finally {
      await release();
    }
  }

  private async resolveCommit(signal: AbortSignal): Promise<string> {
    if (this.commit) return this.commit;
    let ref = this.spec.ref;
    if (isCommitSHA(ref)) return (this.commit = ref);
    this.commit = await this.withRemote(signal, async (dir) => {
      if (ref === "") ref = await this.defaultBranch(signal, dir);
      let out: string;
      try {
        out = await git(signal, ["ls-remote", "origin", ref], { gitDir: dir });
      } catch (err) {
        throw new KilnError("KILN_GIT", `failed to fetch remote ${redact(this.spec.remote)}: ${(err as Error).message}`, { cause: err });
      }
      const line = out.split("\n")[0] ?? "";
      const tab = line.indexOf("\t");
      if (tab < 0) throw new KilnError("KILN_GIT", `repository does not contain ref ${ref}, output: ${JSON.stringify(out)}`);
      const sha = line.slice(0, tab);
      if (!isCommitSHA(sha)) throw new KilnError("KILN_GIT", `invalid commit sha ${JSON.stringify(sha)}`);
      return sha;
    });
    return this.commit;
  }

  private async defaultBranch(signal: AbortSignal, dir: string): Promise<string> {
    const out = await git(signal, ["ls-remote", "--symref", "origin", "HEAD"], { gitDir: dir });
    const m = /^ref: refs\/heads\/(\S+)\tHEAD$/m.exec(out);
    if (!m) throw new KilnError("KILN_GIT", `could not find the default branch of ${redact(this.spec.remote)}`);
    return m[1]!;
  }

  /** The commit the ref resolved to, once keyed (provenance records it). */
  pin(): string | undefined {
    return this.commit;
  }

  /** BuildKit's key: the commit, `.git` when the directory is kept, `:subdir` when one is taken. */
  async cacheMap(signal: AbortSignal): Promise<CacheMap> {
    let key = await this.resolveCommit(signal);
    if (this.spec.keepGitDir) key += ".git";
    if (this.spec.subdir) key += ":" + this.spec.subdir;
    return { digest: sourceCacheDigest(key), deps: [] };
  }

  async exec(signal: AbortSignal, _ctx: OpContext): Promise<Result[]> {
    const commit = await this.resolveCommit(signal);
    let ref = this.spec.ref;
    return this.withRemote(signal, async (gitDir) => {
      if (ref === "") ref = await this.defaultBranch(signal, gitDir);
      await this.fetch(signal, gitDir, ref);
      const mut = await this.deps.mgr.newMutable(undefined, `git snapshot for ${redact(this.spec.remote)}#${ref}`, "source.git.checkout");
      let out: ImmutableRef;
      try {
        await this.checkout(signal, gitDir, isCommitSHA(ref) ? ref : commit, mut.upperDir());
        out = await mut.commit({}, signal);
      } catch (err) {
        await mut.discard();
        throw err;
      }
      return [out];
    });
  }

  private async fetch(signal: AbortSignal, gitDir: string, ref: string): Promise<void> {
    if (isCommitSHA(ref)) {
      try {
        await git(signal, ["cat-file", "-e", `${ref}^{commit}`], { gitDir });
        return;
      } catch {
        // not here yet: fetch
      }
    }
    await rm(path.join(gitDir, "shallow.lock"), { force: true });
    const args = ["fetch"];
    if (!isCommitSHA(ref)) args.push("--depth=1", "--no-tags");
    else {
      try {
        await access(path.join(gitDir, "shallow"));
        args.push("--unshallow");
      } catch {
        // a full clone already
      }
    }
    args.push("origin");
    // A local tag per ref keeps it advertised to later fetches; --force follows moved branches.
    if (!isCommitSHA(ref)) args.push("--force", `${ref}:tags/${ref}`);
    try {
      await git(signal, args, { gitDir });
    } catch (err) {
      throw new KilnError("KILN_GIT", `failed to fetch remote ${redact(this.spec.remote)}: ${(err as Error).message}`, { cause: err });
    }
  }

  private async checkout(signal: AbortSignal, gitDir: string, commit: string, dir: string): Promise<void> {
    const subdir = path.posix.normalize("/" + this.spec.subdir).slice(1);
    if (this.spec.keepGitDir && subdir === "") {
      // A real .git next to the files, with the remote's URL and only this commit's history.
      const dotGit = path.join(dir, ".git");
      await git(signal, ["-c", "init.defaultBranch=master", "init", "-q", dir]);
      await git(signal, ["remote", "add", "origin", `file://${gitDir}`], { gitDir: dotGit });
      const pullref = `refs/kiln/${commit}`;
      await git(signal, ["update-ref", pullref, commit], { gitDir });
      try {
        await git(signal, ["fetch", "-u", "--depth=1", "origin", pullref], { gitDir: dotGit });
      } finally {
        await git(signal, ["update-ref", "-d", pullref], { gitDir }).catch(() => {});
      }
      await git(signal, ["checkout", "-q", "FETCH_HEAD"], { gitDir: dotGit, workTree: dir });
      await git(signal, ["remote", "set-url", "origin", redact(this.spec.remote)], { gitDir: dotGit });
      await git(signal, ["reflog", "expire", "--all", "--expire=now"], { gitDir: dotGit });
      await rm(path.join(dotGit, "FETCH_HEAD"), { force: true });
      return;
    }
    const into = subdir === "" ? dir : await mkdtemp(path.join(dir, "checkout"));
    await git(signal, ["checkout", commit, "--", "."], { gitDir, workTree: into });
    if (subdir !== "") {
      const from = path.join(into, subdir);
      let names: string[];
      try {
        names = await readdir(from);
      } catch (err) {
        throw new KilnError("KILN_GIT", `failed to open subdir ${this.spec.subdir}`, { cause: err });
      }
      for (const n of names) await rename(path.join(from, n), path.join(dir, n));
      await rm(into, { recursive: true, force: true });
    }
    // The checkout index git wrote for --work-tree lives in the bare repository; nothing is left in the snapshot.
  }
}
