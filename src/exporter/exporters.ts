// The exporters by type, with BuildKit's attribute names: image/registry (store a name, push),
// oci and docker (tarball to a file or stdout, or a layout directory), tar and local (the
// result's files), cacheonly (nothing). Attributes are all checked when the exporter is resolved,
// before the build starts.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Transform, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { CacheManager, ImmutableRef } from "../cache/index.js";
import type { ContentStore } from "../content/types.js";
import type { Descriptor } from "../api/oci.js";
import { KilnError, assertDigest, formatPlatform, hostPlatform, parsePlatform, platformDirName, throwIfAborted } from "../util/index.js";
import { RegistryResolver, formatReference, parseReference, pushImage, type RegistryHostConfig } from "../remotes/index.js";
import { checkAttrs, parseBool, parseImageExport, parseTarballExport, type ImageCommitOptions, type ImageExportOptions, type TarballExportOptions } from "./attrs.js";
import { commitImage, commitIndex, configPlatform, descriptorBytes, exporterResponse, type CommittedImage } from "./image.js";
import { layoutRecords, writeLayoutDir, writeLayoutTar } from "./ocilayout.js";
import { encodeTarHeader, TypeDir } from "../snapshot/index.js";
import { ExportVertex } from "./progress.js";
import { writeAttestationFiles } from "./attestation-files.js";
import type { Attestation } from "./attestation.js";
import type { ExportPlatform, ExportSource, ExporterInstance } from "./types.js";

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
export function resolveExporter(type: string, attrs: Record<string, string>, deps: ExporterDeps, opts: { multiPlatform?: boolean } = {}): ExporterInstance {
  const t = checkAttrs(type, attrs);
  switch (t) {
    case "image":
    case "registry":
      return imageExporter(t, parseImageExport(t, attrs, opts.multiPlatform), deps);
    case "oci":
    case "docker":
      return tarballExporter(t, parseTarballExport(t, attrs, opts.multiPlatform), deps);
    case "local":
      return filesExporter("local", platformSplitAttr(attrs), attrs["attestation-prefix"] ?? "");
    case "tar":
      return filesExporter("tar", platformSplitAttr(attrs), attrs["attestation-prefix"] ?? "");
    case "cacheonly":
      return { type: "cacheonly", needsOutput: false, export: async () => ({}) };
  }
}

function imageBlobs(img: CommittedImage): Descriptor[] {
  return [{ mediaType: img.manifest.mediaType, digest: img.manifest.digest, size: img.manifest.size }, img.config, ...img.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size }))];
}

/** What an image exporter made: one image, or an index of one image per platform. */
interface Committed {
  /** The top descriptor: the manifest, or the index. */
  desc: Descriptor;
  images: CommittedImage[];
  single?: CommittedImage;
  /** Blobs of the index besides the images' (attestation manifests, configs and statements). */
  extraBlobs?: Descriptor[];
}

/** A single-platform result as the one platform of an index. */
function singlePlatform(src: ExportSource): ExportPlatform {
  const platform = src.config ? parsePlatform(configPlatform(src.config)) : hostPlatform();
  return { id: formatPlatform(platform), platform, ref: src.ref, config: src.config, buildInfo: src.buildInfo, attestations: src.attestations };
}

async function commit(signal: AbortSignal, deps: ExporterDeps, src: ExportSource, opts: ImageCommitOptions, v: ExportVertex): Promise<Committed> {
  // A single image with attestations goes in an index of its own (BuildKit's isMap), beside them.
  const platforms = src.platforms ?? ((src.attestations ?? []).length > 0 ? [singlePlatform(src)] : undefined);
  if (platforms) {
    const idx = await commitIndex(signal, deps, platforms, opts, v);
    const extra = idx.attestations.flatMap((a) => [{ mediaType: a.manifest.mediaType, digest: a.manifest.digest, size: a.manifest.size }, a.config, ...a.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size }))]);
    return { desc: idx.index, images: idx.images, extraBlobs: extra };
  }
  const img = await commitImage(signal, deps, src, opts, v);
  return { desc: img.manifest, images: [img], single: img };
}

function response(c: Committed, desc: Descriptor, name?: string): Record<string, string> {
  if (c.single) return exporterResponse(c.single, desc, name);
  // An index has no config of its own (BuildKit leaves containerimage.config.digest out).
  const res: Record<string, string> = { "containerimage.digest": desc.digest, "containerimage.descriptor": Buffer.from(descriptorBytes(desc)).toString("base64") };
  if (name) res["image.name"] = name;
  return res;
}

/** undefined: split only a multi-platform result (BuildKit's default). */
function platformSplitAttr(attrs: Record<string, string>): boolean | undefined {
  return attrs["platform-split"] === undefined ? undefined : parseBool("platform-split", attrs["platform-split"], false);
}

