// The gateway's ReadDir filter and a result's attestations across LLBBridge.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { gateway, pb } from "../../api/index.js";
import type { FrontendBridge } from "../../frontend/index.js";
import { GatewayRefs } from "./gateway-refs.js";
import { GatewayService } from "./gateway.js";

function def(name: string): Uint8Array {
  const op = toBinary(pb.OpSchema, create(pb.OpSchema, { op: { case: "source", value: { identifier: `local://${name}` } } }));
  return toBinary(pb.DefinitionSchema, create(pb.DefinitionSchema, { def: [op] }));
}

void test("ReadDir's IncludePattern is Docker's: `*.txt` is top-level only, a directory is listed when something inside it matches", async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-readdir-"));
  try {
    for (const f of ["a.txt", "b.md", "sub/x.txt", "other/y.md", "deep/d/z.txt", "dir.txt/q"]) {
      await mkdir(path.dirname(path.join(root, f)), { recursive: true });
      await writeFile(path.join(root, f), f);
    }
    const svc = new GatewayService({ frontends: {}, worker: () => ({ ID: "w" }) });
    try {
      const b = svc.start("readdir", { progress: { write: () => undefined } });
      const bridge: FrontendBridge = {
        solve: () => Promise.resolve("h"),
        readFile: () => Promise.resolve(undefined),
        resolveImageConfig: () => Promise.reject(new Error("no")),
        openRef: () => Promise.resolve({ path: root, [Symbol.asyncDispose]: () => Promise.resolve() }),
      };
      const signal = AbortSignal.timeout(5000);
      const solved = b.llbSolve(signal, create(gateway.SolveRequestSchema, { Definition: fromBinary(pb.DefinitionSchema, def("x")), allowResultReturn: true, allowResultArrayRef: true }));
      void b.solve(signal, bridge, { attrs: {}, sessionId: "s", buildPlatform: { os: "linux", architecture: "amd64" } }).catch(() => undefined);
      const r = await solved;
      const id = r.result?.result?.case === "ref" ? r.result.result.value.id : "";
      const list = async (pattern: string) => (await b.readDir(signal, create(gateway.ReadDirRequestSchema, { Ref: id, DirPath: "/", IncludePattern: pattern }))).map((e) => e.path);
      assert.deepEqual(await list(""), ["a.txt", "b.md", "deep", "dir.txt", "other", "sub"]);
      // gitignore would list sub and deep for `*.txt`; Docker's pattern stays at the top.
      assert.deepEqual(await list("*.txt"), ["a.txt", "dir.txt"]);
      assert.deepEqual(await list("**/*.txt"), ["a.txt", "deep", "dir.txt", "sub"]);
      assert.deepEqual(await list("*/x.txt"), ["sub"]);
      assert.deepEqual(await list("deep/d"), ["deep"]);
      svc.end(b);
    } finally {
      svc.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

void test("a result's attestations cross LLBBridge as refs and come back from Return as the frontend made them", () => {
  const refs = new GatewayRefs();
  const core = { kind: "bundle" as const, definition: def("scan-core"), path: "", predicateType: "https://spdx.dev/Document", sbomCore: "sbom" };
  const predicate = { kind: "in-toto" as const, definition: def("pred"), path: "/p.json", predicateType: "https://example.com/p" };
  const msg = refs.toResult({ definition: def("img"), metadata: {}, attestations: { "linux/amd64": [core, predicate] } }, true);
  const wire = fromBinary(gateway.ResultSchema, toBinary(gateway.ResultSchema, msg));
  const sent = wire.attestations["linux/amd64"]!.attestation;
  assert.deepEqual(
    sent.map((a) => [a.kind, a.path, a.inTotoPredicateType, Object.fromEntries(Object.entries(a.metadata).map(([k, v]) => [k, Buffer.from(v).toString()]))]),
    [
      [gateway.AttestationKind.Bundle, "", "https://spdx.dev/Document", { reason: "sbom", "sbom-core": "sbom" }],
      [gateway.AttestationKind.InToto, "/p.json", "https://example.com/p", {}],
    ],
  );
  assert.ok(sent.every((a) => a.ref && refs.has(a.ref.id) && (a.ref.def?.def.length ?? 0) > 0), "each attestation's result is a ref with its definition");
  const back = refs.toFrontendResult(wire);
  assert.deepEqual(back.attestations, { "linux/amd64": [core, predicate] });
  assert.equal(refs.toFrontendResult(create(gateway.ResultSchema, {})).attestations, undefined);
  const unknown = create(gateway.ResultSchema, { attestations: { "linux/amd64": { attestation: [{ kind: gateway.AttestationKind.Bundle, ref: { id: "nope" } }] } } });
  assert.throws(() => refs.toFrontendResult(unknown), /return reference nope not found/);
  const noRef = create(gateway.ResultSchema, { attestations: { "linux/amd64": { attestation: [{ kind: gateway.AttestationKind.Bundle, path: "x" }] } } });
  assert.throws(() => refs.toFrontendResult(noRef), /attestation "x" for linux\/amd64 has no result/);
});
