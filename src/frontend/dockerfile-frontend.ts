// The built-in `dockerfile.v0` frontend: reads the Dockerfile and ignore file through the bridge
// (from local sources, a git repository or a URL, as BuildKit's frontend does), converts it to
// LLB, returns the image config.
import path from "node:path";
import { FileAction, State, definitionState, formatRef, git, http, image, local, ociLayout, parseNormalizedNamed, tagNameOnly, withDigest, type DefinitionBytes, type NormalizedRef } from "../llb/index.js";
import type { ImageConfig } from "../api/oci.js";
import type { Definition } from "../api/index.js";
import { KilnError, digestOf, formatPlatform, normalizePlatform, parsePlatform, type Platform } from "../util/index.js";
import { convertDockerfile, marshalImage, parseGitRef, type NamedContext } from "./dockerfile/convert/index.js";
import { detectSyntax, locate, sourceLines } from "./dockerfile/parser/index.js";
import { imageConfigMetadataKey, marshalPlatforms, platformsMetadataKey, type Frontend, type FrontendAttestation, type FrontendBridge, type FrontendOptions, type FrontendResult } from "./types.js";
import { createSBOMScanner, parseAttests, scannerReference, type SBOMScanner } from "./attestations.js";

const defaultLocalNameDockerfile = "dockerfile";
const defaultLocalNameContext = "context";

/** Solves a source and reads files of it; missing files are undefined. */
async function readFiles(signal: AbortSignal, bridge: FrontendBridge, st: State, files: string[]): Promise<{ data: (Uint8Array | undefined)[]; def: DefinitionBytes }> {
  const def = await st.marshal();
  const ref = await bridge.solve(signal, def.toBinary());
  return { data: await Promise.all(files.map((f) => bridge.readFile(signal, ref, f))), def };
}

/** `Dockerfile` may also be spelled `dockerfile` (moby/moby#10858); other names are exact. */
function lowercaseFallback(filename: string): string | undefined {
  const base = path.posix.basename(filename);
  return base === "Dockerfile" ? path.posix.join(path.posix.dirname(filename), "dockerfile") : undefined;
}

