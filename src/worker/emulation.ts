// Which platforms this machine can run: its own, the ones its CPU runs natively (386 on amd64),
// and those with a QEMU user-mode emulator registered in binfmt_misc. Registration uses the
// fix-binary flag (F) so the emulator is opened once by the kernel and works inside containers,
// whose root filesystems don't have it.
import { access, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { formatPlatform, hostPlatform, normalizePlatform, type Platform } from "../util/index.js";

const binfmtDir = "/proc/sys/fs/binfmt_misc";
const defaultConfDir = "/usr/lib/binfmt.d";

/** QEMU's names for architectures, and the OCI platforms each one runs. */
const qemuArchs: Record<string, Platform[]> = {
  aarch64: [{ os: "linux", architecture: "arm64" }],
  arm: [
    { os: "linux", architecture: "arm", variant: "v7" },
    { os: "linux", architecture: "arm", variant: "v6" },
  ],
  riscv64: [{ os: "linux", architecture: "riscv64" }],
  ppc64le: [{ os: "linux", architecture: "ppc64le" }],
  s390x: [{ os: "linux", architecture: "s390x" }],
  mips64el: [{ os: "linux", architecture: "mips64le" }],
  mips64: [{ os: "linux", architecture: "mips64" }],
  loongarch64: [{ os: "linux", architecture: "loong64" }],
  x86_64: [{ os: "linux", architecture: "amd64" }],
  i386: [{ os: "linux", architecture: "386" }],
};

/** CPU flags (as /proc/cpuinfo names them) each x86-64 microarchitecture level needs beyond the last. */
const amd64Levels: [string, string[]][] = [
  ["v2", ["cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"]],
  ["v3", ["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"]],
  ["v4", ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]],
];

/** The amd64 variants (v2…v4) this CPU runs, as BuildKit's worker lists them after linux/amd64. */
export function amd64Variants(cpuinfo: string): string[] {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? "").trim().split(/\s+/));
  const out: string[] = [];
  for (const [level, need] of amd64Levels) {
    if (!need.every((f) => flags.has(f))) break;
    out.push(level);
  }
  return out;
}

/** The platforms the CPU runs without help. */
async function nativePlatforms(): Promise<Platform[]> {
  const host = hostPlatform();
  if (host.architecture === "amd64") {
    const cpuinfo = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
    return [host, ...amd64Variants(cpuinfo).map((variant) => ({ os: "linux", architecture: "amd64", variant })), { os: "linux", architecture: "386" }];
  }
  if (host.architecture === "arm64") return [host, { os: "linux", architecture: "arm", variant: "v7" }, { os: "linux", architecture: "arm", variant: "v6" }];
  return [host];
}

/** BuildKit's order for a worker's platforms after the native one(s). */
const reportOrder = ["amd64", "arm64", "riscv64", "ppc64", "ppc64le", "s390x", "386", "mips64le", "mips64", "arm", "loong64"];

export interface Emulator {
  /** The binfmt_misc handler name, e.g. qemu-aarch64. */
  name: string;
  interpreter: string;
  platforms: Platform[];
  fixBinary: boolean;
}

/** The QEMU handlers registered and enabled in binfmt_misc (none if it isn't mounted). */
export async function registeredEmulators(): Promise<Emulator[]> {
  let names: string[];
  try {
    names = await readdir(binfmtDir);
  } catch {
    return [];
  }
  const out: Emulator[] = [];
  for (const name of names) {
    const arch = /^qemu-(.+)$/.exec(name)?.[1];
    const platforms = arch ? qemuArchs[arch] : undefined;
    if (!platforms) continue;
    const text = await readFile(path.join(binfmtDir, name), "utf8").catch(() => "");
    if (!/^enabled$/m.test(text)) continue;
    const interpreter = /^interpreter (.*)$/m.exec(text)?.[1] ?? "";
    const flags = /^flags: ?(.*)$/m.exec(text)?.[1] ?? "";
    out.push({ name, interpreter, platforms, fixBinary: flags.includes("F") });
  }
  return out;
}

