// Docker image reference normalisation as distribution/reference does it for llb.Image:
// `busybox` → `docker.io/library/busybox`, `:latest` added to bare names, digests validated.

export interface NormalizedRef {
  /** Full repository name including the domain, e.g. `docker.io/library/busybox`. */
  name: string;
  tag?: string;
  digest?: string;
}

const domainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const domain = `${domainComponent}(?:\\.${domainComponent})*(?::[0-9]+)?`;
const nameComponent = "[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*";
const tagPattern = "[\\w][\\w.-]{0,127}";
const digestPattern = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}";
const referenceRe = new RegExp(`^((?:${domain}/)?${nameComponent}(?:/${nameComponent})*)(?::(${tagPattern}))?(?:@(${digestPattern}))?$`);
const identifierRe = /^[a-f0-9]{64}$/;
const knownDigestHexLength: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };
const maxNameLength = 255;

export class ReferenceError extends Error {
  constructor(message: string) {
    super(`invalid reference format: ${message}`);
    this.name = "ReferenceError";
  }
}

function splitDomain(s: string): [string, string] {
  const i = s.indexOf("/");
  let dom: string;
  let rest: string;
  if (i === -1 || (!/[.:]/.test(s.slice(0, i)) && s.slice(0, i) !== "localhost")) {
    dom = "docker.io";
    rest = s;
  } else {
    dom = s.slice(0, i);
    rest = s.slice(i + 1);
  }
  if (dom === "index.docker.io") dom = "docker.io";
  if (dom === "docker.io" && !rest.includes("/")) rest = "library/" + rest;
  return [dom, rest];
}

/** ParseNormalizedNamed: fills in the default domain and `library/`, validates; adds no tag. */
export function parseNormalizedNamed(ref: string): NormalizedRef {
  if (identifierRe.test(ref)) throw new ReferenceError(`invalid repository name (${ref}), cannot specify 64-byte hexadecimal strings`);
  const [dom, rest] = splitDomain(ref);
  const colon = rest.indexOf(":");
  const remote = colon >= 0 ? rest.slice(0, colon) : rest;
  if (remote.toLowerCase() !== remote) throw new ReferenceError("repository name must be lowercase");
  const m = referenceRe.exec(`${dom}/${rest}`);
  if (!m) throw new ReferenceError(ref === "" ? "empty reference" : `invalid reference ${JSON.stringify(ref)}`);
  const name = m[1]!;
  if (name.length > maxNameLength) throw new ReferenceError(`repository name must not be more than ${maxNameLength} characters`);
  const out: NormalizedRef = { name };
  if (m[2] !== undefined) out.tag = m[2];
  if (m[3] !== undefined) out.digest = validateDigest(m[3]);
  return out;
}

function validateDigest(d: string): string {
  const i = d.indexOf(":");
  const alg = d.slice(0, i);
  const hex = d.slice(i + 1);
  const len = knownDigestHexLength[alg];
  if (len === undefined) throw new ReferenceError(`unsupported digest algorithm ${alg}`);
  if (hex.length !== len || !/^[a-f0-9]+$/.test(hex)) throw new ReferenceError(`invalid checksum digest format ${JSON.stringify(d)}`);
  return d;
}

/** TagNameOnly: a reference with neither tag nor digest gets `:latest`. */
export function tagNameOnly(r: NormalizedRef): NormalizedRef {
  return r.tag === undefined && r.digest === undefined ? { ...r, tag: "latest" } : r;
}

/** WithDigest: keeps the tag, replaces any digest. */
export function withDigest(r: NormalizedRef, digest: string): NormalizedRef {
  return { ...r, digest: validateDigest(digest) };
}

export function formatRef(r: NormalizedRef): string {
  return r.name + (r.tag !== undefined ? `:${r.tag}` : "") + (r.digest !== undefined ? `@${r.digest}` : "");
}

/** The identifier path llb.Image uses: normalised, `:latest` only when nothing pins it. */
export function normalizeImageRef(ref: string): string {
  return formatRef(tagNameOnly(parseNormalizedNamed(ref)));
}
