// The built-in `dockerfile.v0` frontend: reads the Dockerfile and ignore file through the bridge
// (as local sources, exactly as BuildKit's frontend does), converts it to LLB, returns the image config.
import path from "node:path";
import { State, local, type DefinitionBytes } from "../llb/index.js";
import { KilnError, formatPlatform, parsePlatform, type Platform } from "../util/index.js";
import { convertDockerfile, marshalImage } from "./dockerfile/convert/index.js";
import { imageConfigMetadataKey, marshalPlatforms, platformsMetadataKey, type Frontend, type FrontendBridge, type FrontendOptions, type FrontendResult } from "./types.js";

const localNameDockerfile = "dockerfile";
const localNameContext = "context";

/**
 * Reads files of a client directory. followpaths (not include patterns) so a symlinked Dockerfile
 * arrives with its target.
 */
async function readLocalFiles(signal: AbortSignal, bridge: FrontendBridge, name: string, sessionId: string, files: string[], customName: string): Promise<{ data: (Uint8Array | undefined)[]; def: DefinitionBytes }> {
  const st = local(name, { followPaths: files, sessionId, sharedKeyHint: name, customName });
  const def = await st.marshal();
  const ref = await bridge.solve(signal, def.toBinary());
  return { data: await Promise.all(files.map((f) => bridge.readFile(signal, ref, f))), def };
}

/** `Dockerfile` may also be spelled `dockerfile` (moby/moby#10858); other names are exact. */
function lowercaseFallback(filename: string): string | undefined {
  const base = path.posix.basename(filename);
  return base === "Dockerfile" ? path.posix.join(path.posix.dirname(filename), "dockerfile") : undefined;
}

export class DockerfileFrontend implements Frontend {
  async solve(signal: AbortSignal, bridge: FrontendBridge, opts: FrontendOptions): Promise<FrontendResult> {
    const attrs = opts.attrs;
    const filename = attrs.filename || "Dockerfile";
    // The Dockerfile and its own ignore file come in one transfer; the context's .dockerignore in
    // parallel, used only when there is no Dockerfile-specific one.
    const lower = lowercaseFallback(filename);
    const [{ data: [exact, ownIgnore, lowered], def: dockerfileDef }, { data: [contextIgnore] }] = await Promise.all([
      readLocalFiles(signal, bridge, localNameDockerfile, opts.sessionId, [filename, `${filename}.dockerignore`, ...(lower ? [lower] : [])], `[internal] load build definition from ${filename}`),
      readLocalFiles(signal, bridge, localNameContext, opts.sessionId, [".dockerignore"], "[internal] load .dockerignore"),
    ]);
    const data = exact ?? lowered;
    if (!data) throw new KilnError("KILN_DOCKERFILE_NOT_FOUND", `failed to read dockerfile: open ${filename}: no such file or directory`);
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
    // Each target platform is its own conversion (its TARGET* args, its base images); steps that
    // don't depend on the target (a `FROM --platform=$BUILDPLATFORM` stage) come out as identical
    // ops, which the solver runs once for all of them.
    const targets = targetPlatforms.length > 0 ? targetPlatforms : [opts.buildPlatform];
    const converted = await Promise.all(
      targets.map(async (target) => {
        const res = await convertDockerfile(signal, {
          dockerfile: Buffer.from(data).toString("utf8"),
          filename,
          target: attrs.target || undefined,
          buildArgs,
          labels,
          buildPlatform: opts.buildPlatform,
          targetPlatform: target,
          contextName: localNameContext,
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
        // Errors point into the Dockerfile together with the LLB it was read with, as BuildKit's source map.
        const def = await res.state.marshal({ platform: target, source: { ...res.source, definition: dockerfileDef } });
        return { id: formatPlatform(target), platform: target, definition: def.toBinary(), config: Buffer.from(marshalImage(res.image)) };
      }),
    );
    const metadata: Record<string, Uint8Array> = { [platformsMetadataKey]: marshalPlatforms(converted) };
    if (!exportMap) {
      const only = converted[0]!;
      return { definition: only.definition, metadata: { ...metadata, [imageConfigMetadataKey]: only.config } };
    }
    const refs: Record<string, Uint8Array> = {};
    for (const c of converted) {
      if (refs[c.id]) throw new KilnError("KILN_PLATFORM", `platform ${c.id} is given twice in ${JSON.stringify(attrs.platform)}`);
      refs[c.id] = c.definition;
      metadata[`${imageConfigMetadataKey}/${c.id}`] = c.config;
    }
    return { refs, metadata };
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

function parseIgnore(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith("#")) continue;
    const t = line.trim();
    if (t !== "") out.push(t);
  }
  return out;
}

export type { State };
