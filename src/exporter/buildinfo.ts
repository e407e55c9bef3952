// Build info (`moby.buildkit.buildinfo.v1`): the frontend, the attributes that shape the result and
// the sources the definition used, pinned (images by digest), as BuildKit collects them.
import type { BuildInfo, BuildSource } from "./types.js";

/** Build arguments that steer BuildKit itself rather than the build; never recorded. */
const controlArgs = ["BUILDKIT_CACHE_MOUNT_NS", "BUILDKIT_CONTEXT_KEEP_GIT_DIR", "BUILDKIT_BUILDINFO", "BUILDKIT_INLINE_BUILDINFO_ATTRS", "BUILDKIT_INLINE_CACHE", "BUILDKIT_MULTI_PLATFORM", "BUILDKIT_SANDBOX_HOSTNAME", "BUILDKIT_SYNTAX"];
const knownAttrs = new Set(["context", "filename", "source", "shm-size", "target", "ulimit"]);

/** BuildKit's filterAttrs: build args, labels, vcs and a few known attributes. */
export function filterBuildInfoAttrs(attrs: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) {
    if (controlArgs.some((c) => k.startsWith(`build-arg:${c}`))) continue;
    if (k.startsWith("build-arg:") || k.startsWith("label:") || k.startsWith("vcs:") || k.startsWith("context:") || knownAttrs.has(k)) out[k] = v;
  }
  return out;
}

/** A source op's identifier and attributes → a pinned build source, when it has a pin. */
export function buildSourceOf(identifier: string, attrs: Record<string, string> = {}): BuildSource | undefined {
  if (identifier.startsWith("docker-image://")) {
    const full = identifier.slice("docker-image://".length);
    const at = full.indexOf("@");
    if (at < 0) return undefined;
    // BuildKit records the name as the Dockerfile named it (tag, no digest), pinned by the digest;
    // a reference given by digest alone keeps it.
    const name = full.slice(0, at);
    const tagged = name.lastIndexOf(":") > name.lastIndexOf("/");
    return { type: "docker-image", ref: tagged ? name : full, pin: full.slice(at + 1) };
  }
  if (identifier.startsWith("git://")) {
    const pin = attrs["git.commit"] ?? attrs["git.fullurl"];
    return pin && /^[0-9a-f]{40}$/.test(pin) ? { type: "git", ref: identifier.slice("git://".length), pin } : undefined;
  }
  if (identifier.startsWith("https://") || identifier.startsWith("http://")) {
    const pin = attrs["http.checksum"];
    return pin ? { type: "http", ref: identifier, pin } : undefined;
  }
  return undefined;
}

export function makeBuildInfo(frontend: string | undefined, frontendAttrs: Record<string, string>, sources: { identifier: string; attrs?: Record<string, string> }[]): BuildInfo {
  const seen = new Set<string>();
  const out: BuildSource[] = [];
  for (const s of sources) {
    const b = buildSourceOf(s.identifier, s.attrs);
    if (!b || seen.has(`${b.type}|${b.ref}|${b.pin}`)) continue;
    seen.add(`${b.type}|${b.ref}|${b.pin}`);
    out.push(b);
  }
  out.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  const bi: BuildInfo = { sources: out };
  if (frontend) bi.frontend = frontend;
  const attrs = filterBuildInfoAttrs(frontendAttrs);
  if (Object.keys(attrs).length > 0) bi.attrs = attrs;
  return bi;
}