function imageExporter(type: "image" | "registry", opts: ImageExportOptions, deps: ExporterDeps): ExporterInstance {
  return {
    type,
    needsOutput: false,
    export(signal, src, _outputs, progress) {
      return new ExportVertex(progress, "exporting to image").run(async (v) => {
        const c = await commit(signal, deps, src, opts, v);
        const desc = c.desc;
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
        if (opts.push) await pushNames(signal, deps, src, desc, names, opts, v);
        return response(c, desc, opts.names.length > 0 || opts.danglingPrefix ? names.join(",") : undefined);
      });
    },
  };
}

async function pushNames(signal: AbortSignal, deps: ExporterDeps, src: ExportSource, top: Descriptor, names: string[], opts: ImageExportOptions, v: ExportVertex): Promise<void> {
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
        ...(src.platforms ? src.platforms.flatMap((p) => p.buildInfo?.sources ?? []) : (src.buildInfo?.sources ?? [])).filter((s) => s.type === "docker-image").flatMap((s) => {
          try {
            const r = parseReference(s.ref);
            return r.domain === ref.domain ? [r.path] : [];
          } catch {
            return [];
          }
        }),
      ];
      const target = opts.pushByDigest ? `${ref.domain}/${ref.path}@${top.digest}` : formatReference(ref);
      try {
        await v.step(`pushing layers to ${ref.domain}/${ref.path}`, () =>
          pushImage(signal, {
            resolver,
            store: deps.content,
            ref: { domain: ref.domain, path: ref.path, ...(opts.pushByDigest || ref.tag === undefined ? {} : { tag: ref.tag }) },
            descriptor: { mediaType: top.mediaType, digest: top.digest, size: top.size },
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
        const c = await commit(signal, deps, src, opts, v);
        const desc: Descriptor = { ...c.desc, annotations: { ...c.desc.annotations } };
        if (!desc.annotations!["org.opencontainers.image.created"]) {
          const t = opts.epoch !== undefined ? new Date(opts.epoch * 1000) : new Date();
          desc.annotations!["org.opencontainers.image.created"] = t.toISOString().replace(/\.\d{3}Z$/, "Z");
        }
        const blobs = c.single ? imageBlobs(c.single) : [{ mediaType: c.desc.mediaType, digest: c.desc.digest, size: c.desc.size }, ...c.images.flatMap(imageBlobs), ...(c.extraBlobs ?? [])];
        // `docker load` reads manifest.json, one image: this machine's platform, else the first.
        const host = formatPlatform(hostPlatform());
        const loadable = c.images.find((i) => i.manifest.platform && formatPlatform(i.manifest.platform) === host) ?? c.images[0]!;
        const records = layoutRecords(type, { descriptor: desc, blobs, names, config: loadable.config, layers: loadable.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })) });
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
        } else if (outputs.layoutStore) {
          // What the root names first, the root last: the client's store never holds a manifest
          // whose blobs are missing (BuildKit copies the chain in the same order, with no step of
          // its own in the progress).
          const seen = new Set<string>();
          const rank = (b: Descriptor) => (b.digest === desc.digest ? 2 : /manifest|index/.test(b.mediaType) ? 1 : 0);
          for (const b of [...blobs].sort((x, y) => rank(x) - rank(y))) {
            if (seen.has(b.digest)) continue;
            seen.add(b.digest);
            const digest = assertDigest(b.digest);
            await outputs.layoutStore.put(signal, { digest, size: b.size }, () => deps.content.createReadStream(digest));
          }
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
        return response(c, desc, names.length > 0 ? names.join(",") : undefined);
      });
    },
  };
}

/** The folder a single-platform result goes to under platform-split: its config's platform. */
function platformDir(src: ExportSource): string {
  return platformDirName(src.config ? parsePlatform(configPlatform(src.config)) : hostPlatform());
}

interface FilesPart {
  /** The folder under dest ("linux_arm64"), or undefined for dest itself. */
  sub: string | undefined;
  ref: ImmutableRef | undefined;
  /** Statements written beside the files. */
  attestations: Attestation[];
}

/**
 * The local and tar exporters: a multi-platform result goes to one folder per platform unless
 * platform-split=false merges them (a later platform's file replaces an earlier one's).
 */
