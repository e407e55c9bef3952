// What two engines' images must agree on, independent of timestamps: the unpacked filesystem
// (path, type, mode with special bits, owner, content digest, link target, hard-link groups,
// device numbers) as a difference from the base image, and the image config and history.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile, copyFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const sh = promisify(execFile);

export interface ImageFacts {
  /** Entries added or changed relative to the base image ("-" marks a removed path). */
  tree: Record<string, string>;
  config: Record<string, unknown>;
  history: { created_by?: string; comment?: string; empty_layer?: boolean }[];
  layers: number;
  buildinfo?: unknown;
}

interface OciIndex {
  manifests: { mediaType?: string; digest: string; size: number; annotations?: Record<string, string> }[];
}

async function sha256File(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex").slice(0, 16);
}

/** One line per path: type, mode, owner and what identifies its content. */
export async function walkTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const inodes = new Map<string, string>();
  const visit = async (rel: string): Promise<void> => {
    const abs = path.join(root, rel);
    const st = await lstat(abs);
    const mode = (st.mode & 0o7777).toString(8).padStart(4, "0");
    const own = `${st.uid}:${st.gid}`;
    let desc: string;
    if (st.isDirectory()) desc = `dir ${mode} ${own}`;
    else if (st.isSymbolicLink()) desc = `symlink ${own} -> ${await readlink(abs)}`;
    else if (st.isFile()) {
      desc = `file ${mode} ${own} ${st.size} ${await sha256File(abs)}`;
      if (st.nlink > 1) {
        // Hard links: every member names the first path of its group, so groups compare by shape.
        const key = `${st.dev}:${st.ino}`;
        const first = inodes.get(key);
        if (first === undefined) inodes.set(key, `/${rel}`);
        else desc += ` link=${first}`;
      }
    } else if (st.isFIFO()) desc = `fifo ${mode} ${own}`;
    else if (st.isCharacterDevice() || st.isBlockDevice()) desc = `${st.isCharacterDevice() ? "char" : "block"} ${mode} ${own} ${Math.floor(st.rdev / 256)},${st.rdev % 256}`;
    else desc = `other ${mode} ${own}`;
    if (rel !== "") out.set(`/${rel}`, desc);
    if (st.isDirectory()) {
      const names = (await readdir(abs)).sort();
      for (const n of names) await visit(rel === "" ? n : `${rel}/${n}`);
    }
  };
  await visit("");
  return out;
}

/** Unpacks the manifest `digest` of an OCI layout with umoci; returns the rootfs and a cleanup. */
async function unpackManifest(layoutDir: string, digest: string, size: number): Promise<{ rootfs: string; dispose(): Promise<void> }> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-compare-"));
  const view = path.join(tmp, "layout");
  await mkdir(view);
  // A one-manifest view of the layout, tagged, since umoci unpacks by tag.
  await symlink(path.join(layoutDir, "blobs"), path.join(view, "blobs"));
  await copyFile(path.join(layoutDir, "oci-layout"), path.join(view, "oci-layout"));
  const index = { schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest, size, annotations: { "org.opencontainers.image.ref.name": "cmp" } }] };
  await writeFile(path.join(view, "index.json"), JSON.stringify(index));
  const bundle = path.join(tmp, "bundle");
  try {
    await sh("umoci", ["unpack", "--image", `${view}:cmp`, bundle], { maxBuffer: 16 << 20 });
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return { rootfs: path.join(bundle, "rootfs"), dispose: () => rm(tmp, { recursive: true, force: true }) };
}

async function blobJson(layoutDir: string, digest: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path.join(layoutDir, "blobs", ...digest.split(":")), "utf8")) as Record<string, unknown>;
}

