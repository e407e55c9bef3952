// Typed Dockerfile instructions and build stages (BuildKit's instructions package), the contract
// the Dockerfile→LLB converter is written against. Word values are unexpanded unless noted.
import type { SourceLocation } from "../../../util/index.js";

/** Fields every instruction carries. */
export interface CommandBase {
  /** The instruction word as written ("run", "RUN"). */
  name: string;
  /** The instruction's logical source line, trimmed (continuations joined): BuildKit's String(). */
  code: string;
  location: SourceLocation;
  /** Comment lines directly above the instruction. */
  comments: string[];
}

/** `KEY=value` (or the legacy `KEY value`, then noDelim is true). */
export interface KeyValuePair {
  key: string;
  value: string;
  noDelim: boolean;
}

/** An ARG entry: the value is undefined when no default was given. */
export interface KeyValuePairOptional {
  key: string;
  value: string | undefined;
  /** From a `# NAME description` comment above the ARG. */
  docComment: string;
}

export interface EnvCommand extends CommandBase {
  kind: "env";
  env: KeyValuePair[];
}

export interface MaintainerCommand extends CommandBase {
  kind: "maintainer";
  maintainer: string;
}

export interface LabelCommand extends CommandBase {
  kind: "label";
  labels: KeyValuePair[];
}

/** A heredoc source of COPY/ADD: an inline file. */
export interface SourceContent {
  /** The heredoc delimiter, used as the file name. */
  path: string;
  /** The body (already chomped for `<<-`). */
  data: string;
  /** Whether variables in the body are expanded (delimiter unquoted). */
  expand: boolean;
}

export interface SourcesAndDest {
  destPath: string;
  sourcePaths: string[];
  sourceContents: SourceContent[];
}

export interface AddCommand extends CommandBase, SourcesAndDest {
  kind: "add";
  chown: string;
  chmod: string;
  link: boolean;
  excludePatterns: string[];
  /** Only set when `--keep-git-dir` was given. */
  keepGitDir: boolean | undefined;
  checksum: string;
  /** Only set when `--unpack` was given. */
  unpack: boolean | undefined;
}

export interface CopyCommand extends CommandBase, SourcesAndDest {
  kind: "copy";
  /** Stage name, stage index or image reference; "" for the build context. */
  from: string;
  chown: string;
  chmod: string;
  link: boolean;
  excludePatterns: string[];
  parents: boolean;
}

export interface OnbuildCommand extends CommandBase {
  kind: "onbuild";
  /** The trigger instruction's source (heredoc bodies appended), parsed again when the image is used. */
  expression: string;
}

export interface WorkdirCommand extends CommandBase {
  kind: "workdir";
  path: string;
}

/** A heredoc attached to RUN, CMD or ENTRYPOINT. */
export interface ShellInlineFile {
  name: string;
  /** The body as written; apply chompHeredocContent when `chomp`. */
  data: string;
  chomp: boolean;
}

export interface ShellDependantCmdLine {
  /** Exec form: the JSON array. Shell form: one element, the arguments joined by spaces. */
  cmdLine: string[];
  files: ShellInlineFile[];
  /** True for the shell form: run through the stage's SHELL. */
  prependShell: boolean;
}

export type MountType = "bind" | "cache" | "tmpfs" | "secret" | "ssh";
export type ShareMode = "shared" | "private" | "locked";
export type NetworkMode = "default" | "none" | "host";
export type SecurityMode = "sandbox" | "insecure";

/** A `RUN --mount=...`. Unset strings are "", as in BuildKit. */
export interface Mount {
  type: MountType;
  from: string;
  source: string;
  target: string;
  readOnly: boolean;
  /** tmpfs size in bytes; 0 = unset. */
  sizeLimit: number;
  /** `id=`: the cache id for cache mounts, the secret id or ssh id otherwise. */
  cacheId: string;
  cacheSharing: ShareMode | undefined;
  required: boolean;
  /** Secret as environment variable (`env=NAME`). */
  env: string | undefined;
  mode: number | undefined;
  uid: number | undefined;
  gid: number | undefined;
}

/** A `RUN --device=...` (CDI device). */
export interface Device {
  name: string;
  required: boolean;
}

export interface RunCommand extends CommandBase, ShellDependantCmdLine {
  kind: "run";
  /** The raw `--mount` values, in order; expandRunMounts re-parses them after expansion. */
  mountSpecs: string[];
  /**
   * The mounts parsed without expansion. BuildKit expands every mount value before use, so the
   * converter should call expandRunMounts(cmd, expand). When a spec holds `$`, quotes or escapes,
   * `mountsNeedExpansion` is true and a spec whose literal form does not parse is left out here.
   */
  mounts: Mount[];
  mountsNeedExpansion: boolean;
  network: NetworkMode;
  security: SecurityMode;
  devices: Device[];
  /** Names of the flags given (without `--`), e.g. ["mount", "network"]. */
  flagsUsed: string[];
}

export interface CmdCommand extends CommandBase, ShellDependantCmdLine {
  kind: "cmd";
}

export interface EntrypointCommand extends CommandBase, ShellDependantCmdLine {
  kind: "entrypoint";
}

/** Durations are in nanoseconds, as in the image config; 0 means unset. */
export interface HealthcheckConfig {
  /** ["NONE"], ["CMD", ...exec args] or ["CMD-SHELL", command]. */
  test: string[];
  interval: number;
  timeout: number;
  startPeriod: number;
  startInterval: number;
  retries: number;
}

export interface HealthcheckCommand extends CommandBase {
  kind: "healthcheck";
  health: HealthcheckConfig;
}

export interface ExposeCommand extends CommandBase {
  kind: "expose";
  /** Sorted, unexpanded ("80/tcp", "$PORT"). */
  ports: string[];
}

export interface UserCommand extends CommandBase {
  kind: "user";
  user: string;
}

export interface VolumeCommand extends CommandBase {
  kind: "volume";
  volumes: string[];
}

export interface StopSignalCommand extends CommandBase {
  kind: "stopsignal";
  signal: string;
}

export interface ArgCommand extends CommandBase {
  kind: "arg";
  args: KeyValuePairOptional[];
}

export interface ShellCommand extends CommandBase {
  kind: "shell";
  shell: string[];
}

export type Command =
  | EnvCommand
  | MaintainerCommand
  | LabelCommand
  | AddCommand
  | CopyCommand
  | OnbuildCommand
  | WorkdirCommand
  | RunCommand
  | CmdCommand
  | EntrypointCommand
  | HealthcheckCommand
  | ExposeCommand
  | UserCommand
  | VolumeCommand
  | StopSignalCommand
  | ArgCommand
  | ShellCommand;

export type CommandKind = Command["kind"];

/** A FROM and the instructions up to the next FROM. */
export interface Stage {
  /** `AS name`, lower-cased; undefined when unnamed. */
  name: string | undefined;
  /** The image or stage reference, unexpanded (may contain `$ARG`). */
  baseName: string;
  /** `--platform` value, unexpanded; undefined when absent. */
  platform: string | undefined;
  commands: Command[];
  /** The FROM line. */
  location: SourceLocation;
  /** The FROM instruction's source, trimmed. */
  code: string;
  /** The FROM word as written ("FROM", "from"). */
  origCmd: string;
  comments: string[];
  /** From a `# name description` comment above a named stage. */
  docComment: string;
}

export interface ParsedStages {
  /** ARGs before the first FROM (usable in FROM lines). */
  metaArgs: ArgCommand[];
  stages: Stage[];
}
