// The engine's door: one solve request → frontend → solver → exporter, the same for the daemon,
// the daemonless CLI and library users.
import { readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { loadDefinition } from "../llb/index.js";
import type { ImmutableRef } from "../cache/index.js";
import { makeBuildInfo, resolveExporter, type ExportOutputs, type ExporterInstance } from "../exporter/index.js";
import type { RegistryHostConfig } from "../remotes/index.js";
import type { Frontend, FrontendBridge } from "../frontend/index.js";
import type { Session } from "../session/types.js";
import { Solver, VertexError, type ProgressWriter } from "../solver/index.js";
import { grantEntitlements, type Entitlement, type Worker } from "../worker/index.js";
import { KilnError, secureJoin, parsePlatform, type Platform } from "../util/index.js";
import type { ImageConfig } from "../api/oci.js";

export interface SolveRequest {
  ref?: string;
  definition?: Uint8Array;
  frontend?: string;
  frontendAttrs?: Record<string, string>;
  exporter?: { type: string; attrs: Record<string, string> };
  /** Several exporters in one solve (BuildKit ≥ 0.13's `Exporters`); used instead of `exporter` when set. */
  exporters?: { type: string; attrs: Record<string, string> }[];
  /** Privileges the build asks for (`--allow`): "network.host", "security.insecure". */
  entitlements?: string[];
}

export interface ControllerOptions {
  worker: Worker;
  frontends: Record<string, Frontend>;
  maxParallelism: number;
  /** `[registry."host"]` settings, for exporters that push. */
  registries?: Record<string, RegistryHostConfig>;
  /** Entitlements builds may be granted (buildkitd.toml `insecure-entitlements`). */
  entitlements?: string[];
}

/** SOURCE_DATE_EPOCH and BUILDKIT_BUILDINFO build args reach the exporter unless it sets them itself (BuildKit's control.Solve). */
function exporterAttrs(attrs: Record<string, string>, frontendAttrs: Record<string, string>): Record<string, string> {
  const out = { ...attrs };
  const epoch = frontendAttrs["build-arg:SOURCE_DATE_EPOCH"];
  if (epoch !== undefined && out["source-date-epoch"] === undefined && ["image", "registry", "oci", "docker"].includes(attrs.type ?? "")) out["source-date-epoch"] = epoch;
  const bi = frontendAttrs["build-arg:BUILDKIT_BUILDINFO"];
  if (bi && out.buildinfo === undefined) out.buildinfo = bi;
  delete out.type;
  return out;
}

export class Controller {
  readonly solver: Solver;

  constructor(private readonly opts: ControllerOptions) {
    this.solver = new Solver({ cache: opts.worker.store, maxParallelism: opts.maxParallelism });
  }

  get worker(): Worker {
    return this.opts.worker;
  }

  /** `outputs`: one destination, or one per entry of `req.exporters`. */
  async solve(signal: AbortSignal, req: SolveRequest, session: Session, outputs: ExportOutputs | undefined | (ExportOutputs | undefined)[], progress: ProgressWriter): Promise<Record<string, string>> {
    const worker = this.opts.worker;
    // Validate the exporters before any work starts.
    const specs = req.exporters ?? (req.exporter ? [req.exporter] : []);
    const fattrs = req.frontendAttrs ?? {};
    const exporters: { exp: ExporterInstance; out: ExportOutputs | undefined }[] = specs.map((e, i) => {
      const exp = resolveExporter(e.type, exporterAttrs({ ...e.attrs, type: e.type }, fattrs), { mgr: worker.mgr, content: worker.content, registries: this.opts.registries });
      const out = Array.isArray(outputs) ? outputs[i] : outputs;
      if (exp.needsOutput && !out) throw new KilnError("KILN_EXPORTER_ATTR", `exporter ${exp.type} needs a destination (dest=...)`);
      return { exp, out };
    });
    const entitlements = grantEntitlements(req.entitlements ?? [], this.opts.entitlements ?? []);
    const held: ImmutableRef[] = [];
    try {
      let definition = req.definition;
      let config: Partial<ImageConfig> | undefined;
      if (req.frontend) {
        const fe = this.opts.frontends[req.frontend];
        if (!fe) throw new KilnError("KILN_FRONTEND", `frontend ${JSON.stringify(req.frontend)} not found`);
        const attrs = req.frontendAttrs ?? {};
        const res = await fe.solve(signal, this.bridge(session, progress, held, entitlements), { attrs, sessionId: session.id, buildPlatform: worker.platform });
        definition = res.definition;
        const cfg = res.metadata["containerimage.config"];
        if (cfg) config = JSON.parse(Buffer.from(cfg).toString("utf8")) as Partial<ImageConfig>;
      }
      const ref = definition ? await this.solveDefinition(signal, definition, session, progress, entitlements) : undefined;
      if (ref) held.push(ref);
      if (exporters.length === 0) return {};
      const sources = definition ? [...loadDefinition(definition).ops.values()].flatMap((o) => (o.op.op.case === "source" ? [{ identifier: o.op.op.value.identifier, attrs: o.op.op.value.attrs }] : [])) : [];
      const buildInfo = makeBuildInfo(req.frontend, fattrs, sources);
      const res: Record<string, string> = {};
      for (const { exp, out } of exporters) Object.assign(res, await exp.export(signal, { ref, config, buildInfo, credentials: session.credentials }, out, progress));
      return res;
    } finally {
      await Promise.allSettled(held.map((r) => r.release()));
    }
  }

  private async solveDefinition(signal: AbortSignal, definition: Uint8Array, session: Session, progress: ProgressWriter, entitlements: ReadonlySet<Entitlement>): Promise<ImmutableRef | undefined> {
    const loaded = loadDefinition(definition);
    const root = this.opts.worker.load(loaded, session, entitlements);
    if (!root) return undefined;
    try {
      return (await this.solver.solve(signal, root.vertex, root.index, progress)) as ImmutableRef;
    } catch (err) {
      if (err instanceof VertexError) throw toUserError(err, loaded.source);
      throw err;
    }
  }

  private bridge(session: Session, progress: ProgressWriter, held: ImmutableRef[], entitlements: ReadonlySet<Entitlement>): FrontendBridge {
    const refs = new Map<string, ImmutableRef | undefined>();
    return {
      solve: async (signal, def) => {
        const ref = await this.solveDefinition(signal, def, session, progress, entitlements);
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
