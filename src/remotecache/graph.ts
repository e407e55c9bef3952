// From the solver's keys to cache records (export) and back (import matching). A record stands for
// one output of one key: its digest is outputKey(CacheMap digest, output), its inputs link to the
// records of the keys it was formed from, or to content roots (outputKey(content, −1)) for inputs
// keyed by their content — the same graph BuildKit writes, queried the way BuildKit queries it.
import type { Descriptor } from "../api/oci.js";
import type { KeyInfo } from "../solver/types.js";
import { digestOf, mapLimit, type Digest } from "../util/index.js";
import { annotationCreatedAt, annotationUncompressed, goTime, layerChain, outputKey, sortConfig, type CacheConfig, type CacheInput, type CacheRecord } from "./config.js";

/** Selectors travel as digests, as BuildKit's do; the empty selector stays empty. */
export function selectorOf(s: string): string {
  return s ? digestOf(s) : "";
}

export type CacheMode = "min" | "max";

/** A result's layers, base first, with their diffIDs in the `containerd.io/uncompressed` annotation. */
export type LayersFor = (key: Digest, output: number) => Promise<Descriptor[] | undefined>;

export interface BuiltConfig {
  config: CacheConfig;
  /** Every layer blob the config names. */
  blobs: Map<Digest, Descriptor>;
}

/**
 * Walks from `roots` through the keys they were formed from. `min` gives the roots results; `max`
 * every record whose key has a result (`layersFor` answers undefined for the rest).
 */
