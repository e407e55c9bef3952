// Parser directives (`# syntax=`, `# escape=`, `# check=`): only in the leading comment block,
// each at most once; plus syntax detection in the other forms BuildKit accepts (`//`, JSON).
import { trimLeftSpace } from "../gostrings.js";
import { ParseFailure } from "./errors.js";

export interface Directive {
  /** Lower-cased: "syntax", "escape" or "check". */
  name: string;
  value: string;
  /** 1-based line of the directive. */
  line: number;
}

const validDirectives = new Set(["syntax", "escape", "check"]);
// Go's \s is ASCII-only and excludes \v; `.` stops at \n.
const directiveRe = /^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*([^\n]+?)[\t\n\f\r ]*$/;

/** Reads directives line by line; the first line that is not one ends the directive block. */
export class DirectiveParser {
  private line: number;
  private readonly seen = new Set<string>();
  private done = false;

  constructor(
    private readonly comment = "#",
    firstLine = 0,
  ) {
    this.line = firstLine;
  }

  /** Returns the directive on this line, if any; throws ParseFailure on a repeated directive. */
  parseLine(text: string): Directive | undefined {
    this.line++;
    if (this.done) return undefined;
    if (!text.startsWith(this.comment)) {
      this.done = true;
      return undefined;
    }
    const m = directiveRe.exec(trimLeftSpace(text.slice(this.comment.length)));
    if (!m) {
      this.done = true;
      return undefined;
    }
    const name = m[1]!.toLowerCase();
    if (!validDirectives.has(name)) {
      this.done = true;
      return undefined;
    }
    if (this.seen.has(name)) throw new ParseFailure(`only one ${name} parser directive can be used`);
    this.seen.add(name);
    return { name, value: m[2]!, line: this.line };
  }

  parseAll(text: string): Directive[] {
    const out: Directive[] = [];
    for (const raw of splitScanLines(text)) {
      if (this.done) break;
      try {
        const d = this.parseLine(raw);
        if (d) out.push(d);
      } catch {
        break;
      }
    }
    return out;
  }
}

/** bufio.ScanLines: lines without "\n" and without one trailing "\r". */
function splitScanLines(text: string): string[] {
  if (text === "") return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
}

export interface DetectedDirective {
  /** The first word of the value (for syntax: the frontend image reference). */
  value: string;
  /** The whole value, including any arguments after the first word. */
  cmdline: string;
  line: number;
}

function stripBOM(text: string): string {
  return text.startsWith("\ufeff") ? text.slice(1) : text;
}

function find(key: string, text: string, comment: string, firstLine: number): DetectedDirective | undefined {
  for (const d of new DirectiveParser(comment, firstLine).parseAll(text)) {
    if (d.name === key) return { value: d.value.split(" ")[0]!, cmdline: d.value, line: d.line };
  }
  return undefined;
}

function parseDirective(key: string, input: string, anyFormat: boolean): DetectedDirective | undefined {
  let text = stripBOM(input);
  let line = 0;
  const nl = text.indexOf("\n");
  const first = nl < 0 ? text : text.slice(0, nl);
  if (first.startsWith("#!")) {
    text = nl < 0 ? "" : text.slice(nl + 1);
    line++;
  }
  const hash = find(key, text, "#", line);
  if (hash || !anyFormat) return hash;
  const slashes = find(key, text, "//", line);
  if (slashes) return slashes;
  try {
    const obj: unknown = JSON.parse(text);
    if (obj !== null && typeof obj === "object" && !Array.isArray(obj)) {
      const v = (obj as Record<string, unknown>)[key];
      if (typeof v === "string") return { value: v, cmdline: v, line };
    }
  } catch {
    // not JSON: no directive
  }
  return undefined;
}

/**
 * The `syntax` directive as BuildKit's DetectSyntax finds it: `# syntax=`, then `// syntax=`,
 * then a JSON object's "syntax" key; a leading `#!` line is skipped.
 */
export function detectSyntax(text: string): DetectedDirective | undefined {
  return parseDirective("syntax", text, true);
}

/** A `# key=value` directive from the leading comment block (e.g. "check"). */
export function findDirective(key: string, text: string): DetectedDirective | undefined {
  return parseDirective(key, text, false);
}
