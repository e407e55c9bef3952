// Syntax-tree nodes → typed instructions, and instructions → build stages, with BuildKit's
// validation rules and error messages.
import type { SourceLocation } from "../../../util/index.js";
import { goQuote, trimSpace } from "../gostrings.js";
import {
  chompHeredocContent,
  dockerfileError,
  locate,
  mustParseHeredoc,
  nodeArgs,
  ParseFailure,
  sourceLines,
  type Heredoc,
  type Node,
  type ParseResult,
  type SourceText,
} from "../parser/index.js";
import { BFlags, type Flag } from "./bflag.js";
import { parseGoDuration, parseGoInt, ValueError } from "./goparse.js";
import { networkModes, parseDevice, parseMount, securityModes } from "./runflags.js";
import { withSuggestion } from "./suggest.js";
import type {
  AddCommand,
  ArgCommand,
  CmdCommand,
  Command,
  CommandBase,
  CopyCommand,
  EntrypointCommand,
  EnvCommand,
  ExposeCommand,
  HealthcheckCommand,
  HealthcheckConfig,
  KeyValuePair,
  KeyValuePairOptional,
  LabelCommand,
  MaintainerCommand,
  Mount,
  NetworkMode,
  OnbuildCommand,
  ParsedStages,
  RunCommand,
  SecurityMode,
  ShellCommand,
  ShellDependantCmdLine,
  SourceContent,
  SourcesAndDest,
  Stage,
  StopSignalCommand,
  UserCommand,
  VolumeCommand,
  WorkdirCommand,
} from "./types.js";

/** Every instruction word BuildKit knows, upper-case (for suggestions). */
export const instructionNames = [
  "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
  "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
] as const;

interface Request {
  command: string;
  args: string[];
  heredocs: Heredoc[];
  json: boolean;
  flags: BFlags;
  original: string;
  location: SourceLocation;
  comments: string[];
}

function base(req: Request): CommandBase {
  return { name: req.command, code: trimSpace(req.original), location: req.location, comments: req.comments };
}

const errAtLeastOne = (cmd: string): ParseFailure => new ParseFailure(`${cmd} requires at least one argument`);
const errExactlyOne = (cmd: string): ParseFailure => new ParseFailure(`${cmd} requires exactly one argument`);
const errNoDestination = (cmd: string): ParseFailure =>
  new ParseFailure(`${cmd} requires at least two arguments, but only one was provided. Destination could not be determined`);

function parseKvps(args: string[], cmd: string): KeyValuePair[] {
  if (args.length === 0) throw errAtLeastOne(cmd);
  // The parser emits key, value, separator triples.
  if (args.length % 3 !== 0) throw new ParseFailure(`Bad input to ${cmd}, too many arguments`);
  const out: KeyValuePair[] = [];
  for (let i = 0; i < args.length; i += 3) {
    if (args[i]!.length === 0) throw new ParseFailure(`${cmd} names can not be blank`);
    out.push({ key: args[i]!, value: args[i + 1]!, noDelim: args[i + 2] === "" });
  }
  return out;
}

function docComment(comments: string[], name: string): string {
  if (name === "") return "";
  for (const line of comments) if (line.startsWith(name + " ")) return line.slice(name.length + 1);
  return "";
}

function handleJSONArgs(args: string[], json: boolean): string[] {
  if (args.length === 0) return [];
  if (json) return args;
  return [args.join(" ")];
}

function shellDependent(req: Request): ShellDependantCmdLine {
  return {
    cmdLine: handleJSONArgs(req.args, req.json),
    files: req.heredocs.map((h) => ({ name: h.name, data: h.content, chomp: h.chomp })),
    prependShell: !req.json,
  };
}

function parseSourcesAndDest(req: Request, cmd: string): SourcesAndDest {
  const srcs = req.args.slice(0, -1);
  const dest = req.args[req.args.length - 1]!;
  if (mustParseHeredoc(dest)) throw new ParseFailure(`${cmd} cannot accept a heredoc as a destination`);
  const byName = new Map(req.heredocs.map((h) => [h.name, h]));
  const sourcePaths: string[] = [];
  const sourceContents: SourceContent[] = [];
  for (const src of srcs) {
    const h = mustParseHeredoc(src);
    if (!h) {
      sourcePaths.push(src);
      continue;
    }
    let data = byName.get(h.name)?.content ?? "";
    if (h.chomp) data = chompHeredocContent(data);
    sourceContents.push({ path: h.name, data, expand: h.expand });
  }
  return { destPath: dest, sourcePaths, sourceContents };
}

function parseEnv(req: Request): EnvCommand {
  req.flags.parse();
  return { kind: "env", ...base(req), env: parseKvps(req.args, "ENV") };
}

