// Assembles an image from a result: layer blobs, the config (rootfs and history reconciled with
// the layers), and the manifest, all stored in the content store.
import type { CacheManager } from "../cache/index.js";
import type { ContentStore } from "../content/types.js";
import { MediaType, type Descriptor, type HistoryEntry, type ImageConfig, type Manifest } from "../api/oci.js";
import { hostPlatform, type Digest } from "../util/index.js";
import { goJSON } from "./gojson.js";
import { layerBlobs, layerMediaType, type LayerExportOptions } from "./layers.js";
import type { ExportSource } from "./types.js";

export interface ImageCommitOptions extends LayerExportOptions {
  ociMediaTypes: boolean;
}

export interface CommittedImage {
  manifest: Descriptor;
  config: Descriptor;
  configJSON: ImageConfig;
}

export async function commitImage(signal: AbortSignal, mgr: CacheManager, content: ContentStore, src: ExportSource, opts: ImageCommitOptions): Promise<CommittedImage> {
  const blobs = await layerBlobs(signal, mgr, content, src.ref, opts);
  const base = src.config ?? {};
  const plat = hostPlatform();
  const history = reconcileHistory(base.history ?? [], blobs.length);
  const cfg: Record<string, unknown> = {
    ...base,
    architecture: base.architecture ?? plat.architecture,
    os: base.os ?? plat.os,
    config: base.config ?? {},
    rootfs: { type: "layers", diff_ids: blobs.map((b) => b.diffId) },
    history,
  };
  if (!cfg.created) cfg.created = new Date().toISOString();
  // Go re-marshals the config as a map, so the top-level keys come out sorted.
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(cfg).sort()) if (cfg[k] !== undefined) sorted[k] = cfg[k];
  const configBytes = goJSON(sorted);
  const configInfo = await content.put(signal, configBytes);
  const configDesc: Descriptor = {
    mediaType: opts.ociMediaTypes ? MediaType.ociConfig : MediaType.dockerConfig,
    digest: configInfo.digest,
    size: configInfo.size,
  };
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: opts.ociMediaTypes ? MediaType.ociManifest : MediaType.dockerManifest,
    config: configDesc,
    layers: blobs.map((b) => ({ mediaType: layerMediaType(b.mediaType, opts.ociMediaTypes), digest: b.digest, size: b.size })),
  };
  const manifestInfo = await content.put(signal, goJSON(manifest));
  return {
    manifest: { mediaType: manifest.mediaType!, digest: manifestInfo.digest, size: manifestInfo.size },
    config: configDesc,
    configJSON: sorted as unknown as ImageConfig,
  };
}

/** Makes the non-empty history entries line up one-to-one with the layers. */
function reconcileHistory(history: HistoryEntry[], layers: number): HistoryEntry[] {
  const nonEmpty = history.filter((h) => !h.empty_layer).length;
  if (nonEmpty === layers) return history;
  if (nonEmpty < layers) {
    const missing: HistoryEntry[] = Array.from({ length: layers - nonEmpty }, () => ({ created_by: "", comment: "" }));
    return [...missing, ...history];
  }
  // More layer entries than layers: mark the oldest surplus ones empty.
  let surplus = nonEmpty - layers;
  return history.map((h) => {
    if (surplus > 0 && !h.empty_layer) {
      surplus--;
      return { ...h, empty_layer: true };
    }
    return h;
  });
}

export function exporterResponse(img: CommittedImage, name?: string): Record<string, string> {
  const res: Record<string, string> = {
    "containerimage.digest": img.manifest.digest,
    "containerimage.config.digest": img.config.digest,
    "containerimage.descriptor": Buffer.from(goJSON(img.manifest)).toString("base64"),
  };
  if (name) res["image.name"] = name;
  return res;
}

export type { Digest };
