// Mounting and unmounting MountSpecs by spawning util-linux `mount`/`umount` (Node has no binding),
// with overlay lowerdir lists made relative when they would not fit in one page of options.
import { spawn } from "node:child_process";
import { access } from "node:fs/promises";
import path from "node:path";
import { CanceledError, KilnError, throwIfAborted } from "../util/index.js";
import type { MountSpec } from "./types.js";

/** The kernel copies mount data into one page; stay below it with some margin. */
const MOUNT_DATA_LIMIT = 4096 - 1;

interface RunResult {
  code: number | null;
  stderr: string;
}

function run(cmd: string, args: string[], cwd?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stderr: stderr.trim() }));
  });
}

let overlayParams: Promise<Set<string>> | undefined;

/** Overlay module parameters present on this kernel (each one is also a mount option it accepts). */
export function overlayFeatures(): Promise<Set<string>> {
  overlayParams ??= (async () => {
    const out = new Set<string>();
    for (const p of ["index", "redirect_dir", "metacopy"]) {
      try {
        await access(`/sys/module/overlay/parameters/${p}`);
        out.add(p);
      } catch {
        // not built into this kernel, or overlay not loaded yet: leave the option out
      }
    }
    return out;
  })();
  return overlayParams;
}

/**
 * Options that keep upper dirs self-contained diffs: no inode index, no directory redirects, no
 * metadata-only copy-up (each would leave changes a layer diff cannot express).
 */
export async function overlayBaseOptions(): Promise<string[]> {
  const f = await overlayFeatures();
  const opts: string[] = [];
  if (f.has("index")) opts.push("index=off");
  if (f.has("redirect_dir")) opts.push("redirect_dir=off");
  if (f.has("metacopy")) opts.push("metacopy=off");
  return opts;
}

function commonDir(dirs: string[]): string {
  let common = path.dirname(dirs[0]!);
  for (const d of dirs) {
    while (common !== "/" && !(d === common || d.startsWith(common + "/"))) common = path.dirname(common);
  }
  return common;
}

/**
 * When an overlay's options exceed a page, rewrites lowerdir/upperdir/workdir relative to their
 * common directory and returns it as the cwd for `mount` (containerd does the same).
 */
export function compactOverlayOptions(options: string[]): { cwd: string | undefined; options: string[] } {
  if (options.join(",").length <= MOUNT_DATA_LIMIT) return { cwd: undefined, options };
  const dirs: string[] = [];
  for (const o of options) {
    if (o.startsWith("lowerdir=")) dirs.push(...o.slice("lowerdir=".length).split(":"));
    else if (o.startsWith("upperdir=") || o.startsWith("workdir=")) dirs.push(o.slice(o.indexOf("=") + 1));
  }
  if (dirs.length === 0 || dirs.some((d) => !path.isAbsolute(d))) return { cwd: undefined, options };
  const cwd = commonDir(dirs);
  if (cwd === "/") return { cwd: undefined, options };
  const rel = (d: string) => d.slice(cwd.length + 1);
  const out = options.map((o) => {
    if (o.startsWith("lowerdir=")) return "lowerdir=" + o.slice("lowerdir=".length).split(":").map(rel).join(":");
    if (o.startsWith("upperdir=") || o.startsWith("workdir=")) return o.slice(0, o.indexOf("=") + 1) + rel(o.slice(o.indexOf("=") + 1));
    return o;
  });
  return { cwd, options: out };
}

/** Mounts one spec at `target`. */
export async function mountSpec(spec: MountSpec, target: string): Promise<void> {
  let args: string[];
  let cwd: string | undefined;
  if (spec.type === "bind") {
    const opts = spec.options.some((o) => o === "bind" || o === "rbind") ? spec.options : ["rbind", ...spec.options];
    args = ["-o", opts.join(","), spec.source, target];
  } else {
    const compact = spec.type === "overlay" ? compactOverlayOptions(spec.options) : { cwd: undefined, options: spec.options };
    cwd = compact.cwd;
    const data = compact.options.join(",");
    if (data.length > MOUNT_DATA_LIMIT) {
      throw new KilnError("KILN_MOUNT_OPTIONS_TOO_LONG", `mount options for ${target} are ${data.length} bytes, over the kernel's page limit`, {
        hint: "the snapshot has too many layers to stack in one overlay mount",
      });
    }
    args = ["-t", spec.type, ...(data ? ["-o", data] : []), spec.source, target];
  }
  const r = await run("mount", args, cwd);
  if (r.code !== 0) throw new KilnError("KILN_MOUNT_FAILED", `mount ${spec.type} at ${target} failed: ${r.stderr || `exit ${r.code}`}`);
}

/**
 * Mounts all specs at `target`, in order (later ones stack on earlier ones). On failure, or if
 * the signal fires meanwhile, what was mounted is unmounted again. A mount is never interrupted
 * half-way, so the signal is only checked between mounts.
 */
export async function mountAll(signal: AbortSignal, specs: readonly MountSpec[], target: string): Promise<void> {
  throwIfAborted(signal);
  let done = 0;
  try {
    for (const s of specs) {
      await mountSpec(s, target);
      done++;
      if (signal.aborted) throw new CanceledError(signal.reason);
    }
  } catch (err) {
    for (; done > 0; done--) await unmount(target).catch(() => {});
    throw err;
  }
}

/** Unmounts `target`; when it stays busy, detaches it lazily so the caller never hangs. */
export async function unmount(target: string): Promise<void> {
  let last = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const r = await run("umount", [target]);
    if (r.code === 0) return;
    last = r.stderr;
    if (/not mounted|no mount point/i.test(r.stderr)) return;
    if (!/busy/i.test(r.stderr)) break;
    await new Promise((res) => setTimeout(res, 50 * (attempt + 1)));
  }
  const lazy = await run("umount", ["-l", target]);
  if (lazy.code !== 0 && !/not mounted|no mount point/i.test(lazy.stderr)) {
    throw new KilnError("KILN_UNMOUNT_FAILED", `umount ${target} failed: ${lazy.stderr || last}`);
  }
}
