// Per-instruction argument splitting (BuildKit's line parsers) and the split of a logical line
// into instruction word, flags and arguments.
import { goQuote, isSpace, regexpSplit, trimLeftSpace, trimSpace } from "../gostrings.js";
import { ParseFailure } from "./errors.js";
import { newNode, type Node } from "./node.js";

export const reWhitespace = /[\t\v\f\r ]+/;

/** What the line parsers need from the directive state. */
export interface LineContext {
  escapeToken: string;
}

type Parsed = { node: Node | undefined; attrs: Record<string, boolean> };
type LineParser = (rest: string, d: LineContext) => Parsed;

const none = (node: Node | undefined): Parsed => ({ node, attrs: {} });

function chain(values: string[]): Node | undefined {
  let root: Node | undefined;
  let prev: Node | undefined;
  for (const v of values) {
    const n = newNode({ value: v });
    if (prev) prev.next = n;
    else root = n;
    prev = n;
  }
  return root;
}

function codePointAt(s: string, pos: number): string {
  return String.fromCodePoint(s.codePointAt(pos)!);
}

/**
 * Splits on white space, honouring quotes and escapes but keeping them in the words: they are
 * removed later, when the words are expanded.
 */
export function parseWords(rest: string, d: LineContext): string[] {
  const words: string[] = [];
  let phase: "space" | "word" | "quote" = "space";
  let quote = "";
  let blankOK = false;
  let buf = "";
  let pos = 0;
  for (;;) {
    const atEnd = pos >= rest.length;
    let ch = atEnd ? "" : codePointAt(rest, pos);
    if (phase === "space") {
      if (atEnd) break;
      if (isSpace(ch)) {
        pos += ch.length;
        continue;
      }
      phase = "word";
    }
    if (atEnd) {
      if (blankOK || buf.length > 0) words.push(buf);
      break;
    }
    if (phase === "word") {
      if (isSpace(ch)) {
        phase = "space";
        if (blankOK || buf.length > 0) words.push(buf);
        buf = "";
        blankOK = false;
        pos += ch.length;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = "quote";
      }
      if (ch === d.escapeToken) {
        if (pos + ch.length === rest.length) {
          pos += ch.length;
          continue;
        }
        // Outside quotes the escape and the escaped character are both kept, even for quotes.
        buf += ch;
        pos += ch.length;
        ch = codePointAt(rest, pos);
      }
      buf += ch;
      pos += ch.length;
      continue;
    }
    if (ch === quote) phase = "word";
    if (ch === d.escapeToken && quote !== "'") {
      if (pos + ch.length === rest.length) {
        phase = "word";
        pos += ch.length;
        continue;
      }
      pos += ch.length;
      buf += ch;
      ch = codePointAt(rest, pos);
    }
    buf += ch;
    pos += ch.length;
  }
  return words;
}

function parseIgnore(): Parsed {
  // Unknown instructions still parse; their arguments are dropped and the instruction layer rejects them.
  return none(newNode());
}

function parseSubCommand(rest: string, d: LineContext): Parsed {
  if (rest === "") return none(undefined);
  const child = newNodeFromLine(rest, d, []);
  return none(newNode({ children: [child] }));
}

function keyValue(key: string, value: string, sep: string): Node {
  return newNode({ value: key, next: newNode({ value, next: newNode({ value: sep }) }) });
}

/**
 * ENV and LABEL: `KEY value` (legacy, one pair; separator "") or `k=v ...` (separator "=").
 * Each pair becomes three nodes: key, value, separator.
 */
function parseNameVal(rest: string, key: string, d: LineContext): Node | undefined {
  const words = parseWords(rest, d);
  if (words.length === 0) return undefined;
  if (!words[0]!.includes("=")) {
    const parts = regexpSplit(rest, reWhitespace, 2);
    if (parts.length < 2) throw new ParseFailure(`${key} must have two arguments`);
    return keyValue(parts[0]!, parts[1]!, "");
  }
  let root: Node | undefined;
  let last: Node | undefined;
  for (const word of words) {
    const eq = word.indexOf("=");
    if (eq < 0) throw new ParseFailure(`Syntax error - can't find = in ${goQuote(word)}. Must be of the form: name=value`);
    const n = keyValue(word.slice(0, eq), word.slice(eq + 1), "=");
    if (last) last.next = n;
    else root = n;
    last = n.next!.next!;
  }
  return root;
}

function parseNameOrNameVal(rest: string, d: LineContext): Parsed {
  return none(chain(parseWords(rest, d)));
}

function parseStringsWhitespaceDelimited(rest: string): Parsed {
  if (rest === "") return none(undefined);
  return none(chain(regexpSplit(rest, reWhitespace, -1)));
}

function parseString(rest: string): Parsed {
  return none(rest === "" ? undefined : newNode({ value: rest }));
}

class NotStringArray extends ParseFailure {}

/** JSON array of strings, or undefined when the text is not a JSON array at all. */
function parseJSON(rest: string): Parsed | undefined {
  const text = trimLeftSpace(rest);
  if (!text.startsWith("[")) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  const items: string[] = [];
  for (const v of value as unknown[]) {
    if (typeof v !== "string") throw new NotStringArray("when using JSON array syntax, arrays must be comprised of strings only");
    items.push(v);
  }
  return { node: chain(items), attrs: { json: true } };
}

