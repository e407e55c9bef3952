// The exporters by type: oci and docker tarballs (or directories), local files, tar.
import { mkdir } from "node:fs/promises";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { CacheManager } from "../cache/index.js";
import type { ContentStore } from "../content/types.js";
import { MediaType, type Descriptor, type Index } from "../api/oci.js";
import { KilnError } from "../util/index.js";
import type { ProgressWriter } from "../solver/types.js";
import { commitImage, exporterResponse } from "./image.js";
import { goJSON } from "./gojson.js";
import { blobPath, writeTar, type LayoutEntry } from "./ocilayout.js";
import type { ExportOutputs, ExportSource, ExporterInstance } from "./types.js";

export interface ExporterDeps {
  mgr: CacheManager;
  content: ContentStore;
}

const known: Record<string, string[]> = {
  oci: ["dest", "tar", "name", "oci-mediatypes", "compression", "compression-level", "force-compression", "buildinfo", "buildinfo-attrs", "annotation", "store", "rewrite-timestamp"],
  docker: ["dest", "tar", "name", "oci-mediatypes", "compression", "compression-level", "force-compression", "buildinfo", "buildinfo-attrs", "annotation", "rewrite-timestamp"],
  local: ["dest", "platform-split"],
  tar: ["dest", "platform-split"],
};

function parseBool(key: string, v: string | undefined, def: boolean): boolean {
  if (v === undefined || v === "") return def;
  if (/^(1|t|true)$/i.test(v)) return true;
  if (/^(0|f|false)$/i.test(v)) return false;
  throw new KilnError("KILN_EXPORTER_ATTR", `invalid boolean value ${JSON.stringify(v)} for ${key}`);
}

export function resolveExporter(type: string, attrs: Record<string, string>, deps: ExporterDeps): ExporterInstance {
  const keys = known[type];
  if (!keys) throw new KilnError("KILN_EXPORTER_TYPE", `unknown exporter type ${JSON.stringify(type)} (supported: ${Object.keys(known).join(", ")})`);
  for (const k of Object.keys(attrs)) {
    const base = k.startsWith("annotation") ? "annotation" : k;
    if (!keys.includes(base)) throw new KilnError("KILN_EXPORTER_ATTR", `unknown attribute ${JSON.stringify(k)} for exporter ${type}`);
  }
  switch (type) {
    case "oci":
    case "docker":
      return imageTarballExporter(type, attrs, deps);
    case "local":
      return localExporter();
    default:
      throw new KilnError("KILN_EXPORTER_TYPE", `exporter ${type} is not supported yet`);
  }
}

function compressionOf(attrs: Record<string, string>): { compression: "gzip" | "uncompressed"; compressionLevel?: number } {
  const c = attrs.compression ?? "gzip";
  if (c !== "gzip" && c !== "uncompressed") throw new KilnError("KILN_EXPORTER_ATTR", `unsupported compression ${JSON.stringify(c)}`);
  let level: number | undefined;
  if (attrs["compression-level"] !== undefined) {
    level = Number(attrs["compression-level"]);
    if (!Number.isInteger(level) || level < 0 || level > 9) throw new KilnError("KILN_EXPORTER_ATTR", `invalid compression-level ${JSON.stringify(attrs["compression-level"])} for ${c} (0-9)`);
  }
  return level === undefined ? { compression: c } : { compression: c, compressionLevel: level };
}

