// Package URLs and statement bytes as BuildKit's Go code writes them.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { goRemarshal, orderAttestations, pathEscape, refToPURL, statementBytes } from "./attestation.js";

describe("attestation encoding", () => {
  it("refToPURL: familiar names, tags, digests and platforms as purl.RefToPURL", () => {
    assert.equal(refToPURL("busybox", { os: "linux", architecture: "amd64" }), "pkg:docker/busybox@latest?platform=linux%2Famd64");
    assert.equal(refToPURL("docker.io/library/busybox:1.36"), "pkg:docker/busybox@1.36");
    assert.equal(refToPURL("127.0.0.1:5000/buildkit/app:v1", { os: "linux", architecture: "arm", variant: "v7" }), "pkg:docker/127.0.0.1%3A5000/buildkit/app@v1?platform=linux%2Farm%2Fv7");
    const dgst = `sha256:${"a".repeat(64)}`;
    assert.equal(refToPURL(`example.com/app@${dgst}`), `pkg:docker/example.com/app?digest=${dgst}`);
    assert.equal(refToPURL(`example.com/app:v2@${dgst}`, { os: "linux", architecture: "amd64" }), `pkg:docker/example.com/app@v2?digest=${dgst}&platform=linux%2Famd64`);
    assert.throws(() => refToPURL("app:not a tag"), /failed to parse ref/);
  });

  it("pathEscape keeps what Go's url.PathEscape keeps", () => {
    assert.equal(pathEscape("a/b c;d,e:f@g=h&i+j$k~l"), "a%2Fb%20c%3Bd%2Ce:f@g=h&i+j$k~l");
    assert.equal(pathEscape("é"), "%C3%A9");
  });

  it("a statement: Go's field order, HTML escaped, the raw predicate compacted in its own key order", async () => {
    const att = { predicateType: "t", path: "p.json", predicate: () => Promise.resolve(Buffer.from('{ "z": 1, "a": "<b>" }')) };
    const subjects = [{ name: "pkg:docker/app@v1", digest: { sha256: "00" } }];
    assert.equal(await statementBytes(att, subjects), '{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"t","subject":[{"name":"pkg:docker/app@v1","digest":{"sha256":"00"}}],"predicate":{"z":1,"a":"\\u003cb\\u003e"}}');
    assert.match(await statementBytes(att, []), /"subject":\[\],/);
    assert.match(await statementBytes({ ...att, subjects: [{ name: "own", digest: { sha512: "11" } }] }, subjects), /"subject":\[\{"name":"own"/);
    await assert.rejects(statementBytes({ ...att, predicate: () => Promise.resolve(Buffer.from("{")) }, []), /p.json is not valid JSON/);
  });

  it("goRemarshal sorts map keys at every level, as a decoded interface{} marshals", () => {
    assert.equal(goRemarshal('{"b":{"y":1,"x":[{"d":1,"c":2}]},"a":null}'), '{"a":null,"b":{"x":[{"c":2,"d":1}],"y":1}}');
  });

  it("the core SBOM comes first", () => {
    const order = orderAttestations([{ path: "sbom-context.spdx.json", sbomCore: "sbom" }, { path: "sbom.spdx.json", sbomCore: "sbom" }, { path: "provenance.json" }]);
    assert.deepEqual(
      order.map((a) => a.path),
      ["sbom.spdx.json", "sbom-context.spdx.json", "provenance.json"],
    );
  });
});
