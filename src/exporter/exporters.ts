// The exporters by type, with BuildKit's attribute names: image/registry (store a name, push),
// oci and docker (tarball to a file or stdout, or a layout directory), tar and local (the
// result's files), cacheonly (nothing). Attributes are all checked when the exporter is resolved,
// before the build starts.
import { spawn } from "node:child_process";
import { mkdir, readdir } from "node:fs/promises";
import path from "node:path";
import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { CacheManager } from "../cache/index.js";
import type { ContentStore } from "../content/types.js";
import type { Descriptor } from "../api/oci.js";
import { KilnError, formatPlatform, hostPlatform, throwIfAborted } from "../util/index.js";
import { RegistryResolver, formatReference, parseReference, pushImage, type RegistryHostConfig } from "../remotes/index.js";
import { checkAttrs, parseBool, parseImageExport, parseTarballExport, type ImageExportOptions, type TarballExportOptions } from "./attrs.js";
import { commitImage, configPlatform, exporterResponse, type CommittedImage } from "./image.js";
import { layoutRecords, writeLayoutDir, writeLayoutTar } from "./ocilayout.js";
import { ExportVertex } from "./progress.js";
import type { ExportSource, ExporterInstance } from "./types.js";

export interface ExporterDeps {
  mgr: CacheManager;
  content: ContentStore;
  /** `[registry."host"]` settings for pushes. */
  registries?: Record<string, RegistryHostConfig>;
}

/** kv bucket of named images (the image exporter's store): full name → descriptor JSON. */
export const imagesBucket = "exporter.images";

export interface StoredImage {
  name: string;
  target: Descriptor;
  createdAt: string;
}

/** Validates the exporter and its attributes (throws one clear error) and returns the instance. */
export function resolveExporter(type: string, attrs: Record<string, string>, deps: ExporterDeps): ExporterInstance {
  const t = checkAttrs(type, attrs);
  switch (t) {
    case "image":
    case "registry":
      return imageExporter(t, parseImageExport(t, attrs), deps);
    case "oci":
    case "docker":
      return tarballExporter(t, parseTarballExport(t, attrs), deps);
    case "local":
      return filesExporter("local", parseBool("platform-split", attrs["platform-split"], false));
    case "tar":
      return filesExporter("tar", parseBool("platform-split", attrs["platform-split"], false));
    case "cacheonly":
      return { type: "cacheonly", needsOutput: false, export: async () => ({}) };
  }
}

function imageBlobs(img: CommittedImage): Descriptor[] {
  return [{ mediaType: img.manifest.mediaType, digest: img.manifest.digest, size: img.manifest.size }, img.config, ...img.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size }))];
}

function imageExporter(type: "image" | "registry", opts: ImageExportOptions, deps: ExporterDeps): ExporterInstance {
  return {
    type,
    needsOutput: false,
    export(signal, src, _outputs, progress) {
      return new ExportVertex(progress, "exporting to image").run(async (v) => {
        const img = await commitImage(signal, deps, src, opts, v);
        const desc = img.manifest;
        let names = opts.names;
        let canonical = opts.nameCanonical;
        if (names.length === 0 && opts.danglingPrefix) {
          names = [`${opts.danglingPrefix}@${desc.digest}`];
          canonical = false;
        }
        if (opts.store) {
          for (const n of names) {
            const full = formatReference(parseReference(n));
            await v.step(`naming to ${full}`, async () => {
              const rec: StoredImage = { name: full, target: desc, createdAt: new Date().toISOString() };
              deps.mgr.db.setKV(imagesBucket, full, JSON.stringify(rec));
              if (canonical) deps.mgr.db.setKV(imagesBucket, `${full}@${desc.digest}`, JSON.stringify({ ...rec, name: `${full}@${desc.digest}` }));
            });
          }
        }
        if (opts.push) await pushNames(signal, deps, src, img, names, opts, v);
        return exporterResponse(img, desc, opts.names.length > 0 || opts.danglingPrefix ? names.join(",") : undefined);
      });
    },
  };
}

