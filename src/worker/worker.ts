// The base worker: composes snapshots, content, refs, the executor and sources for one platform,
// and turns loaded LLB into solver vertices.
import path from "node:path";
import type { LoadedDefinition, LoadedOp } from "../llb/index.js";
import { KeyLocks, RefCacheStore, type CacheManager } from "../cache/index.js";
import type { ContentStore } from "../content/types.js";
import type { Executor } from "../executor/types.js";
import type { Snapshotter } from "../snapshot/types.js";
import type { Session } from "../session/types.js";
import type { CacheStore, Op, Vertex } from "../solver/types.js";
import { ExecOpRunner, FileOpRunner, MergeOpRunner } from "../ops/index.js";
import { LocalSourceOp, ImageSourceOp, HttpSourceOp, GitSourceOp, OCILayoutResolver, RegistryImagePuller, httpAttrs, gitSourceSpec, type ImagePuller } from "../source/index.js";
import { KilnError, formatPlatform, hostPlatform, type Digest, type Platform } from "../util/index.js";
import { canRun, emulationHint } from "./emulation.js";
import { validateEntitlements, type Entitlement } from "./entitlements.js";

export interface WorkerOptions {
  root: string;
  snapshotter: Snapshotter;
  content: ContentStore;
  mgr: CacheManager;
  executor: Executor;
  images: ImagePuller;
  platform?: Platform;
  /** Platforms RUN steps can execute on (native and emulated); default just `platform`. */
  platforms?: Platform[];
}

export class Worker {
  readonly platform: Platform;
  readonly platforms: Platform[];
  /** Results by cache key; locked per key across processes that share the root. */
  readonly store: CacheStore;
  private readonly cacheLocks: KeyLocks;

  constructor(readonly opts: WorkerOptions) {
    this.platform = opts.platform ?? hostPlatform();
    this.platforms = opts.platforms ?? [this.platform];
    const refs = new RefCacheStore(opts.mgr);
    const locks = new KeyLocks(path.join(opts.root, "locks"));
    this.cacheLocks = locks;
    this.store = {
      load: (signal, key, outputs) => refs.load(signal, key, outputs),
      save: (signal, key, results) => refs.save(signal, key, results),
      lock: (signal, key) => locks.lock(signal, key),
      vouch: (key) => refs.vouch(key),
      isVouched: (key) => refs.isVouched(key),
    };
  }

  get mgr(): CacheManager {
    return this.opts.mgr;
  }

  get content(): ContentStore {
    return this.opts.content;
  }

  get images(): ImagePuller {
    return this.opts.images;
  }

  /** Images from one of the client's OCI layouts (a content store of its session), unpacked as pulled ones. */
  ociLayoutImages(session: Session | undefined, storeId: string): ImagePuller {
    return new RegistryImagePuller({ mgr: this.opts.mgr, content: this.opts.content, resolverFor: () => new OCILayoutResolver(session?.contentStores, storeId) });
  }

  /**
   * Builds the vertex graph of a definition; returns its root, or undefined for an empty result.
   * Execs needing an entitlement not in `entitlements` are refused before anything runs.
   */
  load(def: LoadedDefinition, session: Session, entitlements: ReadonlySet<Entitlement> = new Set()): { vertex: Vertex; index: number } | undefined {
    if (!def.root) return undefined;
    const built = new Map<string, Vertex>();
    const build = (digest: string): Vertex => {
      const existing = built.get(digest);
      if (existing) return existing;
      const lop = def.ops.get(digest);
      if (!lop) throw new KilnError("KILN_LLB", `invalid definition: missing op ${digest}`);
      this.checkPlatform(lop);
      validateEntitlements(lop, entitlements);
      const inputs = lop.inputs.map((i) => ({ vertex: build(i.digest), index: i.index }));
      const v: Vertex = {
        digest: digest as Digest,
        name: vertexName(lop),
        inputs,
        ignoreCache: lop.metadata?.ignoreCache ?? false,
        op: this.resolveOp(lop, session),
      };
      built.set(digest, v);
      return v;
    };
    return { vertex: build(def.root.digest), index: def.root.index };
  }