export async function buildConfig(
  signal: AbortSignal,
  keys: ReadonlyMap<Digest, KeyInfo>,
  roots: { key: Digest; output: number }[],
  mode: CacheMode,
  layersFor: LayersFor,
  /** Keys that do not follow content (a local context's transfer): never exported, as BuildKit drops its random keys. */
  volatile: (info: KeyInfo) => boolean = () => false,
  /**
   * Per input of a key that hit an imported record before its content was known: the record
   * digests of the content roots that record linked to. They go out again beside the definition
   * link, as BuildKit re-exports the links it imported.
   */
  carried: (key: Digest) => readonly (readonly Digest[])[] | undefined = () => undefined,
): Promise<BuiltConfig> {
  const records: CacheRecord[] = [];
  const recordIndex = new Map<string, number[] | undefined>();
  const contentIndex = new Map<string, number>();
  const withResult: { rec: CacheRecord; key: Digest; output: number }[] = [];

  const rootRecord = (digest: Digest): number => {
    let i = contentIndex.get(digest);
    if (i === undefined) {
      i = records.push({ digest, inputs: [], results: [], chains: [] }) - 1;
      contentIndex.set(digest, i);
    }
    return i;
  };
  const contentRecord = (content: Digest): number => rootRecord(outputKey(content, -1));
  // A key's records: one per CacheMap digest (an image's manifest and config keys), all with the
  // same inputs. Undefined when some input has nothing to link to (BuildKit drops such records too).
  const keyRecords = (key: Digest, output: number): number[] | undefined => {
    const id = `${key}@${output}`;
    if (recordIndex.has(id)) return recordIndex.get(id);
    const info = keys.get(key);
    if (!info || volatile(info)) return undefined;
    // Guards against a key graph that loops back on itself.
    recordIndex.set(id, undefined);
    const inputs: CacheInput[][] = [];
    const carriedRoots = carried(key);
    for (const [i, dep] of info.deps.entries()) {
      if ("content" in dep) {
        // Both ways to the input, so an importer can hit before it has the input's content.
        const byDef = dep.def ? keyRecords(dep.def.key, dep.def.index) : undefined;
        const links = [{ selector: "", link: contentRecord(dep.content) }];
        for (const link of byDef ?? []) links.push({ selector: selectorOf(dep.selector), link });
        inputs.push(links);
        continue;
      }
      const links = keyRecords(dep.key, dep.index);
      if (!links) {
        recordIndex.delete(id);
        return undefined;
      }
      const roots = (carriedRoots?.[i] ?? []).map((d) => ({ selector: "", link: rootRecord(d) }));
      inputs.push([...roots, ...links.map((link) => ({ selector: selectorOf(dep.selector), link }))]);
    }
    const out: number[] = [];
    for (const digest of [info.digest, ...(info.alternates ?? [])]) {
      const rec: CacheRecord = { digest: outputKey(digest, output), inputs: inputs.map((l) => l.map((x) => ({ ...x }))), results: [], chains: [] };
      out.push(records.push(rec) - 1);
      // Results belong to records formed from inputs: BuildKit exports no result for a root (a source).
      if (info.deps.length > 0 && (mode === "max" || roots.some((r) => r.key === key && r.output === output))) withResult.push({ rec, key, output });
    }
    recordIndex.set(id, out);
    return out;
  };
  for (const r of roots) keyRecords(r.key, r.output);

  const layers: CacheConfig["layers"] = [];
  const chainIndex = new Map<string, number>();
  const blobs = new Map<Digest, Descriptor>();
  // Results' layers are made (diffed, compressed) concurrently; the config is assembled in walk order.
  const chains = await mapLimit(withResult, 4, async ({ key, output }) => {
    signal.throwIfAborted();
    return layersFor(key, output);
  });
  if (mode === "min") {
    // BuildKit's min mode still gives a result to every record whose layers the exported results
    // already made (their blobs exist): the steps below the result in its own layer chain. Those
    // are reached from the roots through inputs keyed by definition (a rootfs, a copy's base).
    const made = new Set(chains.flatMap((c) => (c ?? []).map((d) => d.digest)));
    const below: { rec: CacheRecord; key: Digest; output: number }[] = [];
    const seen = new Set<string>(withResult.map((w) => `${w.key}@${w.output}`));
    const visit = (key: Digest) => {
      for (const dep of keys.get(key)?.deps ?? []) {
        if ("content" in dep) continue;
        const id = `${dep.key}@${dep.index}`;
        if (seen.has(id)) continue;
        seen.add(id);
        const info = keys.get(dep.key);
        const idx = recordIndex.get(id);
        if (info && info.deps.length > 0 && idx) for (const i of idx) below.push({ rec: records[i]!, key: dep.key, output: dep.index });
        visit(dep.key);
      }
    };
    for (const r of roots) visit(r.key);
    const belowChains = await mapLimit(below, 4, async ({ key, output }) => {
      signal.throwIfAborted();
      const descs = await layersFor(key, output);
      return descs && descs.length > 0 && descs.every((d) => made.has(d.digest)) ? descs : undefined;
    });
    withResult.push(...below);
    chains.push(...belowChains);
  }
  for (const [i, { rec }] of withResult.entries()) {
    const descs = chains[i];
    if (!descs || descs.length === 0) continue;
    let parent = -1;
    let chainId = "";
    for (const d of descs) {
      chainId = `${d.digest}${chainId ? `/${chainId}` : ""}`;
      let li = chainIndex.get(chainId);
      if (li === undefined) {
        li = layers.push({ blob: d.digest as Digest, parent }) - 1;
        chainIndex.set(chainId, li);
      }
      // Go marshals annotation maps sorted; the index then matches BuildKit's byte for byte.
      blobs.set(d.digest as Digest, d.annotations ? { ...d, annotations: Object.fromEntries(Object.entries(d.annotations).sort(([x], [y]) => (x < y ? -1 : 1))) } : d);
      parent = li;
    }
    const top = descs[descs.length - 1];
    rec.results.push({ layer: parent, createdAt: top?.annotations?.[annotationCreatedAt] ?? goTime(Date.now()) });
  }
  return { config: sortConfig({ layers, records }), blobs };
}

/** One imported cache: its config and where its layer blobs are described. */
export interface ImportedConfig {
  config: CacheConfig;
  descriptors: ReadonlyMap<Digest, Descriptor>;
}

/** A remote result: the layers of one record's result, base first. */
export interface RemoteResult {
  layers: Descriptor[];
}

/** Answers "which records of this config stand for this key's output" the way BuildKit's cache storage does. */
export class ConfigMatcher {
  private readonly byDigest = new Map<Digest, number[]>();
  private readonly memo = new Map<string, Set<number>>();
  /**
   * When the record that made each layer entry was created. A blob two records share (the same
   * COPY over two platforms' bases) has one descriptor but an entry, and a time, per record.
   */
  private readonly createdAt = new Map<CacheConfig["layers"][number], string>();

  constructor(
    readonly imported: ImportedConfig,
    private readonly keys: ReadonlyMap<Digest, KeyInfo>,
  ) {
    imported.config.records.forEach((r, i) => {
      const list = this.byDigest.get(r.digest) ?? [];
      list.push(i);
      this.byDigest.set(r.digest, list);
      for (const x of r.results) {
        const l = imported.config.layers[x.layer];
        if (l && x.createdAt && x.createdAt !== "0001-01-01T00:00:00Z") this.createdAt.set(l, x.createdAt);
      }
    });
  }