async function pushNames(signal: AbortSignal, deps: ExporterDeps, src: ExportSource, img: CommittedImage, names: string[], opts: ImageExportOptions, v: ExportVertex): Promise<void> {
  const hosts: Record<string, RegistryHostConfig> = { ...(deps.registries ?? {}) };
  const refs = names.map((n) => parseReference(n));
  if (opts.insecure) for (const r of refs) hosts[r.domain] = { ...hosts[r.domain], insecure: true, http: true };
  // Blobs over 16 MiB go up in 16 MiB PATCH requests (bounded memory; proxies with body limits).
  const resolver = new RegistryResolver({ hosts, credentials: src.credentials, chunkSize: 16 << 20 });
  try {
    const pushedRepos = new Map<string, string[]>();
    for (const [i, ref] of refs.entries()) {
      throwIfAborted(signal);
      // Blobs may already sit in another repository of the same registry: the base images' and
      // the names pushed before this one.
      const mountFrom = [
        ...(pushedRepos.get(ref.domain) ?? []),
        ...(src.buildInfo?.sources ?? []).filter((s) => s.type === "docker-image").flatMap((s) => {
          try {
            const r = parseReference(s.ref);
            return r.domain === ref.domain ? [r.path] : [];
          } catch {
            return [];
          }
        }),
      ];
      const target = opts.pushByDigest ? `${ref.domain}/${ref.path}@${img.manifest.digest}` : formatReference(ref);
      try {
        await v.step(`pushing layers to ${ref.domain}/${ref.path}`, () =>
          pushImage(signal, {
            resolver,
            store: deps.content,
            ref: { domain: ref.domain, path: ref.path, ...(opts.pushByDigest || ref.tag === undefined ? {} : { tag: ref.tag }) },
            descriptor: { mediaType: img.manifest.mediaType, digest: img.manifest.digest, size: img.manifest.size },
            byDigest: opts.pushByDigest,
            mountFrom,
          }),
        );
      } catch (err) {
        if (err instanceof KilnError && err.code === "KILN_CANCELED") throw err;
        throw new KilnError(err instanceof KilnError ? err.code : "KILN_PUSH", `failed to push ${names[i]}: ${(err as Error).message}`, { cause: err, hint: err instanceof KilnError ? err.hint : undefined });
      }
      v.note(`pushed ${target}`);
      pushedRepos.set(ref.domain, [...(pushedRepos.get(ref.domain) ?? []), ref.path]);
    }
  } finally {
    await resolver.close();
  }
}

function tarballExporter(type: "oci" | "docker", opts: TarballExportOptions, deps: ExporterDeps): ExporterInstance {
  const names = opts.names.map((n) => formatReference(parseReference(n)));
  return {
    type,
    needsOutput: true,
    export(signal, src, outputs, progress) {
      return new ExportVertex(progress, `exporting to ${type} image format`).run(async (v) => {
        if (!outputs) throw new KilnError("KILN_EXPORTER_ATTR", `exporter ${type} needs a destination (dest=...)`);
        const img = await commitImage(signal, deps, src, opts, v);
        const desc: Descriptor = { ...img.manifest, annotations: { ...img.manifest.annotations } };
        if (!desc.annotations!["org.opencontainers.image.created"]) {
          const t = img.epoch !== undefined ? new Date(img.epoch * 1000) : new Date();
          desc.annotations!["org.opencontainers.image.created"] = t.toISOString().replace(/\.\d{3}Z$/, "Z");
        }
        const records = layoutRecords(type, { descriptor: desc, blobs: imageBlobs(img), names, config: img.config, layers: img.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })) });
        if (opts.tar) {
          await v.step("sending tarball", async () => {
            const out = await outputs.openStream(signal);
            try {
              await writeLayoutTar(signal, deps.content, records, out.stream);
              await out.commit();
            } catch (err) {
              await out.abort();
              throw err;
            }
          });
        } else {
          await v.step("copying to layout directory", async () => {
            const out = await outputs.openDirectory(signal);
            try {
              await writeLayoutDir(signal, deps.content, records, out.path);
              await out.commit();
            } catch (err) {
              await out.abort();
              throw err;
            }
          });
        }
        return exporterResponse(img, desc, names.length > 0 ? names.join(",") : undefined);
      });
    },
  };
}

