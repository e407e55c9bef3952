// `kiln build`: the porcelain (`kiln build PATH -t NAME`) and buildctl's form (`--frontend --local --opt`).
import { Command, Option } from "commander";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { access, rename, writeFile } from "node:fs/promises";
import { parseOutputSpec, writeMetadataFile } from "../outputs.js";
import { createPrinter } from "./progress.js";
import { printError } from "./errors.js";
import type { SolveRequest } from "../../control/index.js";
import { CanceledError, KilnError } from "../../util/index.js";
import type { ProgressWriter } from "../../solver/index.js";
import { daemonOptions, detectDaemon, type DaemonFlags } from "./daemon.js";
import { localDirFlags, readStdinDefinition } from "./build-stdin.js";
import { attestAttrs } from "./attest.js";

const collect = (v: string, prev: string[] = []) => [...prev, v];

interface BuildFlags {
  file?: string;
  tag: string[];
  buildArg: string[];
  target?: string;
  output: string[];
  platform: string[];
  /** commander turns `--no-cache` into `cache: false`. */
  cache?: boolean;
  progress: string;
  frontend?: string;
  local: string[];
  opt: string[];
  attest?: string[];
  provenance?: string | boolean;
  sbom?: string | boolean;
  metadataFile?: string;
  push?: boolean;
  allow: string[];
  secret: string[];
  ssh: string[];
  refFile?: string;
  exportCache: string[];
  importCache: string[];
  cacheTo: string[];
  cacheFrom: string[];
  explainCache?: boolean;
}

export interface GlobalFlags extends DaemonFlags {
  root?: string;
  config?: string;
  debug?: boolean;
}

export function registerBuild(program: Command, setExit: (code: number) => void): void {
  program
    .command("build")
    .description("build a Dockerfile (kiln build PATH) or buildctl-style (--frontend dockerfile.v0 --local ...)")
    .argument("[path]", "build context directory")
    .option("-f, --file <file>", "Dockerfile path (default PATH/Dockerfile)")
    .option("-t, --tag <name>", "image name (repeatable)", collect, [])
    .option("--build-arg <k=v>", "build-time variable (repeatable)", collect, [])
    .option("--target <stage>", "stage to build")
    .option("-o, --output <spec>", "output: type=oci,dest=FILE | type=local,dest=DIR | DIR (repeatable)", collect, [])
    .option("--platform <list>", "target platform(s): linux/amd64,linux/arm64 (repeatable; local = this machine)", collect, [])
    .option("--no-cache", "do not use the build cache")
    .option("--push", "push the image (with -t)")
    .addOption(new Option("--progress <mode>", "progress output").choices(["auto", "plain", "tty", "rawjson"]).default(process.env.BUILDKIT_PROGRESS ?? "auto"))
    .option("--frontend <name>", "frontend (buildctl form), e.g. dockerfile.v0")
    .option("--local <name=dir>", "local directory for the frontend (repeatable)", collect, [])
    .option("--opt <k=v>", "frontend option (repeatable)", collect, [])
    .option("--metadata-file <file>", "write the build result's metadata as JSON")
    .option("--allow <entitlement>", "allow an extra privilege: network.host, security.insecure (repeatable)", collect, [])
    .option("--secret <spec>", "secret for RUN --mount=type=secret: id=ID,src=PATH | id=ID,env=VAR (repeatable)", collect, [])
    .option("--export-cache <spec>", "export build cache: type=registry,ref=REF | type=local,dest=DIR [,mode=max,...] (repeatable)", collect, [])
    .option("--import-cache <spec>", "import build cache: type=registry,ref=REF | type=local,src=DIR (repeatable)", collect, [])
    .option("--cache-to <spec>", "same as --export-cache (a bare REF means type=registry,ref=REF)", collect, [])
    .option("--cache-from <spec>", "same as --import-cache (a bare REF means type=registry,ref=REF)", collect, [])
    .option("--explain-cache", "say in the progress output why each step that runs missed the cache (also KILN_EXPLAIN_CACHE=1)")
    .option("--ssh <spec>", "ssh agent for RUN --mount=type=ssh: default | ID=SOCKET | ID=KEY[,KEY] (repeatable)", collect, [])
    .option("--ref-file <file>", "write the build ref to a file")
    .option("--attest <spec>", "attestation: type=provenance[,mode=min|max] | type=sbom[,generator=IMAGE] (repeatable)", collect, [])
    .option("--provenance [value]", "shorthand for --attest type=provenance: true (mode=min), false, min, max or mode=…")
    .option("--sbom [value]", "shorthand for --attest type=sbom: true, false or generator=IMAGE")
    .action(async (ctxPath: string | undefined, flags: BuildFlags) => {
      setExit(await build(program.opts<GlobalFlags>(), ctxPath, flags));
    });
}

