// Heredoc recognition in instruction lines (`<<EOF`, `<<-EOF`, `3<<"EOF"`) and body chomping.
import { ShellExpandError, ShellLex, type EnvGetter } from "../shell/index.js";
import { ParseFailure } from "./errors.js";
import type { Heredoc } from "./node.js";

const heredocRe = /^([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)$/;

const noEnv: EnvGetter = { get: () => undefined, keys: () => [] };

function countQuotes(s: string): number {
  let n = 0;
  for (const ch of s) if (ch === "'" || ch === '"') n++;
  return n;
}

/**
 * Parses one word as a heredoc operator; undefined when it is not one. Throws ParseFailure when
 * the delimiter is malformed (an unterminated quote).
 */
export function parseHeredoc(word: string): Heredoc | undefined {
  const m = heredocRe.exec(word);
  if (!m) return undefined;
  const rest = m[3]!;
  if (rest === "") return undefined;
  const fd = m[1] === "" ? 0 : Number.parseInt(m[1]!, 10);
  const lex = new ShellLex("\\", { skipUnsetEnv: true });
  try {
    const words = lex.processWords(rest, noEnv);
    if (words.length !== 1) return undefined;
    lex.rawQuotes = true;
    const raw = lex.processWords(rest, noEnv);
    if (raw.length !== words.length) throw new ParseFailure(`internal lexing of heredoc produced inconsistent results: ${rest}`);
    const name = words[0]!;
    // Quotes that vanish when quotes are processed mean part of the delimiter was quoted.
    const expand = countQuotes(name) === countQuotes(raw[0]!);
    return { name, fileDescriptor: fd, expand, chomp: m[2] === "-", content: "" };
  } catch (err) {
    if (err instanceof ShellExpandError) throw new ParseFailure(err.message);
    throw err;
  }
}

/** Like parseHeredoc but a malformed delimiter counts as no heredoc. */
export function mustParseHeredoc(word: string): Heredoc | undefined {
  try {
    return parseHeredoc(word);
  } catch {
    return undefined;
  }
}

/** Every heredoc operator on a logical line, in order. */
export function heredocsFromLine(line: string): Heredoc[] {
  const lex = new ShellLex("\\", { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true });
  let words: string[];
  try {
    words = lex.processWords(line, noEnv);
  } catch {
    words = [];
  }
  const out: Heredoc[] = [];
  for (const w of words) {
    const h = parseHeredoc(w);
    if (h) out.push(h);
  }
  return out;
}

/** Removes leading tabs from every line, as `<<-` asks. */
export function chompHeredocContent(content: string): string {
  return content
    .split("\n")
    .map((l) => l.replace(/^\t+/, ""))
    .join("\n");
}
