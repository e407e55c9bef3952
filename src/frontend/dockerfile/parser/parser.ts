// The Dockerfile parser proper: directives, comments, line continuations and heredoc bodies,
// producing one node per instruction with its source line range.
import { trimLeftSpace, trimSpace, utf8Length } from "../gostrings.js";
import { DirectiveParser, type Directive } from "./directives.js";
import { dockerfileError, ParseFailure, sourceLines, type SourceText } from "./errors.js";
import { heredocsFromLine } from "./heredoc.js";
import { canContainHeredoc, newNodeFromLine, type LineContext } from "./lineparsers.js";
import { newNode, type Node } from "./node.js";

export interface ParseWarning {
  short: string;
  detail: string[];
  url: string;
  /** 1-based line the warning points at. */
  line: number;
}

export interface ParseResult {
  /** Root node; its children are the instructions in order. */
  ast: Node;
  /** "\\" or "`". */
  escapeToken: string;
  directives: Directive[];
  warnings: ParseWarning[];
  /** File name and lines, for locating errors found later (instructions, conversion). */
  source: SourceText;
}

/** bufio.Scanner's default token limit, which BuildKit inherits. */
const maxLineBytes = 64 * 1024;

class Directives implements LineContext {
  escapeToken = "\\";
  lineContinuation = /([^\\])\\[ \t]*$|^\\[ \t]*$/u;
  readonly parser = new DirectiveParser();
  readonly found: Directive[] = [];

  setEscapeToken(token: string): void {
    if (token !== "`" && token !== "\\") throw new ParseFailure(`invalid escape token '${token}' does not match \` or \\`);
    this.escapeToken = token;
    const e = token === "\\" ? "\\\\" : token;
    // The escape as last non-blank character continues the line, unless it is itself escaped
    // (only the simple case is caught: a preceding escape character).
    this.lineContinuation = new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`, "u");
  }

  /** True when the line was a directive. */
  possibleDirective(line: string): boolean {
    const d = this.parser.parseLine(line);
    if (!d) return false;
    if (d.name === "escape") this.setEscapeToken(d.value);
    this.found.push(d);
    return true;
  }
}

/** Lines with their endings kept, like BuildKit's scanLines. */
class LineScanner {
  private pos = 0;
  tooLong = false;
  constructor(private readonly text: string) {}
  next(): string | undefined {
    if (this.tooLong || this.pos >= this.text.length) return undefined;
    const nl = this.text.indexOf("\n", this.pos);
    const end = nl < 0 ? this.text.length : nl + 1;
    const line = this.text.slice(this.pos, end);
    const bytes = utf8Length(line);
    if (bytes > maxLineBytes || (nl < 0 && bytes >= maxLineBytes)) {
      this.tooLong = true;
      return undefined;
    }
    this.pos = end;
    return line;
  }
}

const trimNewline = (s: string): string => s.replace(/[\r\n]+$/, "");
const isComment = (s: string): boolean => trimLeftSpace(s).startsWith("#");
const isEmptyContinuationLine = (s: string): boolean => trimLeftSpace(trimNewline(s)).length === 0;

function processLine(d: Directives, token: string, stripLeft: boolean): { line: string; directive: boolean } {
  let t = trimNewline(token);
  if (stripLeft) t = trimLeftSpace(t);
  const directive = d.possibleDirective(t);
  return { line: isComment(t) ? "" : t, directive };
}

function trimContinuation(line: string, d: Directives): { line: string; end: boolean } {
  if (d.lineContinuation.test(line)) return { line: line.replace(d.lineContinuation, "$1"), end: false };
  return { line, end: true };
}

/**
 * Parses a Dockerfile. Throws KilnError (code KILN_DOCKERFILE_PARSE) with the offending lines.
 * Unknown instruction words are kept here; parseStages rejects them.
 */
export function parse(text: string, filename = "Dockerfile"): ParseResult {
  const source: SourceText = { file: filename, lines: sourceLines(text.startsWith("\ufeff") ? text.slice(1) : text) };
  const d = new Directives();
  const root = newNode({ startLine: -1 });
  const warnings: ParseWarning[] = [];
  const sc = new LineScanner(text);
  let currentLine = 0;
  let comments: string[] = [];

  const located = (err: unknown, start: number, end: number): unknown =>
    err instanceof ParseFailure ? dockerfileError(err.message, source, start, end) : err;

  for (let raw = sc.next(); raw !== undefined; raw = sc.next()) {
    if (currentLine === 0 && raw.startsWith("\ufeff")) raw = raw.slice(1);
    if (isComment(raw)) {
      const comment = trimSpace(raw.slice(1));
      if (comment === "") comments = [];
      else comments.push(comment);
    }
    let first: { line: string; directive: boolean };
    try {
      first = processLine(d, raw, true);
    } catch (err) {
      throw located(err, currentLine + 1, currentLine + 1);
    }
    // Directives are comments, but they describe the file, not the next instruction.
    if (first.directive) comments.pop();
    currentLine++;
    const startLine = currentLine;

    let { line: part, end } = trimContinuation(first.line, d);
    if (end && part.length === 0) continue;
    let line = part;
    let hasEmptyContinuation = false;
    while (!end) {
      const nextRaw = sc.next();
      if (nextRaw === undefined) break;
      let cont: string;
      try {
        cont = processLine(d, nextRaw, false).line;
      } catch (err) {
        throw located(err, currentLine + 1, currentLine + 1);
      }
      currentLine++;
      // Comment lines inside a continuation are dropped without ending it.
      if (isComment(nextRaw)) continue;
      if (isEmptyContinuationLine(cont)) {
        hasEmptyContinuation = true;
        continue;
      }
      ({ line: part, end } = trimContinuation(cont, d));
      line += part;
    }

    if (hasEmptyContinuation) {
      warnings.push({
        short: "Empty continuation line found in: " + line,
        detail: ["Empty continuation lines will become errors in a future release"],
        url: "https://github.com/moby/moby/pull/33719",
        line: currentLine,
      });
    }

    let child: Node;
    try {
      child = newNodeFromLine(line, d, comments);
    } catch (err) {
      throw located(err, startLine, currentLine);
    }

    if (canContainHeredoc(child) && line.includes("<<")) {
      let heredocs;
      try {
        heredocs = heredocsFromLine(line);
      } catch (err) {
        throw located(err, startLine, currentLine);
      }
      for (const h of heredocs) {
        let terminated = false;
        let content = "";
        for (let body = sc.next(); body !== undefined; body = sc.next()) {
          currentLine++;
          let candidate = trimNewline(body);
          if (h.chomp) candidate = candidate.replace(/^\t+/, "");
          if (candidate === h.name) {
            terminated = true;
            break;
          }
          content += body;
        }
        if (!terminated) throw dockerfileError("unterminated heredoc", source, startLine, currentLine);
        child.heredocs.push({ ...h, content });
      }
    }

    child.startLine = startLine;
    child.endLine = currentLine;
    if (root.startLine < 0) root.startLine = startLine;
    root.endLine = currentLine;
    root.children.push(child);
    comments = [];
  }

  if (root.startLine < 0) throw dockerfileError("file with no instructions", source, currentLine, currentLine);
  if (sc.tooLong) {
    throw dockerfileError(`dockerfile line greater than max allowed size of ${maxLineBytes - 1}`, source, currentLine + 1, currentLine + 1);
  }
  return { ast: root, escapeToken: d.escapeToken, directives: d.found, warnings, source };
}