function toRequest(ctxPath: string | undefined, flags: BuildFlags): { req: SolveRequest; dirs: Record<string, string> } {
  const dirs: Record<string, string> = {};
  const attrs: Record<string, string> = {};
  let frontend = flags.frontend;
  if (frontend) {
    for (const l of flags.local) {
      const i = l.indexOf("=");
      if (i < 0) throw new KilnError("KILN_FLAGS", `invalid --local ${JSON.stringify(l)}: expected NAME=DIR`);
      dirs[l.slice(0, i)] = path.resolve(l.slice(i + 1));
    }
  } else {
    frontend = "dockerfile.v0";
    const context = path.resolve(ctxPath ?? ".");
    dirs.context = context;
    const file = flags.file ? path.resolve(flags.file) : path.join(context, "Dockerfile");
    dirs.dockerfile = path.dirname(file);
    attrs.filename = path.basename(file);
  }
  for (const o of flags.opt) {
    const i = o.indexOf("=");
    attrs[i < 0 ? o : o.slice(0, i)] = i < 0 ? "" : o.slice(i + 1);
  }
  for (const a of flags.buildArg) {
    const i = a.indexOf("=");
    if (i < 0) {
      const v = process.env[a];
      if (v !== undefined) attrs[`build-arg:${a}`] = v;
    } else attrs[`build-arg:${a.slice(0, i)}`] = a.slice(i + 1);
  }
  if (flags.target) attrs.target = flags.target;
  Object.assign(attrs, attestAttrs(flags));
  // buildx's spelling: a comma list, the flag repeated, or both.
  const platforms = flags.platform.flatMap((p) => p.split(",")).map((p) => p.trim()).filter(Boolean);
  if (platforms.length > 0) attrs.platform = platforms.join(",");
  if (flags.cache === false) attrs["no-cache"] = "";
  // buildx passes SOURCE_DATE_EPOCH from the environment as a build argument.
  if (process.env.SOURCE_DATE_EPOCH !== undefined && attrs["build-arg:SOURCE_DATE_EPOCH"] === undefined) attrs["build-arg:SOURCE_DATE_EPOCH"] = process.env.SOURCE_DATE_EPOCH;
  const req: SolveRequest = { frontend, frontendAttrs: attrs };
  if (flags.allow.length > 0) req.entitlements = flags.allow;
  const cacheExports = [...(flags.exportCache ?? []), ...(flags.cacheTo ?? [])].map(parseCacheSpec);
  const cacheImports = [...(flags.importCache ?? []), ...(flags.cacheFrom ?? [])].map(parseCacheSpec);
  if (cacheExports.length > 0 || cacheImports.length > 0) req.cache = { exports: cacheExports, imports: cacheImports };
  if (flags.explainCache || process.env.KILN_EXPLAIN_CACHE === "1") req.explainCache = true;
  const exporters = exportersFromFlags(flags);
  if (exporters.length === 1) req.exporter = exporters[0];
  else if (exporters.length > 1) req.exporters = exporters;
  return { req, dirs };
}

/** A cache entry as buildctl and buildx spell it; local paths are made absolute here, on the client. */
export function parseCacheSpec(spec: string): { type: string; attrs: Record<string, string> } {
  if (!spec.includes("=")) return { type: "registry", attrs: { ref: spec } };
  const e = parseOutputSpec(spec);
  for (const k of ["dest", "src"]) if (e.type === "local" && e.attrs[k]) e.attrs[k] = path.resolve(e.attrs[k]);
  return e;
}

/**
 * `--output` specs plus the porcelain: `-t NAME` names the image (the image exporter, which records
 * the name, unless an oci/docker/image output is given to carry it) and `--push` pushes it.
 */
