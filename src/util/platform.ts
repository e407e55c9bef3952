// OCI platforms: parsing, normalisation and matching, as containerd's platforms package does.
import os from "node:os";

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Spellings of architectures that name another one, with the variant they imply (if any). */
const archAliases: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: "amd64" },
  "x86-64": { architecture: "amd64" },
  aarch64: { architecture: "arm64" },
  armhf: { architecture: "arm", variant: "v7" },
  armel: { architecture: "arm", variant: "v6" },
  i386: { architecture: "386" },
};

/** GOOS values: a lone word that is one of these names an OS, anything else an architecture. */
const knownOSes = new Set(["aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos"]);
/** GOARCH values a lone word may name. */
const knownArchs = new Set(["386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le", "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm"]);

/**
 * The canonical spelling containerd (and so BuildKit) compares and names platforms by:
 * `arm64/v8` is `arm64`, `arm` is `arm/v7`, `x86_64` is `amd64`, `armel` is `arm/v6`.
 */
export function normalizePlatform(p: Platform): Platform {
  const osName = p.os.toLowerCase() === "macos" ? "darwin" : p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = (p.variant ?? "").toLowerCase();
  const alias = archAliases[architecture];
  if (alias) {
    architecture = alias.architecture;
    // armhf/armel fix the variant; the x86 and arm64 spellings keep the one given.
    if (alias.variant !== undefined || architecture === "386") variant = alias.variant ?? "";
  }
  if (architecture === "amd64" && variant === "v1") variant = "";
  if (architecture === "arm64" && (variant === "8" || variant === "v8")) variant = "";
  if (architecture === "arm") {
    if (variant === "" || variant === "7") variant = "v7";
    else if (variant === "5" || variant === "6" || variant === "8") variant = `v${variant}`;
  }
  return variant ? { os: osName, architecture, variant } : { os: osName, architecture };
}

export function hostPlatform(): Platform {
  const arch = { x64: "amd64", ia32: "386" }[os.arch() as string] ?? os.arch();
  return normalizePlatform({ os: "linux", architecture: arch });
}

const componentRe = /^[A-Za-z0-9_-]+$/;

/**
 * Parses what users type — `linux/arm64/v8`, `linux/arm/v7`, `amd64`, `linux`, `local` — into a
 * normalised platform. `local` (and an empty string) is this machine's platform, as in buildx.
 */
export function parsePlatform(spec: string): Platform {
  const s = spec.trim();
  if (s === "" || s.toLowerCase() === "local") return hostPlatform();
  if (s.includes("*")) throw new Error(`${JSON.stringify(s)}: wildcards not yet supported`);
  const parts = s.split("/");
  for (const part of parts) {
    if (!componentRe.test(part)) throw new Error(`${JSON.stringify(part)} is an invalid component of ${JSON.stringify(s)}: platform specifier component must match "${componentRe.source}"`);
  }
  if (parts.length === 1) {
    const word = parts[0]!.toLowerCase();
    const host = hostPlatform();
    if (knownOSes.has(word === "macos" ? "darwin" : word)) return normalizePlatform({ ...host, os: word });
    const p = normalizePlatform({ os: host.os, architecture: word });
    if (!knownArchs.has(p.architecture)) throw new Error(`${JSON.stringify(s)}: unknown operating system or architecture`);
    return p;
  }
  if (parts.length > 3) throw new Error(`${JSON.stringify(s)}: cannot parse platform specifier`);
  return normalizePlatform({ os: parts[0]!, architecture: parts[1]!, variant: parts[2] });
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

export function platformEquals(a: Platform, b: Platform): boolean {
  const x = normalizePlatform(a);
  const y = normalizePlatform(b);
  return x.os === y.os && x.architecture === y.architecture && (x.variant ?? "") === (y.variant ?? "");
}

/** The folder name a platform's files go to when an export is split by platform: `linux_arm_v7`. */
export function platformDirName(p: Platform): string {
  return formatPlatform(normalizePlatform(p)).replaceAll("/", "_");
}

/**
 * What a machine of platform `p` runs, best first (containerd's platform vector, which BuildKit
 * uses to pick an image from an index): amd64/v3 also runs v2, v1 and 386; arm/v7 runs v6 and
 * v5; arm64 runs arm/v8 down to v5.
 */
export function platformVector(p: Platform): Platform[] {
  const want = normalizePlatform(p);
  const out: Platform[] = [want];
  const version = (v: string | undefined, dflt: number) => (v === undefined || v === "" ? dflt : Number(/^v(\d+)$/.exec(v)?.[1] ?? NaN));
  if (want.architecture === "amd64") {
    for (let n = version(want.variant, 1) - 1; n >= 1; n--) out.push(n === 1 ? { os: want.os, architecture: "amd64" } : { os: want.os, architecture: "amd64", variant: `v${n}` });
    out.push({ os: want.os, architecture: "386" });
  } else if (want.architecture === "arm") {
    for (let n = version(want.variant, 7) - 1; n >= 5; n--) out.push({ os: want.os, architecture: "arm", variant: `v${n}` });
  } else if (want.architecture === "arm64") {
    out.push(...platformVector({ os: want.os, architecture: "arm", variant: want.variant || "v8" }));
  }
  return out;
}
