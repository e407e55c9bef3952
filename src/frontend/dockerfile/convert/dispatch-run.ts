// RUN → ExecOp, as dockerfile2llb lowers it: heredocs (inline script, shebang file, or a shell
// heredoc passed through), --mount of every type, --network and --security.
import path from "node:path";
import { FileAction, State, type MountOpt, type RunOptions } from "../../../llb/index.js";
import { KilnError } from "../../../util/index.js";
import { chompHeredocContent, mustParseHeredoc } from "../parser/index.js";
import { envsFromSlice } from "../shell/index.js";
import type { Mount, RunCommand } from "../instructions/index.js";
import { dfCmd, displayName, prefixCommand, stateEnv, type DispatchOpt, type DispatchState } from "./dispatchstate.js";
import { commitToHistory } from "./image.js";

/** The shell of shell-form commands when SHELL set none, by the image's OS. */
function defaultShell(os: string | undefined): string[] {
  return os === "windows" ? ["cmd", "/S", "/C"] : ["/bin/sh", "-c"];
}

export function withShell(d: DispatchState, args: string[]): string[] {
  const shell = d.image.config.Shell && d.image.config.Shell.length > 0 ? d.image.config.Shell : defaultShell(d.image.os);
  return [...shell, args.join(" ")];
}

/** The first line of a heredoc, with "..." when there is more. */
function summarizeHeredoc(doc: string): string {
  const lines = doc.trim().replaceAll("\r\n", "\n").split("\n");
  return lines.length > 1 ? `${lines[0]}...` : lines[0]!;
}

export function dispatchRun(d: DispatchState, c: RunCommand, sources: (DispatchState | undefined)[], opt: DispatchOpt): void {
  let args = c.cmdLine;
  let customName = c.code;
  const mounts: MountOpt[] = [];
  if (c.files.length > 0) {
    if (args.length !== 1 || !c.prependShell) throw new KilnError("KILN_DOCKERFILE", `parsing produced an invalid run command: [${args.join(" ")}]`);
    if (mustParseHeredoc(args[0]!)) {
      const file = c.files[0]!;
      const data = file.chomp ? chompHeredocContent(file.data) : file.data;
      if (d.image.os !== "windows" && file.data.startsWith("#!")) {
        // A script with an interpreter line: written to a file the process runs.
        const script = State.scratch()
          .dir("/")
          .file(FileAction.mkfile(file.name, 0o755, data), { customName: "[internal] preparing inline document" });
        mounts.push({ dest: "/dev/pipes/", source: script, selector: "/", readonly: true });
        args = [path.posix.join("/dev/pipes/", file.name)];
      } else {
        // The body itself is the shell script.
        args = [data];
      }
      customName += ` (${summarizeHeredoc(file.data)})`;
    } else {
      // `RUN cmd <<EOF`: hand the whole heredoc to the shell.
      let full = args[0]!;
      for (const f of c.files) full += "\n" + f.data + f.name;
      args = [full];
    }
  }
  if (c.prependShell) args = withShell(d, args);

  const env = d.state.env();
  mounts.push(...runMounts(d, c, sources, opt));
  const secretEnv: NonNullable<RunOptions["secretEnv"]> = [];
  for (const m of c.mounts) {
    if (m.type === "secret" && m.env !== undefined) secretEnv.push({ id: secretId(m), name: m.env, optional: !m.required });
  }
  const run: RunOptions = {
    args,
    description: dfCmd(c.code),
    sourceLocation: opt.locOf(c.location),
    mounts,
    // A RUN names the platform its state has: none for a scratch stage without --platform.
    customName: prefixCommand(d, displayName(opt.lex, customName, stateEnv(d), true), { platform: d.platform ?? null, env }),
  };
  if (opt.ulimits.length > 0) run.ulimits = opt.ulimits;
  // After the RUN's own mounts, as BuildKit adds it: a --mount on /dev/shm doesn't replace it.
  if (opt.shmSize > 0) mounts.push({ dest: "/dev/shm", source: State.scratch(), type: "tmpfs", tmpfsSize: opt.shmSize });
  if (d.ignoreCache) run.ignoreCache = true;
  if (opt.proxyEnv) run.proxyEnv = opt.proxyEnv;
  if (secretEnv.length > 0) run.secretEnv = secretEnv;
  if (c.security === "insecure") run.security = "insecure";
  if (c.network === "none") run.network = "none";
  else if (c.network === "host") run.network = "host";
  d.state = d.state.run(run).root();
  commitToHistory(d.image, `RUN ${runCommandString(args, d.buildArgs, env)}`, true, true);
}