function parseMaybeJSON(rest: string): Parsed {
  if (rest === "") return none(undefined);
  return parseJSON(rest) ?? none(newNode({ value: rest }));
}

function parseMaybeJSONToList(rest: string): Parsed {
  return parseJSON(rest) ?? parseStringsWhitespaceDelimited(rest);
}

/** HEALTHCHECK: a type word (CMD, NONE, ...) then the command in either form. */
function parseHealthConfig(rest: string): Parsed {
  let sep = 0;
  while (sep < rest.length && !isSpace(rest[sep]!)) sep++;
  let next = sep;
  while (next < rest.length && isSpace(rest[next]!)) next++;
  if (sep === 0) return none(undefined);
  const cmd = parseMaybeJSON(rest.slice(next));
  return { node: newNode({ value: rest.slice(0, sep), next: cmd.node }), attrs: cmd.attrs };
}

const dispatch: Record<string, LineParser> = {
  add: parseMaybeJSONToList,
  arg: parseNameOrNameVal,
  cmd: parseMaybeJSON,
  copy: parseMaybeJSONToList,
  entrypoint: parseMaybeJSON,
  env: (rest, d) => none(parseNameVal(rest, "ENV", d)),
  expose: parseStringsWhitespaceDelimited,
  from: parseStringsWhitespaceDelimited,
  healthcheck: parseHealthConfig,
  label: (rest, d) => none(parseNameVal(rest, "LABEL", d)),
  maintainer: parseString,
  onbuild: parseSubCommand,
  run: parseMaybeJSON,
  shell: parseMaybeJSON,
  stopsignal: parseString,
  user: parseString,
  volume: parseMaybeJSONToList,
  workdir: parseString,
};

/** Leading `--flag` words of an argument string; returns the rest of the line and the flags. */
export function extractBuilderFlags(line: string, d: LineContext): { rest: string; flags: string[] } {
  const flags: string[] = [];
  let phase: "space" | "word" | "quote" = "space";
  let buf = "";
  let quote = "";
  let blankOK = false;
  let pos = 0;
  for (;;) {
    const atEnd = pos >= line.length;
    let ch = atEnd ? "" : codePointAt(line, pos);
    if (phase === "space") {
      if (atEnd) break;
      if (isSpace(ch)) {
        pos += ch.length;
        continue;
      }
      if (ch !== "-" || pos + 1 === line.length || line[pos + 1] !== "-") return { rest: line.slice(pos), flags };
      phase = "word";
    }
    if (atEnd) {
      if (buf !== "--" && (blankOK || buf.length > 0)) flags.push(buf);
      break;
    }
    if (phase === "word") {
      if (isSpace(ch)) {
        phase = "space";
        // A bare `--` ends the flags; what follows is arguments even if it starts with `--`.
        if (buf === "--") return { rest: line.slice(pos), flags };
        if (blankOK || buf.length > 0) flags.push(buf);
        buf = "";
        blankOK = false;
        pos += ch.length;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = "quote";
        pos += ch.length;
        continue;
      }
      if (ch === d.escapeToken) {
        if (pos + ch.length === line.length) {
          pos += ch.length;
          continue;
        }
        pos += ch.length;
        ch = codePointAt(line, pos);
      }
      buf += ch;
      pos += ch.length;
      continue;
    }
    if (ch === quote) {
      phase = "word";
      pos += ch.length;
      continue;
    }
    if (ch === d.escapeToken) {
      if (pos + ch.length === line.length) {
        phase = "word";
        pos += ch.length;
        continue;
      }
      pos += ch.length;
      ch = codePointAt(line, pos);
    }
    buf += ch;
    pos += ch.length;
  }
  return { rest: "", flags };
}

/** Instruction word, flags and trimmed arguments of a logical line. */
export function splitCommand(line: string, d: LineContext): { cmd: string; flags: string[]; args: string } {
  const parts = regexpSplit(trimSpace(line), reWhitespace, 2);
  let args = "";
  let flags: string[] = [];
  if (parts.length === 2) ({ rest: args, flags } = extractBuilderFlags(parts[1]!, d));
  return { cmd: parts[0]!, flags, args: trimSpace(args) };
}

/** Parses one logical line into an instruction node (no line numbers yet). */
export function newNodeFromLine(line: string, d: LineContext, comments: string[]): Node {
  const { cmd, flags, args } = splitCommand(line, d);
  const fn = dispatch[cmd.toLowerCase()] ?? parseIgnore;
  const { node, attrs } = fn(args, d);
  return newNode({ value: cmd, original: line, flags, next: node, attributes: attrs, prevComment: comments });
}

/** Whether the instruction (or ONBUILD's nested one) may carry heredocs: RUN, COPY, ADD in shell form. */
export function canContainHeredoc(node: Node): boolean {
  let n = node;
  if (n.value.toLowerCase() === "onbuild" && n.next && n.next.children.length > 0) n = n.next.children[0]!;
  const v = n.value.toLowerCase();
  if (v !== "add" && v !== "copy" && v !== "run") return false;
  return n.attributes.json !== true;
}
