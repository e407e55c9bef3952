// buildctl's --output and --metadata-file formats, and the -t/--push porcelain.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { metadataJSON, parseOutputSpec } from "./outputs.js";
import { exportersFromFlags } from "./kiln/build.js";

describe("cmd: outputs", () => {
  it("writes buildctl's metadata file: base64 JSON values decoded", () => {
    const desc = { mediaType: "m", digest: "sha256:x", size: 1 };
    const out = JSON.parse(metadataJSON({ "containerimage.digest": "sha256:x", "containerimage.descriptor": Buffer.from(JSON.stringify(desc)).toString("base64"), "image.name": "a,b" })) as Record<string, unknown>;
    assert.deepEqual(out["containerimage.descriptor"], desc);
    assert.equal(out["containerimage.digest"], "sha256:x");
    assert.equal(out["image.name"], "a,b");
  });

  it("maps -t/--push and --output to exporters", () => {
    assert.deepEqual(exportersFromFlags({ output: [], tag: ["a", "b"], push: false }), [{ type: "image", attrs: { name: "a,b" } }]);
    assert.deepEqual(exportersFromFlags({ output: [], tag: ["a"], push: true }), [{ type: "image", attrs: { name: "a", push: "true" } }]);
    assert.deepEqual(exportersFromFlags({ output: ["type=oci,dest=x.tar"], tag: ["a"] }), [{ type: "oci", attrs: { dest: "x.tar", name: "a" } }]);
    assert.deepEqual(exportersFromFlags({ output: ["type=oci,dest=x.tar"], tag: ["a"], push: true }), [
      { type: "oci", attrs: { dest: "x.tar" } },
      { type: "image", attrs: { name: "a", push: "true" } },
    ]);
    assert.deepEqual(parseOutputSpec("type=image,name=x,push,annotation.Org.Key=v"), { type: "image", attrs: { name: "x", push: "", "annotation.Org.Key": "v" } });
  });
});