  matches(key: Digest, output: number): Set<number> {
    const id = `${key}@${output}`;
    const known = this.memo.get(id);
    if (known) return known;
    // Guards against a key graph that loops back on itself while this entry is being worked out.
    const out = new Set<number>();
    this.memo.set(id, out);
    const info = this.keys.get(key);
    if (!info) return out;
    const recs = this.imported.config.records;
    // Per input, the (selector, records) pairs a link may match: its key's records, or its content root.
    const allowed = info.deps.map((dep) => {
      if (!("content" in dep)) return [{ selector: selectorOf(dep.selector), links: this.matches(dep.key, dep.index) }];
      const alts = [{ selector: "", links: new Set(this.byDigest.get(outputKey(dep.content, -1)) ?? []) }];
      if (dep.def) alts.push({ selector: selectorOf(dep.selector), links: this.matches(dep.def.key, dep.def.index) });
      return alts;
    });
    const candidates = [info.digest, ...(info.alternates ?? [])].flatMap((d) => this.byDigest.get(outputKey(d, output)) ?? []);
    for (const ri of candidates) {
      const r = recs[ri];
      if (!r || r.inputs.length !== allowed.length) continue;
      const ok = allowed.every((alts, i) => (r.inputs[i] ?? []).some((x) => alts.some((a) => x.selector === a.selector && a.links.has(x.link))));
      if (ok) out.add(ri);
    }
    return out;
  }

  /**
   * Per input, the content roots (records without inputs, linked with an empty selector) that the
   * records matching `key` link to besides the links its own deps explain: what a hit made by
   * definition leaves out of the key's deps.
   */
  contentRoots(key: Digest, outputs: number): Digest[][] {
    const info = this.keys.get(key);
    if (!info) return [];
    const recs = this.imported.config.records;
    const explained = info.deps.map((dep) => ("content" in dep ? new Set<number>() : this.matches(dep.key, dep.index)));
    const out: Set<Digest>[] = info.deps.map(() => new Set());
    for (let o = 0; o < outputs; o++) {
      for (const ri of this.matches(key, o)) {
        recs[ri]?.inputs.forEach((links, i) => {
          for (const x of links) {
            const target = recs[x.link];
            if (x.selector === "" && target && target.inputs.length === 0 && !explained[i]?.has(x.link)) out[i]?.add(target.digest);
          }
        });
      }
    }
    return out.map((s) => [...s].sort());
  }

  /** The first matching record's result whose blobs are all described. */
  result(key: Digest, output: number): RemoteResult | undefined {
    const cc = this.imported.config;
    for (const ri of this.matches(key, output)) {
      const r = cc.records[ri];
      if (!r) continue;
      const chains = [
        ...r.results.map((x) => ({ chain: layerChain(cc, x.layer), createdAt: x.createdAt })),
        ...r.chains.map((c) => ({ chain: c.layers.map((l) => cc.layers[l]).filter((l) => l !== undefined), createdAt: c.createdAt })),
      ];
      for (const { chain, createdAt } of chains) {
        const descs = chain.map((l, i) => {
          const d = this.describe(l);
          const at = i === chain.length - 1 && createdAt && createdAt !== "0001-01-01T00:00:00Z" ? createdAt : this.createdAt.get(l);
          return d && at ? { ...d, annotations: { ...d.annotations, [annotationCreatedAt]: at } } : d;
        });
        if (descs.length === 0 || !descs.every((d) => d !== undefined)) continue;
        return { layers: descs as Descriptor[] };
      }
    }
    return undefined;
  }

  private describe(l: CacheConfig["layers"][number]): Descriptor | undefined {
    const d = this.imported.descriptors.get(l.blob);
    if (d) return d;
    const a = l.annotations;
    if (!a?.mediaType || !a.diffID || !a.size) return undefined;
    const annotations: Record<string, string> = { [annotationUncompressed]: a.diffID };
    if (a.createdAt && a.createdAt !== "0001-01-01T00:00:00Z") annotations[annotationCreatedAt] = a.createdAt;
    return { mediaType: a.mediaType, digest: l.blob, size: a.size, annotations };
  }
}
