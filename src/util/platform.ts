// OCI platforms: parsing, normalisation and matching, as containerd's platforms package does.
import os from "node:os";

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const archAliases: Record<string, string> = {
  x86_64: "amd64",
  "x86-64": "amd64",
  aarch64: "arm64",
  armhf: "arm",
  armel: "arm",
  i386: "386",
};

export function normalizePlatform(p: Platform): Platform {
  const architecture = archAliases[p.architecture] ?? p.architecture;
  let variant = p.variant || undefined;
  if (architecture === "arm64" && (variant === "v8" || variant === "8")) variant = undefined;
  if (architecture === "arm" && variant === undefined) variant = "v7";
  if (architecture === "amd64" && variant === "v1") variant = undefined;
  return variant ? { os: p.os, architecture, variant } : { os: p.os, architecture };
}

export function hostPlatform(): Platform {
  const arch = archAliases[os.arch()] ?? (os.arch() === "x64" ? "amd64" : os.arch());
  return normalizePlatform({ os: "linux", architecture: arch === "ia32" ? "386" : arch });
}

/** Parses `linux/arm64/v8`, `amd64`, `local`. */
export function parsePlatform(spec: string): Platform {
  const s = spec.trim().toLowerCase();
  if (s === "local" || s === "") return hostPlatform();
  const parts = s.split("/");
  if (parts.length === 1) return normalizePlatform({ os: "linux", architecture: parts[0]! });
  if (parts.length > 3) throw new Error(`invalid platform ${JSON.stringify(spec)}`);
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
