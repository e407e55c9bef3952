// `kiln debug llb [flags] PATH`: the Dockerfile frontend run here, its LLB Definition written to
// stdout as protobuf bytes, the form `buildctl build` and `buildctl debug dump-llb` read on stdin.
// Local sources carry no session (as LLB built on a client), so any daemon can build the bytes.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { loadConfig } from "../config.js";
import { loadDefinition } from "../../llb/index.js";
import { DockerfileFrontend, type FrontendBridge } from "../../frontend/index.js";
import { DiskLocalDirs, type Session } from "../../session/index.js";
import { DockerConfigCredentials } from "../../remotes/index.js";
import { openWorker } from "../../worker/index.js";
import { KilnError, hostPlatform, secureJoin } from "../../util/index.js";

export interface LLBFlags {
  file?: string;
  target?: string;
  buildArg: string[];
  platform: string[];
  opt: string[];
  cache?: boolean;
}

/** The frontend attrs a `kiln build` with the same flags would send. */
export function llbAttrs(flags: LLBFlags, filename: string): Record<string, string> {
  const attrs: Record<string, string> = { filename };
  for (const o of flags.opt) {
    const i = o.indexOf("=");
    attrs[i < 0 ? o : o.slice(0, i)] = i < 0 ? "" : o.slice(i + 1);
  }
  for (const a of flags.buildArg) {
    const i = a.indexOf("=");
    if (i >= 0) attrs[`build-arg:${a.slice(0, i)}`] = a.slice(i + 1);
    else if (process.env[a] !== undefined) attrs[`build-arg:${a}`] = process.env[a];
  }
  if (flags.target) attrs.target = flags.target;
  const platforms = flags.platform.flatMap((p) => p.split(",")).map((p) => p.trim()).filter(Boolean);
  if (platforms.length > 0) attrs.platform = platforms.join(",");
  if (flags.cache === false) attrs["no-cache"] = "";
  return attrs;
}

/** The local directory a definition of one local source names (`local://NAME`). */
function localName(def: Uint8Array): string {
  for (const o of loadDefinition(def).ops.values()) {
    if (o.op.op.case === "source" && o.op.op.value.identifier.startsWith("local://")) return o.op.op.value.identifier.slice("local://".length);
  }
  throw new KilnError("KILN_FRONTEND", "kiln debug llb: the frontend solved something other than a local source");
}

export async function dockerfileLLB(signal: AbortSignal, g: { root?: string; config?: string }, ctxPath: string | undefined, flags: LLBFlags): Promise<Uint8Array> {
  const context = path.resolve(ctxPath ?? ".");
  const file = flags.file ? path.resolve(flags.file) : path.join(context, "Dockerfile");
  const dirs: Record<string, string> = { context, dockerfile: path.dirname(file) };
  const cfg = await loadConfig(g.config);
  // Base images are resolved (ENV, WORKDIR, the pinned digest) as a build would: through the
  // worker's resolver, its registry mirrors and cached manifests.
  await using opened = await openWorker({ root: path.resolve(g.root ?? cfg.root), registries: cfg.registries, gc: cfg.gc });
  const session: Session = { id: "", localDirs: new DiskLocalDirs(dirs), credentials: new DockerConfigCredentials() };
  const bridge: FrontendBridge = {
    solve: (_signal, def) => Promise.resolve(localName(def)),
    readFile: async (_signal, name, p) => {
      const root = dirs[name];
      if (!root) return undefined;
      try {
        return await readFile(await secureJoin(root, p));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw err;
      }
    },
    resolveImageConfig: async (s, ref, o) => {
      const img = await opened.worker.images.resolve(s, ref, o.platform ?? opened.worker.platform, session);
      return { ref: img.ref, digest: img.digest, config: img.configBytes };
    },
  };
  const res = await new DockerfileFrontend().solve(signal, bridge, { attrs: llbAttrs(flags, path.basename(file)), sessionId: "", buildPlatform: opened.worker.platform ?? hostPlatform() });
  if (!res.definition) throw new KilnError("KILN_FLAGS", "kiln debug llb writes one definition: build one platform (the result is a per-platform map)");
  return res.definition;
}