function parseMaintainer(req: Request): MaintainerCommand {
  if (req.args.length !== 1) throw errExactlyOne("MAINTAINER");
  req.flags.parse();
  return { kind: "maintainer", ...base(req), maintainer: req.args[0]! };
}

function parseLabel(req: Request): LabelCommand {
  req.flags.parse();
  return { kind: "label", ...base(req), labels: parseKvps(req.args, "LABEL") };
}

function parseAdd(req: Request): AddCommand {
  if (req.args.length < 2) throw errNoDestination("ADD");
  const chown = req.flags.addString("chown", "");
  const chmod = req.flags.addString("chmod", "");
  const link = req.flags.addBool("link", false);
  const keepGitDir = req.flags.addBool("keep-git-dir", false);
  const checksum = req.flags.addString("checksum", "");
  const unpack = req.flags.addBool("unpack", false);
  const exclude = req.flags.addStrings("exclude");
  req.flags.parse();
  const sd = parseSourcesAndDest(req, "ADD");
  return {
    kind: "add",
    ...base(req),
    ...sd,
    chown: chown.value,
    chmod: chmod.value,
    link: link.value === "true",
    excludePatterns: exclude.values,
    keepGitDir: req.flags.isUsed("keep-git-dir") ? keepGitDir.value === "true" : undefined,
    checksum: checksum.value,
    unpack: req.flags.isUsed("unpack") ? unpack.value === "true" : undefined,
  };
}

function parseCopy(req: Request): CopyCommand {
  if (req.args.length < 2) throw errNoDestination("COPY");
  const chown = req.flags.addString("chown", "");
  const from = req.flags.addString("from", "");
  const chmod = req.flags.addString("chmod", "");
  const link = req.flags.addBool("link", false);
  const exclude = req.flags.addStrings("exclude");
  const parents = req.flags.addBool("parents", false);
  req.flags.parse();
  const sd = parseSourcesAndDest(req, "COPY");
  return {
    kind: "copy",
    ...base(req),
    ...sd,
    from: from.value,
    chown: chown.value,
    chmod: chmod.value,
    link: link.value === "true",
    excludePatterns: exclude.values,
    parents: parents.value === "true",
  };
}

const validStageName = /^[a-z][a-z0-9_.-]*$/;

function parseFrom(req: Request): Stage {
  let name = "";
  if (req.args.length === 3 && req.args[1]!.toLowerCase() === "as") {
    name = req.args[2]!.toLowerCase();
    if (!validStageName.test(name)) {
      throw new ParseFailure(`invalid name for build stage: ${goQuote(req.args[2]!)}, name can't start with a number or contain symbols`);
    }
  } else if (req.args.length !== 1) {
    throw new ParseFailure("FROM requires either one or three arguments");
  }
  const platform = req.flags.addString("platform", "");
  req.flags.parse();
  return {
    name: name === "" ? undefined : name,
    baseName: req.args[0]!,
    platform: platform.value === "" ? undefined : platform.value,
    commands: [],
    location: req.location,
    code: trimSpace(req.original),
    origCmd: req.command,
    comments: req.comments,
    docComment: docComment(req.comments, name),
  };
}

