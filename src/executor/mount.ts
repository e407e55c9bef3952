// Host-side mounts for an exec (rootfs, over-long overlays) via util-linux mount/umount, and the
// removal of empty mount-point stubs runc leaves in the rootfs (BuildKit's MountStubsCleaner).
import { spawn } from "node:child_process";
import { lstat, readdir, rmdir, stat, unlink, utimes } from "node:fs/promises";
import path from "node:path";
import { KilnError, secureJoin } from "../util/index.js";
import type { MountSpec } from "../snapshot/types.js";

/** The kernel copies mount data into a single page. */
const MOUNT_DATA_LIMIT = 4096 - 1;

interface CommandResult {
  code: number | null;
  stderr: string;
}

export function runCommand(cmd: string, args: string[], cwd?: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => {
      if (stderr.length < 8192) stderr += d;
    });
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stderr: stderr.trim() }));
  });
}

/** Whether an overlay's options fit in one page as they are. */
export function overlayFits(options: readonly string[]): boolean {
  return options.join(",").length <= MOUNT_DATA_LIMIT;
}

/**
 * Rewrites overlay dirs relative to their common ancestor, which becomes mount's cwd: the kernel
 * resolves relative lowerdirs against it, and the options then fit in a page (containerd does this).
 */
function compactOverlay(options: readonly string[]): { cwd: string | undefined; options: string[] } {
  if (overlayFits(options)) return { cwd: undefined, options: [...options] };
  const dirs: string[] = [];
  for (const o of options) {
    if (o.startsWith("lowerdir=")) dirs.push(...o.slice("lowerdir=".length).split(":"));
    else if (o.startsWith("upperdir=") || o.startsWith("workdir=")) dirs.push(o.slice(o.indexOf("=") + 1));
  }
  if (dirs.length === 0 || dirs.some((d) => !path.isAbsolute(d))) return { cwd: undefined, options: [...options] };
  let common = path.dirname(dirs[0]!);
  for (const d of dirs) while (common !== "/" && !d.startsWith(common + "/")) common = path.dirname(common);
  if (common === "/") return { cwd: undefined, options: [...options] };
  const rel = (d: string) => d.slice(common.length + 1);
  return {
    cwd: common,
    options: options.map((o) => {
      if (o.startsWith("lowerdir=")) return "lowerdir=" + o.slice("lowerdir=".length).split(":").map(rel).join(":");
      if (o.startsWith("upperdir=") || o.startsWith("workdir=")) return o.slice(0, o.indexOf("=") + 1) + rel(o.slice(o.indexOf("=") + 1));
      return o;
    }),
  };
}

export function isBind(spec: MountSpec): boolean {
  return spec.type === "bind" || spec.options.includes("bind") || spec.options.includes("rbind");
}

/** Mounts one spec at `target` on the host. */
export async function mountOnHost(spec: MountSpec, target: string): Promise<void> {
  let args: string[];
  let cwd: string | undefined;
  if (isBind(spec)) {
    const opts = spec.options.some((o) => o === "bind" || o === "rbind") ? spec.options : ["rbind", ...spec.options];
    args = ["-o", opts.join(","), spec.source, target];
  } else {
    const c = spec.type === "overlay" ? compactOverlay(spec.options) : { cwd: undefined, options: spec.options };
    const data = c.options.join(",");
    if (data.length > MOUNT_DATA_LIMIT) {
      throw new KilnError("KILN_MOUNT", `mount options for ${target} are ${data.length} bytes, over the kernel's page limit`);
    }
    cwd = c.cwd;
    args = ["-t", spec.type, ...(data ? ["-o", data] : []), spec.source, target];
  }
  const r = await runCommand("mount", args, cwd);
  if (r.code !== 0) throw new KilnError("KILN_MOUNT", `mount ${spec.type} ${spec.source} at ${target} failed: ${r.stderr || `exit ${r.code}`}`);
}

const notMounted = /not mounted|no mount point|no such file/i;

/** Unmounts `target`; a mount that stays busy is detached lazily so cleanup never hangs. */
export async function unmountOnHost(target: string): Promise<void> {
  let last = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const r = await runCommand("umount", [target]);
    if (r.code === 0 || notMounted.test(r.stderr)) return;
    last = r.stderr;
    if (!/busy/i.test(r.stderr)) break;
    await new Promise((res) => setTimeout(res, 50 * (attempt + 1)));
  }
  const lazy = await runCommand("umount", ["-l", target]);
  if (lazy.code !== 0 && !notMounted.test(lazy.stderr)) {
    throw new KilnError("KILN_UNMOUNT", `umount ${target} failed: ${lazy.stderr || last}`);
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/**
 * Lists the paths (inside `rootfs`) that do not exist yet but will be created as mount points:
 * the mount destinations plus /etc/hosts and /etc/resolv.conf. With `recursive`, missing parent
 * directories are listed too, deepest first.
 */
export async function collectMountStubs(rootfs: string, destinations: readonly string[], recursive: boolean): Promise<string[]> {
  const out: string[] = [];
  for (const dest of ["/etc/resolv.conf", "/etc/hosts", ...destinations]) {
    const p = path.posix.normalize("/" + dest);
    if (p === "/") continue;
    let real = await secureJoin(rootfs, p);
    for (;;) {
      try {
        await lstat(real);
        break;
      } catch (err) {
        if (!isMissing(err)) break;
      }
      out.push(real);
      if (!recursive) break;
      const next = path.dirname(real);
      if (next === real || next === rootfs) break;
      real = next;
    }
  }
  return out;
}

/**
 * Removes the stubs that are still empty, restoring their parent's timestamps so an untouched
 * directory does not show up in the layer (moby/buildkit#3148). Best effort: errors are ignored.
 */
export async function removeMountStubs(rootfs: string, stubs: readonly string[]): Promise<void> {
  for (const stub of stubs) {
    try {
      const p = await secureJoin(rootfs, path.relative(rootfs, stub));
      const st = await lstat(p);
      if (st.isDirectory()) {
        if ((await readdir(p)).length !== 0) continue;
      } else if (st.size !== 0) {
        continue;
      }
      const parent = path.dirname(p);
      // A parent reached through a symlink swapped in by the container is not ours to touch.
      if ((await secureJoin(rootfs, path.relative(rootfs, parent))) !== parent) continue;
      const pst = await stat(parent, { bigint: true });
      if (st.isDirectory()) await rmdir(p);
      else await unlink(p);
      await utimes(parent, Number(pst.atimeNs) / 1e9, Number(pst.mtimeNs) / 1e9);
    } catch {
      // a stub that cannot be inspected or removed stays, as in BuildKit
    }
  }
}
