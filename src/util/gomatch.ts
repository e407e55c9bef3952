// Go's path/filepath Match, which BuildKit uses for COPY sources, followpaths and checksummed
// wildcards: `*` and `?` never cross a `/`, classes negate only with `^`, `\\` escapes.

/** Whether a path element holds a wildcard Go's Match would expand (`\\` escapes the next character). */
export function hasGoWildcard(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name[i];
    if (c === "\\") i++;
    else if (c === "*" || c === "?" || c === "[") return true;
  }
  return false;
}

/** Go's filepath.Match for one path element (`*`, `?`, `[...]` with `^` negation and ranges, `\` escapes). */
export function goMatch(pattern: string, name: string): boolean {
  let re = "^";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "\\") {
      if (i + 1 >= pattern.length) return false;
      re += escapeRe(pattern[++i]!);
    } else if (c === "[") {
      let j = i + 1;
      let cls = "";
      if (pattern[j] === "^") {
        cls += "^";
        j++;
      }
      let closed = false;
      let first = true;
      while (j < pattern.length) {
        const ch = pattern[j]!;
        if (ch === "]" && !first) {
          closed = true;
          break;
        }
        first = false;
        if (ch === "\\") {
          j++;
          if (j >= pattern.length) return false;
          cls += escapeClassRe(pattern[j]!);
        } else if (ch === "-") cls += "-";
        else cls += escapeClassRe(ch);
        j++;
      }
      if (!closed || cls === "" || cls === "^") return false;
      re += `[${cls}]`;
      i = j;
    } else re += escapeRe(c);
  }
  try {
    return new RegExp(re + "$", "su").test(name);
  } catch {
    return false;
  }
}

// With the `u` flag an escape must be a syntax character: `\-` is valid only inside a class.
function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

function escapeClassRe(c: string): string {
  return c.replace(/[\]\\^-]/g, "\\$&");
}

