// The content stores a remote build's client attaches, as buildctl does: an oci/docker output with
// tar=false is store `export` over its directory, a local cache is `local:DIR`. The daemon writes
// blobs there through the session; index.json is the client's to read (the digest a cache import
// names) and to write after the build (the descriptors the exporter response gives).
import { mkdir } from "node:fs/promises";
import { LocalContentDir } from "../../session/contentserve.js";
import { getIndexTag, putIndexTag, type IndexDescriptor } from "../../session/layoutindex.js";
import { KilnError, errorMessage } from "../../util/index.js";

interface CacheEntry {
  type: string;
  attrs: Record<string, string>;
}

export class ClientStores {
  private readonly dirs = new Map<string, string>();
  private layoutDir: string | undefined;
  /** Local cache directories to tag with the response's cache.manifest, with their tags. */
  private readonly cacheTags = new Map<string, string>();

  get size(): number {
    return this.dirs.size;
  }

  layout(dir: string): void {
    if (this.layoutDir !== undefined && this.layoutDir !== dir) throw new KilnError("KILN_FLAGS", "only one oci or docker output with tar=false can be written per build");
    this.layoutDir = dir;
    this.dirs.set("export", dir);
  }

  /**
   * Attaches each local cache's directory; an import gets the digest its tag names in index.json
   * (BuildKit's importer takes only a digest), or is left out with a warning when there is none.
   */
  async caches(cache: { exports?: CacheEntry[]; imports?: CacheEntry[] }, warn: (msg: string) => void): Promise<{ exports: CacheEntry[]; imports: CacheEntry[] }> {
    const exports = (cache.exports ?? []).map((e) => ({ type: e.type, attrs: { ...e.attrs } }));
    const imports: CacheEntry[] = [];
    for (const e of exports) {
      if (e.type !== "local") continue;
      const dest = e.attrs.dest;
      if (!dest) throw new KilnError("KILN_CACHE_ATTR", "local cache exporter requires dest");
      await mkdir(dest, { recursive: true });
      this.dirs.set(`local:${dest}`, dest);
      this.cacheTags.set(dest, e.attrs.tag || "latest");
    }
    for (const entry of cache.imports ?? []) {
      const e = { type: entry.type, attrs: { ...entry.attrs } };
      if (e.type === "local") {
        const src = e.attrs.src;
        if (!src) throw new KilnError("KILN_CACHE_ATTR", "local cache importer requires src");
        if (!e.attrs.digest) {
          const tag = e.attrs.tag || "latest";
          let desc: IndexDescriptor | undefined;
          try {
            desc = await getIndexTag(src, tag);
          } catch (err) {
            warn(`local cache import at ${src} not found due to err: ${errorMessage(err)}`);
            continue;
          }
          if (!desc) {
            warn(`local cache import at ${src} not found: no cache tagged ${JSON.stringify(tag)} in ${src}/index.json`);
            continue;
          }
          e.attrs.digest = desc.digest;
        }
        this.dirs.set(`local:${src}`, src);
      }
      imports.push(e);
    }
    return { exports, imports };
  }

  /** The stores, their directories made (an empty ingest/ too, as containerd's store leaves it). */
  async open(): Promise<ReadonlyMap<string, LocalContentDir>> {
    const out = new Map<string, LocalContentDir>();
    for (const [id, dir] of this.dirs) {
      const s = new LocalContentDir(dir);
      await s.init();
      out.set(id, s);
    }
    return out;
  }

  /** After the build: index.json entries from the exporter response, as buildctl writes them. */
  async tag(res: Record<string, string>): Promise<void> {
    const cacheManifest = res["cache.manifest"];
    if (cacheManifest) {
      const desc = JSON.parse(cacheManifest) as IndexDescriptor;
      for (const [dir, tag] of this.cacheTags) await putIndexTag(dir, tag, desc);
    }
    const image = res["containerimage.descriptor"];
    if (image && this.layoutDir !== undefined) {
      const desc = JSON.parse(Buffer.from(image, "base64").toString("utf8")) as IndexDescriptor;
      await putIndexTag(this.layoutDir, res["image.name"] ?? "latest", desc);
    }
  }
}
