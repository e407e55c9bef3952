// `kiln build --addr …`: the same request, solved by a daemon. The build's directories, secrets,
// credentials and outputs are served to it over the session; its progress comes back through
// Status and goes to the same display as an in-process build's.
import { Writable } from "node:stream";
import path from "node:path";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { control } from "../../api/index.js";
import type { ConnectOptions } from "../../client/index.js";
import type { SolveRequest } from "../../control/index.js";
import { DockerConfigCredentials } from "../../remotes/index.js";
import { ClientSecretStore, parseSecretSpec, type ClientAttachables } from "../../session/index.js";
import type { ProgressEvent, ProgressWriter } from "../../solver/types.js";
import { KilnError, type Digest } from "../../util/index.js";
import { localOutputs } from "../outputs.js";
import { withClient } from "./daemon.js";

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

export async function buildThroughDaemon(signal: AbortSignal, daemon: ConnectOptions, req: SolveRequest, dirs: Record<string, string>, flags: { secret: string[]; ssh: string[] }, progress: ProgressWriter): Promise<Record<string, string>> {
  if (flags.ssh.length > 0) throw new KilnError("KILN_FLAGS", "--ssh is not supported with --addr yet");
  const specs = req.exporters ?? (req.exporter ? [req.exporter] : []);
  if (specs.length > 1) throw new KilnError("KILN_FLAGS", "only one --output is supported with --addr");
  const attachables: ClientAttachables = { dirs, credentials: new DockerConfigCredentials(), secrets: await ClientSecretStore.create(flags.secret.map(parseSecretSpec)) };
  const exp = specs[0];
  const attrs = { ...exp?.attrs };
  const dest = attrs.dest;
  delete attrs.dest;
  if (exp && dest !== undefined && dest !== "") {
    if (exp.type === "local") attachables.dirTarget = path.resolve(dest);
    else attachables.fileTarget = fileTarget(signal, dest);
  }
  const sharedKey = dirs.context ? `${path.resolve(dirs.context)}` : undefined;
  return withClient(signal, daemon, (c) =>
    c.build(
      signal,
      {
        Frontend: req.frontend ?? "",
        FrontendAttrs: req.frontendAttrs ?? {},
        Definition: undefined,
        Exporter: exp?.type ?? "",
        ExporterAttrs: attrs,
        Entitlements: req.entitlements ?? [],
      },
      attachables,
      (s) => progress.write(progressEvent(s)),
      { name: path.basename(process.cwd()), sharedKey },
    ),
  );
}
