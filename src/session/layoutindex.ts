// index.json of a layout or cache directory the client attached as a content store: the daemon
// writes only blobs there, and the client tags the top descriptor from the exporter's response,
// as buildctl's ociindex does (one entry per tag; an entry with the same tag is replaced). The
// file is replaced whole (temp file, fsync, rename), so a reader sees the old index or the new.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { KilnError, errorMessage, writeFileAtomic } from "../util/index.js";

const refNameAnnotation = "org.opencontainers.image.ref.name";

export interface IndexDescriptor {
  mediaType?: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  data?: string;
  platform?: { architecture: string; os: string; "os.version"?: string; "os.features"?: string[]; variant?: string };
}

interface IndexFile {
  schemaVersion?: number;
  mediaType?: string;
  manifests?: IndexDescriptor[];
  annotations?: Record<string, string>;
}

/** Go's json.Marshal field order for ocispec types, maps with sorted keys, empty fields left out. */
function sortedMap(m: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!m || Object.keys(m).length === 0) return undefined;
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function goDescriptor(d: IndexDescriptor): IndexDescriptor {
  const p = d.platform;
  return {
    ...(d.mediaType ? { mediaType: d.mediaType } : {}),
    digest: d.digest,
    size: d.size,
    ...(d.urls && d.urls.length > 0 ? { urls: d.urls } : {}),
    ...(sortedMap(d.annotations) ? { annotations: sortedMap(d.annotations) } : {}),
    ...(d.data ? { data: d.data } : {}),
    ...(p
      ? {
          platform: {
            architecture: p.architecture,
            os: p.os,
            ...(p["os.version"] ? { "os.version": p["os.version"] } : {}),
            ...(p["os.features"] && p["os.features"].length > 0 ? { "os.features": p["os.features"] } : {}),
            ...(p.variant ? { variant: p.variant } : {}),
          },
        }
      : {}),
  };
}

async function readIndex(dir: string): Promise<IndexFile | undefined> {
  const file = path.join(dir, "index.json");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new KilnError("KILN_EXPORTER", `could not read ${file}: ${errorMessage(err)}`, { cause: err });
  }
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text) as IndexFile;
  } catch (err) {
    throw new KilnError("KILN_EXPORTER", `could not unmarshal ${file} (${JSON.stringify(text.slice(0, 200))})`, { cause: err });
  }
}


/** Tags `desc` in DIR/index.json (and writes oci-layout, as buildctl ≥ 0.12 does, so the directory is a valid layout). */
export async function putIndexTag(dir: string, tag: string, desc: IndexDescriptor): Promise<void> {
  const index = (await readIndex(dir)) ?? {};
  let manifests = index.manifests ?? [];
  const entry: IndexDescriptor = { ...desc };
  if (tag !== "") {
    entry.annotations = { ...desc.annotations, [refNameAnnotation]: tag };
    manifests = manifests.filter((m) => m.annotations?.[refNameAnnotation] !== tag);
  }
  manifests.push(entry);
  const out = {
    schemaVersion: index.schemaVersion || 2,
    ...(index.mediaType ? { mediaType: index.mediaType } : {}),
    manifests: manifests.map(goDescriptor),
    ...(sortedMap(index.annotations) ? { annotations: sortedMap(index.annotations) } : {}),
  };
  await writeFileAtomic(path.join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  await writeFileAtomic(path.join(dir, "index.json"), JSON.stringify(out));
}

/** The descriptor tagged `tag` in DIR/index.json; undefined when there is no index or no such tag. */
export async function getIndexTag(dir: string, tag: string): Promise<IndexDescriptor | undefined> {
  return (await readIndex(dir))?.manifests?.find((m) => m.annotations?.[refNameAnnotation] === tag);
}
