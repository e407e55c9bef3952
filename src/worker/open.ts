// Opens a worker over a root directory: the composition of every subsystem below the worker.
import path from "node:path";
import { randomBytes } from "node:crypto";
import { CacheManager, GarbageCollector, MetadataDB, defaultGCPolicies, type GCPolicy } from "../cache/index.js";
import { processStartTime } from "../util/index.js";
import { recover, type RecoveryReport } from "./recovery.js";
import { LocalContentStore } from "../content/index.js";
import { RuncExecutor } from "../executor/index.js";
import { DockerConfigCredentials, RegistryResolver } from "../remotes/index.js";
import type { RegistryHostConfig } from "../remotes/types.js";
import { OverlaySnapshotter } from "../snapshot/index.js";
import { RegistryImagePuller } from "../source/index.js";
import { Worker } from "./worker.js";
import { supportedPlatforms } from "./emulation.js";

export interface OpenWorkerOptions {
  root: string;
  registries: Record<string, RegistryHostConfig>;
  gc?: { enabled: boolean; policies: GCPolicy[] };
}

export interface OpenedWorker extends AsyncDisposable {
  worker: Worker;
  db: MetadataDB;
  gc: GarbageCollector;
  recovery: RecoveryReport;
}

export async function openWorker(opts: OpenWorkerOptions): Promise<OpenedWorker> {
  const db = new MetadataDB(path.join(opts.root, "metadata.db"));
  const leaseId = `${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    db.insertLease({ id: leaseId, pid: process.pid, start: (await processStartTime(process.pid)) ?? "", createdAt: Date.now() });
    const snapshotter = new OverlaySnapshotter(path.join(opts.root, "snapshots"));
    const content = new LocalContentStore(opts.root);
    const executor = new RuncExecutor({ root: path.join(opts.root, "executor") });
    const recovery = await recover({ root: opts.root, db, snapshotter, content, executor });
    // The collector needs the manager and the manager calls the collector before each commit.
    const late: { gc?: GarbageCollector } = {};
    const mgr = new CacheManager(db, snapshotter, { leaseId, content, reserve: (signal, id, bytes) => late.gc?.reserve(signal, id, bytes) ?? Promise.resolve() });
    const gc = (late.gc = new GarbageCollector({
      mgr,
      content,
      root: opts.root,
      cacheMountRoot: path.join(opts.root, "cachemounts"),
      policies: opts.gc?.policies ?? defaultGCPolicies({}),
      enabled: opts.gc?.enabled ?? true,
      leaseId,
    }));
    const defaultCredentials = new DockerConfigCredentials();
    const images = new RegistryImagePuller({
      mgr,
      content,
      resolverFor: (session) => new RegistryResolver({ hosts: opts.registries, credentials: session?.credentials ?? defaultCredentials }),
    });
    const worker = new Worker({ root: opts.root, snapshotter, content, mgr, executor, images, platforms: await supportedPlatforms() });
    return {
      worker,
      db,
      gc,
      recovery,
      async [Symbol.asyncDispose]() {
        db.deleteLease(leaseId);
        db.close();
      },
    };
  } catch (err) {
    db.deleteLease(leaseId);
    db.close();
    throw err;
  }
}