function filesExporter(type: "local" | "tar", platformSplit: boolean | undefined, attestationPrefix: string): ExporterInstance {
  return {
    type,
    needsOutput: true,
    export(signal, src, outputs, progress) {
      return new ExportVertex(progress, type === "local" ? "exporting to client directory" : "exporting to client tarball").run(async (v) => {
        if (!outputs) throw new KilnError("KILN_EXPORTER_ATTR", `exporter ${type} needs a destination (dest=...)`);
        const parts: FilesPart[] = src.platforms
          ? src.platforms.map((p) => ({ sub: platformSplit !== false ? platformDirName(p.platform) : undefined, ref: p.ref, attestations: p.attestations ?? [] }))
          : [{ sub: platformSplit ? platformDir(src) : undefined, ref: src.ref, attestations: src.attestations ?? [] }];
        const label = (i: number) => (src.platforms ? ` ${src.platforms[i]!.id}` : "");
        if (type === "local") {
          const out = await outputs.openDirectory(signal);
          try {
            for (const [i, part] of parts.entries()) {
              await v.step(`copying files${label(i)}`, async () => {
                const target = part.sub ? path.join(out.path, part.sub) : out.path;
                await mkdir(target, { recursive: true });
                if (part.ref) {
                  await using mnt = await part.ref.mount(signal);
                  // cp -a keeps owners, modes, times, links, devices and fifos exactly.
                  await run(signal, "cp", ["-a", "--", `${mnt.path}/.`, target]);
                }
                // Merged platforms share one folder: their statements would collide, so none are written.
                if (part.sub !== undefined || parts.length === 1) await writeAttestationFiles(signal, part.ref ? target : undefined, part.attestations, target, attestationPrefix);
              });
            }
            await out.commit();
          } catch (err) {
            await out.abort();
            throw err;
          }
        } else {
          await v.step("sending tarball", async () => {
            const out = await outputs.openStream(signal);
            try {
              await tarParts(signal, parts, out.stream, attestationPrefix);
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

/**
 * One tar stream of every part, each under its folder. Merged parts (no folder) are laid over one
 * another in a scratch directory first, so each path appears once, the last platform's winning.
 */
async function tarParts(signal: AbortSignal, parts: FilesPart[], out: Writable, attestationPrefix: string): Promise<void> {
  if (parts.length > 1 && parts.every((p) => p.sub === undefined)) {
    const tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-tar-merge-"));
    try {
      for (const p of parts) {
        if (!p.ref) continue;
        await using mnt = await p.ref.mount(signal);
        await run(signal, "cp", ["-a", "--", `${mnt.path}/.`, tmp]);
      }
      await tarDirectory(signal, tmp, undefined, out, true);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return;
  }
  for (const [i, p] of parts.entries()) {
    // Every archive but the last loses its end-of-archive blocks, so the parts read as one.
    const last = i === parts.length - 1;
    // The platform folder itself, as BuildKit writes it: 0755, time zero.
    if (p.sub) await writeChunk(out, encodeTarHeader({ typeflag: TypeDir, name: `${p.sub}/`, mode: 0o755, mtime: 0 }));
    await using mnt = p.ref ? await p.ref.mount(signal) : undefined;
    const atts = p.attestations.filter((a) => !a.inlineOnly);
    await tarDirectory(signal, mnt?.path, p.sub, out, last && atts.length === 0);
    if (atts.length > 0) {
      // The statements follow the files, under the same folder.
      const tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-tar-attestations-"));
      try {
        await writeAttestationFiles(signal, mnt?.path, atts, tmp, attestationPrefix);
        await tarDirectory(signal, tmp, p.sub, out, last);
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    }
  }
}

function writeChunk(out: Writable, b: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => out.write(b, (err) => (err ? reject(err) : resolve())));
}

/** Passes bytes on but the last `n`, which it drops. */
function dropTail(n: number): Transform {
  let held = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      held = Buffer.concat([held, chunk]);
      if (held.length > n) {
        const pass = held.subarray(0, held.length - n);
        held = Buffer.from(held.subarray(held.length - n));
        cb(null, pass);
      } else cb();
    },
  });
}

/**
 * Streams `dir`'s contents as a tar (GNU tar, sorted, numeric owners, PAX with file capabilities).
 * Without `trailer` the end-of-archive blocks are left off, for another archive to follow.
 */
async function tarDirectory(signal: AbortSignal, dir: string | undefined, prefix: string | undefined, out: Writable, trailer: boolean): Promise<void> {
  const names = dir ? (await readdir(dir)).sort() : [];
  if (names.length === 0) {
    // An empty result: an empty archive (GNU tar refuses to write one).
    if (trailer) await writeChunk(out, Buffer.alloc(1024));
    return;
  }
  // One 512-byte block per record, so the archive ends in exactly two zero blocks.
  const args = ["-c", "-f", "-", "--blocking-factor=1", "--format=pax", "--numeric-owner", "--sort=name", "--xattrs", "--xattrs-include=security.capability"];
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
    if (trailer) await pipeline(child.stdout, out, { end: false });
    else await pipeline(child.stdout, dropTail(1024), out, { end: false });
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
