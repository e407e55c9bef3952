// Why a step missed the cache: each build remembers how every step's key was formed (its op
// digest, and per input the input's key or content), under the step's place in the Dockerfile
// ("[stage-1 3/4]"); a step that runs is compared with what the last build of that place had.
import type { Digest } from "../util/index.js";
import type { KeyInfo, ProgressWriter, SolveHooks, Vertex } from "../solver/types.js";

export interface ExplainStore {
  get(id: string): string | undefined;
  set(id: string, value: string): void;
}

interface StepRecord {
  name: string;
  op: Digest;
  deps: ({ input: string; key: Digest } | { input: string; content: Digest; selector: string })[];
}

/** A step's place: the bracketed prefix progress shows ("[build 2/3]"), else its whole name. */
export function stepIdentity(v: Vertex): string {
  const m = /^\[[^\]]+\]/.exec(v.name);
  return m && m[0] !== "[internal]" ? m[0] : v.name;
}

export class MissExplainer {
  private readonly keys = new Map<Digest, KeyInfo>();

  constructor(
    private readonly store: ExplainStore,
    private readonly progress: ProgressWriter,
    /** Print explanations (otherwise only remember this build's keys for a later one). */
    private readonly explain: boolean,
  ) {}

  hooks(): SolveHooks {
    return {
      onKey: (info) => this.keys.set(info.key, info),
      ...(this.explain ? { onMiss: (key: Digest, v: Vertex) => this.onMiss(key, v) } : {}),
    };
  }

  private record(info: KeyInfo): StepRecord {
    return {
      name: info.vertex.name,
      op: info.digest,
      deps: info.deps.map((d, i) => {
        const input = info.vertex.inputs[i]?.vertex.name ?? `input ${i}`;
        return "content" in d ? { input, content: d.content, selector: d.selector } : { input, key: d.key };
      }),
    };
  }

  /** The reasons, one line each. */
  reasons(key: Digest): string[] {
    const info = this.keys.get(key);
    if (!info) return [];
    const raw = this.store.get(stepIdentity(info.vertex));
    if (!raw) return ["no earlier build of this step in this cache"];
    let prev: StepRecord;
    try {
      prev = JSON.parse(raw) as StepRecord;
    } catch {
      return ["no readable record of the earlier build of this step"];
    }
    const cur = this.record(info);
    const out: string[] = [];
    if (prev.op !== cur.op) out.push(prev.name === cur.name ? "the step's own definition changed (options, platform or what it names)" : `the step changed: was ${JSON.stringify(prev.name)}`);
    if (prev.deps.length !== cur.deps.length) out.push(`it has ${cur.deps.length} inputs, the earlier build had ${prev.deps.length}`);
    else {
      cur.deps.forEach((d, i) => {
        const p = prev.deps[i];
        if (!p) return;
        if ("content" in d) {
          if (!("content" in p)) out.push(`input ${i} (${d.input}) is now keyed by its content`);
          else if (p.content !== d.content) out.push(`content changed: ${d.selector ? d.selector.split("\0").join(", ") : "/"} from ${d.input}`);
        } else if (!("key" in p)) out.push(`input ${i} (${d.input}) is now keyed by its definition`);
        else if (p.key !== d.key) out.push(`input ${i} changed: ${d.input}${p.input !== d.input ? ` (was ${p.input})` : ""}`);
      });
    }
    if (out.length === 0) out.push("same key as the earlier build, but its result is gone (pruned, or built with --no-cache)");
    return out;
  }

  private onMiss(key: Digest, v: Vertex): void {
    // Transfers of the client's files and definitions run every build, as in BuildKit: nothing to explain.
    if (v.name.startsWith("[internal]")) return;
    const lines = this.reasons(key);
    if (lines.length === 0) return;
    const text = lines.map((l) => `cache miss: ${l}\n`).join("");
    this.progress.write({ logs: [{ vertex: v.digest, stream: 2, data: Buffer.from(text), timestamp: new Date() }] });
  }

  /** Remembers this build's keys for the next one; the last key formed for a step wins. */
  save(): void {
    const latest = new Map<string, KeyInfo>();
    for (const info of this.keys.values()) latest.set(stepIdentity(info.vertex), info);
    for (const [id, info] of latest) this.store.set(id, JSON.stringify(this.record(info)));
  }
}

/** Both sets of hooks, each called in turn. */
export function mergeHooks(a: SolveHooks, b: SolveHooks): SolveHooks {
  const out: SolveHooks = { ...a, ...b };
  if (a.onKey && b.onKey) {
    const x = a.onKey;
    const y = b.onKey;
    out.onKey = (info) => {
      x(info);
      y(info);
    };
  }
  if (a.onMiss && b.onMiss) {
    const x = a.onMiss;
    const y = b.onMiss;
    out.onMiss = (k, v) => {
      x(k, v);
      y(k, v);
    };
  }
  if (a.remote) out.remote = a.remote;
  return out;
}
