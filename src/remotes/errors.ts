// Registry failures as KilnErrors that say which registry, which repository and what it answered.
import { STATUS_CODES } from "node:http";
import { KilnError } from "../util/index.js";

/** One thing a registry (or the network on the way to it) said. */
export interface RegistryAttempt {
  host: string;
  mirror: boolean;
  method: string;
  url: string;
  status?: number;
  /** The registry's error body, condensed (`MANIFEST_UNKNOWN: manifest unknown`), or the network error. */
  detail: string;
}

export class RegistryError extends KilnError {
  readonly status: number | undefined;
  readonly host: string;
  readonly repository: string;
  readonly attempts: RegistryAttempt[];

  constructor(what: string, repository: string, attempts: RegistryAttempt[], opts: { summary?: string; hint?: string; cause?: unknown } = {}) {
    const main = attempts.find((a) => a.status !== undefined && a.status !== 404) ?? attempts.find((a) => a.status !== undefined) ?? attempts[0];
    const summary = opts.summary ?? summarize(attempts);
    super("KILN_REGISTRY", `${what}: ${summary}: ${attempts.map(describeAttempt).join("; ")}`, { cause: opts.cause, hint: opts.hint ?? hintFor(attempts) });
    this.name = "RegistryError";
    this.status = main?.status;
    this.host = main?.host ?? "";
    this.repository = repository;
    this.attempts = attempts;
  }

  /** True when every registry that answered said 404. */
  get notFound(): boolean {
    return allAnswered404(this.attempts);
  }
}

function allAnswered404(attempts: RegistryAttempt[]): boolean {
  const answered = attempts.filter((a) => a.status !== undefined);
  return answered.length > 0 && answered.every((a) => a.status === 404);
}

function summarize(attempts: RegistryAttempt[]): string {
  // A mirror's 404 next to an unreachable upstream still means "not found" to the user.
  if (allAnswered404(attempts)) return "not found";
  if (attempts.some((a) => a.status === 401 || a.status === 403)) return "pull access denied, repository does not exist or may require authorization";
  if (attempts.every((a) => a.status === undefined)) return "failed to connect";
  return "unexpected registry response";
}

function hintFor(attempts: RegistryAttempt[]): string | undefined {
  if (attempts.some((a) => a.status === 401 || a.status === 403)) return "check the credentials in $DOCKER_CONFIG/config.json (docker login)";
  if (attempts.some((a) => /certificate|self[- ]signed|SSL|TLS/i.test(a.detail))) {
    return 'for a registry with its own CA set ca = ["file.pem"] under [registry."HOST"] in buildkitd.toml, or insecure = true to skip verification';
  }
  if (attempts.some((a) => /wrong version number|EPROTO|packet length/i.test(a.detail))) return 'a plain-HTTP registry needs http = true under [registry."HOST"] in buildkitd.toml';
  // localhost registries default to plain http, as in BuildKit.
  if (attempts.some((a) => /HTTP request to an HTTPS server/i.test(a.detail))) return 'this registry speaks https: set http = false under [registry."HOST"] in buildkitd.toml';
  return undefined;
}

export function describeAttempt(a: RegistryAttempt): string {
  const who = `${a.host}${a.mirror ? " (mirror)" : ""}`;
  const path = safePath(a.url);
  if (a.status === undefined) return `${who}: ${a.method} ${path}: ${a.detail}`;
  const status = `${a.status} ${STATUS_CODES[a.status] ?? ""}`.trim();
  return `${who} answered ${status} to ${a.method} ${path}${a.detail ? ` (${a.detail})` : ""}`;
}

function safePath(url: string): string {
  try {
    const u = new URL(url);
    // Upload URLs carry opaque state tokens; they only add noise to a message.
    return u.pathname;
  } catch {
    return url;
  }
}

interface DistributionErrorBody {
  errors?: { code?: string; message?: string; detail?: unknown }[];
  details?: string;
  message?: string;
}

/** Condenses a registry's error body to one line. */
export function condenseErrorBody(body: string): string {
  const text = body.trim();
  if (text === "") return "";
  try {
    const parsed = JSON.parse(text) as DistributionErrorBody;
    if (Array.isArray(parsed.errors) && parsed.errors.length > 0) {
      return parsed.errors.map((e) => [e.code, e.message].filter(Boolean).join(": ")).join(", ");
    }
    if (typeof parsed.message === "string") return parsed.message;
    if (typeof parsed.details === "string") return parsed.details;
  } catch {
    // not JSON: fall through to the raw text
  }
  const oneLine = text.replace(/\s+/g, " ");
  return oneLine.length > 300 ? `${oneLine.slice(0, 300)}…` : oneLine;
}
