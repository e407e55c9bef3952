// The image config a stage builds up (Docker's field names) and the history entries BuildKit
// writes for each instruction, with Go's formatting of the values it prints.
import type { ContainerConfig, HistoryEntry, ImageConfig } from "../../../api/oci.js";
import type { Platform } from "../../../util/index.js";

export type StageImage = Partial<ImageConfig> & { config: ContainerConfig };

export const defaultPathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** Windows images search System32 first, as BuildKit's system.DefaultPathEnv says for os=windows. */
const defaultPathEnvWindows = "PATH=c:\\Windows\\System32;c:\\Windows";

/** The PATH a stage gets when its image sets none, by the stage's OS. */
export function defaultPathFor(os: string | undefined): string {
  return os === "windows" ? defaultPathEnvWindows : defaultPathEnv;
}
const historyComment = "buildkit.dockerfile.v0";

export function emptyImage(p: Platform): StageImage {
  const img: StageImage = { architecture: p.architecture, os: p.os, config: { Env: [defaultPathFor(p.os)], WorkingDir: "/" }, rootfs: { type: "layers", diff_ids: [] } };
  if (p.variant) img.variant = p.variant;
  return img;
}

/** A registry image's config as a stage starts from it (no creation time, no rootfs). */
export function imageFromConfig(cfg: Partial<ImageConfig>): StageImage {
  return cloneImage({ ...cfg, config: cfg.config ?? {} } as StageImage);
}

export function cloneImage(img: StageImage): StageImage {
  const c = structuredClone(img);
  delete c.rootfs;
  delete (c as Record<string, unknown>).created;
  return c;
}

/** Sets `k=v` in an env list, in place of an existing entry of the same key. */
export function setEnv(cfg: ContainerConfig, k: string, v: string): void {
  const env = (cfg.Env ??= []);
  const i = env.findIndex((e) => envKey(e) === k);
  if (i >= 0) env[i] = `${k}=${v}`;
  else env.push(`${k}=${v}`);
}

export function envKey(e: string): string {
  const i = e.indexOf("=");
  return i < 0 ? e : e.slice(0, i);
}

export function splitEnv(e: string): [string, string] {
  const i = e.indexOf("=");
  return i < 0 ? [e, ""] : [e.slice(0, i), e.slice(i + 1)];
}

/** BuildKit's commitToHistory: `# buildkit` marks entries whose layer an LLB state made. */
export function commitToHistory(img: StageImage, createdBy: string, withLayer: boolean, fromState: boolean): void {
  const h: HistoryEntry = { created_by: fromState ? `${createdBy} # buildkit` : createdBy, comment: historyComment };
  if (!withLayer) h.empty_layer = true;
  (img.history ??= []).push(h);
}

/** Go's `%q` of a string slice: ["a" "b"]. */
export function goQuoteList(xs: readonly string[] | null | undefined): string {
  return `[${(xs ?? []).map((x) => JSON.stringify(x)).join(" ")}]`;
}

/** Go's time.Duration String() for a count of nanoseconds: "5s", "1m30s", "1.5s", "0s". */
export function goDuration(ns: number): string {
  if (ns === 0) return "0s";
  const neg = ns < 0;
  let u = Math.abs(ns);
  let out: string;
  if (u < 1e9) {
    out = u < 1e3 ? `${u}ns` : u < 1e6 ? `${trimZeros(u / 1e3)}µs` : `${trimZeros(u / 1e6)}ms`;
  } else {
    const h = Math.floor(u / 3600e9);
    u -= h * 3600e9;
    const m = Math.floor(u / 60e9);
    u -= m * 60e9;
    out = `${h > 0 ? `${h}h` : ""}${h > 0 || m > 0 ? `${m}m` : ""}${trimZeros(u / 1e9)}s`;
  }
  return neg ? `-${out}` : out;
}

function trimZeros(n: number): string {
  return n.toFixed(9).replace(/\.?0+$/, "");
}

/** Go's %q of an integer: a quoted character literal ('\x04', 'A'). */
export function goQuoteRune(n: number): string {
  const named: Record<number, string> = { 7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 39: "\\'", 92: "\\\\" };
  if (named[n]) return `'${named[n]}'`;
  if (n >= 32 && n < 127) return `'${String.fromCharCode(n)}'`;
  if (n < 128) return `'\\x${n.toString(16).padStart(2, "0")}'`;
  return `'${String.fromCodePoint(n)}'`;
}

// moby/sys/signal's Linux table: STOPSIGNAL accepts these names (with or without SIG) or a number.
const signalNames = new Set([
  "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE", "POLL", "PROF", "PWR",
  "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH",
  "XCPU", "XFSZ", "RTMIN", "RTMAX",
  ...Array.from({ length: 15 }, (_, i) => `RTMIN+${i + 1}`),
  ...Array.from({ length: 14 }, (_, i) => `RTMAX-${14 - i}`),
]);

/** signal.ParseSignal: a positive number, or a known name; the error text is moby's. */
export function validSignal(s: string): boolean {
  if (/^\d+$/.test(s)) return Number(s) !== 0;
  const name = s.toUpperCase().replace(/^SIG/, "");
  return signalNames.has(name);
}

// Field order of BuildKit's image structs (image-spec's Image and ImageConfig, with Docker's
// additions), as Go's encoding/json writes them. Keys the structs lack are dropped, as they are
// when BuildKit reads a base image's config into those structs.
const imageFields = ["created", "author", "architecture", "variant", "os", "os.version", "os.features", "config", "rootfs", "history"];
const configFields = ["User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal", "Healthcheck", "ArgsEscaped", "OnBuild", "StopTimeout", "Shell"];
const healthFields = ["Test", "Interval", "Timeout", "StartPeriod", "Retries"];
// Go marshals maps with their keys sorted.
const mapFields = new Set(["ExposedPorts", "Volumes", "Labels"]);

function pick(obj: Record<string, unknown>, fields: readonly string[], each?: (k: string, v: unknown) => unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of fields) if (k in obj && obj[k] !== undefined) out[k] = each ? each(k, obj[k]) : obj[k];
  return out;
}

function sortedMap(v: unknown): unknown {
  if (v === null || typeof v !== "object") return v;
  const m = v as Record<string, unknown>;
  return Object.fromEntries(Object.keys(m).sort().map((k) => [k, m[k]]));
}

/** The stage's image as BuildKit's frontend marshals it (`containerimage.config`). */
export function marshalImage(img: Partial<ImageConfig>): string {
  const out = pick(img as Record<string, unknown>, imageFields, (k, v) =>
    k === "config"
      ? pick(v as Record<string, unknown>, configFields, (ck, cv) => (mapFields.has(ck) ? sortedMap(cv) : ck === "Healthcheck" && cv !== null && typeof cv === "object" ? pick(cv as Record<string, unknown>, healthFields) : cv))
      : v,
  );
  return JSON.stringify(out);
}
