// Dockerfile word expansion (BuildKit's shell/lex.go behaviour): quotes, escapes, $VAR and the
// ${VAR...} modifiers, word splitting, and the record of which variables a word referenced.
import { KilnError } from "../../../util/index.js";
import { goQuote, isSpace } from "../gostrings.js";

/** Where variables come from. A `Map<string, string>` fits as is. */
export interface EnvGetter {
  get(key: string): string | undefined;
  keys(): Iterable<string>;
}

export interface LexOptions {
  /** Keep quote characters in the output (quotes still group words). */
  rawQuotes?: boolean;
  /** Keep escape characters in the output. */
  rawEscapes?: boolean;
  /** Treat quotes as ordinary characters. */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written instead of expanding them to "". */
  skipUnsetEnv?: boolean;
}

export interface ProcessWordResult {
  /** The word after expansion, quotes and escapes removed (unless raw options say otherwise). */
  result: string;
  /** The same text split into words after expansion, as the shell would. */
  words: string[];
  /** Variables the word referenced that the environment defines (BuildKit tracks these for ARG use). */
  matched: Set<string>;
  /** Variables the word referenced that are not defined. */
  unmatched: Set<string>;
}

/** An expansion failed; the message is BuildKit's (`failed to process "...": ...`). */
export class ShellExpandError extends KilnError {
  constructor(message: string) {
    super("KILN_DOCKERFILE_EXPAND", message);
    this.name = "ShellExpandError";
  }
}

/** Raised inside the lexer; turned into ShellExpandError with the whole word for context. */
class LexFailure extends Error {}

/** Builds an EnvGetter from `KEY=value` strings; a later duplicate wins, as in BuildKit. */
export function envsFromSlice(env: readonly string[]): EnvGetter {
  const map = new Map<string, string>();
  const keys: string[] = [];
  for (const e of env) {
    const i = e.indexOf("=");
    const k = i < 0 ? e : e.slice(0, i);
    keys.push(k);
    map.set(k, i < 0 ? "" : e.slice(i + 1));
  }
  return { get: (k) => map.get(k), keys: () => keys };
}

class Scanner {
  private readonly chars: string[];
  private pos = 0;
  constructor(text: string) {
    this.chars = Array.from(text);
  }
  peek(): string | undefined {
    return this.chars[this.pos];
  }
  next(): string | undefined {
    const ch = this.chars[this.pos];
    if (ch !== undefined) this.pos++;
    return ch;
  }
}

class Words {
  private buf = "";
  private readonly words: string[] = [];
  private inWord = false;

  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord && this.buf.length !== 0) {
        this.words.push(this.buf);
        this.buf = "";
        this.inWord = false;
      }
    } else {
      this.addRawChar(ch);
    }
  }
  addRawChar(ch: string): void {
    this.buf += ch;
    this.inWord = true;
  }
  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }
  addRawString(s: string): void {
    this.buf += s;
    this.inWord = true;
  }
  finish(): string[] {
    if (this.buf.length > 0) {
      this.words.push(this.buf);
      this.buf = "";
      this.inWord = false;
    }
    return this.words;
  }
}

const isLetter = (ch: string): boolean => /^\p{L}$/u.test(ch);
const isDigit = (ch: string): boolean => /^\p{Nd}$/u.test(ch);

function isSpecialParam(ch: string): boolean {
  return "@*#?-$!0".includes(ch);
}

/** One run over one word; holds the scanner and the variable bookkeeping. */
class WordRun {
  private readonly sc: Scanner;
  private rawEscapes: boolean;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(
    word: string,
    private readonly lex: ShellLex,
    private readonly env: EnvGetter,
  ) {
    this.sc = new Scanner(word);
    this.rawEscapes = lex.rawEscapes;
  }

  run(): { result: string; words: string[] } {
    return this.processStopOn(undefined, this.rawEscapes);
  }

  private getEnv(name: string): string | undefined {
    const v = this.env.get(name);
    if (v !== undefined) this.matched.add(name);
    else this.unmatched.add(name);
    return v;
  }

