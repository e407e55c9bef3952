// Every output through the CLI, checked by independent tools: pushes read back by skopeo with
// identical digests (plain, htpasswd and token-auth registries), oci/docker tarballs and layout
// directories accepted by skopeo and umoci, stdout, tar and local outputs, the metadata file.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { createHash } from "node:crypto";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";
import { startRegistry, type RunningRegistry } from "../fixtures/registry.js";

const sh = promisify(execFile);
const sha = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

let env: KilnEnv;
let ctx: string;

before(async () => {
  env = await kilnEnv();
  ctx = await env.context({
    Dockerfile: "FROM busybox\nRUN mkdir -p /app && echo built > /app/built && head -c 300000 /dev/urandom > /app/rand\nCOPY a.txt /app/a.txt\nCMD [\"cat\", \"/app/a.txt\"]\n",
    "a.txt": "A\n",
  });
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

async function skopeoDir(ref: string, extra: string[] = []): Promise<{ digest: string; manifest: Record<string, unknown>; dir: string }> {
  const dir = await mkdtemp(path.join(env.tmp, "skopeo-"));
  await rm(dir, { recursive: true });
  await sh("skopeo", ["copy", "--src-tls-verify=false", ...extra, `docker://${ref}`, `dir:${dir}`]);
  const raw = await readFile(path.join(dir, "manifest.json"));
  return { digest: sha(raw), manifest: JSON.parse(raw.toString()) as Record<string, unknown>, dir };
}

async function metadata(file: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
}

async function dockerConfig(auths: Record<string, { user: string; pass: string }>): Promise<string> {
  const dir = await mkdtemp(path.join(env.tmp, "docker-config-"));
  const a: Record<string, { auth: string }> = {};
  for (const [host, c] of Object.entries(auths)) a[host] = { auth: Buffer.from(`${c.user}:${c.pass}`).toString("base64") };
  await writeFile(path.join(dir, "config.json"), JSON.stringify({ auths: a }));
  return dir;
}

describe("export: image exporter and registries", () => {
  let reg: RunningRegistry;
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg?.stop();
  });

  it("-t NAME --push: skopeo reads back the digests the metadata file names", async () => {
    const md = path.join(env.tmp, "push-md.json");
    const r = await env.run(["build", ctx, "-t", `${reg.host}/kiln/app:v1`, "-t", `${reg.host}/kiln/other:v2`, "--push", "--metadata-file", md]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /exporting to image/);
    assert.match(r.stderr, new RegExp(`pushing layers to ${reg.host}/kiln/other`));
    const m = await metadata(md);
    const desc = m["containerimage.descriptor"] as { mediaType: string; digest: string; size: number; platform: { os: string } };
    assert.equal(m["image.name"], `${reg.host}/kiln/app:v1,${reg.host}/kiln/other:v2`);
    assert.equal(desc.digest, m["containerimage.digest"]);
    assert.equal(desc.mediaType, "application/vnd.docker.distribution.manifest.v2+json", "BuildKit's image exporter defaults to Docker media types");
    assert.equal(desc.platform.os, "linux");
    for (const name of [`${reg.host}/kiln/app:v1`, `${reg.host}/kiln/other:v2`]) {
      const got = await skopeoDir(name);
      assert.equal(got.digest, m["containerimage.digest"], name);
      const config = got.manifest.config as { digest: string };
      assert.equal(config.digest, m["containerimage.config.digest"]);
      assert.equal(sha(await readFile(path.join(got.dir, config.digest.slice(7)))), config.digest);
    }
    const bi = m["containerimage.buildinfo"] as { frontend: string; sources: { ref: string; pin: string }[] };
    assert.equal(bi.frontend, "dockerfile.v0");
    assert.equal(bi.sources[0]!.ref, "docker.io/library/busybox:latest");
    assert.match(bi.sources[0]!.pin, /^sha256:[0-9a-f]{64}$/);
  });

  it("-t NAME alone records the name; name-canonical and dangling-name-prefix name it too", async () => {
    const md = path.join(env.tmp, "store-md.json");
    const r = await env.run(["build", ctx, "-o", "type=image,name=kiln/local:dev,name-canonical=true", "--metadata-file", md]);
    assert.equal(r.code, 0, r.stderr);
    const digest = (await metadata(md))["containerimage.digest"] as string;
    assert.match(r.stderr, /naming to docker\.io\/kiln\/local:dev/);
    const rows = (await sh("sqlite3", [path.join(env.root, "metadata.db"), "SELECT key, value FROM kv WHERE bucket = 'exporter.images' ORDER BY key"]).catch(() => ({ stdout: "" }))).stdout;
    if (rows) {
      assert.match(rows, /docker\.io\/kiln\/local:dev\|/);
      assert.ok(rows.includes(`docker.io/kiln/local:dev@${digest}|`));
    }
    const d = await env.run(["build", ctx, "-o", `type=image,dangling-name-prefix=${reg.host}/kiln/dangling,push=true`, "--metadata-file", md]);
    assert.equal(d.code, 0, d.stderr);
    assert.equal((await metadata(md))["image.name"], `${reg.host}/kiln/dangling@${digest}`);
    assert.equal((await skopeoDir(`${reg.host}/kiln/dangling@${digest}`)).digest, digest);
  });

  it("push-by-digest and oci-mediatypes; annotations land in the manifest and its descriptor", async () => {
    const md = path.join(env.tmp, "pbd-md.json");
    const r = await env.run([
      "build",
      ctx,
      "-o",
      `type=image,name=${reg.host}/kiln/bydigest:ignored,push=true,push-by-digest=true,oci-mediatypes=true,annotation.org.opencontainers.image.title=kiln,annotation-manifest-descriptor.org.example.d=desc`,
      "--metadata-file",
      md,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const m = await metadata(md);
    const digest = m["containerimage.digest"] as string;
    const desc = m["containerimage.descriptor"] as { mediaType: string; annotations: Record<string, string> };
    assert.equal(desc.mediaType, "application/vnd.oci.image.manifest.v1+json");
    assert.deepEqual(desc.annotations, { "org.example.d": "desc" });
    const got = await skopeoDir(`${reg.host}/kiln/bydigest@${digest}`);
    assert.equal(got.digest, digest);
    assert.deepEqual(got.manifest.annotations, { "org.opencontainers.image.title": "kiln" });
    await assert.rejects(sh("skopeo", ["inspect", "--tls-verify=false", `docker://${reg.host}/kiln/bydigest:ignored`]), "no tag was pushed");
  });

  it("pushes to htpasswd and token-auth registries with credentials from $DOCKER_CONFIG, and says who refused without them", async () => {
    const basic = await startRegistry({ htpasswd: { kiln: "s3cret" } });
    const token = await startRegistry({ token: { users: { kiln: "t0ken" }, anonymousPull: false } });
    try {
      const cfgDir = await dockerConfig({ [basic.host]: { user: "kiln", pass: "s3cret" }, [token.host]: { user: "kiln", pass: "t0ken" } });
      for (const [r, creds] of [
        [basic, "kiln:s3cret"],
        [token, "kiln:t0ken"],
      ] as const) {
        const md = path.join(env.tmp, "auth-md.json");
        const ok = await env.run(["build", ctx, "-t", `${r.host}/kiln/secure:v1`, "--push", "--metadata-file", md], { env: { DOCKER_CONFIG: cfgDir } });
        assert.equal(ok.code, 0, ok.stderr);
        const got = await skopeoDir(`${r.host}/kiln/secure:v1`, ["--src-creds", creds]);
        assert.equal(got.digest, (await metadata(md))["containerimage.digest"]);
        const denied = await env.run(["build", ctx, "-t", `${r.host}/kiln/secure:v2`, "--push"], { env: { DOCKER_CONFIG: await mkdtemp(path.join(env.tmp, "empty-")) } });
        assert.equal(denied.code, 1);
        assert.match(denied.stderr, new RegExp(`failed to push ${r.host}/kiln/secure:v2: .*${r.host}/kiln/secure.*401 Unauthorized`));
      }
    } finally {
      await basic.stop();
      await token.stop();
    }
  });
});

describe("export: insecure registries and cacheonly", () => {
  it("registry.insecure=true pushes to a TLS registry with a self-signed certificate; without it the push is refused", async () => {
    const tls = await startRegistry({ tls: true });
    try {
      const refused = await env.run(["build", ctx, "-o", `type=image,name=${tls.host}/kiln/tls:v1,push=true`]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, new RegExp(`failed to push ${tls.host}/kiln/tls:v1`));
      const md = path.join(env.tmp, "tls-md.json");
      const ok = await env.run(["build", ctx, "-o", `type=image,name=${tls.host}/kiln/tls:v1,push=true,registry.insecure=true`, "--metadata-file", md]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal((await skopeoDir(`${tls.host}/kiln/tls:v1`)).digest, (await metadata(md))["containerimage.digest"]);
    } finally {
      await tls.stop();
    }
  });

  it("cacheonly builds and exports nothing", async () => {
    const md = path.join(env.tmp, "cacheonly-md.json");
    const r = await env.run(["build", ctx, "-o", "type=cacheonly", "--metadata-file", md]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await metadata(md), {});
  });
});

describe("export: tarballs, directories, stdout, files", () => {
  it("oci tarball: skopeo oci-archive, umoci unpack; tar=false layout: skopeo oci:", async () => {
    const out = path.join(env.tmp, "img.oci.tar");
    const dir = path.join(env.tmp, "img-layout");
    const md = path.join(env.tmp, "oci-md.json");
    const r = await env.run(["build", ctx, "-o", `type=oci,dest=${out},name=kiln/demo:v1`, "-o", `type=oci,dest=${dir},tar=false,name=kiln/demo:v1`, "--metadata-file", md]);
    assert.equal(r.code, 0, r.stderr);
    const m = await metadata(md);
    const inspect = JSON.parse((await sh("skopeo", ["inspect", `oci-archive:${out}`])).stdout) as { Digest: string; Layers: string[] };
    assert.equal(inspect.Digest, m["containerimage.digest"]);
    assert.equal(inspect.Layers.length, 3);
    const fromDir = JSON.parse((await sh("skopeo", ["inspect", `oci:${dir}:v1`])).stdout) as { Digest: string };
    assert.equal(fromDir.Digest, m["containerimage.digest"]);
    const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: { annotations: Record<string, string> }[] };
    assert.equal(index.manifests[0]!.annotations["io.containerd.image.name"], "docker.io/kiln/demo:v1");
    assert.match(index.manifests[0]!.annotations["org.opencontainers.image.created"]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const bundle = path.join(env.tmp, "umoci-bundle");
    await sh("umoci", ["unpack", "--image", `${dir}:v1`, bundle]);
    assert.equal(await readFile(path.join(bundle, "rootfs/app/built"), "utf8"), "built\n");
    // The tarball's entries: sorted, Go's headers, blobs read-only.
    const { stdout } = await sh("tar", ["-tvf", out]);
    const names = stdout.trim().split("\n").map((l) => l.split(/\s+/).at(-1)!);
    assert.deepEqual(names, [...names].sort());
    assert.ok(names.includes("oci-layout") && names.includes("index.json") && !names.includes("manifest.json"));
  });

  it("docker tarball has manifest.json and repositories, and reads as docker-archive", async () => {
    const out = path.join(env.tmp, "img.docker.tar");
    const r = await env.run(["build", ctx, "-o", `type=docker,dest=${out},name=kiln/demo:v1`]);
    assert.equal(r.code, 0, r.stderr);
    const inspect = JSON.parse((await sh("skopeo", ["inspect", `docker-archive:${out}`])).stdout) as { RepoTags: string[]; Layers: string[] };
    assert.equal(inspect.Layers.length, 3);
    const manifest = JSON.parse((await sh("tar", ["-xOf", out, "manifest.json"])).stdout) as { Config: string; RepoTags: string[]; Layers: string[] }[];
    assert.deepEqual(manifest[0]!.RepoTags, ["kiln/demo:v1"]);
    assert.equal(manifest[0]!.Layers.length, 3);
    const repos = JSON.parse((await sh("tar", ["-xOf", out, "repositories"])).stdout) as Record<string, Record<string, string>>;
    assert.ok(repos["kiln/demo"]?.v1);
    const cfg = (await sh("tar", ["-xOf", out, manifest[0]!.Config], { encoding: "buffer", maxBuffer: 1 << 20 })).stdout;
    assert.equal(sha(cfg), `sha256:${path.basename(manifest[0]!.Config)}`);
    // docker-archive with an unnamed image too.
    const anon = path.join(env.tmp, "anon.docker.tar");
    assert.equal((await env.run(["build", ctx, "-o", `type=docker,dest=${anon}`])).code, 0);
    await sh("skopeo", ["inspect", `docker-archive:${anon}`]);
  });

  it("dest=- writes the tarball to stdout", async () => {
    const out = path.join(env.tmp, "stdout.tar");
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = execFile("sh", ["-c", `"${process.execPath}" "${path.resolve(import.meta.dirname, "../../bin/kiln")}" --root "${env.root}" --config "${env.config}" build "${ctx}" -o type=oci,dest=- > "${out}"`], { env: { ...process.env, BUILDKIT_PROGRESS: "plain" } }, (err, _o, stderr) =>
        err && typeof (err as { code?: unknown }).code !== "number" ? reject(err) : resolve({ code: (err as { code?: number } | null)?.code ?? 0, stderr }),
      );
      child.on("error", reject);
    });
    assert.equal(r.code, 0, r.stderr);
    const inspect = JSON.parse((await sh("skopeo", ["inspect", `oci-archive:${out}`])).stdout) as { Layers: string[] };
    assert.equal(inspect.Layers.length, 3);
  });

  it("tar exporter streams the filesystem; local with platform-split puts it under linux_amd64/", async () => {
    const tarOut = path.join(env.tmp, "fs.tar");
    const local = path.join(env.tmp, "fs-split");
    const r = await env.run(["build", ctx, "-o", `type=tar,dest=${tarOut}`, "-o", `type=local,dest=${local},platform-split=true`]);
    assert.equal(r.code, 0, r.stderr);
    const list = (await sh("tar", ["-tf", tarOut], { maxBuffer: 16 << 20 })).stdout.split("\n");
    assert.ok(list.includes("app/built") && list.includes("bin/busybox"), list.slice(0, 10).join(","));
    const plat = (await readdir(local))[0]!;
    assert.match(plat, /^linux_(amd64|arm64)/);
    assert.equal(await readFile(path.join(local, plat, "app/a.txt"), "utf8"), "A\n");
    assert.ok((await stat(path.join(local, plat, "bin/busybox"))).isFile());
  });

  it("a failed export leaves no partial file at dest", async () => {
    const bad = await env.context({ Dockerfile: "FROM busybox\nRUN exit 3\n" });
    const out = path.join(env.tmp, "never.tar");
    const r = await env.run(["build", bad, "-o", `type=oci,dest=${out}`]);
    assert.equal(r.code, 1);
    await assert.rejects(stat(out));
    assert.ok(!(await readdir(env.tmp)).some((n) => n.startsWith("never.tar.kiln-")), "no temp file left");
  });
});

describe("export: bad input is refused before the build starts", () => {
  for (const [args, re] of [
    [["-o", "type=nope,dest=x"], /exporter "nope" could not be found/],
    [["-o", "type=oci,dest=x.tar,colour=red"], /unknown attribute "colour" for exporter oci/],
    [["-o", "type=oci,dest=x.tar,compression=zstd,compression-level=99"], /invalid compression-level 99 for zstd/],
    [["-o", "type=oci,dest=x.tar,compression=lz4"], /unsupported compression type lz4/],
    [["-o", "type=image,push=true"], /push=true but no name/],
    [["--push"], /push=true but no name/],
    [["-o", "type=oci,dest=x.tar,annotation-index.a=b"], /index annotations not supported for single platform export/],
  ] as const) {
    it(`${args.join(" ")} → ${re.source}`, async () => {
      const slow = await env.context({ Dockerfile: "FROM busybox\nRUN echo should-not-run\n" });
      const r = await env.run(["build", slow, ...args]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split("\n").filter((l) => l.startsWith("error:")).length, 1, "one error message");
      assert.doesNotMatch(r.stderr, /load build definition|should-not-run/, "nothing ran");
    });
  }
});

describe("export: a registry that says no", () => {
  it("401, 404 and 500 name the registry, the repository and the status", async () => {
    const { createServer } = await import("node:http");
    for (const status of [401, 404, 500]) {
      const srv = createServer((req, res) => {
        if (status === 404 && req.method === "HEAD") return void res.writeHead(404).end();
        res.writeHead(status, status === 401 ? { "www-authenticate": 'Basic realm="x"' } : {}).end(req.method === "HEAD" ? undefined : '{"errors":[{"code":"X","message":"no"}]}');
      });
      await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
      const host = `127.0.0.1:${(srv.address() as { port: number }).port}`;
      try {
        const r = await env.run(["build", ctx, "-t", `${host}/team/app:v1`, "--push"]);
        assert.equal(r.code, 1);
        const line = r.stderr.split("\n").find((l) => l.startsWith("error:")) ?? "";
        assert.ok(line.includes(host) && line.includes("team/app") && line.includes(String(status)), line);
      } finally {
        srv.closeAllConnections();
        await new Promise<void>((r) => srv.close(() => r()));
      }
    }
  });

  it("a push interrupted half-way (SIGINT) leaves nothing served, and the next push succeeds", async () => {
    const reg = await startRegistry();
    const { createServer, request } = await import("node:http");
    let stall = true;
    let pid = 0;
    const srv = createServer((req, res) => {
      if (stall && req.method === "PUT" && req.url?.includes("/blobs/uploads/")) {
        // Hold the upload open and interrupt the client mid-transfer.
        req.once("data", () => process.kill(pid, "SIGINT"));
        return;
      }
      const up = request({ host: "127.0.0.1", port: Number(reg.host.split(":")[1]), method: req.method, path: req.url, headers: req.headers }, (u) => {
        res.writeHead(u.statusCode ?? 502, u.headers);
        u.pipe(res);
      });
      up.on("error", () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    const host = `127.0.0.1:${(srv.address() as { port: number }).port}`;
    try {
      const big = await env.context({ Dockerfile: "FROM busybox\nRUN head -c 6000000 /dev/urandom > /big\n" });
      const first = await env.run(["build", big, "-t", `${host}/kiln/resumed:v1`, "--push"], { onSpawn: (p) => (pid = p) });
      assert.equal(first.code, 130, first.stderr);
      await assert.rejects(sh("skopeo", ["inspect", "--tls-verify=false", `docker://${reg.host}/kiln/resumed:v1`]), "nothing was tagged");
      stall = false;
      const md = path.join(env.tmp, "resumed-md.json");
      const second = await env.run(["build", big, "-t", `${host}/kiln/resumed:v1`, "--push", "--metadata-file", md]);
      assert.equal(second.code, 0, second.stderr);
      assert.equal((await skopeoDir(`${reg.host}/kiln/resumed:v1`)).digest, (await metadata(md))["containerimage.digest"]);
    } finally {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
      await reg.stop();
    }
  });
});
