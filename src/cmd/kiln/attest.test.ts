// buildx's attestation flags as attest:* frontend attributes.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { attestAttrs } from "./attest.js";

describe("--attest, --provenance, --sbom", () => {
  it("maps each spelling to attest:* attributes", () => {
    assert.deepEqual(attestAttrs({ attest: ["type=provenance,mode=max", "type=sbom,generator=reg/scan"] }), { "attest:provenance": "mode=max", "attest:sbom": "generator=reg/scan" });
    assert.deepEqual(attestAttrs({ provenance: true, sbom: true }), { "attest:provenance": "mode=min", "attest:sbom": "" });
    assert.deepEqual(attestAttrs({ provenance: "max" }), { "attest:provenance": "mode=max" });
    assert.deepEqual(attestAttrs({ provenance: "mode=max,builder-id=x" }), { "attest:provenance": "mode=max,builder-id=x" });
    assert.deepEqual(attestAttrs({ provenance: "false", sbom: "0", attest: ["type=sbom,disabled=true"] }), {});
  });

  it("an --attest without a known type is one clear error", () => {
    assert.throws(() => attestAttrs({ attest: ["mode=max"] }), /type is required/);
    assert.throws(() => attestAttrs({ attest: ["type=sig"] }), /unknown attestation type "sig"/);
    assert.throws(() => attestAttrs({ sbom: "./app" }), /invalid --sbom "\.\/app"/);
  });
});
