// Exporter attribute checks: everything a user can get wrong is one clear error before the build.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { checkAttrs, parseAnnotationKey, parseImageExport, parseTarballExport, annotationsFor } from "./attrs.js";
import { resolveExporter } from "./exporters.js";
import { buildSourceOf, filterBuildInfoAttrs, makeBuildInfo } from "./buildinfo.js";
import { normalizeHistory, goTime, buildInfoJSON } from "./image.js";
import type { CacheManager } from "../cache/index.js";
import type { ContentStore } from "../content/types.js";

const deps = { mgr: {} as CacheManager, content: {} as ContentStore };

describe("exporter attributes", () => {
  it("rejects an unknown exporter type", () => {
    assert.throws(() => resolveExporter("foo", {}, deps), /exporter "foo" could not be found/);
  });

  it("rejects an unknown attribute, naming it and the exporter", () => {
    assert.throws(() => checkAttrs("oci", { colour: "red" }), /unknown attribute "colour" for exporter oci/);
    assert.throws(() => checkAttrs("local", { compression: "zstd" }), /unknown attribute "compression" for exporter local/);
    assert.throws(() => checkAttrs("cacheonly", { dest: "x" }), /unknown attribute "dest" for exporter cacheonly/);
  });

  it("rejects a bad compression and a bad compression level", () => {
    assert.throws(() => parseTarballExport("oci", { compression: "brotli" }), /unsupported compression type brotli/);
    assert.throws(() => parseTarballExport("oci", { "compression-level": "10" }), /invalid compression-level 10 for gzip/);
    assert.throws(() => parseTarballExport("oci", { compression: "zstd", "compression-level": "23" }), /invalid compression-level 23 for zstd/);
    assert.throws(() => parseTarballExport("oci", { "compression-level": "fast" }), /non-int value fast specified for compression-level/);
    assert.equal(parseTarballExport("oci", { compression: "zstd", "compression-level": "19" }).compression.level, 19);
    assert.equal(parseTarballExport("oci", { compression: "estargz", "compression-level": "9" }).compression.level, 9);
  });

  it("rejects push without a name, and non-bool values", () => {
    assert.throws(() => parseImageExport("image", { push: "true" }), /push=true but no name/);
    assert.throws(() => parseImageExport("registry", {}), /push=true but no name/);
    assert.doesNotThrow(() => parseImageExport("image", { push: "true", "dangling-name-prefix": "127.0.0.1:5000/dangling" }));
    assert.throws(() => parseImageExport("image", { name: "x", push: "yes" }), /non-bool value specified for push/);
    assert.throws(() => parseImageExport("image", { name: "Bad/Name" }), /invalid reference format/);
  });

  it("takes BuildKit's defaults: docker media types for image, OCI for oci, zstd and estargz force OCI", () => {
    assert.equal(parseImageExport("image", { name: "a" }).ociMediaTypes, false);
    assert.equal(parseImageExport("registry", { name: "a" }).push, true);
    assert.equal(parseImageExport("image", { name: "a", push: "" }).push, true, "a bare key means true");
    assert.equal(parseTarballExport("oci", {}).ociMediaTypes, true);
    assert.equal(parseTarballExport("docker", {}).ociMediaTypes, false);
    assert.equal(parseTarballExport("docker", { compression: "zstd" }).ociMediaTypes, true);
    assert.equal(parseTarballExport("docker", { compression: "estargz" }).ociMediaTypes, true);
    assert.equal(parseTarballExport("oci", { "force-compression": "" }).compression.force, true);
    assert.equal(parseTarballExport("oci", {}).buildInfo, true);
    assert.equal(parseTarballExport("oci", { buildinfo: "false" }).buildInfo, false);
  });

  it("parses annotation keys with types and platforms", () => {
    assert.deepEqual(parseAnnotationKey("annotation.org.opencontainers.image.title"), { type: "manifest", platform: "", key: "org.opencontainers.image.title" });
    assert.deepEqual(parseAnnotationKey("annotation-index.foo"), { type: "index", platform: "", key: "foo" });
    assert.deepEqual(parseAnnotationKey("annotation-manifest-descriptor[linux/amd64].foo"), { type: "manifest-descriptor", platform: "linux/amd64", key: "foo" });
    assert.equal(parseAnnotationKey("name"), undefined);
    assert.throws(() => parseAnnotationKey("annotation-bogus.x"), /unrecognized annotation type bogus/);
    const o = parseTarballExport("oci", { "annotation.a": "1", "annotation[linux/arm64].b": "2", "annotation-manifest-descriptor.c": "3" });
    assert.deepEqual(annotationsFor(o.annotations, "linux/amd64").manifest, { a: "1" });
    assert.deepEqual(annotationsFor(o.annotations, "linux/arm64").manifest, { a: "1", b: "2" });
    assert.deepEqual(annotationsFor(o.annotations, "linux/amd64").manifestDescriptor, { c: "3" });
  });

  it("reads SOURCE_DATE_EPOCH as an integer", () => {
    assert.equal(parseTarballExport("oci", { "source-date-epoch": "1700000000" }).epoch, 1700000000);
    assert.throws(() => parseTarballExport("oci", { "source-date-epoch": "yesterday" }), /invalid source-date-epoch/);
  });
});