/** `|2 A=1 B=2 cmd`: the build args the step saw, before the command, as BuildKit records it. */
function runCommandString(args: string[], buildArgs: DispatchState["buildArgs"], env: string[]): string {
  const values = envsFromSlice(env);
  const pairs = buildArgs.map((a) => `${a.key}=${values.get(a.key) ?? a.value ?? ""}`);
  const prefix = pairs.length > 0 ? [`|${pairs.length}`, ...pairs] : [];
  return [...prefix, ...args].join(" ");
}

function secretId(m: Mount): string {
  let id = m.source !== "" ? m.source : m.cacheId;
  if (id === "") {
    if (m.target === "") throw new KilnError("KILN_DOCKERFILE", "one of source, target required");
    id = path.posix.basename(m.target);
  }
  return id;
}

function runMounts(d: DispatchState, c: RunCommand, sources: (DispatchState | undefined)[], opt: DispatchOpt): MountOpt[] {
  const out: MountOpt[] = [];
  for (const [i, mount] of c.mounts.entries()) {
    const m = { ...mount };
    if (m.from === "" && m.type === "cache") m.from = "scratch";
    if (m.type === "secret") {
      const sm = secretMount(m);
      if (sm) out.push(sm);
      continue;
    }
    if (m.type === "ssh") {
      out.push(sshMount(m));
      continue;
    }
    let st: State = opt.buildContext;
    if (m.from !== "") st = sources[i]?.state ?? State.scratch();
    const mo: MountOpt = { dest: "", source: st };
    if (m.type === "tmpfs") {
      mo.source = State.scratch();
      mo.type = "tmpfs";
      if (m.sizeLimit > 0) mo.tmpfsSize = m.sizeLimit;
    }
    if (m.readOnly) mo.readonly = true;
    else if (m.type === "bind") mo.noOutput = true;
    if (m.type === "cache") {
      mo.type = "cache";
      mo.cacheId = `${opt.cacheIdNamespace}/${m.cacheId || path.posix.normalize(m.target)}`;
      mo.sharing = m.cacheSharing ?? "shared";
    }
    let target = m.target;
    if (!path.posix.isAbsolute(path.posix.normalize(m.target))) target = path.posix.join("/", d.state.getDir(), m.target);
    if (target === "/") throw new KilnError("KILN_DOCKERFILE", `invalid mount target ${JSON.stringify(target)}`);
    mo.dest = target;
    const src = path.posix.join("/", m.source);
    if (src !== "/") mo.selector = src;
    else if (m.uid !== undefined || m.gid !== undefined || m.mode !== undefined) {
      // The mount's root gets its owner and mode from a directory made for it.
      mo.source = (mo.source ?? State.scratch()).file(FileAction.mkdir("/cache", m.mode ?? 0o755, { owner: { user: { id: m.uid ?? 0 }, group: { id: m.gid ?? 0 } } }), {
        customName: "[internal] settings cache mount permissions",
      });
      mo.selector = "/cache";
    }
    out.push(mo);
    if (m.from === "") d.ctxPaths.add(path.posix.join("/", m.source));
  }
  return out;
}

function fileOpt(m: Mount, defaultMode: number): { uid?: number; gid?: number; mode?: number } {
  if (m.uid === undefined && m.gid === undefined && m.mode === undefined) return {};
  return { uid: m.uid ?? 0, gid: m.gid ?? 0, mode: m.mode ?? defaultMode };
}

/** A secret file; undefined for a secret given only as an environment variable (env= without target). */
function secretMount(m: Mount): MountOpt | undefined {
  const id = secretId(m);
  const target = m.target !== "" ? m.target : m.env === undefined ? `/run/secrets/${path.posix.basename(id)}` : "";
  if (target === "") return undefined;
  return { dest: target, type: "secret", secret: { id, optional: !m.required, ...fileOpt(m, 0o400) } };
}

function sshMount(m: Mount): MountOpt {
  if (m.source !== "") throw new KilnError("KILN_DOCKERFILE", "ssh does not support source");
  return { dest: m.target, type: "ssh", ssh: { id: m.cacheId, optional: !m.required, ...fileOpt(m, 0o600) } };
}
