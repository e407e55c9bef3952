// Go's formatting rules that the progress display depends on: `%.Nf` (exact value, ties to even),
// tonistiigi/units' byte sizes, time.Duration's seconds, time.Time's JSON form and
// encoding/json's string escaping. Everything here is pure.

/** Go's `%.{prec}f` of a float64: the exact binary value rounded half to even (JS's toFixed rounds ties up). */
export function goFixed(x: number, prec: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "+Inf" : "-Inf";
  const neg = x < 0 || Object.is(x, -0);
  const a = Math.abs(x);
  if (a >= 1e21) return (neg ? "-" : "") + BigInt(a).toString() + (prec > 0 ? "." + "0".repeat(prec) : "");
  // toFixed(100) is the exact decimal expansion of every double this display formats (>= 2^-48);
  // anything smaller rounds to zero at any precision we use.
  const exact = a.toFixed(100);
  const dot = exact.indexOf(".");
  const digits = exact.slice(0, dot) + exact.slice(dot + 1, dot + 1 + prec);
  const rest = exact.slice(dot + 1 + prec);
  let up = false;
  const first = rest.charCodeAt(0) - 48;
  if (first > 5) up = true;
  else if (first === 5) up = /[1-9]/.test(rest.slice(1)) || (digits.charCodeAt(digits.length - 1) - 48) % 2 === 1;
  let n = BigInt(digits);
  if (up) n += 1n;
  let s = n.toString().padStart(prec + 1, "0");
  if (prec > 0) s = `${s.slice(0, s.length - prec)}.${s.slice(s.length - prec)}`;
  return (neg ? "-" : "") + s;
}

const decimalUnits = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];

/** tonistiigi/units' `%.2f` of a byte count: "512B", "1.23kB", "3.40MB" (decimal units). */
export function goBytes(n: number): string {
  const b = Math.trunc(n);
  let base = b < 0 ? -1 : 1;
  let i = 0;
  for (;;) {
    const next = base * 1000;
    if ((base > 0 && b >= next) || (base < 0 && b <= next)) {
      i++;
      base = next;
      continue;
    }
    break;
  }
  if (i === 0) return `${b}B`;
  return goFixed(b / Math.abs(base), 2) + decimalUnits[i]!;
}

/** time.Duration.Seconds() of a span given in milliseconds (whole seconds plus the rest over 1e9 ns). */
export function goSeconds(ms: number): number {
  const ns = Math.round(ms * 1e6);
  const sec = Math.trunc(ns / 1e9);
  const rest = ns - sec * 1e9;
  return sec + rest / 1e9;
}

/** time.Time's JSON: RFC 3339 with nanoseconds, trailing zeros (and a bare dot) dropped; UTC as "Z". */
export function goTimeJSON(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.replace(/\.(\d*?)0*Z$/, (_m, f: string) => (f ? `.${f}Z` : "Z"));
}

const hex = "0123456789abcdef";

/** A JSON string as encoding/json writes it (HTML-safe: <, > and & escaped; U+2028/2029 escaped). */
export function goJSONString(s: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string | undefined;
    if (c === 0x22) esc = '\\"';
    else if (c === 0x5c) esc = "\\\\";
    else if (c === 0x0a) esc = "\\n";
    else if (c === 0x0d) esc = "\\r";
    else if (c === 0x09) esc = "\\t";
    else if (c < 0x20 || c === 0x3c || c === 0x3e || c === 0x26) esc = `\\u00${hex[c >> 4]}${hex[c & 0xf]}`;
    else if (c === 0x2028 || c === 0x2029) esc = `\\u202${hex[c & 0xf]}`;
    else if (c >= 0xd800 && c <= 0xdfff) {
      // A lone surrogate is invalid UTF-8 to Go: it writes U+FFFD.
      const pair = c <= 0xdbff && i + 1 < s.length && s.charCodeAt(i + 1) >= 0xdc00 && s.charCodeAt(i + 1) <= 0xdfff;
      if (pair) {
        i++;
        continue;
      }
      esc = "\\ufffd";
    }
    if (esc !== undefined) {
      out += s.slice(start, i) + esc;
      start = i + 1;
    }
  }
  return out + s.slice(start) + '"';
}

/** Go's `len` of a string: its UTF-8 byte count. */
export function byteLen(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

/** Go's `s[:n]` on a string, without leaving half a character at the end. */
export function sliceBytes(s: string, n: number): string {
  if (n <= 0) return "";
  const buf = Buffer.from(s, "utf8");
  if (buf.length <= n) return s;
  let end = n;
  // Back off to a character boundary (continuation bytes are 10xxxxxx).
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end--;
  return buf.subarray(0, end).toString("utf8");
}

/** Go's `%-*s`: left-justified, padded with spaces to `width` characters (runes). */
export function padRight(s: string, width: number): string {
  let runes = 0;
  for (const _ of s) runes++;
  return runes >= width ? s : s + " ".repeat(width - runes);
}
