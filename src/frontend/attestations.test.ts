// The attest:* attributes as BuildKit's attestations.Parse reads them.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { defaultSBOMGenerator, parseAttests, scannerReference } from "./attestations.js";

describe("attest attributes", () => {
  it("attest:TYPE and build-arg:BUILDKIT_ATTEST_TYPE, CSV parameters, the default scanner", () => {
    assert.deepEqual(parseAttests({ "attest:provenance": "mode=max,builder-id=https://ci", "build-arg:FOO": "x" }), { provenance: { mode: "max", "builder-id": "https://ci" } });
    assert.deepEqual(parseAttests({ "build-arg:BUILDKIT_ATTEST_SBOM": "" }), { sbom: { generator: defaultSBOMGenerator } });
    assert.deepEqual(parseAttests({ "attest:SBOM": '"generator=reg/scan:1",flag' }), { sbom: { generator: "reg/scan:1", flag: "" } });
    assert.deepEqual(parseAttests({}), {});
  });

  it("rejects an unknown type and a broken CSV", () => {
    assert.throws(() => parseAttests({ "attest:signature": "" }), /unknown attestation type "signature"/);
    assert.throws(() => parseAttests({ "attest:provenance": '"mode=max' }), /failed to parse provenance/);
  });

  it("scanner references are normalised and tagged", () => {
    assert.equal(scannerReference("docker/buildkit-syft-scanner"), "docker.io/docker/buildkit-syft-scanner:latest");
    assert.throws(() => scannerReference(""), /sbom scanner cannot be empty/);
    assert.throws(() => scannerReference("Bad Ref"), /failed to parse sbom scanner/);
  });
});