/** The manifest an index (or nested index) points at for linux/amd64, or its only one. */
async function pickManifest(layoutDir: string, index: OciIndex): Promise<{ digest: string; size: number }> {
  for (const m of index.manifests) {
    if (m.mediaType?.includes("index") || m.mediaType?.includes("manifest.list")) return pickManifest(layoutDir, (await blobJson(layoutDir, m.digest)) as unknown as OciIndex);
  }
  const plat = index.manifests.find((m) => (m as { platform?: { architecture?: string } }).platform?.architecture === "amd64");
  const m = plat ?? index.manifests[0];
  if (!m) throw new Error("empty index");
  return m;
}

/** The tree of an OCI layout directory's (linux/amd64) image. */
export async function layoutTree(layoutDir: string): Promise<Map<string, string>> {
  const index = JSON.parse(await readFile(path.join(layoutDir, "index.json"), "utf8")) as OciIndex;
  const m = await pickManifest(layoutDir, index);
  const u = await unpackManifest(layoutDir, m.digest, m.size);
  try {
    return await walkTree(u.rootfs);
  } finally {
    await u.dispose();
  }
}

/** Facts of the image in an OCI tarball, with its tree given as changes from `base`. */
export async function imageFacts(tarball: string, base: Map<string, string>): Promise<ImageFacts> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-compare-layout-"));
  try {
    await sh("tar", ["-xf", tarball, "-C", dir]);
    const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as OciIndex;
    const m = await pickManifest(dir, index);
    const manifest = (await blobJson(dir, m.digest)) as { config: { digest: string }; layers: unknown[] };
    const config = await blobJson(dir, manifest.config.digest);
    const u = await unpackManifest(dir, m.digest, m.size);
    let tree: Map<string, string>;
    try {
      tree = await walkTree(u.rootfs);
    } finally {
      await u.dispose();
    }
    const changes: Record<string, string> = {};
    const isScratch = tree.size < base.size / 2;
    const from = isScratch ? new Map<string, string>() : base;
    for (const [p, d] of tree) if (from.get(p) !== d) changes[p] = d;
    for (const p of from.keys()) if (!tree.has(p)) changes[p] = "-";
    const history = ((config.history as Record<string, unknown>[] | undefined) ?? []).map((h) => {
      const { created_by, comment, empty_layer } = h as { created_by?: string; comment?: string; empty_layer?: boolean };
      return { created_by, comment, empty_layer };
    });
    const bi = config["moby.buildkit.buildinfo.v1"];
    return {
      tree: Object.fromEntries(Object.entries(changes).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
      // Field order too: it is part of the config's bytes, and so of the image's digest.
      config: { ...(config.config as Record<string, unknown>), "(field order)": Object.keys(config.config as object).join(" "), architecture: config.architecture, os: config.os, variant: config.variant },
      history,
      layers: manifest.layers.length,
      buildinfo: typeof bi === "string" ? JSON.parse(Buffer.from(bi, "base64").toString("utf8")) : undefined,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Human-readable differences between two fact sets; empty when they agree. */
export function diffFacts(want: ImageFacts, got: ImageFacts): string[] {
  const out: string[] = [];
  const paths = new Set([...Object.keys(want.tree), ...Object.keys(got.tree)]);
  for (const p of [...paths].sort()) {
    const w = want.tree[p];
    const g = got.tree[p];
    if (w !== g) out.push(`tree ${p}: want ${w ?? "(as base)"}, got ${g ?? "(as base)"}`);
  }
  const keys = new Set([...Object.keys(want.config), ...Object.keys(got.config)]);
  for (const k of [...keys].sort()) {
    const w = JSON.stringify(want.config[k]);
    const g = JSON.stringify(got.config[k]);
    if (w !== g) out.push(`config.${k}: want ${w}, got ${g}`);
  }
  const n = Math.max(want.history.length, got.history.length);
  for (let i = 0; i < n; i++) {
    const w = JSON.stringify(want.history[i]);
    const g = JSON.stringify(got.history[i]);
    if (w !== g) out.push(`history[${i}]: want ${w}, got ${g}`);
  }
  if (want.layers !== got.layers) out.push(`layers: want ${want.layers}, got ${got.layers}`);
  return out;
}
