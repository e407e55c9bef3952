// "did you mean ...?" suggestions (BuildKit's util/suggest): the closest option within
// Levenshtein distance 2.
function levenshtein(a: string, b: string): number {
  const s = Array.from(a);
  const t = Array.from(b);
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const cur = [i];
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
    }
    prev = cur;
  }
  return prev[t.length]!;
}

function matchCase(value: string, orig: string): string {
  if (orig === orig.toLowerCase()) return value.toLowerCase();
  if (orig === orig.toUpperCase()) return value.toUpperCase();
  return value;
}

/** The option closest to `value`, or undefined when none is close or `value` matches exactly. */
export function suggest(value: string, options: readonly string[], caseSensitive: boolean): string | undefined {
  const v = caseSensitive ? value : value.toLowerCase();
  let match: string | undefined;
  let best = 3;
  for (const option of options) {
    const o = caseSensitive ? option : option.toLowerCase();
    // An exact match means the error is about something else.
    if (o === v) return undefined;
    const d = levenshtein(v, o);
    if (d < best) {
      match = caseSensitive ? o : matchCase(o, value);
      best = d;
    }
  }
  return match;
}

/** Appends BuildKit's ` (did you mean X?)` when a close option exists. */
export function withSuggestion(message: string, value: string, options: readonly string[], caseSensitive: boolean): string {
  const m = suggest(value, options, caseSensitive);
  return m === undefined ? message : `${message} (did you mean ${m}?)`;
}