describe("exporter: history, build info, metadata", () => {
  it("normalises history as BuildKit does", () => {
    const h = normalizeHistory(
      [
        { created: 1000, created_by: "base", comment: "" },
        { created_by: "ENV A=1", empty_layer: true },
        { created_by: "RUN x", comment: "buildkit.dockerfile.v0" },
      ],
      [
        { description: "base", createdAt: 10 },
        { description: "run", createdAt: 5000 },
      ],
    );
    assert.deepEqual(
      h.map((e) => e.created),
      [1000, 5000, 5000],
    );
    const extra = normalizeHistory([], [{ description: "pulled", createdAt: 7 }]);
    assert.deepEqual(extra, [{ created: 7, created_by: "pulled", comment: "buildkit.exporter.image.v0" }]);
    const fewer = normalizeHistory([{ created_by: "a" }, { created_by: "b" }], [{ description: "x", createdAt: 1 }]);
    assert.equal(fewer[1]!.empty_layer, true);
  });

  it("formats times as Go does", () => {
    assert.equal(goTime(1_700_000_000_000), "2023-11-14T22:13:20Z");
    assert.equal(goTime(1_700_000_000_120), "2023-11-14T22:13:20.12Z");
  });

  it("builds the build info from pinned sources and filtered attributes", () => {
    const bi = makeBuildInfo("dockerfile.v0", { filename: "Dockerfile", "build-arg:FOO": "1", "build-arg:BUILDKIT_INLINE_CACHE": "1", "no-cache": "" }, [
      { identifier: "docker-image://docker.io/library/busybox:latest@sha256:" + "a".repeat(64) },
      { identifier: "local://context" },
      { identifier: "docker-image://docker.io/library/alpine:3" },
    ]);
    assert.deepEqual(bi.sources, [{ type: "docker-image", ref: "docker.io/library/busybox:latest", pin: "sha256:" + "a".repeat(64) }]);
    assert.equal(buildSourceOf("docker-image://docker.io/library/busybox@sha256:" + "b".repeat(64))?.ref, "docker.io/library/busybox@sha256:" + "b".repeat(64));
    assert.deepEqual(filterBuildInfoAttrs({ "build-arg:BUILDKIT_SYNTAX": "x", "label:a": "b", platform: "linux/amd64" }), { "label:a": "b" });
    assert.equal(buildInfoJSON(bi, false), `{"frontend":"dockerfile.v0","sources":[{"type":"docker-image","ref":"docker.io/library/busybox:latest","pin":"sha256:${"a".repeat(64)}"}]}`);
    assert.match(buildInfoJSON(bi, true), /"attrs":\{"build-arg:FOO":"1","filename":"Dockerfile"\}/);
  });

});