/** Magic numbers of the compressions BuildKit recognises in a remote context, or a tar header. */
export function isArchive(header: Uint8Array): boolean {
  const magics = [
    [0x42, 0x5a, 0x68],
    [0x1f, 0x8b, 0x08],
    [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
  ];
  if (magics.some((m) => header.length >= m.length && m.every((b, i) => header[i] === b))) return true;
  // A tar header: 512 bytes whose checksum field matches the header's byte sum.
  if (header.length < 512) return false;
  const field = Buffer.from(header.subarray(148, 156)).toString("latin1").replace(/[\0 ]+$/, "").trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return parseInt(field, 8) === sum;
}

/** Where the Dockerfile and the build context come from: client directories, a git repository or a URL. */
interface Sources {
  /** The state the Dockerfile is read from; undefined: the client's dockerfile directory. */
  dockerfile?: State;
  /** The build context; undefined: the client's context directory. */
  context?: State;
  /** The context is not a client directory: its .dockerignore is not applied. */
  notLocal: boolean;
  filename: string;
}

/**
 * The `context` attr as BuildKit's frontend reads it: a git reference or an http(s) URL (a tarball
 * is unpacked; any other file is the Dockerfile itself). Unless `dockerfilekey` names a client
 * directory for it, the Dockerfile comes from there too.
 */
async function remoteSources(signal: AbortSignal, bridge: FrontendBridge, attrs: Record<string, string>, filename: string): Promise<Sources> {
  const ctx = attrs.context ?? "";
  const forceLocalDockerfile = attrs.dockerfilekey !== undefined;
  const gitRef = parseGitRef(ctx);
  if (gitRef) {
    const commit = gitRef.subDir !== "" ? `${gitRef.commit}:${gitRef.subDir}` : gitRef.commit;
    const keep = ["1", "t", "T", "TRUE", "true", "True"].includes(attrs["build-arg:BUILDKIT_CONTEXT_KEEP_GIT_DIR"] ?? "");
    const st = git(gitRef.remote, commit, { keepGitDir: keep, customName: `[internal] load git source ${ctx}` });
    return { dockerfile: forceLocalDockerfile ? undefined : st, context: st, notLocal: false, filename };
  }
  if (/^https?:\/\//.test(ctx)) {
    const st = http(ctx, { filename: "context", customName: "[internal] load remote build context" });
    const {
      data: [head],
    } = await readFiles(signal, bridge, st, ["context"]);
    if (!head) throw new KilnError("KILN_FRONTEND", "failed to read downloaded context");
    if (isArchive(head.subarray(0, 1024))) {
      const bc = State.scratch().file(FileAction.copy(st, "/context", "/", { attemptUnpack: true }));
      return { dockerfile: forceLocalDockerfile ? undefined : bc, context: bc, notLocal: false, filename };
    }
    return { dockerfile: forceLocalDockerfile ? undefined : st, context: st, notLocal: true, filename: "context" };
  }
  return { notLocal: false, filename };
}

/** FrontendInputs named `dockerfile` and `context` (an LLB client's states) stand in for the client's directories. */
function inputSources(inputs: Record<string, Definition | undefined>, attrs: Record<string, string>, filename: string): Sources {
  const out: Sources = { notLocal: false, filename };
  if (attrs.dockerfilekey === undefined && defaultLocalNameDockerfile in inputs) out.dockerfile = definitionState(inputs[defaultLocalNameDockerfile]);
  if (defaultLocalNameContext in inputs) {
    out.context = definitionState(inputs[defaultLocalNameContext]);
    out.notLocal = true;
  }
  return out;
}

/** The digest of a definition's head vertex (the op the terminal op returns), as Go's Definition.Head. */
function sourceVertex(def: DefinitionBytes): string {
  const ops = def.def;
  return ops.length >= 2 ? digestOf(ops[ops.length - 2]!) : "";
}

/** `contextsubdir`: the remote context's directory that is the build context. */
function scopeToSubDir(st: State, dir: string): State {
  return State.scratch().file(FileAction.copy(st, dir, "/", { copyDirContentsOnly: true }));
}

/** docker/reference's FamiliarString: Docker Hub names without `docker.io/` and `library/`. */
function familiarName(r: NormalizedRef): string {
  let name = r.name;
  if (name.startsWith("docker.io/library/")) name = name.slice("docker.io/library/".length);
  else if (name.startsWith("docker.io/")) name = name.slice("docker.io/".length);
  return formatRef({ ...r, name });
}

/** An image config's env, working directory and user on a state, as Go's State.WithImageConfig. */
function withImageConfig(st: State, cfg: Partial<ImageConfig>): State {
  for (const e of cfg.config?.Env ?? []) {
    const i = e.indexOf("=");
    st = i < 0 ? st.addEnv(e, "") : st.addEnv(e.slice(0, i), e.slice(i + 1));
  }
  if (cfg.config?.WorkingDir) st = st.dir(cfg.config.WorkingDir);
  if (cfg.config?.User) st = st.user(cfg.config.User);
  return st;
}

/**
 * BuildKit's named contexts: `context:NAME=` (or `context:NAME::PLATFORM=`) replaces a stage or
 * image name with `docker-image://REF`, `local:DIR` (a client directory, its own .dockerignore
 * applied), a git repository or an http(s) URL.
 */
function namedContexts(signal: AbortSignal, bridge: FrontendBridge, attrs: Record<string, string>, sessionId: string): (name: string, platform: Platform) => Promise<NamedContext | undefined> {
  const lookup = async (pname: string, name: string, platform: Platform): Promise<NamedContext | undefined> => {
    const v = attrs[`context:${pname}`];
    if (v === undefined) return undefined;
    const colon = v.indexOf(":");
    if (colon < 0) throw new KilnError("KILN_FRONTEND", `invalid context specifier ${v} for ${pname}`);
    let kind = v.slice(0, colon);
    // git@host:repo is a git remote without a scheme.
    if (kind.startsWith("git@")) kind = "git";
    const rest = v.slice(colon + 1);
    switch (kind) {
      case "docker-image": {
        const ref = rest.replace(/^\/\//, "");
        if (ref === "scratch") return { state: State.scratch() };
        const resolved = await bridge.resolveImageConfig(signal, formatRef(tagNameOnly(parseNormalizedNamed(ref))), { platform });
        const cfg = JSON.parse(Buffer.from(resolved.config).toString("utf8")) as Partial<ImageConfig>;
        delete cfg.created;
        const p = { os: platform.os, architecture: platform.architecture, ...(platform.variant ? { variant: platform.variant } : {}) };
        return { state: withImageConfig(image(ref, { platform: p, customName: `[context ${pname}] ${ref}` }), cfg), image: cfg };
      }
      case "git":
      case "http":
      case "https": {
        const g = parseGitRef(v);
        if (g) return { state: git(g.remote, g.subDir !== "" ? `${g.commit}:${g.subDir}` : g.commit, { keepGitDir: true, customName: `[internal] load git source ${v}` }) };
        if (kind === "git") throw new KilnError("KILN_FRONTEND", `invalid git context ${v}`);
        return { state: http(v, { customName: `[context ${pname}] ${v}` }) };
      }
      case "local": {
        const ignore = local(rest, { sessionId, followPaths: [".dockerignore"], sharedKeyHint: `context:${pname}-.dockerignore`, customName: `[context ${pname}] load .dockerignore` });
        const {
          data: [dt],
        } = await readFiles(signal, bridge, ignore, [".dockerignore"]);
        const excludes = dt ? parseIgnore(Buffer.from(dt).toString("utf8")) : [];
        return { state: local(rest, { sessionId, sharedKeyHint: `context:${pname}`, customName: `[context ${pname}] load from client`, ...(excludes.length > 0 ? { excludePatterns: excludes } : {}) }) };
      }
      case "oci-layout": {
        // STORE@DIGEST: the client's layout named STORE; the name only labels the image.
        const spec = rest.replace(/^\/\//, "");
        const at = spec.indexOf("@");
        if (at < 0) throw new KilnError("KILN_FRONTEND", `oci-layout reference ${JSON.stringify(spec)} has no digest`);
        const storeId = spec.slice(0, at);
        const digest = spec.slice(at + 1);
        let dummy: string;
        try {
          dummy = formatRef(withDigest(parseNormalizedNamed(name), digest));
        } catch (err) {
          throw new KilnError("KILN_FRONTEND", `could not parse oci-layout reference ${JSON.stringify(spec)}: ${(err as Error).message}`, { cause: err });
        }
        const resolved = await bridge.resolveImageConfig(signal, dummy, { platform, store: { storeId } });
        const cfg = JSON.parse(Buffer.from(resolved.config).toString("utf8")) as Partial<ImageConfig>;
        const p = { os: platform.os, architecture: platform.architecture, ...(platform.variant ? { variant: platform.variant } : {}) };
        const st = ociLayout(dummy, { sessionId, storeId, platform: p, customName: `[context ${pname}] OCI load from client` });
        return { state: withImageConfig(st, cfg), image: cfg };
      }
      default:
        throw new KilnError("KILN_FRONTEND", `unsupported context source ${kind} for ${pname}`);
    }
  };
  return async (name, platform) => {
    let r: NormalizedRef;
    try {
      r = parseNormalizedNamed(name);
    } catch (err) {
      throw new KilnError("KILN_FRONTEND", `invalid context name ${name}: ${(err as Error).message}`, { cause: err });
    }
    const fam = familiarName(r).replace(/:latest$/, "");
    return (await lookup(`${fam}::${formatPlatform(normalizePlatform(platform))}`, fam, platform)) ?? (await lookup(fam, fam, platform));
  };
}

/** Frontend images that are this frontend (any version): kiln builds their Dockerfiles itself. */
const builtinFrontendImages = new Set(["docker.io/docker/dockerfile", "docker.io/docker/dockerfile-upstream"]);

/**
 * `# syntax=IMAGE` (or the BUILDKIT_SYNTAX build arg) asks for a frontend image, which BuildKit
 * pulls and runs (gateway.v0). Kiln cannot run one: docker/dockerfile is built by this frontend;
 * any other image fails the build rather than being silently read as a plain Dockerfile. As with
 * BuildKit, an image that does not resolve fails with the registry's error, and the directive's
 * line is the error's location.
 */
async function refuseFrontendImage(signal: AbortSignal, bridge: FrontendBridge, attrs: Record<string, string>, dockerfile: string, filename: string, dockerfileDef: DefinitionBytes): Promise<void> {
  // `cmdline` is set when a frontend image is itself being run with these options.
  if (attrs.cmdline !== undefined) return;
  const fromArg = attrs["build-arg:BUILDKIT_SYNTAX"];
  const directive = fromArg === undefined ? detectSyntax(dockerfile) : undefined;
  const cmdline = fromArg ?? directive?.cmdline;
  if (cmdline === undefined) return;
  const source = cmdline.trim().split(" ")[0]!;
  const fail = (err: KilnError): never => {
    const hint = err.hint === undefined ? {} : { hint: err.hint };
    if (fromArg !== undefined) throw new KilnError(err.code, `failed with build-arg:BUILDKIT_SYNTAX = ${fromArg}: ${err.message}`, { cause: err, ...hint });
    throw new KilnError(err.code, err.message, { cause: err, ...hint, location: { ...locate({ file: filename, lines: sourceLines(dockerfile) }, directive!.line), definition: dockerfileDef.toBinary() } });
  };
  let ref: NormalizedRef;
  try {
    ref = parseNormalizedNamed(source);
  } catch (err) {
    return fail(new KilnError("KILN_FRONTEND", `failed to parse frontend image ${source}: ${(err as Error).message}`, { cause: err }));
  }
  if (builtinFrontendImages.has(ref.name)) return;
  try {
    await bridge.resolveImageConfig(signal, formatRef(tagNameOnly(ref)), {});
  } catch (err) {
    if (signal.aborted) throw err;
    return fail(err instanceof KilnError ? err : new KilnError("KILN_FRONTEND", (err as Error).message, { cause: err }));
  }
  return fail(new KilnError("KILN_FRONTEND", `frontend image ${source} cannot run on kiln: only the built-in Dockerfile frontend (docker/dockerfile) is available`, { hint: "remove the syntax directive, or point it at docker/dockerfile" }));
}

export class DockerfileFrontend implements Frontend {
  async solve(signal: AbortSignal, bridge: FrontendBridge, opts: FrontendOptions): Promise<FrontendResult> {
    const attrs = opts.attrs;
    const localNameDockerfile = attrs.dockerfilekey ?? defaultLocalNameDockerfile;
    const localNameContext = attrs.contextkey ?? defaultLocalNameContext;
    let src = await remoteSources(signal, bridge, attrs, attrs.filename || "Dockerfile");
    if (!src.context && opts.inputs) src = inputSources(opts.inputs, attrs, src.filename);
    if (src.context && attrs.contextsubdir !== undefined) src.context = scopeToSubDir(src.context, attrs.contextsubdir);
    const filename = src.filename;
    // The Dockerfile and its own ignore file come in one transfer; the context's .dockerignore in
    // parallel, used only when there is no Dockerfile-specific one. followpaths (not include
    // patterns) so a symlinked Dockerfile arrives with its target.
    const lower = lowercaseFallback(filename);
    const dfFiles = [filename, `${filename}.dockerignore`, ...(lower ? [lower] : [])];
    const dfState = src.dockerfile ?? local(localNameDockerfile, { followPaths: dfFiles, sessionId: opts.sessionId, sharedKeyHint: localNameDockerfile, customName: `[internal] load build definition from ${filename}` });
    const ignoreState = src.context ?? local(localNameContext, { followPaths: [".dockerignore"], sessionId: opts.sessionId, sharedKeyHint: localNameContext, customName: "[internal] load .dockerignore" });
    const [{ data: [exact, ownIgnore, lowered], def: dockerfileDef }, { data: [contextIgnore] }] = await Promise.all([
      readFiles(signal, bridge, dfState, dfFiles),
      src.notLocal ? { data: [undefined] } : readFiles(signal, bridge, ignoreState, [".dockerignore"]),
    ]);
    const data = exact ?? lowered;
    if (!data) throw new KilnError("KILN_DOCKERFILE_NOT_FOUND", `failed to read dockerfile: open ${filename}: no such file or directory`);
    await refuseFrontendImage(signal, bridge, attrs, Buffer.from(data).toString("utf8"), filename, dockerfileDef);
    const ignoreData = ownIgnore ?? contextIgnore;
    const excludes = ignoreData ? parseIgnore(Buffer.from(ignoreData).toString("utf8")) : [];
    const buildArgs: Record<string, string> = {};
    for (const [k, v] of Object.entries(attrs)) if (k.startsWith("build-arg:")) buildArgs[k.slice("build-arg:".length)] = v;
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(attrs)) if (k.startsWith("label:")) labels[k.slice("label:".length)] = v;
    const shmSize = parseShmSize(attrs["shm-size"] ?? "");
    const ulimits = parseUlimits(attrs.ulimit ?? "");
    const targetPlatforms = parseTargetPlatforms(attrs.platform ?? "");
    const exportMap = multiPlatform(attrs, targetPlatforms.length);
    // The SBOM scanner image resolves while the Dockerfile converts.
    const sbomRequest = parseAttests(attrs).sbom;
    const scanner: Promise<SBOMScanner> | undefined = sbomRequest ? createSBOMScanner(signal, bridge, scannerReference(sbomRequest.generator ?? ""), opts.buildPlatform) : undefined;
    scanner?.catch(() => undefined);
    // Each target platform is its own conversion (its TARGET* args, its base images); steps that
    // don't depend on the target (a `FROM --platform=$BUILDPLATFORM` stage) come out as identical
    // ops, which the solver runs once for all of them.
    const targets = targetPlatforms.length > 0 ? targetPlatforms : [opts.buildPlatform];
    const converted = await Promise.all(
      targets.map(async (target, i) => {
        const res = await convertDockerfile(signal, {
          dockerfile: Buffer.from(data).toString("utf8"),
          filename,
          target: attrs.target || undefined,
          buildArgs,
          labels,
          buildPlatform: opts.buildPlatform,
          targetPlatform: target,
          contextName: localNameContext,
          buildContext: src.context,
          contextByName: namedContexts(signal, bridge, attrs, opts.sessionId),
          sessionId: opts.sessionId,
          excludePatterns: excludes,
          // `no-cache=` (empty) means every stage, `no-cache=a,b` those stages.
          noCache: attrs["no-cache"] === undefined ? false : attrs["no-cache"] === "" ? true : attrs["no-cache"].split(","),
          hostname: attrs["build-arg:BUILDKIT_SANDBOX_HOSTNAME"] || attrs.hostname || undefined,
          shmSize,
          ulimits,
          prefixPlatform: exportMap,
          resolveImageConfig: (ref, platform) => bridge.resolveImageConfig(signal, ref, { platform }),
        }).catch((err: unknown) => {
          if (err instanceof KilnError && err.location && !err.location.definition) err.location.definition = dockerfileDef.toBinary();
          throw err;
        });
        // Every platform parses the same file: its warnings are shown once, on the step that loaded it.
        if (i === 0) for (const w of res.warnings) bridge.warn?.(sourceVertex(dockerfileDef), { level: 1, short: w.short, detail: w.detail, url: w.url });
        // Errors point into the Dockerfile together with the LLB it was read with, as BuildKit's source map.
        const def = await res.state.marshal({ platform: target, source: { ...res.source, definition: dockerfileDef } });
        const id = formatPlatform(target);
        const sbom: FrontendAttestation | undefined = scanner ? await (await scanner)(id, res.sbom) : undefined;
        return { id, platform: target, definition: def.toBinary(), config: Buffer.from(marshalImage(res.image)), sbom };
      }),
    );
    const metadata: Record<string, Uint8Array> = { [platformsMetadataKey]: marshalPlatforms(converted) };
    const attestations: Record<string, FrontendAttestation[]> = {};
    for (const c of converted) if (c.sbom) attestations[c.id] = [c.sbom];
    const withAttestations = Object.keys(attestations).length > 0 ? { attestations } : {};
    if (!exportMap) {
      const only = converted[0]!;
      return { definition: only.definition, metadata: { ...metadata, [imageConfigMetadataKey]: only.config }, ...withAttestations };
    }
    const refs: Record<string, Uint8Array> = {};
    for (const c of converted) {
      if (refs[c.id]) throw new KilnError("KILN_PLATFORM", `platform ${c.id} is given twice in ${JSON.stringify(attrs.platform)}`);
      refs[c.id] = c.definition;
      metadata[`${imageConfigMetadataKey}/${c.id}`] = c.config;
    }
    return { refs, metadata, ...withAttestations };
  }
}

/** `shm-size`: bytes, a plain integer as BuildKit takes it. */
function parseShmSize(v: string): number {
  if (v === "") return 0;
  if (!/^[+-]?\d+$/.test(v)) throw new KilnError("KILN_FRONTEND", `strconv.ParseInt: parsing ${JSON.stringify(v)}: invalid syntax`);
  return Number(v);
}

const ulimitNames = new Set(["core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"]);

/** `ulimit=nofile=1024:2048,nproc=512`: Docker's NAME=SOFT[:HARD] (hard defaults to soft), comma-separated. */
export function parseUlimits(v: string): { name: string; soft: number; hard: number }[] {
  if (v === "") return [];
  const fail = (msg: string) => new KilnError("KILN_FRONTEND", `failed to parse ulimit: ${msg}`);
  return v.split(",").map((field) => {
    const eq = field.indexOf("=");
    if (eq < 0) throw fail(`invalid ulimit argument: ${field}`);
    const name = field.slice(0, eq);
    if (!ulimitNames.has(name)) throw fail(`invalid ulimit type: ${name}`);
    const vals = field.slice(eq + 1).split(":");
    if (vals.length > 2) throw fail(`too many limit value arguments - ${field.slice(eq + 1)}, can only have up to two, \`soft[:hard]\``);
    const nums = vals.map((x) => {
      if (!/^[+-]?\d+$/.test(x)) throw fail(`strconv.ParseInt: parsing ${JSON.stringify(x)}: invalid syntax`);
      return Number(x);
    });
    const soft = nums[0]!;
    const hard = nums[1] ?? soft;
    if (hard !== -1) {
      if (soft === -1) throw fail(`ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: ${hard}`);
      if (soft > hard) throw fail(`ulimit soft limit must be less than or equal to hard limit: ${soft} > ${hard}`);
    }
    return { name, soft, hard };
  });
}

/** `platform=linux/amd64,linux/arm64`, normalised; a bad entry is one clear error. */
function parseTargetPlatforms(v: string): Platform[] {
  return v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      try {
        return parsePlatform(s);
      } catch (err) {
        throw new KilnError("KILN_PLATFORM", `failed to parse target platform ${s}: ${(err as Error).message}`, { cause: err });
      }
    });
}

