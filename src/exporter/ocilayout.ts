// Image archives as containerd's archive exporter writes them for BuildKit's oci and docker
// exporters: an OCI image layout (oci-layout, index.json, blobs/sha256/…), plus manifest.json and
// repositories for `docker load` in the docker form. Records are sorted by name, headers are Go's
// tar bytes, and blobs stream from the content store with their digests checked on the way.
import { createReadStream } from "node:fs";
import { copyFile, mkdir, open, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ContentStore } from "../content/types.js";
import type { Descriptor } from "../api/oci.js";
import { encodeTarHeader, tarPadding, TAR_TRAILER, TypeDir, TypeReg } from "../snapshot/index.js";
import { KilnError, assertDigest, throwIfAborted } from "../util/index.js";
import { goJSON } from "./gojson.js";
import { descriptorBytes } from "./image.js";

export interface LayoutRecord {
  name: string;
  mode: number;
  /** A small file's bytes… */
  data?: Buffer;
  /** …or a blob from the content store… */
  blob?: Descriptor;
  /** …or a directory. */
  dir?: boolean;
}

export function blobPath(d: Descriptor): string {
  return `blobs/${d.digest.replace(":", "/")}`;
}

export interface LayoutImage {
  /** The manifest (or index) descriptor, as index.json lists it (once per name). */
  descriptor: Descriptor;
  /** Every blob the image needs (manifest, config, layers). */
  blobs: Descriptor[];
  /** Full names (docker.io/library/x:tag) — one index.json entry each. */
  names: string[];
  /** For the docker form: the config and layer paths of the platform manifest. */
  config: Descriptor;
  layers: Descriptor[];
}

/** `familiarizeReference`: docker.io/library/busybox:latest → busybox:latest. */
export function familiarTag(name: string): string {
  let n = name;
  if (n.startsWith("docker.io/library/") && !n.slice("docker.io/library/".length).split(/[:@]/)[0]!.includes("/")) n = n.slice("docker.io/library/".length);
  else if (n.startsWith("docker.io/")) n = n.slice("docker.io/".length);
  return n;
}

/** containerd's ociReferenceName: the tag (or digest) part of a name. */
export function ociRefName(name: string): string {
  const at = name.indexOf("@");
  if (at >= 0) return name.slice(at + 1);
  const slash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  return colon > slash ? name.slice(colon + 1) : name;
}

/** Go's json.Marshal(ocispec.Index) as index.json holds it. */
function indexJSON(manifests: Descriptor[]): string {
  return `{"schemaVersion":2,"manifests":[${manifests.map(descriptorBytes).join(",")}]}`;
}

export function layoutRecords(variant: "oci" | "docker", img: LayoutImage): LayoutRecord[] {
  const manifests: Descriptor[] =
    img.names.length === 0
      ? [img.descriptor]
      : img.names.map((n) => ({ ...img.descriptor, annotations: { ...img.descriptor.annotations, "io.containerd.image.name": n, "org.opencontainers.image.ref.name": ociRefName(n) } }));
  const records: LayoutRecord[] = [
    { name: "oci-layout", mode: 0o444, data: Buffer.from(goJSON({ imageLayoutVersion: "1.0.0" })) },
    { name: "index.json", mode: 0o644, data: Buffer.from(indexJSON(manifests)) },
    { name: "blobs/", mode: 0o755, dir: true },
    { name: "blobs/sha256/", mode: 0o755, dir: true },
  ];
  for (const b of img.blobs) records.push({ name: blobPath(b), mode: 0o444, blob: b });
  if (variant === "docker") {
    const repoTags = img.names.map(familiarTag);
    const mf = [{ Config: blobPath(img.config), RepoTags: repoTags.length > 0 ? repoTags : null, Layers: img.layers.map(blobPath) }];
    records.push({ name: "manifest.json", mode: 0o644, data: Buffer.from(goJSON(mf)) });
    if (repoTags.length > 0) {
      const repos: Record<string, Record<string, string>> = {};
      for (const t of repoTags) {
        const i = t.lastIndexOf(":");
        (repos[t.slice(0, i)] ??= {})[t.slice(i + 1)] = img.config.digest.slice("sha256:".length);
      }
      records.push({ name: "repositories", mode: 0o644, data: Buffer.from(goJSON(repos)) });
    }
  }
  // Sorted by name, duplicates (a layer shared twice) once.
  records.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return records.filter((r, i) => i === 0 || records[i - 1]!.name !== r.name);
}

async function* tarStream(signal: AbortSignal, content: ContentStore, records: LayoutRecord[]): AsyncGenerator<Buffer> {
  for (const r of records) {
    throwIfAborted(signal);
    if (r.dir) {
      yield encodeTarHeader({ typeflag: TypeDir, name: r.name, mode: r.mode, mtime: 0 });
    } else if (r.data) {
      yield encodeTarHeader({ typeflag: TypeReg, name: r.name, mode: r.mode, mtime: 0, size: r.data.length });
      yield r.data;
      yield tarPadding(r.data.length);
    } else if (r.blob) {
      const digest = assertDigest(r.blob.digest);
      const info = await content.info(digest);
      if (!info) throw new KilnError("KILN_EXPORTER", `blob ${digest} missing from the content store`);
      if (info.size !== r.blob.size) throw new KilnError("KILN_EXPORTER", `blob ${digest} is ${info.size} bytes, its descriptor says ${r.blob.size}`);
      yield encodeTarHeader({ typeflag: TypeReg, name: r.name, mode: r.mode, mtime: 0, size: info.size });
      // The store verified the digest when the blob went in (and blobs are immutable there); the
      // size is checked again as it is copied, the digest is not recomputed.
      let n = 0;
      const rs = createReadStream(content.blobPath(digest), { highWaterMark: 1 << 20 });
      try {
        for await (const c of rs) {
          const b = c as Buffer;
          n += b.length;
          if (n > info.size) break;
          yield b;
        }
      } finally {
        rs.destroy();
      }
      if (n !== info.size) throw new KilnError("KILN_EXPORTER", `blob ${digest} changed size while it was copied (${n} bytes, expected ${info.size})`);
      yield tarPadding(info.size);
    }
  }
  yield TAR_TRAILER;
}

/** Streams the records as a tar to `out`; blobs are read from the store, never buffered whole. */
export async function writeLayoutTar(signal: AbortSignal, content: ContentStore, records: LayoutRecord[], out: Writable): Promise<void> {
  await pipeline(Readable.from(tarStream(signal, content, records)), out, { signal, end: true });
}

/** Writes the records as files under `dir` (the `tar=false` form); every file is fsynced. */
export async function writeLayoutDir(signal: AbortSignal, content: ContentStore, records: LayoutRecord[], dir: string): Promise<void> {
  for (const r of records) {
    throwIfAborted(signal);
    const target = path.join(dir, r.name);
    if (r.dir) {
      await mkdir(target, { recursive: true, mode: r.mode });
      continue;
    }
    await mkdir(path.dirname(target), { recursive: true });
    if (r.blob) await copyFile(content.blobPath(assertDigest(r.blob.digest)), target);
    else await writeFile(target, r.data ?? Buffer.alloc(0), { mode: r.mode });
    const fh = await open(target, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}
