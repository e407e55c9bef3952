// `kiln build --addr …`: the same request, solved by a daemon. The build's directories, secrets,
// ssh agents, credentials and outputs are served to it over the session; its progress comes back
// through Status and goes to the same display as an in-process build's. Loaded only when a daemon
// builds (build.ts imports it dynamically), so it pulls in grpc but none of the engine.
import { Writable } from "node:stream";
import path from "node:path";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { fromBinary } from "@bufbuild/protobuf";
import { pb, type control } from "../../session/api.js";
import { ControlClient, type ConnectOptions } from "../../client/client.js";

import type { SolveRequest } from "../../control/index.js";
import { DockerConfigCredentials } from "../../remotes/credentials.js";
import { ClientSecretStore, parseSecretSpec } from "../../session/secrets.js";
import { ClientSSHAgents, parseSSHSpec } from "../../session/ssh.js";
import type { ClientAttachables, ExportTarget } from "../../session/wire.js";
import type { ProgressEvent, ProgressWriter } from "../../solver/types.js";
import { KilnError, type Digest } from "../../util/index.js";
import { localOutputs } from "../outputs.js";
import { ClientStores } from "./client-stores.js";

const date = (t: Timestamp | undefined) => (t ? timestampDate(t) : undefined);

/** A StatusResponse as the progress display's event. */
export function progressEvent(s: control.StatusResponse): ProgressEvent {
  return {
    vertexes: s.vertexes.map((v) => ({
      digest: v.digest as Digest,
      name: v.name,
      inputs: v.inputs as Digest[],
      started: date(v.started),
      completed: date(v.completed),
      cached: v.cached,
      error: v.error || undefined,
    })),
    statuses: s.statuses.map((x) => ({
      id: x.ID,
      vertex: x.vertex as Digest,
      name: x.name || undefined,
      current: Number(x.current),
      total: Number(x.total) || undefined,
      timestamp: date(x.timestamp),
      started: date(x.started),
      completed: date(x.completed),
    })),
    logs: s.logs.map((l) => ({ vertex: l.vertex as Digest, stream: Number(l.stream) === 2 ? 2 : 1, data: l.msg, timestamp: date(l.timestamp) ?? new Date() })),
    warnings: s.warnings.map((w) => ({ vertex: w.vertex as Digest, level: Number(w.level), short: Buffer.from(w.short).toString(), detail: w.detail.map((d) => Buffer.from(d).toString()) })),
  };
}

/** Where a FileSend byte stream lands: the destination file, which appears only when complete. */
function fileTarget(signal: AbortSignal, dest: string): () => Promise<Writable> {
  return async () => {
    const out = await localOutputs(dest)!.openStream(signal);
    return new Writable({
      highWaterMark: 1 << 20,
      write(chunk: Buffer, _enc, cb) {
        out.stream.write(chunk, (err) => cb(err ?? null));
      },
      final(cb) {
        out.commit().then(() => cb(), cb);
      },
      destroy(err, cb) {
        if (err) void out.abort().finally(() => cb(err));
        else cb(null);
      },
    });
  };
}

const kilnPackage = "github.com/kiln-build/kiln";

/**
 * Whether the daemon takes SolveRequest.Exporters (several outputs): kilnd does, BuildKit from
 * v0.13. An older BuildKit would silently export only the first, so it is asked first.
 */
async function supportsExporterList(signal: AbortSignal, c: ControlClient): Promise<{ ok: boolean; version: string }> {
  const v = await c.info(signal);
  if (!v) return { ok: false, version: "unknown" };
  if (v.package === kilnPackage) return { ok: true, version: v.version };
  const m = /^v?(\d+)\.(\d+)\./.exec(v.version);
  // A build without a release version (0.0.0+unknown) may be any age: only a known one is trusted,
  // since an older daemon would drop every output but the first without a word.
  const ok = m !== null && (Number(m[1]) > 0 || Number(m[2]) >= 13);
  return { ok, version: v.version };
}

export interface RemoteBuildFlags {
  secret: string[];
  ssh: string[];
}