/**
 * Whether the result is a map of platforms (an index, split folders): several targets, or
 * `multi-platform` / `build-arg:BUILDKIT_MULTI_PLATFORM` for one.
 */
function multiPlatform(attrs: Record<string, string>, targets: number): boolean {
  const v = attrs["build-arg:BUILDKIT_MULTI_PLATFORM"] || attrs["multi-platform"];
  if (!v) return targets > 1;
  let b: boolean;
  if (["1", "t", "T", "TRUE", "true", "True"].includes(v)) b = true;
  else if (["0", "f", "F", "FALSE", "false", "False"].includes(v)) b = false;
  else throw new KilnError("KILN_FRONTEND", `invalid boolean value ${v}`);
  if (!b && targets > 1) throw new KilnError("KILN_FRONTEND", "returning multiple target platforms is not allowed");
  return b;
}

/**
 * A .dockerignore's patterns as the Dockerfile frontend reads them (dockerignore.ReadAll): a UTF-8
 * BOM and comment lines dropped, each pattern trimmed and cleaned, and a leading `/` removed (also
 * after `!`) so that `/foo` means the context's top-level foo rather than matching nothing.
 */
export function parseIgnore(text: string): string[] {
  const out: string[] = [];
  const lines = text.replace(/^\uFEFF/, "").split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  for (const raw of lines) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.startsWith("#")) continue;
    let pattern = line.trim();
    if (pattern === "") continue;
    const invert = pattern.startsWith("!");
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern !== "") {
      pattern = cleanSlashPath(pattern);
      if (pattern.length > 1 && pattern.startsWith("/")) pattern = pattern.slice(1);
    }
    out.push(invert ? "!" + pattern : pattern);
  }
  return out;
}

/** Go's path.Clean. */
function cleanSlashPath(p: string): string {
  const abs = p.startsWith("/");
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === ".." && out.length > 0 && out[out.length - 1] !== "..") out.pop();
    else if (part !== ".." || !abs) out.push(part);
  }
  const joined = out.join("/");
  return abs ? "/" + joined : joined || ".";
}

export type { State };
