// Image references with Docker's normalisation (distribution/reference's grammar):
// `busybox` → docker.io/library/busybox:latest, `host:5000/a/b@sha256:…`, familiar names back.
import { KilnError } from "../util/index.js";
import type { Reference } from "./types.js";

export const defaultDomain = "docker.io";
const legacyDefaultDomain = "index.docker.io";
const officialRepoPrefix = "library/";
const nameTotalLengthMax = 255;

// The grammar, piece by piece as distribution/reference spells it out.
const alphaNumeric = "[a-z0-9]+";
const separator = "(?:[._]|__|[-]+)";
const pathComponent = `${alphaNumeric}(?:${separator}${alphaNumeric})*`;
const domainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const ipv6 = "\\[(?:[a-fA-F0-9:]+)\\]";
const domainName = `(?:${domainComponent}(?:\\.${domainComponent})*|${ipv6})(?::[0-9]+)?`;
const tagPattern = "[\\w][\\w.-]{0,127}";
const digestPattern = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
const namePattern = `(?:${domainName}/)?${pathComponent}(?:/${pathComponent})*`;
const referenceRe = new RegExp(`^(${namePattern})(?::(${tagPattern}))?(?:@(${digestPattern}))?$`);
const anchoredIdentifier = /^[a-f0-9]{64}$/;
const digestHexLengths: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

function invalid(input: string, why: string): KilnError {
  return new KilnError("KILN_INVALID_REFERENCE", `invalid reference format ${JSON.stringify(input)}: ${why}`);
}

function splitDockerDomain(name: string): { domain: string; remainder: string } {
  const i = name.indexOf("/");
  let domain: string;
  let remainder: string;
  const first = i === -1 ? "" : name.slice(0, i);
  // Only a first component that looks like a host (has . or :, is localhost, or has capitals) is one.
  if (i === -1 || (!/[.:]/.test(first) && first !== "localhost" && first.toLowerCase() === first)) {
    domain = defaultDomain;
    remainder = name;
  } else {
    domain = first;
    remainder = name.slice(i + 1);
  }
  if (domain === legacyDefaultDomain) domain = defaultDomain;
  if (domain === defaultDomain && !remainder.includes("/")) remainder = officialRepoPrefix + remainder;
  return { domain, remainder };
}

/**
 * Parses and normalises a reference as `docker pull` does. A reference with neither tag nor
 * digest gets `latest` unless `defaultTag` is false.
 */
export function parseReference(input: string, opts: { defaultTag?: boolean } = {}): Reference {
  const s = input.trim();
  if (s === "") throw invalid(input, "repository name must have at least one component");
  if (anchoredIdentifier.test(s)) throw invalid(input, "cannot specify 64-byte hexadecimal strings as a repository name");
  const { domain, remainder } = splitDockerDomain(s);
  const colon = remainder.indexOf(":");
  const at = remainder.indexOf("@");
  const end = [colon, at].filter((n) => n >= 0).reduce((a, b) => Math.min(a, b), remainder.length);
  const repo = remainder.slice(0, end);
  if (repo.toLowerCase() !== repo) throw invalid(input, `repository name (${repo}) must be lowercase`);
  const m = referenceRe.exec(`${domain}/${remainder}`);
  if (!m) {
    if (/@/.test(remainder) && !/@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/.test(remainder)) throw invalid(input, "invalid digest format");
    return throwShape(input, remainder);
  }
  const name = m[1]!;
  if (name.length > nameTotalLengthMax) throw invalid(input, `repository name must not be more than ${nameTotalLengthMax} characters`);
  const ref: Reference = { domain, path: name.slice(domain.length + 1) };
  if (m[2] !== undefined) ref.tag = m[2];
  if (m[3] !== undefined) {
    const [alg, hex] = m[3].split(":") as [string, string];
    const want = digestHexLengths[alg];
    if (want === undefined) throw invalid(input, `unsupported digest algorithm ${alg}`);
    if (hex.length !== want || /[A-F]/.test(hex)) throw invalid(input, "invalid digest format");
    ref.digest = m[3];
  }
  if (ref.tag === undefined && ref.digest === undefined && opts.defaultTag !== false) ref.tag = "latest";
  return ref;
}

function throwShape(input: string, remainder: string): never {
  const colon = remainder.lastIndexOf(":");
  if (colon > remainder.lastIndexOf("/") && colon >= 0 && !remainder.includes("@")) {
    const tag = remainder.slice(colon + 1);
    if (!new RegExp(`^${tagPattern}$`).test(tag)) throw invalid(input, `invalid tag ${JSON.stringify(tag)}`);
  }
  throw invalid(input, "repository name components must be lowercase letters, digits and separators (. _ __ -)");
}

/** `domain/path[:tag][@digest]`. */
export function formatReference(ref: Reference): string {
  return `${repositoryName(ref)}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest !== undefined ? `@${ref.digest}` : ""}`;
}

/** `domain/path`, without tag or digest. */
export function repositoryName(ref: Reference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The short name Docker shows: `busybox`, `user/app`, `ghcr.io/o/app`. */
export function familiarName(ref: Reference): string {
  if (ref.domain !== defaultDomain) return repositoryName(ref);
  return ref.path.startsWith(officialRepoPrefix) && !ref.path.slice(officialRepoPrefix.length).includes("/") ? ref.path.slice(officialRepoPrefix.length) : ref.path;
}

/** The familiar name with tag and digest: `busybox:latest`. */
export function familiarString(ref: Reference): string {
  return `${familiarName(ref)}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest !== undefined ? `@${ref.digest}` : ""}`;
}

/** The same reference pinned to `digest` (the tag is kept for display, as BuildKit does). */
export function withDigest(ref: Reference, digest: string): Reference {
  return { ...ref, digest };
}