export async function buildThroughDaemon(
  signal: AbortSignal,
  daemon: ConnectOptions,
  req: SolveRequest,
  dirs: Record<string, string>,
  flags: RemoteBuildFlags,
  progress: ProgressWriter,
  ref: string,
): Promise<Record<string, string>> {
  const specs = (req.exporters ?? (req.exporter ? [req.exporter] : [])).map((e) => ({ type: e.type, attrs: { ...e.attrs } }));
  // Each output's destination stays here: the daemon sends its bytes or tree over the session.
  const targets: Record<number, ExportTarget> = {};
  // Layout directories and local caches are content stores here, as buildctl attaches them.
  const stores = new ClientStores();
  specs.forEach((e, i) => {
    const dest = e.attrs.dest;
    delete e.attrs.dest;
    if (dest === undefined || dest === "") return;
    if ((e.type === "oci" || e.type === "docker") && /^(0|f|false)$/i.test(e.attrs.tar ?? "")) stores.layout(path.resolve(dest));
    else targets[i] = e.type === "local" ? { dirTarget: path.resolve(dest) } : { fileTarget: fileTarget(signal, dest) };
  });
  const cache = req.cache ? await stores.caches(req.cache, (msg) => process.stderr.write(`WARN: ${msg}\n`)) : undefined;
  const attachables: ClientAttachables = { dirs, credentials: new DockerConfigCredentials(), secrets: await ClientSecretStore.create(flags.secret.map(parseSecretSpec)) };
  if (stores.size > 0) attachables.contentStores = await stores.open();
  await using ssh = flags.ssh.length > 0 ? new ClientSSHAgents(flags.ssh.map(parseSSHSpec)) : undefined;
  if (ssh) attachables.ssh = ssh;
  if (specs.length > 1) attachables.exportTargets = targets;
  else if (targets[0]) Object.assign(attachables, targets[0]);

  // grpc-js passes an IP address host as the TLS server name, which Node reports with a
  // deprecation warning on stderr; buildctl's output has no such line.
  process.noDeprecation = true;
  using client = await ControlClient.connect(signal, daemon);
  if (specs.length > 1) {
    const s = await supportsExporterList(signal, client);
    if (!s.ok) throw new KilnError("KILN_FLAGS", `several outputs need a daemon that takes a list of exporters (kilnd, or BuildKit v0.13 or later); ${daemon.addr} runs BuildKit ${s.version}`);
  }
  const first = specs[0];
  try {
    const res = await solveRemote(signal, client, first, specs, { ...req, ...(cache ? { cache, frontendAttrs: withCacheImportsAttr(req, cache.imports) } : {}) }, dirs, attachables, progress, ref);
    await stores.tag(res);
    return res;
  } catch (err) {
    // The same one line as an in-process build: the daemon's message without buildctl's prefix.
    if (err instanceof KilnError && err.code === "KILN_DAEMON" && err.message.startsWith(solvePrefix)) throw new KilnError("KILN_BUILD", err.message.slice(solvePrefix.length), { cause: err.cause, location: err.location });
    throw err;
  }
}

const solvePrefix = "failed to solve: ";

/**
 * A frontend build also carries its cache imports in the `cache-imports` attribute, as buildctl
 * sends them (Go's JSON of the CacheOptionsEntry list): BuildKit's frontends import only those.
 */
function withCacheImportsAttr(req: SolveRequest, imports: { type: string; attrs: Record<string, string> }[]): Record<string, string> | undefined {
  if (!req.frontend || imports.length === 0) return req.frontendAttrs;
  const sorted = (m: Record<string, string>) => Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { ...req.frontendAttrs, "cache-imports": JSON.stringify(imports.map((e) => ({ Type: e.type, ...(Object.keys(e.attrs).length > 0 ? { Attrs: sorted(e.attrs) } : {}) }))) };
}

function solveRemote(
  signal: AbortSignal,
  client: ControlClient,
  first: { type: string; attrs: Record<string, string> } | undefined,
  specs: { type: string; attrs: Record<string, string> }[],
  req: SolveRequest,
  dirs: Record<string, string>,
  attachables: ClientAttachables,
  progress: ProgressWriter,
  ref: string,
): Promise<Record<string, string>> {
  return client.build(
    signal,
    {
      Frontend: req.frontend ?? "",
      FrontendAttrs: req.frontendAttrs ?? {},
      Definition: req.definition ? fromBinary(pb.DefinitionSchema, req.definition) : undefined,
      // BuildKit v0.11's fields carry the first (or only) output, so an older daemon still builds
      // a one-output request; newer ones read the list, as BuildKit ≥ 0.13's client sends both.
      Exporter: first?.type ?? "",
      ExporterAttrs: first?.attrs ?? {},
      Exporters: specs.length > 1 ? specs.map((e) => ({ Type: e.type, Attrs: e.attrs })) : [],
      Entitlements: req.entitlements ?? [],
      // --export-cache/--import-cache: a local cache directory is reached through the session's content store.
      Cache: req.cache ? { Exports: (req.cache.exports ?? []).map((e) => ({ Type: e.type, Attrs: e.attrs })), Imports: (req.cache.imports ?? []).map((e) => ({ Type: e.type, Attrs: e.attrs })) } : undefined,
    },
    attachables,
    (s) => progress.write(progressEvent(s)),
    { name: path.basename(process.cwd()), sharedKey: dirs.context ? path.resolve(dirs.context) : undefined, ref },
  );
}
