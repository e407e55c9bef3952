// Attestations through the CLI: provenance (min and max) and an SBOM from a scanner image built in
// the test land in the OCI index as BuildKit v0.11 puts them there — an attestation manifest per
// platform (unknown/unknown, pointing at the image) whose in-toto layers carry the statements —
// and skopeo and umoci still read the output.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { createHash } from "node:crypto";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";
import { spawnKiln, startKilnd, type Kilnd } from "../helpers/kilnd.js";

const sh = promisify(execFile);

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string };
}

interface Layout {
  dir: string;
  index: { mediaType: string; manifests: Desc[] };
  blob(d: string): Promise<Buffer>;
}

let env: KilnEnv;
let ctx: string;
const dockerfile = 'FROM busybox\nRUN --mount=type=secret,id=tok,required=false echo "ok" > /foo\nCOPY a.txt /\n';

before(async () => {
  env = await kilnEnv();
  ctx = await env.context({ Dockerfile: dockerfile, "a.txt": "A\n" });
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

/** Builds to an OCI layout directory (in-process, or through kilnd at `addr`) and reads its top index. */
async function buildLayout(context: string, extra: string[], addr?: string): Promise<Layout> {
  const dir = await mkdtemp(path.join(env.tmp, "layout-"));
  await rm(dir, { recursive: true });
  if (addr) {
    // Through the daemon the tarball comes back over the session; the layout is unpacked from it.
    const file = `${dir}.tar`;
    const r = await spawnKiln(["--addr", addr, "build", context, "-o", `type=oci,dest=${file},name=example.com/team/app:v1`, ...extra]).done;
    assert.equal(r.code, 0, r.stderr);
    await mkdir(dir);
    await sh("tar", ["-xf", file, "-C", dir]);
  } else {
    const r = await env.run(["build", context, "-o", `type=oci,dest=${dir},tar=false,name=example.com/team/app:v1`, ...extra]);
    assert.equal(r.code, 0, r.stderr);
  }
  const blob = (d: string) => readFile(path.join(dir, "blobs", d.replace(":", "/")));
  const top = (JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: Desc[] }).manifests[0]!;
  return { dir, index: JSON.parse((await blob(top.digest)).toString()) as Layout["index"], blob };
}

/** The image manifest and the attestation manifest of the host's platform, and the statements. */
async function attestationsOf(l: Layout): Promise<{ image: Desc; att: Desc; layers: Desc[]; statements: Record<string, unknown>[] }> {
  assert.equal(l.index.mediaType, "application/vnd.oci.image.index.v1+json");
  assert.equal(l.index.manifests.length, 2, JSON.stringify(l.index));
  const [image, att] = l.index.manifests as [Desc, Desc];
  assert.equal(image.platform?.os, "linux");
  assert.deepEqual(att.platform, { architecture: "unknown", os: "unknown" });
  assert.deepEqual(att.annotations, { "vnd.docker.reference.digest": image.digest, "vnd.docker.reference.type": "attestation-manifest" });
  const manifest = JSON.parse((await l.blob(att.digest)).toString()) as { config: Desc; layers: Desc[] };
  const config = JSON.parse((await l.blob(manifest.config.digest)).toString()) as { architecture: string; os: string; rootfs: { diff_ids: string[] } };
  assert.equal(config.architecture, "unknown");
  assert.deepEqual(
    config.rootfs.diff_ids,
    manifest.layers.map((x) => x.digest),
  );
  const statements: Record<string, unknown>[] = [];
  for (const layer of manifest.layers) {
    assert.equal(layer.mediaType, "application/vnd.in-toto+json");
    const st = JSON.parse((await l.blob(layer.digest)).toString()) as Record<string, unknown>;
    assert.equal(st._type, "https://in-toto.io/Statement/v0.1");
    assert.equal(layer.annotations?.["in-toto.io/predicate-type"], st.predicateType);
    statements.push(st);
  }
  return { image, att, layers: manifest.layers, statements };
}

/** skopeo and umoci take the layout: the index, the image under its tag, and its config. */
async function checkTools(l: Layout, image: Desc): Promise<void> {
  const raw = await sh("skopeo", ["inspect", "--raw", `oci:${l.dir}:v1`]);
  assert.equal((JSON.parse(raw.stdout) as { manifests: unknown[] }).manifests.length, 2);
  // Picking this machine's platform from the index finds the image, never the attestation manifest.
  const inspected = JSON.parse((await sh("skopeo", ["inspect", `oci:${l.dir}:v1`])).stdout) as { Os: string; Architecture: string; Layers: string[] };
  const manifest = JSON.parse((await l.blob(image.digest)).toString()) as { layers: Desc[] };
  assert.equal(inspected.Os, "linux");
  assert.equal(inspected.Architecture, image.platform?.architecture);
  assert.deepEqual(
    inspected.Layers,
    manifest.layers.map((x) => x.digest),
  );
  assert.match((await sh("umoci", ["ls", "--layout", l.dir])).stdout, /^v1$/m);
}

interface Predicate {
  builder: { id: string };
  buildType: string;
  materials: { uri: string; digest: Record<string, string> }[];
  invocation: { configSource: { entryPoint?: string }; parameters: { frontend: string; args?: Record<string, string>; secrets?: { id: string; optional?: boolean }[]; locals?: { name: string }[] }; environment: { platform: string } };
  buildConfig?: { llbDefinition: { id: string; inputs?: string[] }[] };
  metadata: {
    buildStartedOn: string;
    buildFinishedOn: string;
    completeness: { parameters: boolean; environment: boolean; materials: boolean };
    reproducible: boolean;
    "https://mobyproject.org/buildkit@v1#metadata": { source?: { infos: { filename: string; data: string }[] }; layers?: Record<string, Desc[][]>; vcs?: Record<string, string> };
  };
}

describe("attestations: provenance", () => {
  for (const mode of ["min", "max"] as const) {
    it(`--attest type=provenance,mode=${mode}: an attestation manifest beside the image, SLSA v0.2 predicate`, async () => {
      const l = await buildLayout(ctx, ["--attest", `type=provenance,mode=${mode}`, "--build-arg", "FOO=bar", "--opt", "vcs:source=https://user:secret@example.invalid/repo.git", "--opt", "vcs:revision=abc"]);
      const { image, statements } = await attestationsOf(l);
      assert.equal(statements.length, 1);
      const st = statements[0] as { predicateType: string; subject: { name: string; digest: { sha256: string } }[]; predicate: Predicate };
      assert.equal(st.predicateType, "https://slsa.dev/provenance/v0.2");
      assert.deepEqual(st.subject, [{ name: `pkg:docker/example.com/team/app@v1?platform=linux%2F${image.platform!.architecture}`, digest: { sha256: image.digest.slice("sha256:".length) } }]);
      const p = st.predicate;
      assert.equal(p.buildType, "https://mobyproject.org/buildkit@v1");
      assert.equal(p.builder.id, "");
      assert.equal(p.invocation.parameters.frontend, "dockerfile.v0");
      assert.equal(p.invocation.configSource.entryPoint, "Dockerfile");
      assert.equal(p.invocation.environment.platform, `linux/${image.platform!.architecture}`);
      assert.deepEqual(p.invocation.parameters.locals, [{ name: "context" }, { name: "dockerfile" }]);
      assert.equal(p.materials.length, 1);
      assert.equal(p.materials[0]!.uri, `pkg:docker/busybox@latest?platform=linux%2F${image.platform!.architecture}`);
      assert.match(p.materials[0]!.digest.sha256 ?? "", /^[0-9a-f]{64}$/);
      const md = p.metadata;
      assert.ok(Date.parse(md.buildStartedOn) <= Date.parse(md.buildFinishedOn));
      assert.ok(Date.now() - Date.parse(md.buildFinishedOn) < 5 * 60_000);
      assert.equal(md.completeness.environment, true);
      assert.equal(md.completeness.materials, false, "local sources make the materials incomplete");
      assert.equal(md.reproducible, false);
      const bk = md["https://mobyproject.org/buildkit@v1#metadata"];
      assert.deepEqual(bk.vcs, { revision: "abc", source: "https://xxxxx:xxxxx@example.invalid/repo.git" });
      if (mode === "min") {
        assert.equal(p.invocation.parameters.args, undefined, "min mode leaves build args out");
        assert.equal(md.completeness.parameters, false);
        assert.equal(p.invocation.parameters.secrets, undefined);
        assert.equal(p.buildConfig, undefined);
        assert.equal(bk.source, undefined);
        assert.equal(bk.layers, undefined);
      } else {
        assert.deepEqual(p.invocation.parameters.args, { "build-arg:FOO": "bar" });
        assert.equal(md.completeness.parameters, true);
        assert.deepEqual(p.invocation.parameters.secrets, [{ id: "tok", optional: true }]);
        // busybox, RUN, the context, COPY and the terminal op.
        assert.equal(p.buildConfig?.llbDefinition.length, 5);
        assert.deepEqual(p.buildConfig?.llbDefinition[4]?.inputs, ["step3:0"]);
        assert.equal(bk.source?.infos[0]?.filename, "Dockerfile");
        assert.equal(Buffer.from(bk.source?.infos[0]?.data ?? "", "base64").toString(), dockerfile);
        // The image's layers by step: busybox's, then one more for RUN and for COPY.
        const manifest = JSON.parse((await l.blob(image.digest)).toString()) as { layers: Desc[] };
        const layers = bk.layers ?? {};
        assert.deepEqual(Object.keys(layers).sort(), ["step0:0", "step1:0", "step3:0"]);
        assert.deepEqual(
          layers["step3:0"]?.[0]?.map((d) => d.digest),
          manifest.layers.map((d) => d.digest),
        );
        assert.equal(layers["step1:0"]?.[0]?.length, manifest.layers.length - 1);
      }
      await checkTools(l, image);
    });
  }

  it("local and tar outputs: the statement sits beside the files, naming each file and its digest", async () => {
    const out = path.join(env.tmp, "local-out");
    const tarFile = path.join(env.tmp, "out.tar");
    const r = await env.run(["build", ctx, "--provenance=max", "-o", `type=local,dest=${out},attestation-prefix=att.`, "-o", `type=tar,dest=${tarFile}`]);
    assert.equal(r.code, 0, r.stderr);
    const text = await readFile(path.join(out, "att.provenance.json"), "utf8");
    assert.match(text, /^\{\n {2}"_type": "https:\/\/in-toto.io\/Statement\/v0.1",\n/, "indented as Go's MarshalIndent");
    const st = JSON.parse(text) as { predicateType: string; subject: { name: string; digest: { sha256: string } }[]; predicate: Predicate };
    assert.equal(st.predicateType, "https://slsa.dev/provenance/v0.2");
    const a = st.subject.find((x) => x.name === "a.txt");
    assert.deepEqual(a?.digest, { sha256: createHash("sha256").update("A\n").digest("hex") });
    assert.ok(st.subject.some((x) => x.name === "foo"));
    assert.ok(st.subject.some((x) => x.name === "bin/busybox"));
    assert.equal(st.predicate.metadata["https://mobyproject.org/buildkit@v1#metadata"].layers, undefined, "no image, no layers");
    const listing = (await sh("tar", ["-tf", tarFile])).stdout.split("\n");
    assert.ok(listing.includes("provenance.json"), listing.slice(-5).join(","));
    assert.ok(listing.includes("a.txt"));
  });

  it("a bad provenance mode fails before the build starts", async () => {
    const r = await env.run(["build", ctx, "--attest", "type=provenance,mode=most", "-o", `type=oci,dest=${path.join(env.tmp, "never.tar")}`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /invalid mode "most"/);
    assert.doesNotMatch(r.stderr, /RUN --mount/);
  });
});

describe("attestations: SBOM", () => {
  const scanSh = [
    "set -e",
    'cat > "$BUILDKIT_SCAN_DESTINATION/spdx.json" <<EOF',
    '{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","predicate":{"spdxVersion":"SPDX-2.3","name":"core","files":"$(ls $BUILDKIT_SCAN_SOURCE | tr "\\n" " ")"}}',
    "EOF",
    'if [ -n "$BUILDKIT_SCAN_SOURCE_EXTRAS" ]; then',
    '  for src in "$BUILDKIT_SCAN_SOURCE_EXTRAS"/*; do',
    '    n=$(basename "$src")',
    '    echo "{\\"_type\\":\\"https://in-toto.io/Statement/v0.1\\",\\"predicateType\\":\\"https://spdx.dev/Document\\",\\"predicate\\":{\\"name\\":\\"$n\\"}}" > "$BUILDKIT_SCAN_DESTINATION/$n.spdx.json"',
    "  done",
    "fi",
    "",
  ].join("\n");
  let scanner: string;

  before(async () => {
    scanner = `${env.registryHost}/kiln/sbom-scanner:latest`;
    const sc = await env.context({ Dockerfile: "FROM busybox\nCOPY scan.sh /scan.sh\nCMD [\"sh\", \"/scan.sh\"]\n", "scan.sh": scanSh });
    const r = await env.run(["build", sc, "-t", scanner, "--push"]);
    assert.equal(r.code, 0, r.stderr);
  });

  it("--sbom generator=IMAGE: the scanner's statement about the image's files is attached", async () => {
    const target = await env.context({ Dockerfile: "FROM scratch\nCOPY a.txt b.txt /\n", "a.txt": "a\n", "b.txt": "b\n" });
    const l = await buildLayout(target, [`--sbom=generator=${scanner}`]);
    const { image, statements, layers } = await attestationsOf(l);
    assert.equal(statements.length, 1);
    assert.equal(layers[0]!.annotations?.["in-toto.io/predicate-type"], "https://spdx.dev/Document");
    const st = statements[0] as { subject: { name: string; digest: { sha256: string } }[]; predicate: Record<string, string> };
    assert.deepEqual(st.predicate, { files: "a.txt b.txt ", name: "core", spdxVersion: "SPDX-2.3" });
    assert.deepEqual(Object.keys(st.predicate), ["files", "name", "spdxVersion"], "keys sorted, as Go re-marshals the predicate");
    assert.equal(st.subject[0]!.digest.sha256, image.digest.slice("sha256:".length));
    await checkTools(l, image);
  });

  it("an SPDX document named sbom.*: each file learns the layer that brought it, buildkit joins the creators", async () => {
    const spdx = JSON.stringify({
      spdxVersion: "SPDX-2.3",
      name: "spdx",
      creationInfo: { creators: ["Tool: test-scanner"] },
      files: [{ fileName: "/a.txt" }, { fileName: "./bin/busybox" }, { fileName: "/gone" }, { fileName: "/a.txt", comment: "kept" }],
    });
    const statement = JSON.stringify({ _type: "https://in-toto.io/Statement/v0.1", predicateType: "https://spdx.dev/Document", predicate: JSON.parse(spdx) as unknown });
    const sc = await env.context({ Dockerfile: 'FROM busybox\nCOPY stmt.json /\nCMD ["sh", "-c", "cp /stmt.json $BUILDKIT_SCAN_DESTINATION/sbom.spdx.json"]\n', "stmt.json": statement });
    const spdxScanner = `${env.registryHost}/kiln/spdx-scanner:latest`;
    const pushed = await env.run(["build", sc, "-t", spdxScanner, "--push"]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const target = await env.context({ Dockerfile: "FROM busybox\nCOPY a.txt /\n", "a.txt": "a\n" });
    const l = await buildLayout(target, [`--sbom=generator=${spdxScanner}`]);
    const { image, statements } = await attestationsOf(l);
    const manifest = JSON.parse((await l.blob(image.digest)).toString()) as { layers: Desc[] };
    const doc = statements[0]!.predicate as { files: { fileName: string; comment?: string }[]; creationInfo: { creators: string[] } };
    assert.deepEqual(
      doc.files.map((f) => f.comment),
      [`layerID: ${manifest.layers[1]!.digest}`, `layerID: ${manifest.layers[0]!.digest}`, undefined, "kept"],
    );
    assert.deepEqual(doc.creationInfo.creators, ["Tool: test-scanner", "Tool: buildkit-v0.11.6"]);
  });

  it("BUILDKIT_SBOM_SCAN_STAGE and _CONTEXT add scans of the stages and the context; provenance comes last", async () => {
    const target = await env.context({
      Dockerfile: "ARG BUILDKIT_SBOM_SCAN_CONTEXT=true\nFROM scratch AS base\nARG BUILDKIT_SBOM_SCAN_STAGE=true\nCOPY a.txt /\nFROM base\nCOPY b.txt /\n",
      "a.txt": "a\n",
      "b.txt": "b\n",
    });
    const l = await buildLayout(target, ["--attest", `type=sbom,generator=${scanner}`, "--provenance=max"]);
    const { statements } = await attestationsOf(l);
    const names = statements.map((s) => (s.predicate as { name?: string }).name ?? s.predicateType);
    assert.deepEqual(names, ["sbom-base", "sbom-context", "core", "https://slsa.dev/provenance/v0.2"]);
  });
});

describe("attestations through kilnd", () => {
  let kilnd: Kilnd;
  let addr: string;
  before(async () => {
    addr = `unix://${path.join(env.tmp, "kilnd.sock")}`;
    kilnd = await startKilnd(["--root", path.join(env.tmp, "kilnd-root"), "--config", env.config, "--addr", addr]);
  });
  after(async () => {
    await kilnd?.stop();
  });

  it("provenance (max) and an SBOM scan come back from the daemon in the index", async () => {
    const scanner = `${env.registryHost}/kiln/daemon-scanner:latest`;
    const script = 'n=$(ls "$BUILDKIT_SCAN_SOURCE" | wc -l)\nprintf \'{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","predicate":{"n":%s}}\' "$n" > "$BUILDKIT_SCAN_DESTINATION/spdx.json"\n';
    const sc = await env.context({ Dockerfile: 'FROM busybox\nCOPY scan.sh /\nCMD ["sh", "/scan.sh"]\n', "scan.sh": script });
    const pushed = await spawnKiln(["--addr", addr, "build", sc, "-t", scanner, "--push"]).done;
    assert.equal(pushed.code, 0, pushed.stderr);
    const l = await buildLayout(ctx, ["--provenance=max", `--sbom=generator=${scanner}`, "--build-arg", "FOO=bar"], addr);
    const { statements } = await attestationsOf(l);
    assert.deepEqual(
      statements.map((s) => s.predicateType),
      ["https://spdx.dev/Document", "https://slsa.dev/provenance/v0.2"],
    );
    assert.ok(((statements[0]!.predicate as { n: number }).n) > 5, "the scanner saw the image's files");
    const p = statements[1]!.predicate as Predicate;
    assert.equal(p.invocation.parameters.frontend, "dockerfile.v0");
    assert.deepEqual(p.invocation.parameters.args, { "build-arg:FOO": "bar" });
    assert.equal(p.buildConfig?.llbDefinition.length, 5);
  });

  // buildctl drives the Dockerfile frontend through the gateway: the stage and context scans the
  // frontend made must come back through LLBBridge Return, not be replaced by a scan of the result.
  const buildctl = process.env.BUILDCTL ?? "/opt/bk/bin/buildctl";
  it("buildctl through the gateway: the frontend's stage and context scans reach the image", { skip: existsSync(buildctl) ? false : `no ${buildctl}` }, async () => {
    const scanner = `${env.registryHost}/kiln/gateway-scanner:latest`;
    const script = [
      'echo \'{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","predicate":{"name":"core"}}\' > "$BUILDKIT_SCAN_DESTINATION/spdx.json"',
      'for src in ${BUILDKIT_SCAN_SOURCE_EXTRAS:+"$BUILDKIT_SCAN_SOURCE_EXTRAS"/*}; do',
      '  n=$(basename "$src")',
      '  echo "{\\"_type\\":\\"https://in-toto.io/Statement/v0.1\\",\\"predicateType\\":\\"https://spdx.dev/Document\\",\\"predicate\\":{\\"name\\":\\"$n\\"}}" > "$BUILDKIT_SCAN_DESTINATION/$n.spdx.json"',
      "done",
      "",
    ].join("\n");
    const sc = await env.context({ Dockerfile: 'FROM busybox\nCOPY scan.sh /\nCMD ["sh", "/scan.sh"]\n', "scan.sh": script });
    const pushed = await spawnKiln(["--addr", addr, "build", sc, "-t", scanner, "--push"]).done;
    assert.equal(pushed.code, 0, pushed.stderr);
    const target = await env.context({
      Dockerfile: "ARG BUILDKIT_SBOM_SCAN_CONTEXT=true\nFROM scratch AS base\nARG BUILDKIT_SBOM_SCAN_STAGE=true\nCOPY a.txt /\nFROM base\nCOPY b.txt /\n",
      "a.txt": "a\n",
      "b.txt": "b\n",
    });
    const dir = await mkdtemp(path.join(env.tmp, "buildctl-layout-"));
    const tar = `${dir}.tar`;
    await sh(buildctl, ["--addr", addr, "build", "--frontend", "dockerfile.v0", "--local", `context=${target}`, "--local", `dockerfile=${target}`, "--opt", `attest:sbom=generator=${scanner}`, "--output", `type=oci,dest=${tar}`], { timeout: 180_000 });
    await sh("tar", ["-xf", tar, "-C", dir]);
    const blob = (d: string) => readFile(path.join(dir, "blobs", d.replace(":", "/")));
    const top = (JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: Desc[] }).manifests[0]!;
    const { statements } = await attestationsOf({ dir, index: JSON.parse((await blob(top.digest)).toString()) as Layout["index"], blob });
    const names = statements.map((s) => (s.predicate as { name?: string }).name ?? s.predicateType);
    assert.deepEqual(names, ["sbom-base", "sbom-context", "core"]);
  });
});
