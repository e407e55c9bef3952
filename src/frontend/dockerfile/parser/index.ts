// Dockerfile text → syntax tree (BuildKit's frontend/dockerfile/parser).
export { parse } from "./parser.js";
export type { ParseResult, ParseWarning } from "./parser.js";
export { dump, nodeArgs, newNode } from "./node.js";
export type { Node, Heredoc } from "./node.js";
export { detectSyntax, findDirective, DirectiveParser } from "./directives.js";
export type { Directive, DetectedDirective } from "./directives.js";
export { parseHeredoc, mustParseHeredoc, heredocsFromLine, chompHeredocContent } from "./heredoc.js";
export { parseWords, splitCommand } from "./lineparsers.js";
export { DOCKERFILE_PARSE, dockerfileError, locate, sourceLines, ParseFailure } from "./errors.js";
export type { SourceText } from "./errors.js";
