// moby/patternmatcher, the one pattern language BuildKit uses for paths: a file sync's include
// and exclude patterns (.dockerignore), a file op's COPY include/exclude patterns, the gateway's
// ReadDir filter. Unlike gitignore, a pattern without a slash matches only at the top (`*.md`
// leaves `sub/x.md` alone), `**` spans directories anywhere in a pattern, and a pattern that
// matches a directory matches everything inside it (the parent-results shortcut).

export interface MatchInfo {
  readonly parentMatched: readonly boolean[];
}

export const noMatchInfo: MatchInfo = { parentMatched: [] };

type MatchType = "exact" | "prefix" | "suffix" | "regexp";

export class Pattern {
  readonly dirs: string[];
  private matchType: MatchType | undefined;
  private re: RegExp | undefined;

  constructor(
    readonly cleaned: string,
    readonly exclusion: boolean,
  ) {
    this.dirs = cleaned.split("/");
  }

  toString(): string {
    return this.cleaned;
  }

  match(p: string): boolean {
    if (this.matchType === undefined) this.compile();
    switch (this.matchType) {
      case "exact":
        return p === this.cleaned;
      case "prefix":
        return p.startsWith(this.cleaned.slice(0, -2));
      case "suffix": {
        const suffix = this.cleaned.slice(2);
        if (p.endsWith(suffix)) return true;
        return suffix[0] === "/" && p === suffix.slice(1);
      }
      case "regexp":
        return this.re!.test(p);
      default:
        return false;
    }
  }

  private compile(): void {
    let re = "^";
    let type: MatchType = "exact";
    const chars = [...this.cleaned];
    for (let i = 0, k = 0; k < chars.length; i++) {
      const ch = chars[k++]!;
      if (ch === "*") {
        if (chars[k] === "*") {
          k++;
          if (chars[k] === "/") k++;
          if (k >= chars.length) {
            if (type === "exact") type = "prefix";
            else {
              re += ".*";
              type = "regexp";
            }
          } else {
            re += "(.*/)?";
            type = "regexp";
          }
          if (i === 0) type = "suffix";
        } else {
          re += "[^/]*";
          type = "regexp";
        }
      } else if (ch === "?") {
        re += "[^/]";
        type = "regexp";
      } else if (".+()|{}$".includes(ch)) {
        re += "\\" + ch;
      } else if (ch === "\\") {
        if (k < chars.length) {
          re += "\\" + chars[k++]!;
          type = "regexp";
        } else re += "\\";
      } else if (ch === "[" || ch === "]") {
        re += ch;
        type = "regexp";
      } else {
        re += ch;
      }
    }
    this.matchType = type;
    if (type !== "regexp") return;
    try {
      // Go's `.` stops at newlines, as JavaScript's does without the s flag.
      this.re = new RegExp(re + "$");
    } catch {
      // Go rejects such patterns up front; a pattern that cannot compile matches nothing.
      this.re = /(?!)/;
    }
  }
}

/** Go's filepath.Clean for slash paths. */
export function goClean(p: string): string {
  if (p === "") return ".";
  const abs = p.startsWith("/");
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!abs) out.push("..");
      continue;
    }
    out.push(part);
  }
  const joined = out.join("/");
  if (abs) return "/" + joined;
  return joined === "" ? "." : joined;
}

export class PatternMatcher {
  readonly patterns: Pattern[] = [];
  readonly exclusions: boolean = false;

  constructor(patterns: readonly string[]) {
    for (const raw of patterns) {
      let p = raw.trim();
      if (p === "") continue;
      p = goClean(p);
      let exclusion = false;
      if (p.startsWith("!")) {
        if (p.length === 1) throw new Error('illegal exclusion pattern: "!"');
        exclusion = true;
        p = p.slice(1);
        this.exclusions = true;
      }
      this.patterns.push(new Pattern(p, exclusion));
    }
  }

  /** patternmatcher's MatchesUsingParentResults: a parent directory's results carry over to its entries. */
  matchesUsingParentResults(file: string, parent: MatchInfo): { matched: boolean; info: MatchInfo } {
    const parentMatched = parent.parentMatched;
    let matched = false;
    const out = new Array<boolean>(this.patterns.length).fill(false);
    for (let i = 0; i < this.patterns.length; i++) {
      const pattern = this.patterns[i]!;
      let match = parentMatched.length !== 0 ? parentMatched[i]! : false;
      if (!match) {
        if (pattern.exclusion !== matched) continue;
        match = pattern.match(file);
        if (!match && parentMatched.length === 0) {
          const slash = file.lastIndexOf("/");
          if (slash > 0) {
            const dirs = file.slice(0, slash).split("/");
            for (let j = 0; j < dirs.length && !match; j++) match = pattern.match(dirs.slice(0, j + 1).join("/"));
          }
        }
      }
      out[i] = match;
      if (match) matched = !pattern.exclusion;
    }
    return { matched, info: { parentMatched: out } };
  }
}

const patternChars = "*[]?^\\";

/**
 * Whether patterns of the given kind (exclusions, or the others) could select something below the
 * directory `dir` that the directory itself did not match: fsutil's rule for pruning a directory,
 * which is exact when no pattern has wildcards before a trailing glob and otherwise says yes.
 */
export function mayMatchBelow(pm: PatternMatcher, dir: string, exclusion: boolean): boolean {
  const wanted = pm.patterns.filter((p) => p.exclusion === exclusion);
  if (wanted.some((p) => [...withoutTrailingGlob(p)].some((c) => patternChars.includes(c)))) return true;
  const withSep = dir + "/";
  return wanted.some((p) => (withoutTrailingGlob(p) + "/").startsWith(withSep));
}

/** fsutil's patternWithoutTrailingGlob. */
export function withoutTrailingGlob(p: Pattern): string {
  let s = p.cleaned;
  if (s.endsWith("/**")) s = s.slice(0, -3);
  if (s.endsWith("/*")) s = s.slice(0, -2);
  return s;
}