export function exportersFromFlags(flags: Pick<BuildFlags, "output" | "tag" | "push">): { type: string; attrs: Record<string, string> }[] {
  const exporters = flags.output.map(parseOutputSpec);
  const name = flags.tag.join(",");
  if (flags.tag.length === 0 && !flags.push) return exporters;
  const image = exporters.find((e) => e.type === "image" || e.type === "registry");
  if (image) {
    if (name && image.attrs.name === undefined) image.attrs.name = name;
    if (flags.push && image.attrs.push === undefined) image.attrs.push = "true";
    return exporters;
  }
  const tarballs = exporters.filter((e) => e.type === "oci" || e.type === "docker");
  if (!flags.push && tarballs.length > 0) {
    for (const e of tarballs) if (name && e.attrs.name === undefined) e.attrs.name = name;
    return exporters;
  }
  const attrs: Record<string, string> = {};
  if (name) attrs.name = name;
  if (flags.push) attrs.push = "true";
  return [...exporters, { type: "image", attrs }];
}

/** BuildKit's identity.NewID shape (buildctl's build refs): 25 base-36 characters from 128 random bits. */
function newID(): string {
  return BigInt("0x" + randomBytes(16).toString("hex")).toString(36).padStart(25, "0").slice(-25);
}

/** buildctl writes the ref however the build ended, replacing the file whole. */
async function writeRefFile(file: string, ref: string): Promise<void> {
  const tmp = `${file}.kiln-${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(tmp, ref, { mode: 0o666 });
  await rename(tmp, file);
}

async function build(g: GlobalFlags, ctxPath: string | undefined, flags: BuildFlags): Promise<number> {
  const ac = new AbortController();
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    ac.abort(new CanceledError("interrupted"));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let printer: ProgressWriter & { finish?(): void } = { write() {} };
  const ref = newID();
  try {
    const { req, dirs } = toRequest(ctxPath, flags);
    // buildctl's form with no frontend: the LLB comes on stdin, the directories from --local.
    const stdinDef = !flags.frontend && ctxPath === undefined ? await readStdinDefinition() : undefined;
    if (stdinDef) {
      delete req.frontend;
      delete req.frontendAttrs?.filename;
      req.definition = stdinDef;
      for (const k of Object.keys(dirs)) delete dirs[k];
      Object.assign(dirs, localDirFlags(flags.local));
    }
    if (req.frontend === "dockerfile.v0" && !flags.frontend) {
      const df = path.join(dirs.dockerfile!, req.frontendAttrs!.filename!);
      // The frontend also takes `dockerfile` for a missing `Dockerfile`, as BuildKit's does.
      const lower = path.basename(df) === "Dockerfile" ? path.join(path.dirname(df), "dockerfile") : undefined;
      await access(df).catch(async () => {
        if (lower && (await access(lower).then(() => true, () => false))) return;
        throw new KilnError("KILN_DOCKERFILE_NOT_FOUND", `failed to read dockerfile: open ${df}: no such file or directory`);
      });
    }
    // --root/--config name a local state directory: in-process, unless --addr is given too.
    const daemon = daemonOptions(g) ?? (g.root === undefined && g.config === undefined ? await detectDaemon(ac.signal) : undefined);
    printer = createPrinter(flags.progress, process.stderr);
    let res: Record<string, string>;
    // bin/run-bundle.cjs keeps V8's code cache complete for both paths (see there).
    (globalThis as { __kilnCodeCacheTag?: string }).__kilnCodeCacheTag = daemon ? "daemon" : "local";
    if (daemon) {
      const { buildThroughDaemon } = await import("./build-remote.js");
      res = await buildThroughDaemon(ac.signal, daemon, req, dirs, flags, printer, ref);
      printer.finish?.();
    } else {
      const { buildInProcess } = await import("./build-local.js");
      res = await buildInProcess(ac.signal, g, req, dirs, flags, printer, ref);
    }
    if (flags.metadataFile) await writeMetadataFile(flags.metadataFile, res);
    return 0;
  } catch (err) {
    printer.finish?.();
    return printError(err, g.debug ?? false, interrupted);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (flags.refFile) await writeRefFile(flags.refFile, ref).catch(() => undefined);
  }
}
