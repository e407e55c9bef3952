// Builds whose mode=max cache export kiln must write with BuildKit v0.11.6's record digests and
// graph, so either can import the other's cache. Recorded from the real BuildKit by
// scripts/record-buildkit-cache-goldens.ts into test/compare/golden/cache/NAME.json;
// test/e2e/cache-buildkit-keys.test.ts exports the same builds from kiln and compares.
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { cacheConfigMediaType, parseConfig, type CacheConfig } from "../../src/remotecache/config.js";

export interface CacheCase {
  name: string;
  /** Context files; every file is written 0644 and every directory 0755, owned by the writer (root). */
  files: Record<string, string>;
  target?: string;
  /** The cache export's mode (default max). */
  mode?: "min" | "max";
}

export const cacheCases: CacheCase[] = [
  {
    name: "copy-wildcards-chown",
    files: {
      Dockerfile: [
        "FROM busybox",
        "WORKDIR /app",
        "COPY --chown=1000:1000 *.txt ./",
        "COPY --chown=daemon:daemon dir /app/dir",
        "COPY su[b]* /docs/",
        "RUN cat a.txt b.txt dir/c.txt > /out && ls -ln /app /docs >> /out",
      ].join("\n"),
      "a.txt": "alpha\n",
      "b.txt": "bravo\n",
      "ignored.bin": "not copied\n",
      "dir/c.txt": "charlie\n",
      "dir/deeper/d.txt": "delta\n",
      "sub/n1.md": "one\n",
      "sub/n2.md": "two\n",
      "sub/other.md": "other\n",
    },
  },
  {
    name: "multistage-bind-mount",
    files: {
      Dockerfile: [
        "FROM busybox AS build",
        "COPY a.txt /a",
        "RUN echo built-$(cat /a) > /out",
        "FROM busybox AS other",
        "ENV X=1",
        "RUN mkdir -p /data && echo other > /data/o.txt",
        "FROM busybox",
        "COPY --from=build /out /out",
        "RUN --mount=type=bind,from=other,source=/data,target=/mnt cat /mnt/o.txt /out > /final",
        "COPY b.txt /b",
      ].join("\n"),
      "a.txt": "A\n",
      "b.txt": "B\n",
    },
  },
  {
    name: "multistage-min",
    mode: "min",
    files: {
      // Shares no step with the other cases: BuildKit's min mode gives results to whatever already has
      // blobs, which includes steps an earlier case exported.
      Dockerfile: ["FROM busybox AS build", "COPY m.txt /m", "RUN echo min-$(cat /m) > /out", "FROM busybox", "WORKDIR /w", "COPY --from=build /out /out", "RUN cat /out > /final"].join("\n"),
      "m.txt": "M\n",
    },
  },
];

/** A record as the golden keeps it: its inputs by the linked records' digests, whether it has a result. */
export interface GoldenRecord {
  digest: string;
  inputs: { selector: string; link: string }[][];
  /** How many layers the record's result has (0: no result). */
  layers: number;
}

/**
 * The parts of a cache config that are the same on every run: record digests, their links and
 * selectors and the length of each result's layer chain. Blob digests and times are left out
 * (a layer's compressed bytes and creation time depend on when it was made).
 */
export function normalizeCacheConfig(cc: CacheConfig): GoldenRecord[] {
  const chainLength = (top: number): number => {
    let n = 0;
    for (let i = top; i >= 0 && n <= cc.layers.length; i = cc.layers[i]?.parent ?? -1) n++;
    return n;
  };
  const out = cc.records.map((r) => ({
    digest: r.digest,
    inputs: r.inputs.map((links) => links.map((l) => ({ selector: l.selector, link: cc.records[l.link]?.digest ?? `?${l.link}` })).sort((a, b) => cmp(a.link + a.selector, b.link + b.selector))),
    layers: Math.max(0, ...r.results.map((x) => chainLength(x.layer)), ...r.chains.map((c) => c.layers.length)),
  }));
  return out.sort((a, b) => cmp(a.digest, b.digest) || cmp(JSON.stringify(a.inputs), JSON.stringify(b.inputs)));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Writes a case's context with fixed modes, so content checksums (which cover mode and owner) agree between runs. */
export async function writeCacheContext(dir: string, c: CacheCase): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  for (const [name, content] of Object.entries(c.files)) {
    const p = path.join(dir, name);
    for (let d = path.dirname(p); d.length > dir.length; d = path.dirname(d)) {
      await mkdir(d, { recursive: true });
      await chmod(d, 0o755);
    }
    await writeFile(p, content);
    await chmod(p, 0o644);
  }
}

/** The cache config a `type=local` cache export wrote into `dir` (its `latest` tag). */
export async function readLocalCacheConfig(dir: string): Promise<CacheConfig> {
  const blob = (d: string) => readFile(path.join(dir, "blobs", ...d.split(":")), "utf8");
  const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const top = index.manifests.find((m) => (m.annotations?.["org.opencontainers.image.ref.name"] ?? "latest") === "latest") ?? index.manifests[0];
  if (!top) throw new Error(`${dir}: empty index.json`);
  const list = JSON.parse(await blob(top.digest)) as { manifests: { mediaType: string; digest: string }[] };
  const cfg = list.manifests.find((m) => m.mediaType === cacheConfigMediaType);
  if (!cfg) throw new Error(`${dir}: no cache config in ${top.digest}`);
  return parseConfig(await blob(cfg.digest));
}

/** Every way `got` differs from `want`, one line each. */
export function diffGolden(want: GoldenRecord[], got: GoldenRecord[]): string[] {
  const key = (r: GoldenRecord) => JSON.stringify(r);
  const gotKeys = new Set(got.map(key));
  const wantKeys = new Set(want.map(key));
  return [...want.filter((r) => !gotKeys.has(key(r))).map((r) => `missing ${key(r)}`), ...got.filter((r) => !wantKeys.has(key(r))).map((r) => `extra   ${key(r)}`)];
}
