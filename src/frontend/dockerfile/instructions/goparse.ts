// Go standard-library value parsers whose accept/reject rules instruction flags inherit:
// strconv.ParseBool/ParseUint/ParseInt, time.ParseDuration, go-units RAMInBytes, CSV fields.
import { goQuote } from "../gostrings.js";

export class ValueError extends Error {}

export function parseGoBool(s: string): boolean {
  switch (s) {
    case "1":
    case "t":
    case "T":
    case "TRUE":
    case "true":
    case "True":
      return true;
    case "0":
    case "f":
    case "F":
    case "FALSE":
    case "false":
    case "False":
      return false;
  }
  throw new ValueError(`strconv.ParseBool: parsing ${goQuote(s)}: invalid syntax`);
}

/** strconv.ParseUint(s, base, bits) for base 8 or 10 (no prefixes, no underscores). */
export function parseGoUint(s: string, base: 8 | 10, bits: number): number {
  const re = base === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!re.test(s)) throw new ValueError(`strconv.ParseUint: parsing ${goQuote(s)}: invalid syntax`);
  const v = Number.parseInt(s, base);
  if (v > 2 ** bits - 1) throw new ValueError(`strconv.ParseUint: parsing ${goQuote(s)}: value out of range`);
  return v;
}

/** strconv.ParseInt(s, 10, bits). */
export function parseGoInt(s: string, bits: number): number {
  if (!/^[+-]?[0-9]+$/.test(s)) throw new ValueError(`strconv.ParseInt: parsing ${goQuote(s)}: invalid syntax`);
  const v = Number.parseInt(s, 10);
  if (v > 2 ** (bits - 1) - 1 || v < -(2 ** (bits - 1))) {
    throw new ValueError(`strconv.ParseInt: parsing ${goQuote(s)}: value out of range`);
  }
  return v;
}

const durationUnits: Record<string, number> = {
  ns: 1,
  us: 1e3,
  "\u00b5s": 1e3,
  "\u03bcs": 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/** time.ParseDuration, in nanoseconds. */
export function parseGoDuration(input: string): number {
  const invalid = (): ValueError => new ValueError(`time: invalid duration ${goQuote(input)}`);
  let s = input;
  let neg = false;
  if (s.startsWith("-") || s.startsWith("+")) {
    neg = s[0] === "-";
    s = s.slice(1);
  }
  if (s === "0") return 0;
  if (s === "") throw invalid();
  let total = 0;
  while (s !== "") {
    const m = /^([0-9]*)(?:\.([0-9]*))?/.exec(s)!;
    const whole = m[1] ?? "";
    const frac = m[2];
    if (whole === "" && (frac === undefined || frac === "")) throw invalid();
    s = s.slice(m[0].length);
    const u = /^[^0-9.]*/.exec(s)![0];
    if (u === "") throw new ValueError(`time: missing unit in duration ${goQuote(input)}`);
    const mul = durationUnits[u];
    if (mul === undefined) throw new ValueError(`time: unknown unit ${goQuote(u)} in duration ${goQuote(input)}`);
    s = s.slice(u.length);
    total += Number(`${whole || "0"}.${frac || "0"}`) * mul;
  }
  return Math.round(neg ? -total : total);
}

const binaryUnits: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/** go-units RAMInBytes: "64m", "1.5GiB", "100" (bytes), binary multipliers. */
export function parseRAMInBytes(input: string): number {
  let sep = -1;
  for (let i = input.length - 1; i >= 0; i--) {
    if ("0123456789. ".includes(input[i]!)) {
      sep = i;
      break;
    }
  }
  if (sep < 0) throw new ValueError(`invalid size: '${input}'`);
  const num = input[sep] === " " ? input.slice(0, sep) : input.slice(0, sep + 1);
  let sfx = input.slice(sep + 1);
  if (!/^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(num)) throw new ValueError(`invalid size: '${input}'`);
  let size = Number(num);
  if (size < 0) throw new ValueError(`invalid size: '${input}'`);
  if (sfx === "") return Math.trunc(size);
  const bad = (): ValueError => new ValueError(`invalid suffix: '${sfx}'`);
  if (sfx.length > 3) throw bad();
  sfx = sfx.toLowerCase();
  if (sfx[0] === "b") {
    if (sfx.length > 1) throw bad();
    return Math.trunc(size);
  }
  const mul = binaryUnits[sfx[0]!];
  if (mul === undefined) throw bad();
  size *= mul;
  if ((sfx.length === 2 && sfx[1] !== "b") || (sfx.length === 3 && sfx.slice(1) !== "ib")) throw bad();
  return Math.trunc(size);
}

/** One CSV record (encoding/csv rules: `"` quoting with `""` escapes, no bare quotes). */
export function parseCSVFields(s: string): string[] {
  if (s === "") throw new ValueError("EOF");
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (s[i] === '"') {
      let buf = "";
      let j = i + 1;
      for (;;) {
        const q = s.indexOf('"', j);
        if (q < 0) throw new ValueError(`parse error on line 1, column ${s.length + 1}: extraneous or missing " in quoted-field`);
        buf += s.slice(j, q);
        if (s[q + 1] === '"') {
          buf += '"';
          j = q + 2;
          continue;
        }
        if (q + 1 === s.length) {
          fields.push(buf);
          return fields;
        }
        if (s[q + 1] !== ",") throw new ValueError(`parse error on line 1, column ${q + 2}: extraneous or missing " in quoted-field`);
        fields.push(buf);
        i = q + 2;
        break;
      }
      continue;
    }
    const comma = s.indexOf(",", i);
    const field = comma < 0 ? s.slice(i) : s.slice(i, comma);
    const bare = field.indexOf('"');
    if (bare >= 0) throw new ValueError(`parse error on line 1, column ${i + bare + 1}: bare " in non-quoted-field`);
    fields.push(field);
    if (comma < 0) return fields;
    i = comma + 1;
  }
}
