// The Dockerfile syntax tree (BuildKit's parser.Node shape) and its S-expression dump.
import { goQuote, goQuoteList, trimSpace } from "../gostrings.js";

/** A heredoc attached to an instruction (`<<EOF` ... `EOF`). */
export interface Heredoc {
  /** The delimiter word with its quotes removed; also the file name in COPY/ADD. */
  name: string;
  /** `3<<EOF` gives 3; 0 when absent. */
  fileDescriptor: number;
  /** False when any part of the delimiter was quoted: the body is then taken literally. */
  expand: boolean;
  /** `<<-`: leading tabs are stripped from the body (and the delimiter line). */
  chomp: boolean;
  /** The body, every line with its own line ending; leading tabs are kept here even when `chomp`. */
  content: string;
}

/**
 * One node of the tree. The root's `children` are the instructions. An instruction node holds the
 * instruction word in `value` and its arguments as a `next` chain; ONBUILD's argument is a node
 * whose single child is the nested instruction.
 */
export interface Node {
  value: string;
  next: Node | undefined;
  children: Node[];
  heredocs: Heredoc[];
  /** `json: true` when the arguments were written in JSON (exec) form. */
  attributes: Record<string, boolean>;
  /** The instruction's logical line (continuations joined), before any splitting. */
  original: string;
  /** Flags (`--from=x`) in the order written; only instruction nodes carry them. */
  flags: string[];
  /** 1-based, inclusive; heredoc bodies count towards endLine. */
  startLine: number;
  endLine: number;
  /** Comment lines directly above the instruction, `#` and surrounding space removed. */
  prevComment: string[];
}

export function newNode(init: Partial<Node> = {}): Node {
  return {
    value: "",
    next: undefined,
    children: [],
    heredocs: [],
    attributes: {},
    original: "",
    flags: [],
    startLine: 0,
    endLine: 0,
    prevComment: [],
    ...init,
  };
}

/** The instruction's arguments as strings, with ONBUILD's nested instruction inlined (BuildKit's nodeArgs). */
export function nodeArgs(node: Node): string[] {
  const out: string[] = [];
  for (let n = node.next; n !== undefined; n = n.next) {
    if (n.children.length === 0) out.push(n.value);
    else if (n.children.length === 1) {
      const child = n.children[0]!;
      out.push(child.value, ...nodeArgs(child));
    }
  }
  return out;
}

/** The S-expression form BuildKit's dumper prints; conformance `result` files hold `dump(ast) + "\n"`. */
export function dump(node: Node): string {
  let s = node.value.toLowerCase();
  if (node.flags.length > 0) s += " " + goQuoteList(node.flags);
  for (const child of node.children) s += "(" + dump(child) + ")\n";
  for (let n = node.next; n !== undefined; n = n.next) {
    s += " " + (n.children.length > 0 ? dump(n) : goQuote(n.value));
  }
  return trimSpace(s);
}