  private processStopOn(stop: string | undefined, rawEscapes: boolean): { result: string; words: string[] } {
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      let result = "";
      const words = new Words();
      const esc = this.lex.escapeToken;
      for (let ch = this.sc.peek(); ch !== undefined; ch = this.sc.peek()) {
        if (stop !== undefined && ch === stop) {
          this.sc.next();
          return { result, words: words.finish() };
        }
        let special: string | undefined;
        if (ch === "$") special = this.processDollar();
        else if (ch === "<") special = this.processPossibleHeredoc();
        else if (!this.lex.skipProcessQuotes && ch === "'") special = this.processSingleQuote();
        else if (!this.lex.skipProcessQuotes && ch === '"') special = this.processDoubleQuote();
        if (special !== undefined) {
          result += special;
          // Expanded variables are split on white space; quoted text never is.
          if (ch === "$") words.addString(special);
          else words.addRawString(special);
          continue;
        }
        let c = this.sc.next()!;
        if (c === esc) {
          if (this.rawEscapes) {
            words.addRawChar(c);
            result += c;
          }
          const n = this.sc.next();
          if (n === undefined) break;
          c = n;
          words.addRawChar(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
      if (stop !== undefined) throw new LexFailure(`unexpected end of statement while looking for matching ${stop}`);
      return { result, words: words.finish() };
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processSingleQuote(): string {
    let result = "";
    const open = this.sc.next()!;
    if (this.lex.rawQuotes) result += open;
    for (;;) {
      const ch = this.sc.next();
      if (ch === undefined) throw new LexFailure("unexpected end of statement while looking for matching single-quote");
      if (ch === "'") {
        if (this.lex.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    let result = "";
    const open = this.sc.next()!;
    if (this.lex.rawQuotes) result += open;
    const esc = this.lex.escapeToken;
    for (;;) {
      const p = this.sc.peek();
      if (p === undefined) throw new LexFailure("unexpected end of statement while looking for matching double-quote");
      if (p === '"') {
        this.sc.next();
        if (this.lex.rawQuotes) result += p;
        return result;
      }
      if (p === "$") {
        result += this.processDollar();
        continue;
      }
      let ch = this.sc.next()!;
      if (ch === esc) {
        if (this.rawEscapes) result += ch;
        const q = this.sc.peek();
        // A trailing escape inside an unterminated quote is dropped; the missing quote fails next.
        if (q === undefined) continue;
        // Inside double quotes the escape only protects ", $ and itself; otherwise it is literal.
        if (q === '"' || q === "$" || q === esc) ch = this.sc.next()!;
      }
      result += ch;
    }
  }

  private processName(): string {
    let name = "";
    for (let ch = this.sc.peek(); ch !== undefined; ch = this.sc.peek()) {
      if (name.length === 0 && isDigit(ch)) {
        // Positional parameters: all the digits, never set in a Dockerfile.
        while (this.sc.peek() !== undefined && isDigit(this.sc.peek()!)) name += this.sc.next();
        return name;
      }
      if (name.length === 0 && isSpecialParam(ch)) return this.sc.next()!;
      if (!isLetter(ch) && !isDigit(ch) && ch !== "_") break;
      name += this.sc.next();
    }
    return name;
  }

  private processDollar(): string {
    this.sc.next();
    if (this.sc.peek() !== "{") {
      const name = this.processName();
      if (name === "") return "$";
      const value = this.getEnv(name);
      if (value === undefined && this.lex.skipUnsetEnv) return "$" + name;
      return value ?? "";
    }
    this.sc.next();
    const first = this.sc.peek();
    if (first === undefined) throw new LexFailure("syntax error: missing '}'");
    if (first === "{" || first === "}" || first === ":") throw new LexFailure("syntax error: bad substitution");
    const name = this.processName();
    let ch = this.sc.next();
    // Go renders the end of input as U+FFFD in these messages.
    let chs = ch ?? "\ufffd";
    let nullIsUnset = false;
    switch (ch) {
      case "}": {
        const value = this.getEnv(name);
        if (value === undefined && this.lex.skipUnsetEnv) return "${" + name + "}";
        return value ?? "";
      }
      case "/":
        return this.processReplace(name);
      case ":":
        nullIsUnset = true;
        ch = this.sc.next();
        chs += ch ?? "\ufffd";
        return this.processModifier(name, ch, chs, nullIsUnset);
      case "+":
      case "-":
      case "?":
      case "#":
      case "%":
        return this.processModifier(name, ch, chs, nullIsUnset);
      default:
        throw new LexFailure(`unsupported modifier (${chs}) in substitution`);
    }
  }

  private processModifier(name: string, ch: string | undefined, chs: string, nullIsUnset: boolean): string {
    // Patterns keep their escapes so that \* stays a literal star for the matcher.
    const rawEscapes = ch === "#" || ch === "%";
    if (nullIsUnset && rawEscapes) throw new LexFailure(`unsupported modifier (${chs}) in substitution`);
    let word: string;
    try {
      word = this.processStopOn("}", rawEscapes).result;
    } catch (err) {
      if (err instanceof LexFailure && this.sc.peek() === undefined) throw new LexFailure("syntax error: missing '}'");
      throw err;
    }
    const value = this.getEnv(name);
    if (value === undefined && this.lex.skipUnsetEnv) return "${" + name + chs + word + "}";
    const unsetOrNull = value === undefined || (nullIsUnset && value === "");
    switch (ch) {
      case "-":
        return unsetOrNull ? word : value!;
      case "+":
        return unsetOrNull ? "" : word;
      case "?":
        if (value === undefined) throw new LexFailure(`${name}: ${word !== "" ? word : "is not allowed to be unset"}`);
        if (nullIsUnset && value === "") throw new LexFailure(`${name}: ${word !== "" ? word : "is not allowed to be empty"}`);
        return value;
      case "#":
      case "%": {
        let greedy = false;
        if (word.startsWith(ch)) {
          greedy = true;
          word = word.slice(1);
        }
        return ch === "%" ? trimSuffix(word, value ?? "", greedy) : trimPrefix(word, value ?? "", greedy);
      }
      default:
        throw new LexFailure(`unsupported modifier (${chs}) in substitution`);
    }
  }

  private processReplace(name: string): string {
    const replaceAll = this.sc.peek() === "/";
    if (replaceAll) this.sc.next();
    let pattern: string;
    try {
      pattern = this.processStopOn("/", true).result;
    } catch (err) {
      if (err instanceof LexFailure && this.sc.peek() === undefined) throw new LexFailure("syntax error: missing '/' in ${}");
      throw err;
    }
    let replacement: string;
    try {
      replacement = this.processStopOn("}", true).result;
    } catch (err) {
      if (err instanceof LexFailure && this.sc.peek() === undefined) throw new LexFailure("syntax error: missing '}'");
      throw err;
    }
    const value = this.getEnv(name);
    if (value === undefined && this.lex.skipUnsetEnv) return "${" + name + "/" + pattern + "/" + replacement + "}";
    const re = patternToRegExp(pattern, true, false, true);
    const v = value ?? "";
    if (replaceAll) return goReplaceAll(re, v, replacement);
    re.lastIndex = 0;
    const m = re.exec(v);
    if (!m) return v;
    return v.slice(0, m.index) + replacement + v.slice(m.index + m[0].length);
  }

  private processPossibleHeredoc(): string {
    this.sc.next();
    if (this.sc.peek() !== "<") return "<";
    this.sc.next();
    // Space between << and the delimiter stays glued to the operator, so `<< EOF` is one word.
    let space = "";
    for (let p = this.sc.peek(); p === " " || p === "\t" || p === "\r"; p = this.sc.peek()) space += this.sc.next();
    return "<<" + space;
  }
}

/**
 * Go's Regexp.ReplaceAllString: unlike String.replace, an empty match right after a previous
 * match is not replaced, and the replacement is a template.
 */
function goReplaceAll(re: RegExp, src: string, template: string): string {
  let out = "";
  let lastEnd = 0;
  let search = 0;
  while (search <= src.length) {
    re.lastIndex = search;
    const m = re.exec(src);
    if (!m) break;
    const start = m.index;
    const end = start + m[0].length;
    out += src.slice(lastEnd, start);
    if (end > lastEnd || start === 0) out += expandGoTemplate(template, m[0]);
    lastEnd = end;
    const cp = src.codePointAt(search);
    const width = cp === undefined ? 1 : cp > 0xffff ? 2 : 1;
    if (search + width > end) search += width;
    else if (search + 1 > end) search++;
    else search = end;
  }
  return out + src.slice(lastEnd);
}

/**
 * Go's Regexp.ReplaceAllString expands `$0`, `${0}` and `$$` in the replacement; our patterns
 * have no capture groups, so every other reference expands to nothing.
 */
function expandGoTemplate(template: string, match: string): string {
  let out = "";
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c !== "$") {
      out += c;
      continue;
    }
    const rest = template.slice(i + 1);
    if (rest.startsWith("$")) {
      out += "$";
      i++;
      continue;
    }
    let name: string | undefined;
    let used = 0;
    const braced = /^\{([A-Za-z0-9_]+)\}/.exec(rest);
    if (braced) {
      name = braced[1]!;
      used = braced[0].length;
    } else {
      const bare = /^[A-Za-z0-9_]+/.exec(rest);
      if (bare) {
        name = bare[0];
        used = bare[0].length;
      }
    }
    if (name === undefined) {
      out += "$";
      continue;
    }
    if (/^[0-9]+$/.test(name) && Number(name) === 0) out += match;
    i += used;
  }
  return out;
}

/**
 * Shell wildcard pattern (`*`, `?`, `\` escapes; no bracket expressions) to a regular expression.
 * Go's `.` stops only at "\n", so that is what the translation uses.
 */
function patternToRegExp(pattern: string, greedy: boolean, anchored: boolean, global: boolean): RegExp {
  const chars = Array.from(pattern);
  let out = anchored ? "^" : "";
  const star = greedy ? "[^\\n]*" : "[^\\n]*?";
  for (let i = 0; i < chars.length; i++) {
    const tok = chars[i]!;
    switch (tok) {
      case "*":
        out += star;
        continue;
      case "?":
        out += "[^\\n]";
        continue;
      case "\\": {
        const next = chars[i + 1];
        // `\}` and `\/` only protected the delimiter of ${...}; they are plain characters here.
        if (next === "}" || next === "/") continue;
        if (next !== "*" && next !== "?" && next !== "\\") {
          throw new LexFailure(`invalid pattern (${pattern}) in substitution: invalid escape '\\${next ?? ""}'`);
        }
        out += "\\" + next;
        i++;
        continue;
      }
      case "[":
      case "]":
      case "{":
      case "}":
      case ".":
      case "+":
      case "(":
      case ")":
      case "|":
      case "^":
      case "$":
        out += "\\" + tok;
        continue;
      default:
        out += tok;
    }
  }
  return new RegExp(out, global ? "gu" : "u");
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = patternToRegExp(pattern, greedy, true, false).exec(value);
  return m ? value.slice(m.index + m[0].length) : value;
}

/** Reverses a pattern but keeps each escape in front of the character it escapes. */
function reversePattern(pattern: string): string {
  const chars = Array.from(pattern);
  const out: string[] = new Array<string>(chars.length);
  const last = chars.length - 1;
  for (let i = 0; i <= last; ) {
    const tok = chars[i]!;
    const o = last - i;
    if (tok === "\\" && i !== last) {
      out[o - 1] = tok;
      out[o] = chars[i + 1]!;
      i += 2;
    } else {
      out[o] = tok;
      i++;
    }
  }
  return out.join("");
}

const reverseString = (s: string): string => Array.from(s).reverse().join("");

function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  // A regular expression finds the leftmost match, so the shortest suffix is searched as a prefix
  // of the reversed value.
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}

/** The expander. Not reentrant-sensitive: each call runs on its own state. */
export class ShellLex {
  readonly escapeToken: string;
  rawQuotes: boolean;
  rawEscapes: boolean;
  skipProcessQuotes: boolean;
  skipUnsetEnv: boolean;

  constructor(escapeToken = "\\", opts: LexOptions = {}) {
    this.escapeToken = escapeToken;
    this.rawQuotes = opts.rawQuotes ?? false;
    this.rawEscapes = opts.rawEscapes ?? false;
    this.skipProcessQuotes = opts.skipProcessQuotes ?? false;
    this.skipUnsetEnv = opts.skipUnsetEnv ?? false;
  }

  /** Expands one word; throws ShellExpandError. */
  processWord(word: string, env: EnvGetter): string {
    return this.processWordWithMatches(word, env).result;
  }

  /** Expands and splits into words (splitting happens after expansion, honouring quotes). */
  processWords(word: string, env: EnvGetter): string[] {
    return this.processWordWithMatches(word, env).words;
  }

  processWordWithMatches(word: string, env: EnvGetter): ProcessWordResult {
    const run = new WordRun(word, this, env);
    try {
      const { result, words } = run.run();
      return { result, words, matched: run.matched, unmatched: run.unmatched };
    } catch (err) {
      if (err instanceof LexFailure) throw new ShellExpandError(`failed to process ${goQuote(word)}: ${err.message}`);
      throw err;
    }
  }
}
