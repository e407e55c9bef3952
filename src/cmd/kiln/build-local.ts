// `kiln build` without a daemon: the engine in this process, against --root. Loaded only on this
// path (build.ts imports it dynamically), so a build through a daemon never initialises the engine.
import path from "node:path";
import { loadConfig } from "../config.js";
import { localOutputs } from "../outputs.js";
import { Controller, type SolveRequest } from "../../control/index.js";
import { openWorker } from "../../worker/index.js";
import { ClientSecretStore, ClientSSHAgents, DiskLocalDirs, parseSecretSpec, parseSSHSpec, type Session } from "../../session/index.js";
import { DockerConfigCredentials } from "../../remotes/index.js";
import { DockerfileFrontend } from "../../frontend/index.js";
import type { ProgressWriter } from "../../solver/index.js";

export async function buildInProcess(
  signal: AbortSignal,
  g: { root?: string; config?: string },
  req: SolveRequest,
  dirs: Record<string, string>,
  flags: { secret: string[]; ssh: string[] },
  printer: ProgressWriter & { finish?(): void },
  sessionId: string,
): Promise<Record<string, string>> {
  const cfg = await loadConfig(g.config);
  const root = path.resolve(g.root ?? cfg.root);
  await using opened = await openWorker({ root, registries: cfg.registries, gc: cfg.gc });
  const controller = new Controller({ worker: opened.worker, frontends: { "dockerfile.v0": new DockerfileFrontend() }, maxParallelism: cfg.maxParallelism, registries: cfg.registries, entitlements: cfg.insecureEntitlements });
  const secrets = await ClientSecretStore.create(flags.secret.map(parseSecretSpec));
  await using ssh = new ClientSSHAgents(flags.ssh.map(parseSSHSpec));
  const session: Session = { id: sessionId, localDirs: new DiskLocalDirs(dirs), credentials: new DockerConfigCredentials(), secrets, ssh };
  const specs = req.exporters ?? (req.exporter ? [req.exporter] : []);
  const outputs = specs.map((e) => localOutputs(e.attrs.dest));
  for (const e of specs) delete e.attrs.dest;
  const res = await controller.solve(signal, req, session, outputs, printer);
  printer.finish?.();
  await opened.gc.afterBuild(signal);
  return res;
}
