// Opens a worker over a root directory: the composition of every subsystem below the worker.
import path from "node:path";
import { CacheManager, MetadataDB } from "../cache/index.js";
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
}

export interface OpenedWorker extends AsyncDisposable {
  worker: Worker;
  db: MetadataDB;
}

export async function openWorker(opts: OpenWorkerOptions): Promise<OpenedWorker> {
  const db = new MetadataDB(path.join(opts.root, "metadata.db"));
  const snapshotter = new OverlaySnapshotter(path.join(opts.root, "snapshots"));
  const content = new LocalContentStore(opts.root);
  const mgr = new CacheManager(db, snapshotter);
  const executor = new RuncExecutor({ root: path.join(opts.root, "executor") });
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
    async [Symbol.asyncDispose]() {
      db.close();
    },
  };
}
