// BuildKit's cache config, `application/vnd.buildkit.cacheconfig.v0`: the model, its deterministic
// order, and JSON byte-compatible with Go's encoding of the same structs (field order, omitempty),
// so a config BuildKit wrote parses here and ours parses there.
import { KilnError, digestOf, isDigest, type Digest } from "../util/index.js";

export const cacheConfigMediaType = "application/vnd.buildkit.cacheconfig.v0";
export const annotationUncompressed = "containerd.io/uncompressed";
export const annotationCreatedAt = "buildkit/createdat";

export interface CacheLayer {
  blob: Digest;
  /** Index of the layer below this one; −1 = a base layer. */
  parent: number;
  annotations?: { mediaType?: string; diffID?: Digest; size?: number; createdAt?: string };
}

export interface CacheInput {
  selector: string;
  link: number;
}

export interface CacheRecord {
  digest: Digest;
  /** inputs[i]: the records any of which can stand for input i. */
  inputs: CacheInput[][];
  /** Results as the top layer of a parent chain. */
  results: { layer: number; createdAt?: string }[];
  /** Results as explicit layer lists (inline cache). */
  chains: { layers: number[]; createdAt?: string }[];
}

export interface CacheConfig {
  layers: CacheLayer[];
  records: CacheRecord[];
}

/** A record's digest: the CacheMap digest with an output index (−1 for content keys), as BuildKit's outputKey. */
export function outputKey(digest: string, output: number): Digest {
  return digestOf(`${digest}@${output}`);
}

const zeroTime = "0001-01-01T00:00:00Z";