function parseOnbuild(req: Request): OnbuildCommand {
  if (req.args.length === 0) throw errAtLeastOne("ONBUILD");
  req.flags.parse();
  const trigger = trimSpace(req.args[0]!).toUpperCase();
  if (trigger === "ONBUILD") throw new ParseFailure("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  if (trigger === "MAINTAINER" || trigger === "FROM") throw new ParseFailure(`${trigger} isn't allowed as an ONBUILD trigger`);
  let expression = req.original.replace(/^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*/i, "");
  for (const h of req.heredocs) expression += "\n" + h.content + h.name;
  return { kind: "onbuild", ...base(req), expression };
}

function parseWorkdir(req: Request): WorkdirCommand {
  if (req.args.length !== 1) throw errExactlyOne("WORKDIR");
  req.flags.parse();
  return { kind: "workdir", ...base(req), path: req.args[0]! };
}

function parseRun(req: Request): RunCommand {
  const device = req.flags.addStrings("device");
  const mount = req.flags.addStrings("mount");
  const network = req.flags.addString("network", "default");
  const security = req.flags.addString("security", "sandbox");
  req.flags.parse();
  const flagsUsed = req.flags.usedNames();
  const cmdline = shellDependent(req);

  const devices = device.values.map(parseDevice);
  const mounts: Mount[] = [];
  let mountsNeedExpansion = false;
  for (const spec of mount.values) {
    // BuildKit validates only this much before expansion; the rest waits for the values.
    parseMount(spec);
    // Expansion can change a value wherever variables, quotes or escapes appear; only without
    // them is the literal parse what BuildKit would see.
    const literal = !/[$'"\\`]/.test(spec);
    if (!literal) mountsNeedExpansion = true;
    try {
      mounts.push(parseMount(spec, (w) => w));
    } catch (err) {
      if (literal || !(err instanceof ParseFailure)) throw err;
    }
  }
  if (!(networkModes as readonly string[]).includes(network.value)) throw new ParseFailure(`invalid network mode ${goQuote(network.value)}`);
  if (!(securityModes as readonly string[]).includes(security.value)) throw new ParseFailure(`security ${goQuote(security.value)} is not valid`);

  return {
    kind: "run",
    ...base(req),
    ...cmdline,
    mountSpecs: [...mount.values],
    mounts,
    mountsNeedExpansion,
    network: network.value as NetworkMode,
    security: security.value as SecurityMode,
    devices,
    flagsUsed,
  };
}

function parseCmd(req: Request): CmdCommand {
  req.flags.parse();
  return { kind: "cmd", ...base(req), ...shellDependent(req) };
}

function parseEntrypoint(req: Request): EntrypointCommand {
  req.flags.parse();
  return { kind: "entrypoint", ...base(req), ...shellDependent(req) };
}

function parseOptInterval(flag: Flag): number {
  if (flag.value === "") return 0;
  let d: number;
  try {
    d = parseGoDuration(flag.value);
  } catch (err) {
    if (err instanceof ValueError) throw new ParseFailure(err.message);
    throw err;
  }
  if (d === 0) return 0;
  if (d < 1e6) throw new ParseFailure(`Interval ${goQuote(flag.name)} cannot be less than 1ms`);
  return d;
}

function parseHealthcheck(req: Request): HealthcheckCommand {
  if (req.args.length === 0) throw errAtLeastOne("HEALTHCHECK");
  let typ = req.args[0]!.toUpperCase();
  const args = req.args.slice(1);
  const health: HealthcheckConfig = { test: [], interval: 0, timeout: 0, startPeriod: 0, startInterval: 0, retries: 0 };
  if (typ === "NONE") {
    if (args.length !== 0) throw new ParseFailure("HEALTHCHECK NONE takes no arguments");
    health.test = [typ];
    return { kind: "healthcheck", ...base(req), health };
  }
  const interval = req.flags.addString("interval", "");
  const timeout = req.flags.addString("timeout", "");
  const startPeriod = req.flags.addString("start-period", "");
  const startInterval = req.flags.addString("start-interval", "");
  const retries = req.flags.addString("retries", "");
  req.flags.parse();
  if (typ !== "CMD") throw new ParseFailure(`Unknown type ${goQuote(typ)} in HEALTHCHECK (try CMD)`);
  const cmd = handleJSONArgs(args, req.json);
  if (cmd.length === 0) throw new ParseFailure("Missing command after HEALTHCHECK CMD");
  if (!req.json) typ = "CMD-SHELL";
  health.test = [typ, ...cmd];
  health.interval = parseOptInterval(interval);
  health.timeout = parseOptInterval(timeout);
  health.startPeriod = parseOptInterval(startPeriod);
  health.startInterval = parseOptInterval(startInterval);
  if (retries.value !== "") {
    let n: number;
    try {
      n = parseGoInt(retries.value, 32);
    } catch (err) {
      if (err instanceof ValueError) throw new ParseFailure(err.message);
      throw err;
    }
    if (n < 0) throw new ParseFailure(`--retries cannot be negative (${n})`);
    health.retries = n;
  }
  return { kind: "healthcheck", ...base(req), health };
}

function parseExpose(req: Request): ExposeCommand {
  if (req.args.length === 0) throw errAtLeastOne("EXPOSE");
  req.flags.parse();
  const ports = [...req.args].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { kind: "expose", ...base(req), ports };
}

function parseUser(req: Request): UserCommand {
  if (req.args.length !== 1) throw errExactlyOne("USER");
  req.flags.parse();
  return { kind: "user", ...base(req), user: req.args[0]! };
}

function parseVolume(req: Request): VolumeCommand {
  if (req.args.length === 0) throw errAtLeastOne("VOLUME");
  req.flags.parse();
  const volumes = req.args.map((v) => {
    const t = trimSpace(v);
    if (t === "") throw new ParseFailure("VOLUME specified can not be an empty string");
    return t;
  });
  return { kind: "volume", ...base(req), volumes };
}

function parseStopSignal(req: Request): StopSignalCommand {
  // BuildKit never checks STOPSIGNAL's flags.
  if (req.args.length !== 1) throw errExactlyOne("STOPSIGNAL");
  return { kind: "stopsignal", ...base(req), signal: req.args[0]! };
}

function parseArg(req: Request): ArgCommand {
  // BuildKit never checks ARG's flags.
  if (req.args.length < 1) throw errAtLeastOne("ARG");
  const args: KeyValuePairOptional[] = req.args.map((arg) => {
    const eq = arg.indexOf("=");
    if (eq < 0) return { key: arg, value: undefined, docComment: docComment(req.comments, arg) };
    const key = arg.slice(0, eq);
    if (key === "") throw new ParseFailure("ARG names can not be blank");
    return { key, value: arg.slice(eq + 1), docComment: docComment(req.comments, key) };
  });
  return { kind: "arg", ...base(req), args };
}

function parseShell(req: Request): ShellCommand {
  req.flags.parse();
  const shell = handleJSONArgs(req.args, req.json);
  if (shell.length === 0) throw errAtLeastOne("SHELL");
  if (!req.json) throw new ParseFailure("SHELL requires the arguments to be in JSON form");
  return { kind: "shell", ...base(req), shell };
}

const parsers: Record<string, (req: Request) => Command | Stage> = {
  env: parseEnv,
  maintainer: parseMaintainer,
  label: parseLabel,
  add: parseAdd,
  copy: parseCopy,
  from: parseFrom,
  onbuild: parseOnbuild,
  workdir: parseWorkdir,
  run: parseRun,
  cmd: parseCmd,
  healthcheck: parseHealthcheck,
  entrypoint: parseEntrypoint,
  expose: parseExpose,
  user: parseUser,
  volume: parseVolume,
  stopsignal: parseStopSignal,
  arg: parseArg,
  shell: parseShell,
};

export function isStage(x: Command | Stage): x is Stage {
  return !("kind" in x);
}

function fallbackSource(node: Node): SourceText {
  const lines = sourceLines(node.original);
  // Without the file, show the instruction itself at its own line numbers.
  const pad: string[] = new Array<string>(Math.max(0, node.startLine - 1)).fill("");
  return { file: "Dockerfile", lines: [...pad, ...lines] };
}

/** Parses one node; throws ParseFailure (message only) so callers can choose the wording. */
function parseNode(node: Node, src: SourceText): Command | Stage {
  const fn = parsers[node.value.toLowerCase()];
  if (!fn) throw new ParseFailure(withSuggestion(`unknown instruction: ${node.value}`, node.value, instructionNames, false));
  const req: Request = {
    command: node.value,
    args: nodeArgs(node),
    heredocs: node.heredocs,
    json: node.attributes.json === true,
    flags: new BFlags(node.flags),
    original: node.original,
    location: locate(src, node.startLine, node.endLine),
    comments: node.prevComment,
  };
  return fn(req);
}

/**
 * Parses one instruction node (BuildKit's ParseInstruction): a Stage for FROM, otherwise a
 * Command. Throws KilnError (KILN_DOCKERFILE_PARSE) located at the node.
 */
export function parseInstruction(node: Node, source?: SourceText): Command | Stage {
  const src = source ?? fallbackSource(node);
  try {
    return parseNode(node, src);
  } catch (err) {
    if (err instanceof ParseFailure) throw dockerfileError(err.message, src, node.startLine, node.endLine);
    throw err;
  }
}

/** Like parseInstruction but FROM is an error (used for ONBUILD triggers). */
export function parseCommand(node: Node, source?: SourceText): Command {
  const src = source ?? fallbackSource(node);
  const c = parseInstruction(node, src);
  if (isStage(c)) throw dockerfileError("*instructions.Stage is not a command type", src, node.startLine, node.endLine);
  return c;
}

/**
 * Groups the instructions into stages (BuildKit's instructions.Parse). ARGs before the first FROM
 * become metaArgs; any other instruction there is an error.
 */
export function parseStages(input: ParseResult | Node, source?: SourceText): ParsedStages {
  const ast = "ast" in input ? input.ast : input;
  const src = source ?? ("ast" in input ? input.source : undefined);
  const metaArgs: ArgCommand[] = [];
  const stages: Stage[] = [];
  for (const node of ast.children) {
    const nodeSrc = src ?? fallbackSource(node);
    let c: Command | Stage;
    try {
      c = parseNode(node, nodeSrc);
    } catch (err) {
      if (err instanceof ParseFailure) {
        throw dockerfileError(`dockerfile parse error on line ${node.startLine}: ${err.message}`, nodeSrc, node.startLine, node.endLine);
      }
      throw err;
    }
    if (isStage(c)) {
      stages.push(c);
      continue;
    }
    if (stages.length === 0) {
      if (c.kind === "arg") {
        metaArgs.push(c);
        continue;
      }
      throw dockerfileError("no build stage in current context", nodeSrc, node.startLine, node.endLine);
    }
    stages[stages.length - 1]!.commands.push(c);
  }
  return { metaArgs, stages };
}

/** Index of the stage with this name (case-insensitive), or -1. */
export function findStage(stages: readonly Stage[], name: string): number {
  const n = name.toLowerCase();
  return stages.findIndex((s) => s.name !== undefined && s.name === n);
}
