// Dockerfile errors: KilnError with code KILN_DOCKERFILE_PARSE and the offending source lines.
import { KilnError, type SourceLocation } from "../../../util/index.js";

export const DOCKERFILE_PARSE = "KILN_DOCKERFILE_PARSE";

/** The file being parsed: its name and its lines (without line endings), for error locations. */
export interface SourceText {
  file: string;
  lines: string[];
}

/** Splits text into display lines the way the parser counts them (a lone final newline adds no line). */
export function sourceLines(text: string): string[] {
  const lines = text.split("\n").map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

export function locate(src: SourceText, startLine: number, endLine = startLine): SourceLocation {
  const end = Math.max(startLine, endLine);
  return {
    file: src.file,
    startLine,
    endLine: end,
    lines: startLine > 0 ? src.lines.slice(startLine - 1, end) : [],
    allLines: src.lines,
  };
}

export function dockerfileError(message: string, src: SourceText, startLine: number, endLine = startLine, cause?: unknown): KilnError {
  return new KilnError(DOCKERFILE_PARSE, message, { location: locate(src, startLine, endLine), cause });
}

/** A failure inside the parser before its location is known; Parse attaches one. */
export class ParseFailure extends Error {}