  /** A step for a platform this machine can't execute fails before anything runs. */
  private checkPlatform(lop: LoadedOp): void {
    const p = lop.op.platform;
    if (lop.op.op.case !== "exec" || !p) return;
    const want: Platform = { os: p.OS, architecture: p.Architecture, variant: p.Variant || undefined };
    if (canRun(this.platforms, want)) return;
    throw new KilnError(
      "KILN_PLATFORM",
      `no emulator for ${formatPlatform(want)}: this machine runs ${this.platforms.map(formatPlatform).join(", ")}`,
      { hint: emulationHint(want) },
    );
  }

  private resolveOp(lop: LoadedOp, session: Session): Op {
    const op = lop.op.op;
    switch (op.case) {
      case "source": {
        const id = op.value.identifier;
        const attrs = op.value.attrs;
        if (id.startsWith("docker-image://")) {
          const p = lop.op.platform;
          const platform: Platform = p ? { os: p.OS, architecture: p.Architecture, variant: p.Variant || undefined } : this.platform;
          return new ImageSourceOp({ mgr: this.opts.mgr, images: this.opts.images }, id.slice("docker-image://".length), platform, session);
        }
        if (id.startsWith("oci-layout://")) {
          const p = lop.op.platform;
          const platform: Platform = p ? { os: p.OS, architecture: p.Architecture, variant: p.Variant || undefined } : this.platform;
          return new ImageSourceOp({ mgr: this.opts.mgr, images: this.ociLayoutImages(session, attrs["oci.store"] ?? "") }, id.slice("oci-layout://".length), platform, session);
        }
        if (id.startsWith("local://")) {
          const parseList = (k: string): string[] | undefined => (attrs[k] ? (JSON.parse(attrs[k]) as string[]) : undefined);
          return new LocalSourceOp(
            { mgr: this.opts.mgr, localDirs: session.localDirs },
            id.slice("local://".length),
            { includePatterns: parseList("local.includepattern"), excludePatterns: parseList("local.excludepatterns"), followPaths: parseList("local.followpaths") },
            attrs["local.sharedkeyhint"] ?? "",
          );
        }
        if (id.startsWith("http://") || id.startsWith("https://")) return new HttpSourceOp({ mgr: this.opts.mgr, upload: session.upload }, id, httpAttrs(attrs));
        if (id.startsWith("git://")) {
          return new GitSourceOp({ mgr: this.opts.mgr, root: path.join(this.opts.root, "git"), locks: this.cacheLocks }, gitSourceSpec(id, attrs));
        }
        throw new KilnError("KILN_UNSUPPORTED", `source ${id} is not supported yet`);
      }
      case "exec": {
        const p = lop.op.platform;
        const platform: Platform = p ? { os: p.OS, architecture: p.Architecture, variant: p.Variant || undefined } : this.platform;
        return new ExecOpRunner(
          { mgr: this.opts.mgr, executor: this.opts.executor, cacheMountRoot: path.join(this.opts.root, "cachemounts"), cacheLocks: this.cacheLocks, secrets: session.secrets, ssh: session.ssh },
          op.value,
          platform,
        );
      }
      case "file":
        return new FileOpRunner({ mgr: this.opts.mgr }, op.value, lop.inputs.length);
      case "merge":
        return new MergeOpRunner({ mgr: this.opts.mgr }, op.value);
      default:
        throw new KilnError("KILN_UNSUPPORTED", `LLB op ${String(op.case)} is not supported yet`);
    }
  }
}

function vertexName(lop: LoadedOp): string {
  const custom = lop.metadata?.description?.["llb.customname"];
  if (custom) return custom;
  const op = lop.op.op;
  switch (op.case) {
    case "source":
      return op.value.identifier;
    case "exec":
      return op.value.meta?.args.join(" ") ?? "exec";
    case "file":
      return op.value.actions.map((a) => a.action.case ?? "").join(", ");
    default:
      return String(op.case);
  }
}
