// The engine's door: one solve request → frontend → solver → exporter, the same for the daemon,
// the daemonless CLI and library users.
import { readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { loadDefinition } from "../llb/index.js";
import type { ImmutableRef } from "../cache/index.js";
import { resolveExporter, type ExportOutputs } from "../exporter/index.js";
import type { Frontend, FrontendBridge } from "../frontend/index.js";
import type { Session } from "../session/types.js";
import { Solver, VertexError, type ProgressWriter } from "../solver/index.js";
import type { Worker } from "../worker/index.js";
import { KilnError, secureJoin, parsePlatform, type Platform } from "../util/index.js";
import type { ImageConfig } from "../api/oci.js";

export interface SolveRequest {
  ref?: string;
  definition?: Uint8Array;
  frontend?: string;
  frontendAttrs?: Record<string, string>;
  exporter?: { type: string; attrs: Record<string, string> };
}

export interface ControllerOptions {
  worker: Worker;
  frontends: Record<string, Frontend>;
  maxParallelism: number;
}

export class Controller {
  readonly solver: Solver;

  constructor(private readonly opts: ControllerOptions) {
    this.solver = new Solver({ cache: opts.worker.store, maxParallelism: opts.maxParallelism });
  }

  get worker(): Worker {
    return this.opts.worker;
  }

  async solve(signal: AbortSignal, req: SolveRequest, session: Session, outputs: ExportOutputs | undefined, progress: ProgressWriter): Promise<Record<string, string>> {
    const worker = this.opts.worker;
    // Validate the exporter before any work starts.
    const exporter = req.exporter ? resolveExporter(req.exporter.type, req.exporter.attrs, { mgr: worker.mgr, content: worker.content }) : undefined;
    if (exporter?.needsOutput && !outputs) throw new KilnError("KILN_EXPORTER_ATTR", `exporter ${exporter.type} needs a destination (dest=...)`);
    const held: ImmutableRef[] = [];
    try {
      let definition = req.definition;
      let config: Partial<ImageConfig> | undefined;
      if (req.frontend) {
        const fe = this.opts.frontends[req.frontend];
        if (!fe) throw new KilnError("KILN_FRONTEND", `frontend ${JSON.stringify(req.frontend)} not found`);
        const attrs = req.frontendAttrs ?? {};
        const res = await fe.solve(signal, this.bridge(session, progress, held), { attrs, sessionId: session.id, buildPlatform: worker.platform });
        definition = res.definition;
        const cfg = res.metadata["containerimage.config"];
        if (cfg) config = JSON.parse(Buffer.from(cfg).toString("utf8")) as Partial<ImageConfig>;
      }
      const ref = definition ? await this.solveDefinition(signal, definition, session, progress) : undefined;
      if (ref) held.push(ref);
      if (!exporter) return {};
      return await exporter.export(signal, { ref, config }, outputs!, progress);
    } finally {
      await Promise.allSettled(held.map((r) => r.release()));
    }
  }

  private async solveDefinition(signal: AbortSignal, definition: Uint8Array, session: Session, progress: ProgressWriter): Promise<ImmutableRef | undefined> {
    const loaded = loadDefinition(definition);
    const root = this.opts.worker.load(loaded, session);
    if (!root) return undefined;
    try {
      return (await this.solver.solve(signal, root.vertex, root.index, progress)) as ImmutableRef;
    } catch (err) {
      if (err instanceof VertexError) throw toUserError(err, loaded.source);
      throw err;
    }
  }

  private bridge(session: Session, progress: ProgressWriter, held: ImmutableRef[]): FrontendBridge {
    const refs = new Map<string, ImmutableRef | undefined>();
    return {
      solve: async (signal, def) => {
        const ref = await this.solveDefinition(signal, def, session, progress);
        if (ref) held.push(ref);
        const id = randomBytes(8).toString("hex");
        refs.set(id, ref);
        return id;
      },
      readFile: async (signal, id, p) => {
        const ref = refs.get(id);
        if (!ref) return undefined;
        // A single-layer ref (a local source) is readable straight from its directory.
        const rec = ref.record;
        const read = async (root: string) => {
          try {
            return await readFile(await secureJoin(root, p));
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
            throw err;
          }
        };
        if (!rec.parent) return read(this.opts.worker.mgr.snapshotter.upperDir(ref.id));
        await using mnt = await ref.mount(signal);
        return read(mnt.path);
      },
      resolveImageConfig: async (signal, ref, o) => {
        const platform: Platform = o.platform ?? this.opts.worker.platform;
        const img = await this.opts.worker.images.resolve(signal, ref, platform, session);
        return { ref: img.ref, digest: img.digest, config: img.configBytes };
      },
    };
  }
}

/** Turns a vertex failure into one user-facing error, with the Dockerfile lines when known. */
function toUserError(err: VertexError, source: import("../llb/index.js").LoadedDefinition["source"]): KilnError {
  const cause = err.cause;
  const base = cause instanceof KilnError ? cause : undefined;
  let location = base?.location;
  const locs = source?.locations?.[err.vertex.digest]?.locations ?? [];
  const loc = locs[0];
  if (!location && loc && source) {
    const info = source.infos[loc.sourceIndex];
    const range = loc.ranges[0];
    if (info && range) {
      const text = Buffer.from(info.data).toString("utf8").split("\n");
      const start = range.start?.line ?? 1;
      const end = range.end?.line ?? start;
      location = { file: info.filename, startLine: start, endLine: end, lines: text.slice(start - 1, end) };
    }
  }
  const msg = `${err.vertex.name}: ${err.message}`;
  return new KilnError(base?.code ?? "KILN_BUILD", msg, { cause, hint: base?.hint, location });
}

export function parsePlatformList(s: string | undefined): Platform[] {
  return (s ?? "").split(",").map((p) => p.trim()).filter(Boolean).map(parsePlatform);
}