function imageTarballExporter(type: "oci" | "docker", attrs: Record<string, string>, deps: ExporterDeps): ExporterInstance {
  const ociMediaTypes = parseBool("oci-mediatypes", attrs["oci-mediatypes"], type === "oci");
  const comp = compressionOf(attrs);
  const asTar = parseBool("tar", attrs.tar, true);
  const names = (attrs.name ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  return {
    type,
    needsOutput: true,
    async export(signal: AbortSignal, src: ExportSource, outputs: ExportOutputs, _progress: ProgressWriter) {
      const img = await commitImage(signal, deps.mgr, deps.content, src, { ...comp, ociMediaTypes });
      const manifest = await deps.content.readJSON<{ config: Descriptor; layers: Descriptor[] }>(img.manifest.digest as `sha256:${string}`);
      const blobs: Descriptor[] = [img.manifest, manifest.config, ...manifest.layers];
      const entries: LayoutEntry[] = [];
      if (type === "oci") {
        const manifestDesc: Descriptor = { ...img.manifest };
        if (names[0]) {
          manifestDesc.annotations = { "io.containerd.image.name": names[0], "org.opencontainers.image.ref.name": tagOf(names[0]) };
        }
        const index: Index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [manifestDesc] };
        entries.push({ name: "oci-layout", data: goJSON({ imageLayoutVersion: "1.0.0" }) });
        for (const b of blobs) entries.push({ name: blobPath(b), blob: b });
        entries.push({ name: "index.json", data: goJSON(index) });
      } else {
        const repoTags = names.map(dockerTag);
        for (const b of blobs) entries.push({ name: blobPath(b), blob: b });
        entries.push({ name: "manifest.json", data: goJSON([{ Config: blobPath(manifest.config), RepoTags: repoTags, Layers: manifest.layers.map(blobPath) }]) });
        if (repoTags.length > 0) {
          const repos: Record<string, Record<string, string>> = {};
          for (const t of repoTags) {
            const i = t.lastIndexOf(":");
            (repos[t.slice(0, i)] ??= {})[t.slice(i + 1)] = img.manifest.digest.slice(7);
          }
          entries.push({ name: "repositories", data: goJSON(repos) });
        }
      }
      if (asTar) {
        const out = await outputs.openStream(signal);
        try {
          await writeTar(signal, deps.content, entries, out.stream);
          await out.commit();
        } catch (err) {
          await out.abort();
          throw err;
        }
      } else {
        const out = await outputs.openDirectory(signal);
        try {
          await writeLayoutDir(signal, deps.content, entries, out.path);
          await out.commit();
        } catch (err) {
          await out.abort();
          throw err;
        }
      }
      return exporterResponse(img, names.join(",") || undefined);
    },
  };
}

async function writeLayoutDir(signal: AbortSignal, content: ContentStore, entries: LayoutEntry[], dir: string): Promise<void> {
  const { writeFile, copyFile } = await import("node:fs/promises");
  const path = await import("node:path");
  for (const e of entries) {
    signal.throwIfAborted();
    const target = path.join(dir, e.name);
    await mkdir(path.dirname(target), { recursive: true });
    if (e.blob) await copyFile(content.blobPath(e.blob.digest as `sha256:${string}`), target);
    else await writeFile(target, e.data ?? "");
  }
}

function tagOf(name: string): string {
  const at = name.indexOf("@");
  const n = at >= 0 ? name.slice(0, at) : name;
  const slash = n.lastIndexOf("/");
  const colon = n.lastIndexOf(":");
  return colon > slash ? n.slice(colon + 1) : "latest";
}

/** Docker's familiar form with a tag: busybox:latest, host:5000/x:tag. */
function dockerTag(name: string): string {
  let n = name.replace(/^docker\.io\/library\//, "").replace(/^docker\.io\//, "");
  const slash = n.lastIndexOf("/");
  const colon = n.lastIndexOf(":");
  if (colon <= slash) n += ":latest";
  return n;
}

function localExporter(): ExporterInstance {
  return {
    type: "local",
    needsOutput: true,
    async export(signal: AbortSignal, src: ExportSource, outputs: ExportOutputs) {
      const out = await outputs.openDirectory(signal);
      try {
        if (src.ref) {
          await using mnt = await src.ref.mount(signal);
          // cp -a keeps owners, modes, times, links, devices and fifos exactly.
          await run(signal, "cp", ["-a", "--", `${mnt.path}/.`, out.path]);
        }
        await out.commit();
      } catch (err) {
        await out.abort();
        throw err;
      }
      return {};
    },
  };
}

async function run(signal: AbortSignal, cmd: string, args: string[]): Promise<void> {
  await promisify(execFile)(cmd, args, { signal });
}
