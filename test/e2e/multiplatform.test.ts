// Multi-platform builds (issue 8): one Dockerfile solved per target platform, foreign RUN steps
// under QEMU, one index for image outputs, one folder per platform for local/tar, and the
// cross-compile pattern whose `$BUILDPLATFORM` stage runs once, natively, for every target.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stepStates, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

const sh = promisify(execFile);

let env: KilnEnv;
let registered: string[] = [];
before(async () => {
  env = await kilnEnv();
  const r = await env.run(["binfmt", "--install", "arm64"]);
  assert.equal(r.code, 0, r.stderr);
  // Only what this file registered is removed again.
  registered = [...r.stderr.matchAll(/installing: (\S+) OK/g)].map((m) => m[1]!.replace(/^qemu-/, ""));
});
after(async () => {
  if (registered.length > 0) await env?.run(["binfmt", "--uninstall", registered.join(",")]);
  await env?.close();
  await stopSharedRegistry();
});

interface IndexJSON {
  mediaType: string;
  manifests: { mediaType: string; digest: string; platform?: { architecture: string; os: string; variant?: string }; annotations?: Record<string, string> }[];
  annotations?: Record<string, string>;
}

/** The file at `file` in the top layer of the registry image for `arch` (skopeo picks it from the index). */
async function fileInImage(ref: string, arch: string, file: string): Promise<{ text: string; inspect: { Architecture: string; Os: string } }> {
  const dir = await mkdtemp(path.join(env.tmp, `skopeo-${arch}-`));
  await rm(dir, { recursive: true });
  await sh("skopeo", ["copy", "--src-tls-verify=false", "--override-arch", arch, "--override-os", "linux", `docker://${ref}`, `dir:${dir}`]);
  const manifest = JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8")) as { layers: { digest: string }[] };
  const top = manifest.layers[manifest.layers.length - 1]!.digest.replace("sha256:", "");
  const text = (await sh("tar", ["-xzOf", path.join(dir, top), file])).stdout;
  const inspect = JSON.parse((await sh("skopeo", ["inspect", "--tls-verify=false", "--override-arch", arch, "--override-os", "linux", `docker://${ref}`])).stdout) as { Architecture: string; Os: string };
  return { text, inspect };
}