/** The platform directory name platform-split uses: linux_amd64, linux_arm_v7. */
function platformDir(src: ExportSource): string {
  const p = src.config ? configPlatform(src.config) : formatPlatform(hostPlatform());
  return p.replaceAll("/", "_");
}

function filesExporter(type: "local" | "tar", platformSplit: boolean): ExporterInstance {
  return {
    type,
    needsOutput: true,
    export(signal, src, outputs, progress) {
      return new ExportVertex(progress, type === "local" ? "exporting to client directory" : "exporting to client tarball").run(async (v) => {
        if (!outputs) throw new KilnError("KILN_EXPORTER_ATTR", `exporter ${type} needs a destination (dest=...)`);
        const sub = platformSplit ? platformDir(src) : undefined;
        if (type === "local") {
          await v.step("copying files", async () => {
            const out = await outputs.openDirectory(signal);
            try {
              const target = sub ? path.join(out.path, sub) : out.path;
              await mkdir(target, { recursive: true });
              if (src.ref) {
                await using mnt = await src.ref.mount(signal);
                // cp -a keeps owners, modes, times, links, devices and fifos exactly.
                await run(signal, "cp", ["-a", "--", `${mnt.path}/.`, target]);
              }
              await out.commit();
            } catch (err) {
              await out.abort();
              throw err;
            }
          });
        } else {
          await v.step("sending tarball", async () => {
            const out = await outputs.openStream(signal);
            try {
              if (src.ref) {
                await using mnt = await src.ref.mount(signal);
                await tarDirectory(signal, mnt.path, sub, out.stream);
              } else {
                await tarDirectory(signal, undefined, sub, out.stream);
              }
              await out.commit();
            } catch (err) {
              await out.abort();
              throw err;
            }
          });
        }
        return {};
      });
    },
  };
}

/** Streams `dir`'s contents as a tar (GNU tar, sorted, numeric owners, PAX with file capabilities). */
async function tarDirectory(signal: AbortSignal, dir: string | undefined, prefix: string | undefined, out: Writable): Promise<void> {
  const names = dir ? (await readdir(dir)).sort() : [];
  if (names.length === 0 && !prefix) {
    // An empty result: an empty archive (GNU tar refuses to write one).
    await new Promise<void>((resolve, reject) => out.write(Buffer.alloc(1024), (err) => (err ? reject(err) : resolve())));
    return;
  }
  const args = ["-c", "-f", "-", "--format=pax", "--numeric-owner", "--sort=name", "--xattrs", "--xattrs-include=security.capability"];
  if (prefix) args.push(`--transform=s,^,${prefix}/,`);
  if (dir) args.push("-C", dir, "--", ...names);
  const child = spawn("tar", args, { stdio: ["ignore", "pipe", "pipe"], signal });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve(code));
  });
  exited.catch(() => undefined);
  try {
    // The destination stays open: committing it is the caller's.
    await pipeline(child.stdout, out, { end: false });
  } catch (err) {
    if (child.exitCode === null) child.kill();
    throw err;
  }
  const code = await exited;
  if (code !== 0) throw new KilnError("KILN_EXPORTER", `tar exited with ${code}: ${stderr.trim()}`);
}

async function run(signal: AbortSignal, cmd: string, args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"], signal });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new KilnError("KILN_EXPORTER", `${cmd} exited with ${code}: ${stderr.trim()}`))));
  });
}
