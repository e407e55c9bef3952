// Go-compatible string primitives the Dockerfile parser depends on: unicode.IsSpace,
// strings.TrimSpace, regexp.Split and strconv.Quote, so outputs match BuildKit byte for byte.

const whiteSpace = /^\p{White_Space}$/u;

/** Go's unicode.IsSpace for one code point. */
export function isSpace(ch: string): boolean {
  switch (ch) {
    case "\t":
    case "\n":
    case "\v":
    case "\f":
    case "\r":
    case " ":
    case "\u0085":
    case "\u00a0":
      return true;
  }
  const c = ch.codePointAt(0) ?? 0;
  return c > 0xff && whiteSpace.test(ch);
}

/** Go's strings.TrimLeftFunc(s, unicode.IsSpace). */
export function trimLeftSpace(s: string): string {
  let i = 0;
  while (i < s.length) {
    const ch = String.fromCodePoint(s.codePointAt(i) ?? 0);
    if (!isSpace(ch)) break;
    i += ch.length;
  }
  return s.slice(i);
}

/** Go's strings.TrimRightFunc(s, unicode.IsSpace). */
export function trimRightSpace(s: string): string {
  const chars = Array.from(s);
  let end = chars.length;
  while (end > 0 && isSpace(chars[end - 1]!)) end--;
  return chars.slice(0, end).join("");
}

/** Go's strings.TrimSpace: trims Unicode white space, not JavaScript's wider set. */
export function trimSpace(s: string): string {
  return trimRightSpace(trimLeftSpace(s));
}

/** Go's regexp.Split semantics (n < 0: all); differs from String.split on leading/trailing matches. */
export function regexpSplit(s: string, re: RegExp, n: number): string[] {
  if (n === 0) return [];
  if (s.length === 0) return [""];
  const global = new RegExp(re.source, re.flags.includes("g") ? re.flags : re.flags + "g");
  const out: string[] = [];
  let beg = 0;
  let end = 0;
  let m: RegExpExecArray | null;
  while ((m = global.exec(s)) !== null) {
    if (m[0].length === 0) global.lastIndex++;
    if (n > 0 && out.length === n - 1) break;
    end = m.index;
    if (m.index + m[0].length !== 0) out.push(s.slice(beg, end));
    beg = m.index + m[0].length;
  }
  if (end !== s.length) out.push(s.slice(beg));
  return out;
}

const printable = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, "0");
}

/** Go's strconv.Quote: double-quoted, Go escapes, non-printable runes as \x, \u or \U. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === "\\") {
      out += "\\" + ch;
      continue;
    }
    if (printable.test(ch)) {
      out += ch;
      continue;
    }
    switch (ch) {
      case "\x07":
        out += "\\a";
        continue;
      case "\b":
        out += "\\b";
        continue;
      case "\f":
        out += "\\f";
        continue;
      case "\n":
        out += "\\n";
        continue;
      case "\r":
        out += "\\r";
        continue;
      case "\t":
        out += "\\t";
        continue;
      case "\v":
        out += "\\v";
        continue;
    }
    if (c < 0x20 || c === 0x7f) out += "\\x" + hex(c, 2);
    else if (c >= 0xd800 && c <= 0xdfff) out += "\\ufffd";
    else if (c < 0x10000) out += "\\u" + hex(c, 4);
    else out += "\\U" + hex(c, 8);
  }
  return out + '"';
}

/** Go's fmt %q applied to a []string: `["a" "b"]`. */
export function goQuoteList(list: readonly string[]): string {
  return "[" + list.map(goQuote).join(" ") + "]";
}

/** Length of the UTF-8 encoding, without allocating it. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
