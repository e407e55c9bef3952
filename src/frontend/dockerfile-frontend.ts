// The built-in `dockerfile.v0` frontend: reads the Dockerfile and ignore file through the bridge
// (as local sources, exactly as BuildKit's frontend does), converts it to LLB, returns the image config.
import { State, local } from "../llb/index.js";
import { KilnError, formatPlatform, parsePlatform, type Platform } from "../util/index.js";
import { convertDockerfile, marshalImage } from "./dockerfile/convert/index.js";
import { imageConfigMetadataKey, marshalPlatforms, platformsMetadataKey, type Frontend, type FrontendBridge, type FrontendOptions, type FrontendResult } from "./types.js";

const localNameDockerfile = "dockerfile";
const localNameContext = "context";

async function readLocalFiles(signal: AbortSignal, bridge: FrontendBridge, name: string, sessionId: string, files: string[], customName: string): Promise<(Uint8Array | undefined)[]> {
  const st = local(name, { includePatterns: files, sessionId, sharedKeyHint: name, customName });
  const def = await st.marshal();
  const ref = await bridge.solve(signal, def.toBinary());
  return Promise.all(files.map((f) => bridge.readFile(signal, ref, f)));
}

export class DockerfileFrontend implements Frontend {
  async solve(signal: AbortSignal, bridge: FrontendBridge, opts: FrontendOptions): Promise<FrontendResult> {
    const attrs = opts.attrs;
    const filename = attrs.filename || "Dockerfile";
    // The Dockerfile and its own ignore file come in one transfer; the context's .dockerignore in
    // parallel, used only when there is no Dockerfile-specific one.
    const [[data, ownIgnore], [contextIgnore]] = await Promise.all([
      readLocalFiles(signal, bridge, localNameDockerfile, opts.sessionId, [filename, `${filename}.dockerignore`], `[internal] load build definition from ${filename}`),
      readLocalFiles(signal, bridge, localNameContext, opts.sessionId, [".dockerignore"], "[internal] load .dockerignore"),
    ]);
    if (!data) throw new KilnError("KILN_DOCKERFILE_NOT_FOUND", `failed to read dockerfile: open ${filename}: no such file or directory`);
    const ignoreData = ownIgnore ?? contextIgnore;
    const excludes = ignoreData ? parseIgnore(Buffer.from(ignoreData).toString("utf8")) : [];
    const buildArgs: Record<string, string> = {};
    for (const [k, v] of Object.entries(attrs)) if (k.startsWith("build-arg:")) buildArgs[k.slice("build-arg:".length)] = v;
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(attrs)) if (k.startsWith("label:")) labels[k.slice("label:".length)] = v;
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
          noCache: attrs["no-cache"] !== undefined,
          prefixPlatform: exportMap,
          resolveImageConfig: (ref, platform) => bridge.resolveImageConfig(signal, ref, { platform }),
        });
        const def = await res.state.marshal({ platform: target, source: res.source });
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
