// The built-in `dockerfile.v0` frontend: reads the Dockerfile and ignore file through the bridge
// (as local sources, exactly as BuildKit's frontend does), converts it to LLB, returns the image config.
import { State, local } from "../llb/index.js";
import { KilnError, parsePlatform } from "../util/index.js";
import { convertDockerfile, marshalImage } from "./dockerfile/convert/index.js";
import type { Frontend, FrontendBridge, FrontendOptions, FrontendResult } from "./types.js";

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
    const targetPlatforms = (attrs.platform ?? "").split(",").map((s) => s.trim()).filter(Boolean).map(parsePlatform);
    if (targetPlatforms.length > 1) throw new KilnError("KILN_UNSUPPORTED", "multi-platform builds are not supported yet");
    const res = await convertDockerfile(signal, {
      dockerfile: Buffer.from(data).toString("utf8"),
      filename,
      target: attrs.target || undefined,
      buildArgs,
      labels,
      buildPlatform: opts.buildPlatform,
      targetPlatform: targetPlatforms[0] ?? opts.buildPlatform,
      contextName: localNameContext,
      sessionId: opts.sessionId,
      excludePatterns: excludes,
      noCache: attrs["no-cache"] !== undefined,
      resolveImageConfig: (ref, platform) => bridge.resolveImageConfig(signal, ref, { platform }),
    });
    const def = await res.state.marshal({ platform: targetPlatforms[0] ?? opts.buildPlatform, source: res.source });
    return { definition: def.toBinary(), metadata: { "containerimage.config": Buffer.from(marshalImage(res.image)) } };
  }
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
