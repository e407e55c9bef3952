// Docker's ignore-pattern semantics (moby/patternmatcher), via @balena/dockerignore, which matches
// it once patterns are cleaned as Docker's ReadAll does (leading `/` stripped).
import dockerignore from "@balena/dockerignore";
import path from "node:path";

// The package is CommonJS with a default-export typing; under NodeNext the callable is `.default`.
const ignoreFactory = dockerignore.default;

export interface PatternMatcher {
  /** True when the pattern set selects `p` (a slash path relative to the root), or a parent of it. */
  matches(p: string): boolean;
  /** True when some pattern could select something below `p` that `matches` alone would not. */
  mayMatchInside(p: string): boolean;
  /** True when `p` is a parent directory of a pattern's literal base. */
  matchesParent(p: string): boolean;
}

export function cleanPattern(raw: string): { pattern: string; negate: boolean } | undefined {
  let p = raw.trim();
  if (p === "") return undefined;
  const negate = p.startsWith("!");
  if (negate) p = p.slice(1).trim();
  p = path.posix.normalize(p);
  p = p.replace(/^\/+/, "");
  if (p === "." || p === "") return undefined;
  return { pattern: p, negate };
}

export function compilePatterns(patterns: string[]): PatternMatcher {
  const cleaned = patterns.map(cleanPattern).filter((p) => p !== undefined);
  const ig = ignoreFactory().add(cleaned.map((p) => (p.negate ? "!" : "") + p.pattern));
  const negations = cleaned.filter((p) => p.negate).map((p) => p.pattern);
  const bases = cleaned.filter((p) => !p.negate).map((p) => literalBase(p.pattern));
  return {
    matches: (p) => cleaned.length > 0 && ig.ignores(p),
    mayMatchInside: (p) => negations.some((n) => n.startsWith("**") || literalBase(n).startsWith(p + "/") || hasWildcard(firstSegments(n, p))),
    matchesParent: (p) => bases.some((b) => b.startsWith(p + "/")),
  };
}

function hasWildcard(s: string): boolean {
  return /[*?[\\]/.test(s);
}

function literalBase(pattern: string): string {
  const segs = pattern.split("/");
  const out: string[] = [];
  for (const s of segs) {
    if (hasWildcard(s)) break;
    out.push(s);
  }
  return out.join("/");
}

function firstSegments(pattern: string, p: string): string {
  return pattern.split("/").slice(0, p.split("/").length).join("/");
}

/** Reads a .dockerignore file's text into patterns, as Docker's ReadAll does (comments, blanks). */
export function parseIgnoreFile(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith("#")) continue;
    const t = line.trim();
    if (t === "") continue;
    out.push(t);
  }
  return out;
}