/** Go's RFC 3339 with nanoseconds, trailing zeros dropped (time.Time's MarshalJSON). */
export function goTime(d: Date | number | undefined): string {
  if (d === undefined) return zeroTime;
  const iso = new Date(d).toISOString();
  return iso.replace(/\.(\d+)Z$/, (_m, frac: string) => {
    const t = frac.replace(/0+$/, "");
    return t ? `.${t}Z` : "Z";
  });
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Orders layers and records as BuildKit does, so equal caches give byte-equal configs. */
export function sortConfig(cc: CacheConfig): CacheConfig {
  const layerOrder = cc.layers.map((l, i) => ({ l, i }));
  layerOrder.sort((a, b) => (a.l.blob === b.l.blob ? a.l.parent - b.l.parent : cmp(a.l.blob, b.l.blob)));
  const newLayer = new Array<number>(cc.layers.length);
  layerOrder.forEach((e, n) => (newLayer[e.i] = n));
  const layers = layerOrder.map(({ l }) => ({ ...l, parent: l.parent === -1 ? -1 : (newLayer[l.parent] ?? -1) }));

  const recOrder = cc.records.map((r, i) => ({ r, i }));
  recOrder.sort((x, y) => {
    const a = x.r;
    const b = y.r;
    if (a.digest !== b.digest) return cmp(a.digest, b.digest);
    if (a.inputs.length !== b.inputs.length) return a.inputs.length - b.inputs.length;
    for (let i = 0; i < a.inputs.length; i++) {
      const ai = a.inputs[i] ?? [];
      const bi = b.inputs[i] ?? [];
      if (ai.length !== bi.length) return ai.length - bi.length;
      for (let j = 0; j < ai.length; j++) {
        const p = ai[j];
        const q = bi[j];
        if (!p || !q) continue;
        if (p.selector !== q.selector) return cmp(p.selector, q.selector);
        const c = cmp(cc.records[p.link]?.digest ?? "", cc.records[q.link]?.digest ?? "");
        if (c !== 0) return c;
      }
    }
    return 0;
  });
  const newRec = new Array<number>(cc.records.length);
  recOrder.forEach((e, n) => (newRec[e.i] = n));
  const records = recOrder.map(({ r }) => ({
    digest: r.digest,
    inputs: r.inputs.map((ins) => ins.map((x) => ({ selector: x.selector, link: newRec[x.link] ?? -1 })).sort((p, q) => p.link - q.link)),
    results: r.results.map((x) => ({ ...x, layer: newLayer[x.layer] ?? -1 })),
    chains: r.chains.map((c) => ({ ...c, layers: c.layers.map((l) => newLayer[l] ?? -1) })),
  }));
  return { layers, records };
}

/** The records array alone, as inline cache stores it in the image config. */
export function recordsJSON(records: CacheRecord[]): unknown[] {
  return records.map((r) => {
    const o: Record<string, unknown> = {};
    if (r.results.length) o.layers = r.results.map((x) => ({ layer: x.layer, createdAt: x.createdAt ?? zeroTime }));
    if (r.chains.length) o.chains = r.chains.map((c) => ({ layers: c.layers, createdAt: c.createdAt ?? zeroTime }));
    if (r.digest) o.digest = r.digest;
    if (r.inputs.length) o.inputs = r.inputs.map((ins) => ins.map((x) => (x.selector ? { selector: x.selector, link: x.link } : { link: x.link })));
    return o;
  });
}

export function marshalConfig(cc: CacheConfig): string {
  const o: Record<string, unknown> = {};
  if (cc.layers.length) {
    o.layers = cc.layers.map((l) => {
      const x: Record<string, unknown> = {};
      if (l.blob) x.blob = l.blob;
      if (l.parent !== 0) x.parent = l.parent;
      if (l.annotations) {
        const a = l.annotations;
        x.annotations = { ...(a.mediaType ? { mediaType: a.mediaType } : {}), ...(a.diffID ? { diffID: a.diffID } : {}), ...(a.size ? { size: a.size } : {}), createdAt: a.createdAt ?? zeroTime };
      }
      return x;
    });
  }
  if (cc.records.length) o.records = recordsJSON(cc.records);
  // Go escapes these in strings; digests and times never contain them, selectors might.
  return JSON.stringify(o).replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

function bad(msg: string): never {
  throw new KilnError("KILN_CACHE_CONFIG", `invalid cache config: ${msg}`);
}

function int(v: unknown, def: number, what: string): number {
  if (v === undefined || v === null) return def;
  if (typeof v !== "number" || !Number.isInteger(v)) bad(`${what} is not an integer`);
  return v;
}

/** Parses the records array of a config (or of an inline cache). Links and layer indexes are checked against `nLayers`. */
export function parseRecords(raw: unknown, nLayers: number): CacheRecord[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) bad("records is not an array");
  const n = raw.length;
  return raw.map((r: Record<string, unknown>, ri) => {
    if (typeof r !== "object" || r === null) bad(`record ${ri} is not an object`);
    const digest = r.digest;
    if (typeof digest !== "string" || !isDigest(digest)) bad(`record ${ri} has no digest`);
    const inputs = ((r.inputs ?? []) as unknown[][]).map((ins) =>
      (ins ?? []).map((x) => {
        const o = x as Record<string, unknown>;
        const link = int(o.link, 0, "link");
        if (link < 0 || link >= n) bad(`record ${ri} links to missing record ${link}`);
        return { selector: typeof o.selector === "string" ? o.selector : "", link };
      }),
    );
    const results = ((r.layers ?? []) as Record<string, unknown>[]).map((x) => {
      const layer = int(x.layer, 0, "layer");
      if (layer < 0 || layer >= nLayers) bad(`record ${ri} refers to missing layer ${layer}`);
      return { layer, createdAt: typeof x.createdAt === "string" ? x.createdAt : undefined };
    });
    const chains = ((r.chains ?? []) as Record<string, unknown>[]).map((x) => {
      const layers = ((x.layers ?? []) as unknown[]).map((l) => int(l, 0, "layer"));
      if (layers.some((l) => l < 0 || l >= nLayers)) bad(`record ${ri} has a chain with a missing layer`);
      return { layers, createdAt: typeof x.createdAt === "string" ? x.createdAt : undefined };
    });
    return { digest, inputs, results, chains };
  });
}

export function parseConfig(bytes: Uint8Array | string): CacheConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("utf8")) as Record<string, unknown>;
  } catch (err) {
    bad(err instanceof Error ? err.message : String(err));
  }
  if (typeof raw !== "object" || raw === null) bad("not an object");
  const rawLayers = (raw.layers ?? []) as Record<string, unknown>[];
  if (!Array.isArray(rawLayers)) bad("layers is not an array");
  const layers: CacheLayer[] = rawLayers.map((l, i) => {
    const blob = l.blob;
    if (typeof blob !== "string" || !isDigest(blob)) bad(`layer ${i} has no blob digest`);
    // Go omits a parent of 0, so absent means the first layer, not "none".
    const parent = int(l.parent, 0, "parent");
    if (parent < -1 || parent >= rawLayers.length || parent === i) bad(`layer ${i} has a bad parent ${parent}`);
    const a = l.annotations as Record<string, unknown> | undefined;
    const out: CacheLayer = { blob, parent };
    if (a && typeof a === "object") {
      out.annotations = {
        mediaType: typeof a.mediaType === "string" ? a.mediaType : undefined,
        diffID: typeof a.diffID === "string" && isDigest(a.diffID) ? a.diffID : undefined,
        size: typeof a.size === "number" ? a.size : undefined,
        createdAt: typeof a.createdAt === "string" ? a.createdAt : undefined,
      };
    }
    return out;
  });
  // A parent cycle would make chain walks loop forever.
  for (let i = 0; i < layers.length; i++) {
    let cur = i;
    for (let steps = 0; cur !== -1; steps++) {
      if (steps > layers.length) bad(`layer ${i} has a parent cycle`);
      cur = layers[cur]?.parent ?? -1;
    }
  }
  return { layers, records: parseRecords(raw.records, layers.length) };
}

/** The blob chain of layer `top`, base first. */
export function layerChain(cc: CacheConfig, top: number): CacheLayer[] {
  const out: CacheLayer[] = [];
  for (let cur = top; cur !== -1; ) {
    const l = cc.layers[cur];
    if (!l) break;
    out.push(l);
    cur = l.parent;
  }
  return out.reverse();
}
