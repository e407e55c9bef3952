// Layer compression and reproducibility through the CLI: zstd and estargz media types as skopeo
// shows them, an estargz TOC read back and checked against the layer's files, force-compression of
// base layers, blobs made once per compression, SOURCE_DATE_EPOCH + rewrite-timestamp giving the
// same digest twice, build info on and off.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import zlib from "node:zlib";
import { createHash } from "node:crypto";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";
import { compression } from "../../src/exporter/index.js";

const sh = promisify(execFile);
const sha = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

let env: KilnEnv;
let ctx: string;

before(async () => {
  env = await kilnEnv();
  ctx = await env.context({
    Dockerfile: [
      "FROM busybox",
      "RUN mkdir -p /data/sub && head -c 5000000 /dev/urandom > /data/big.bin && echo small > /data/sub/small.txt && ln -s sub/small.txt /data/link && touch /data/empty",
      "COPY a.txt /data/a.txt",
    ].join("\n"),
    "a.txt": "A\n",
  });
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

interface Layout {
  dir: string;
  manifest: { mediaType: string; config: { digest: string }; layers: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[] };
  config: Record<string, unknown>;
  digest: string;
}

async function exportOCI(name: string, attrs: string, extra: string[] = [], envVars: Record<string, string> = {}, context = ctx): Promise<Layout> {
  const out = path.join(env.tmp, `${name}.tar`);
  const r = await env.run(["build", context, "-o", `type=oci,dest=${out}${attrs ? "," + attrs : ""}`, ...extra], { env: envVars });
  assert.equal(r.code, 0, r.stderr);
  const dir = path.join(env.tmp, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir);
  await sh("tar", ["-xf", out, "-C", dir]);
  const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  const digest = index.manifests[0]!.digest;
  const blob = (d: string) => readFile(path.join(dir, "blobs", d.replace(":", "/")));
  const manifest = JSON.parse((await blob(digest)).toString()) as Layout["manifest"];
  const config = JSON.parse((await blob(manifest.config.digest)).toString()) as Record<string, unknown>;
  return { dir, manifest, config, digest };
}

const blobFile = (l: Layout, d: string) => path.join(l.dir, "blobs", d.replace(":", "/"));

async function skopeoRaw(l: Layout): Promise<{ layers: { mediaType: string }[] }> {
  return JSON.parse((await sh("skopeo", ["inspect", "--raw", `oci:${l.dir}`])).stdout) as { layers: { mediaType: string }[] };
}

describe("export: compression", () => {
  it("gzip by default; zstd gives +zstd media types that skopeo shows, and decompresses to the same diff ids", async () => {
    const gz = await exportOCI("gz", "");
    assert.ok(gz.manifest.layers.every((l) => l.mediaType === "application/vnd.oci.image.layer.v1.tar+gzip"));
    const z = await exportOCI("zstd", "compression=zstd");
    const raw = await skopeoRaw(z);
    // The base layer (pulled as gzip) is reused as it is; the new ones are zstd.
    assert.equal(raw.layers[0]!.mediaType, "application/vnd.oci.image.layer.v1.tar+gzip");
    assert.deepEqual(raw.layers.slice(1).map((l) => l.mediaType), ["application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.oci.image.layer.v1.tar+zstd"]);
    assert.deepEqual((z.config.rootfs as { diff_ids: string[] }).diff_ids, (gz.config.rootfs as { diff_ids: string[] }).diff_ids);
    for (const l of z.manifest.layers.slice(1)) {
      const { stdout } = await sh("zstd", ["-dc", blobFile(z, l.digest)], { encoding: "buffer", maxBuffer: 64 << 20 });
      assert.ok((z.config.rootfs as { diff_ids: string[] }).diff_ids.includes(sha(stdout)));
    }
    await sh("skopeo", ["inspect", `oci:${z.dir}`]);
  });

  it("zstd with docker media types forces OCI; force-compression recompresses base layers; uncompressed stays tar", async () => {
    const dz = path.join(env.tmp, "zstd.docker.tar");
    const r = await env.run(["build", ctx, "-o", `type=docker,dest=${dz},compression=zstd,force-compression=true`]);
    assert.equal(r.code, 0, r.stderr);
    const mf = JSON.parse((await sh("tar", ["-xOf", dz, "manifest.json"])).stdout) as { Layers: string[] }[];
    const idx = JSON.parse((await sh("tar", ["-xOf", dz, "index.json"])).stdout) as { manifests: { digest: string; mediaType: string }[] };
    assert.equal(idx.manifests[0]!.mediaType, "application/vnd.oci.image.manifest.v1+json");
    const m = JSON.parse((await sh("tar", ["-xOf", dz, `blobs/sha256/${idx.manifests[0]!.digest.slice(7)}`])).stdout) as { layers: { mediaType: string }[] };
    assert.ok(m.layers.every((l) => l.mediaType === "application/vnd.oci.image.layer.v1.tar+zstd"), JSON.stringify(m.layers));
    assert.equal(mf[0]!.Layers.length, 3);
    const u = await exportOCI("plain", "compression=uncompressed,force-compression=true,name=plain:v1");
    await sh("umoci", ["unpack", "--image", `${u.dir}:v1`, path.join(env.tmp, "plain-bundle")]);
    assert.equal(await readFile(path.join(env.tmp, "plain-bundle/rootfs/data/a.txt"), "utf8"), "A\n");
    assert.ok(u.manifest.layers.every((l) => l.mediaType === "application/vnd.oci.image.layer.v1.tar"));
    assert.deepEqual(
      u.manifest.layers.map((l) => l.digest),
      (u.config.rootfs as { diff_ids: string[] }).diff_ids,
      "an uncompressed layer's digest is its diff id",
    );
  });

  it("estargz: media type and annotations as skopeo shows them, and a TOC that matches the layer's files", async () => {
    const e = await exportOCI("esgz", "compression=estargz,name=esgz:v1");
    await sh("umoci", ["unpack", "--image", `${e.dir}:v1`, path.join(env.tmp, "esgz-bundle")]);
    assert.equal(await readFile(path.join(env.tmp, "esgz-bundle/rootfs/data/sub/small.txt"), "utf8"), "small\n");
    const raw = (await skopeoRaw(e)) as { layers: { mediaType: string; annotations?: Record<string, string> }[] };
    const newLayers = e.manifest.layers.slice(1);
    for (const [i, l] of newLayers.entries()) {
      assert.equal(raw.layers[i + 1]!.mediaType, "application/vnd.oci.image.layer.v1.tar+gzip");
      assert.ok(raw.layers[i + 1]!.annotations?.["containerd.io/snapshot/stargz/toc.digest"]);
      const blob = await readFile(blobFile(e, l.digest));
      const { toc, tocDigest } = compression.readTOC(blob);
      assert.equal(l.annotations!["containerd.io/snapshot/stargz/toc.digest"], tocDigest);
      const all = zlib.gunzipSync(blob);
      assert.equal(l.annotations!["io.containers.estargz.uncompressed-size"], String(all.length));
      assert.equal((e.config.rootfs as { diff_ids: string[] }).diff_ids[i + 1], sha(all), "the diff id covers the TOC too");
      // The TOC names exactly the layer tar's entries, in order.
      const tarFile = path.join(env.tmp, `esgz-layer-${i}.tar`);
      await writeFile(tarFile, all);
      const entries = (await sh("tar", ["-tf", tarFile])).stdout.trim().split("\n");
      const tocNames = toc.entries!.filter((t) => t.type !== "chunk").map((t) => t.name);
      assert.deepEqual(tocNames, entries);
      // Each regular file's digest and each chunk's bytes check out.
      const root = path.join(env.tmp, `esgz-root-${i}`);
      await mkdir(root, { recursive: true });
      await sh("tar", ["-xf", tarFile, "-C", root]);
      for (const t of toc.entries!) {
        if (t.type === "reg") assert.equal(t.digest, sha(await readFile(path.join(root, t.name))), t.name);
        if ((t.type === "reg" && (t.size ?? 0) > 0) || t.type === "chunk") {
          const data = await readFile(path.join(root, t.name));
          const start = t.chunkOffset ?? 0;
          const len = t.chunkSize ?? data.length - start;
          const member = zlib.gunzipSync(blob.subarray(t.offset!), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
          assert.ok(member.subarray(0, len).equals(data.subarray(start, start + len)), `${t.name}@${start}`);
          assert.equal(t.chunkDigest, sha(data.subarray(start, start + len)));
        }
      }
      if (i === 0) assert.ok(toc.entries!.filter((t) => t.name === "data/big.bin").length === 2, "a 5 MB file is two 4 MiB chunks");
    }
  });

  it("compresses each layer once per compression and remembers it", async () => {
    const a = await exportOCI("memo-a", "compression=zstd");
    const b = await exportOCI("memo-b", "compression=zstd");
    assert.equal(a.digest, b.digest);
    const c = await exportOCI("memo-c", "compression=gzip");
    assert.notDeepEqual(
      c.manifest.layers.map((l) => l.digest),
      a.manifest.layers.map((l) => l.digest),
    );
    const rows = (await sh("sqlite3", [path.join(env.root, "metadata.db"), "SELECT key FROM kv WHERE bucket = 'exporter.blobs'"])).stdout;
    assert.match(rows, /\/zstd\n/);
    assert.match(rows, /\/gzip\n/);
  });
});

describe("export: reproducible images", () => {
  it("SOURCE_DATE_EPOCH + rewrite-timestamp=true: two builds from scratch give the same digest", async () => {
    const epoch = "1700000000";
    const det = await env.context({
      Dockerfile: "FROM busybox\nRUN mkdir -p /out && echo deterministic > /out/file && touch /out/later\nCOPY a.txt /out/a.txt\nENV X=1\n",
      "a.txt": "A\n",
    });
    const a = await exportOCI("repro-a", "rewrite-timestamp=true", ["--no-cache"], { SOURCE_DATE_EPOCH: epoch }, det);
    await new Promise((r) => setTimeout(r, 1100));
    const b = await exportOCI("repro-b", "rewrite-timestamp=true", ["--no-cache"], { SOURCE_DATE_EPOCH: epoch }, det);
    assert.equal(a.digest, b.digest);
    assert.equal(a.config.created, "2023-11-14T22:13:20Z");
    const history = a.config.history as { created: string; created_by: string }[];
    assert.ok(history.filter((h) => !h.created_by.includes("BusyBox") && !h.created_by.startsWith("/bin/sh -c #(nop)")).every((h) => h.created <= "2023-11-14T22:13:20Z"));
    // File times in the new layer are clamped to the epoch.
    const run = a.manifest.layers[1]!;
    const { stdout } = await sh("tar", ["--full-time", "-tvzf", blobFile(a, run.digest)]);
    for (const line of stdout.trim().split("\n")) assert.ok(line.includes("2023-11-14 22:13:20") || line.split(/\s+/)[3]! < "2023-11-14", line);
    // Without rewrite-timestamp, a rebuild from scratch changes file times and so the digest.
    const c = await exportOCI("repro-c", "", ["--no-cache"], { SOURCE_DATE_EPOCH: epoch }, det);
    assert.equal(c.config.created, "2023-11-14T22:13:20Z", "the config is still clamped");
  });

  it("build info is in the config unless buildinfo=false; --build-arg SOURCE_DATE_EPOCH works like the env", async () => {
    const on = await exportOCI("bi-on", "");
    const bi = JSON.parse(Buffer.from(on.config["moby.buildkit.buildinfo.v1"] as string, "base64").toString()) as { frontend: string; sources: { type: string; ref: string; pin: string }[]; attrs?: unknown };
    assert.equal(bi.frontend, "dockerfile.v0");
    assert.equal(bi.attrs, undefined, "attributes only with buildinfo-attrs=true");
    assert.equal(bi.sources[0]!.type, "docker-image");
    assert.match(bi.sources[0]!.pin, /^sha256:[0-9a-f]{64}$/);
    const withAttrs = await exportOCI("bi-attrs", "buildinfo-attrs=true", ["--build-arg", "FOO=bar"]);
    const bi2 = JSON.parse(Buffer.from(withAttrs.config["moby.buildkit.buildinfo.v1"] as string, "base64").toString()) as { attrs: Record<string, string> };
    assert.equal(bi2.attrs["build-arg:FOO"], "bar");
    const off = await exportOCI("bi-off", "buildinfo=false");
    assert.equal(off.config["moby.buildkit.buildinfo.v1"], undefined);
    const arg = await exportOCI("epoch-arg", "", ["--build-arg", "SOURCE_DATE_EPOCH=0"]);
    assert.equal(arg.config.created, "1970-01-01T00:00:00Z");
  });
});