describe("multi-platform builds", () => {
  it("--platform linux/amd64,linux/arm64: RUN uname -m per platform, pushed as one index, read back per arch by skopeo", async () => {
    const ctx = await env.context({ Dockerfile: "FROM busybox\nARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM\nRUN uname -m > /m && echo \"$TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT] $BUILDPLATFORM\" > /args\n" });
    const name = `${env.registryHost}/kiln/multi:v1`;
    const md = path.join(env.tmp, "multi-md.json");
    const oci = path.join(env.tmp, "multi.oci.tar");
    const r = await env.run(["build", ctx, "--platform", "linux/amd64,linux/arm64", "-t", name, "--push", "-o", `type=oci,dest=${oci}`, "--metadata-file", md]);
    assert.equal(r.code, 0, r.stderr);

    const raw = (await sh("skopeo", ["inspect", "--tls-verify=false", "--raw", `docker://${name}`])).stdout;
    const index = JSON.parse(raw) as IndexJSON;
    assert.equal(index.mediaType, "application/vnd.docker.distribution.manifest.list.v2+json");
    assert.deepEqual(
      index.manifests.map((m) => m.platform),
      [
        { architecture: "amd64", os: "linux" },
        { architecture: "arm64", os: "linux" },
      ],
    );
    const meta = JSON.parse(await readFile(md, "utf8")) as Record<string, string>;
    assert.match(meta["containerimage.digest"] ?? "", /^sha256:/);
    assert.equal(meta["containerimage.config.digest"], undefined, "an index has no config");
    const bi = meta["containerimage.buildinfo/linux/arm64"] as unknown as { frontend: string; sources: { ref: string }[] };
    assert.equal(bi.frontend, "dockerfile.v0");
    assert.deepEqual(bi.sources.map((s) => s.ref), ["docker.io/library/busybox:latest"]);
    assert.ok(meta["containerimage.buildinfo/linux/amd64"]);

    const arm = await fileInImage(name, "arm64", "m");
    assert.equal(arm.text, "aarch64\n");
    assert.equal(arm.inspect.Architecture, "arm64");
    const amd = await fileInImage(name, "amd64", "m");
    assert.equal(amd.text, "x86_64\n");
    assert.equal(amd.inspect.Architecture, "amd64");
    const buildPlatform = (await fileInImage(name, "amd64", "args")).text.trim().split(" ").pop();
    assert.equal((await fileInImage(name, "arm64", "args")).text, `linux/arm64 linux arm64 [] ${buildPlatform}\n`);
    assert.equal((await fileInImage(name, "amd64", "args")).text, `linux/amd64 linux amd64 [] ${buildPlatform}\n`);

    // The OCI tarball holds the same index (OCI media types) with both images' blobs.
    const layout = await mkdtemp(path.join(env.tmp, "layout-"));
    await sh("tar", ["-xf", oci, "-C", layout]);
    const top = JSON.parse(await readFile(path.join(layout, "index.json"), "utf8")) as IndexJSON;
    assert.equal(top.manifests.length, 1);
    assert.equal(top.manifests[0]!.mediaType, "application/vnd.oci.image.index.v1+json");
    const ociIndex = JSON.parse(await readFile(path.join(layout, "blobs/sha256", top.manifests[0]!.digest.slice(7)), "utf8")) as IndexJSON;
    assert.deepEqual(ociIndex.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`), ["linux/amd64", "linux/arm64"]);
    for (const arch of ["amd64", "arm64"]) {
      const got = JSON.parse((await sh("skopeo", ["inspect", "--override-arch", arch, "--override-os", "linux", `oci-archive:${oci}`])).stdout) as { Architecture: string };
      assert.equal(got.Architecture, arch);
    }
  });

  it("the cross-compile pattern: the $BUILDPLATFORM stage runs once, natively, for both targets", async () => {
    const ctx = await env.context({
      Dockerfile: [
        "FROM --platform=$BUILDPLATFORM busybox AS build",
        "RUN uname -m > /build-arch && echo compiled-once > /tool",
        "FROM busybox",
        "ARG TARGETARCH",
        "COPY --from=build /build-arch /tool /out/",
        "RUN echo $TARGETARCH $(uname -m) > /out/target",
        "",
      ].join("\n"),
    });
    const dest = path.join(env.tmp, "cross");
    const r = await env.run(["build", ctx, "--opt", "platform=linux/amd64,linux/arm64", "-o", `type=local,dest=${dest}`]);
    assert.equal(r.code, 0, r.stderr);
    const ids = new Set(r.stderr.split("\n").flatMap((l) => /^#(\d+) \[linux\/[a-z0-9]+ build 2\/2\] RUN uname -m > \/build-arch/.exec(l)?.[1] ?? []));
    assert.equal(ids.size, 1, `the build stage's RUN is one step:\n${r.stderr}`);
    const id = [...ids][0]!;
    assert.equal(r.stderr.split("\n").filter((l) => l.startsWith(`#${id} DONE`)).length, 1, `and ran once:\n${r.stderr}`);
    assert.equal(r.stderr.split("\n").filter((l) => l.startsWith(`#${id} `) && l.includes(" build 2/2] RUN")).length, 1, `and shows once:\n${r.stderr}`);
    // Each target's own steps are separate, named by platform as BuildKit names them.
    assert.match(r.stderr, /\[linux\/amd64 stage-1 3\/3\] RUN echo amd64 \$\(uname -m\)/);
    assert.match(r.stderr, /\[linux\/arm64 stage-1 3\/3\] RUN echo arm64 \$\(uname -m\)/);
    assert.deepEqual((await readdir(dest)).sort(), ["linux_amd64", "linux_arm64"]);
    const native = (await sh("uname", ["-m"])).stdout;
    for (const [dir, arch, uname] of [
      ["linux_amd64", "amd64", "x86_64"],
      ["linux_arm64", "arm64", "aarch64"],
    ]) {
      assert.equal(await readFile(path.join(dest, dir!, "out/build-arch"), "utf8"), native, "built natively");
      assert.equal(await readFile(path.join(dest, dir!, "out/tool"), "utf8"), "compiled-once\n");
      assert.equal(await readFile(path.join(dest, dir!, "out/target"), "utf8"), `${arch} ${uname}\n`);
    }
  });

  it("local export: split into platform folders by default, merged with platform-split=false; tar splits too", async () => {
    const ctx = await env.context({ Dockerfile: "FROM busybox AS b\nARG TARGETARCH\nRUN mkdir /o && echo $TARGETARCH > /o/arch-$TARGETARCH\nFROM scratch\nCOPY --from=b /o/ /\n" });
    const split = path.join(env.tmp, "split");
    const merged = path.join(env.tmp, "merged");
    const tar = path.join(env.tmp, "split.tar");
    const r = await env.run(["build", ctx, "--platform", "linux/arm64/v8,amd64", "-o", `type=local,dest=${split}`, "-o", `type=local,dest=${merged},platform-split=false`, "-o", `type=tar,dest=${tar}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await readdir(split)).sort(), ["linux_amd64", "linux_arm64"]);
    assert.deepEqual(await readdir(path.join(split, "linux_arm64")), ["arch-arm64"]);
    assert.deepEqual(await readdir(path.join(split, "linux_amd64")), ["arch-amd64"]);
    assert.deepEqual((await readdir(merged)).sort(), ["arch-amd64", "arch-arm64"]);
    const listing = (await sh("tar", ["-tf", tar])).stdout.trim().split("\n").sort();
    assert.deepEqual(listing, ["linux_amd64/", "linux_amd64/arch-amd64", "linux_arm64/", "linux_arm64/arch-arm64"]);
  });

  it("docker tarball: index.json names the index, manifest.json this machine's image for docker load", async () => {
    const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN uname -m > /m\n" });
    const out = path.join(env.tmp, "multi.docker.tar");
    // The flag repeated is the same as a comma list.
    const r = await env.run(["build", ctx, "--platform", "linux/arm64", "--platform", "local", "-o", `type=docker,dest=${out},name=kiln/multi:v1`]);
    assert.equal(r.code, 0, r.stderr);
    const layout = await mkdtemp(path.join(env.tmp, "docker-"));
    await sh("tar", ["-xf", out, "-C", layout]);
    const top = JSON.parse(await readFile(path.join(layout, "index.json"), "utf8")) as IndexJSON;
    assert.equal(top.manifests[0]!.mediaType, "application/vnd.docker.distribution.manifest.list.v2+json");
    const index = JSON.parse(await readFile(path.join(layout, "blobs/sha256", top.manifests[0]!.digest.slice(7)), "utf8")) as IndexJSON;
    assert.deepEqual(index.manifests.map((m) => m.platform?.architecture), ["arm64", "amd64"]);
    const inspect = JSON.parse((await sh("skopeo", ["inspect", `docker-archive:${out}`])).stdout) as { Architecture: string };
    assert.equal(inspect.Architecture, "amd64");
    const manifest = JSON.parse(await readFile(path.join(layout, "manifest.json"), "utf8")) as { RepoTags: string[] }[];
    assert.deepEqual(manifest.map((m) => m.RepoTags), [["kiln/multi:v1"]]);
  });

  it("BUILDKIT_MULTI_PLATFORM=1 makes one platform a map too: an index of one, a split folder", async () => {
    const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN uname -m > /m\n" });
    const dest = path.join(env.tmp, "one-split");
    const oci = path.join(env.tmp, "one.oci.tar");
    const r = await env.run(["build", ctx, "--platform", "linux/arm64", "--build-arg", "BUILDKIT_MULTI_PLATFORM=1", "-o", `type=local,dest=${dest}`, "-o", `type=oci,dest=${oci},annotation-index.k=v`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(path.join(dest, "linux_arm64/m"), "utf8"), "aarch64\n");
    assert.match(r.stderr, /\[linux\/arm64 2\/2\] RUN uname -m/);
    const layout = await mkdtemp(path.join(env.tmp, "one-"));
    await sh("tar", ["-xf", oci, "-C", layout]);
    const top = JSON.parse(await readFile(path.join(layout, "index.json"), "utf8")) as IndexJSON;
    const index = JSON.parse(await readFile(path.join(layout, "blobs/sha256", top.manifests[0]!.digest.slice(7)), "utf8")) as IndexJSON;
    assert.equal(index.manifests.length, 1);
    assert.deepEqual(index.annotations, { k: "v" });
  });

  it("annotation[PLATFORM].* reaches that platform's manifest; index annotations reach the index", async () => {
    const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN true\n" });
    const oci = path.join(env.tmp, "annot.oci.tar");
    const r = await env.run([
      "build",
      ctx,
      "--platform",
      "linux/amd64,linux/arm64",
      "-o",
      `type=oci,dest=${oci},annotation[linux/arm64].org.example.arch=arm,annotation.org.example.all=yes,annotation-index.org.example.top=idx,annotation-manifest-descriptor[linux/amd64].org.example.d=amd`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const layout = await mkdtemp(path.join(env.tmp, "annot-"));
    await sh("tar", ["-xf", oci, "-C", layout]);
    const blob = async (d: string) => JSON.parse(await readFile(path.join(layout, "blobs/sha256", d.slice(7)), "utf8")) as IndexJSON;
    const top = JSON.parse(await readFile(path.join(layout, "index.json"), "utf8")) as IndexJSON;
    const index = await blob(top.manifests[0]!.digest);
    assert.deepEqual(index.annotations, { "org.example.top": "idx" });
    const [amd, arm] = index.manifests;
    assert.deepEqual(amd!.annotations, { "org.example.d": "amd" });
    assert.equal(arm!.annotations, undefined);
    assert.deepEqual((await blob(amd!.digest)).annotations, { "org.example.all": "yes" });
    assert.deepEqual((await blob(arm!.digest)).annotations, { "org.example.all": "yes", "org.example.arch": "arm" });

    const bad = await env.run(["build", ctx, "--platform", "linux/amd64,linux/arm64", "-o", `type=oci,dest=${oci},annotation[linux/s390x].a=b`]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid annotation: no platform linux\/s390x found in source/);
  });

  it("a step failing on one platform fails the build, named with its platform", async () => {
    const ctx = await env.context({ Dockerfile: 'FROM busybox\nRUN [ "$(uname -m)" = x86_64 ] || (echo not x86 >&2; exit 7)\n' });
    const out = path.join(env.tmp, "never-multi.tar");
    const r = await env.run(["build", ctx, "--platform", "linux/amd64,linux/arm64", "-o", `type=oci,dest=${out}`]);
    assert.equal(r.code, 1);
    const line = r.stderr.split("\n").find((l) => l.startsWith("error:")) ?? "";
    assert.match(line, /^error: \[linux\/arm64 2\/2\] RUN .*exit code: 7$/);
    assert.match(r.stderr, /not x86/);
    await assert.rejects(readFile(out), "no output");
  });

  it("a platform with no emulator fails before anything runs, saying how to enable emulation", async () => {
    const ctx = await env.context({ Dockerfile: "FROM scratch\nRUN echo should-not-run\n" });
    const r = await env.run(["build", ctx, "--platform", "linux/amd64,linux/s390x"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no emulator for linux\/s390x: this machine runs linux\//);
    assert.match(r.stderr, /apt-get install qemu-user-static.*kiln binfmt --install/);
    assert.doesNotMatch(r.stderr, /should-not-run/, "no step started");
  });

  it("a two-platform mode=max cache imported into a fresh root: every step cached, the same index", async () => {
    const ctx = await env.context({ Dockerfile: "FROM --platform=$BUILDPLATFORM busybox AS build\nRUN echo native > /n\nFROM busybox\nCOPY --from=build /n /n\nRUN uname -m > /arch\n" });
    const cache = path.join(env.tmp, "mp-cache");
    const first = path.join(env.tmp, "mp-cache-1.tar");
    const again = path.join(env.tmp, "mp-cache-2.tar");
    const r1 = await env.run(["build", ctx, "--platform", "linux/amd64,linux/arm64", "--export-cache", `type=local,dest=${cache},mode=max`, "-o", `type=oci,dest=${first}`]);
    assert.equal(r1.code, 0, r1.stderr);
    const r2 = await env.run(["--root", path.join(env.tmp, "mp-cache-fresh-root"), "build", ctx, "--platform", "linux/amd64,linux/arm64", "--import-cache", `type=local,src=${cache}`, "-o", `type=oci,dest=${again}`]);
    assert.equal(r2.code, 0, r2.stderr);
    const ran = [...stepStates(r2.stderr)].filter(([name, state]) => / RUN /.test(name) && state !== "CACHED");
    assert.deepEqual(ran, [], "no RUN executed on the fresh root");
    // The COPY layer is the same blob on both platforms; each image keeps its own record's time.
    const indexDigest = async (tar: string) => (JSON.parse((await sh("tar", ["-xOf", tar, "index.json"])).stdout) as IndexJSON).manifests[0]!.digest;
    assert.equal(await indexDigest(again), await indexDigest(first));
  });
});