/**
 * Platforms a RUN can execute on here. An emulator registered without the fix-binary flag only
 * works while its interpreter exists at the same path inside the container, so it doesn't count.
 */
export async function supportedPlatforms(): Promise<Platform[]> {
  const [host, ...rest] = await nativePlatforms();
  for (const e of await registeredEmulators()) if (e.fixBinary) rest.push(...e.platforms);
  const rank = (p: Platform) => {
    const i = reportOrder.indexOf(p.architecture);
    return i < 0 ? reportOrder.length : i;
  };
  // Stable: amd64's levels stay in order, arm/v7 before arm/v6.
  rest.sort((a, b) => rank(a) - rank(b));
  const seen = new Set<string>();
  return [host!, ...rest].map(normalizePlatform).filter((p) => {
    const k = formatPlatform(p);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export function canRun(supported: Platform[], p: Platform): boolean {
  const want = formatPlatform(normalizePlatform(p));
  return supported.some((s) => formatPlatform(s) === want);
}

/** What to tell a user whose build needs a platform this machine can't run. */
export function emulationHint(p: Platform): string {
  return `to run ${formatPlatform(p)} steps, install QEMU user emulation: "apt-get install qemu-user-static" and then "kiln binfmt --install all" (as root)`;
}

async function ensureBinfmtMounted(): Promise<void> {
  try {
    await access(path.join(binfmtDir, "register"));
    return;
  } catch {
    // not mounted yet
  }
  await mkdir(binfmtDir, { recursive: true }).catch(() => {});
  await promisify(execFile)("mount", ["-t", "binfmt_misc", "binfmt_misc", binfmtDir]);
}

/**
 * Registers the QEMU handlers that Debian's qemu-user-static ships as binfmt.d files, with the
 * fix-binary flag, for the given QEMU architectures (or "all"). Returns the names registered now.
 */
export async function installEmulators(which: string[], confDir = defaultConfDir): Promise<string[]> {
  await ensureBinfmtMounted();
  const files = (await readdir(confDir).catch(() => [] as string[])).filter((f) => /^qemu-.*\.conf$/.test(f));
  if (files.length === 0) throw new Error(`no QEMU binfmt definitions in ${confDir}: install Debian's qemu-user-static first`);
  const host = hostPlatform();
  const registered = new Set((await registeredEmulators()).map((e) => e.name));
  const done: string[] = [];
  for (const f of files.sort()) {
    const line = (await readFile(path.join(confDir, f), "utf8")).split("\n").find((l) => l.startsWith(":"));
    if (!line) continue;
    const fields = line.split(":");
    const name = fields[1] ?? "";
    const arch = name.replace(/^qemu-/, "");
    const platforms = qemuArchs[arch];
    if (!platforms || registered.has(name)) continue;
    if (!which.includes("all") && !which.includes(arch) && !platforms.some((p) => which.includes(p.architecture))) continue;
    // The host's own architecture needs no emulator; registering one would slow native binaries.
    if (platforms.some((p) => p.architecture === host.architecture)) continue;
    const flags = new Set((fields[7] ?? "").split(""));
    flags.add("F");
    fields[7] = [...flags].join("");
    await writeFile(path.join(binfmtDir, "register"), fields.join(":"));
    done.push(name);
  }
  return done;
}

/** Removes registered QEMU handlers (all of them, or the named architectures). */
export async function uninstallEmulators(which: string[]): Promise<string[]> {
  const done: string[] = [];
  for (const e of await registeredEmulators()) {
    const arch = e.name.replace(/^qemu-/, "");
    if (!which.includes("all") && !which.includes(arch) && !e.platforms.some((p) => which.includes(p.architecture))) continue;
    await writeFile(path.join(binfmtDir, e.name), "-1");
    done.push(e.name);
  }
  return done;
}
