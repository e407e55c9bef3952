import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { gateway, pb, rpcstatus } from "../../api/index.js";
import type { Frontend, FrontendBridge } from "../../frontend/index.js";
import type { ProgressEvent } from "../../solver/types.js";
import { GatewayRefs, definitionBytes, newRefId } from "./gateway-refs.js";
import { frontendCaps, llbCaps } from "./gateway-caps.js";
import { GatewayService, ReturnedError, buildIdMetadataKey, gatewayServiceError } from "./gateway.js";
import { sourceDetailJSON, sourceDetailType } from "./errdetails.js";
import { KilnError } from "../../util/index.js";

/** A definition of `n` distinct source ops plus the terminal reference, as bytes. */
function def(name: string): Uint8Array {
  const op = toBinary(pb.OpSchema, create(pb.OpSchema, { op: { case: "source", value: { identifier: `local://${name}` } } }));
  return toBinary(pb.DefinitionSchema, create(pb.DefinitionSchema, { def: [op] }));
}

const platform = { os: "linux", architecture: "amd64" };

void test("ref ids look like BuildKit's identity.NewID (25 base-36 characters) and are distinct", () => {
  const ids = new Set(Array.from({ length: 200 }, newRefId));
  assert.equal(ids.size, 200);
  for (const id of ids) assert.match(id, /^[0-9a-z]{25}$/);
});

void test("an empty definition is no ref: the empty id, never stored", () => {
  const refs = new GatewayRefs();
  assert.equal(refs.add(undefined), "");
  assert.equal(refs.has(""), false);
  assert.equal(definitionBytes(undefined), undefined);
  assert.equal(definitionBytes(create(pb.DefinitionSchema, {})), undefined);
});

void test("a ref is solved once on first use; concurrent users share the solve; a failure is retried later", async () => {
  const refs = new GatewayRefs();
  const id = refs.add(def("a"));
  let solves = 0;
  let fail = true;
  const solve = async () => {
    solves++;
    await new Promise((r) => setTimeout(r, 5));
    if (fail) throw new Error("boom");
    return "handle-1";
  };
  await assert.rejects(Promise.all([refs.evaluate(id, solve), refs.evaluate(id, solve)]), /boom/);
  assert.equal(solves, 1);
  fail = false;
  assert.deepEqual(await Promise.all([refs.evaluate(id, solve), refs.evaluate(id, solve)]), ["handle-1", "handle-1"]);
  assert.equal(solves, 2);
  await assert.rejects(refs.evaluate("nope", solve), /no such ref: nope/);
});

void test("a frontend result becomes refs carrying their definitions, and Return maps them back", () => {
  const refs = new GatewayRefs();
  const single = refs.toResult({ definition: def("one"), metadata: { "containerimage.config": Buffer.from("{}") } }, true);
  assert.equal(single.result.case, "ref");
  const ref = single.result.case === "ref" ? single.result.value : undefined;
  assert.ok(ref && refs.has(ref.id));
  assert.deepEqual(definitionBytes(ref.def), def("one"));
  assert.deepEqual(Buffer.from(single.metadata["containerimage.config"]!).toString(), "{}");
  const back = refs.toFrontendResult(single);
  assert.deepEqual(back.definition, def("one"));
  assert.ok(back.metadata["containerimage.config"]);

  // Older clients get bare ids.
  const legacy = refs.toResult({ definition: def("two"), metadata: {} }, false);
  assert.equal(legacy.result.case, "refDeprecated");
  assert.deepEqual(refs.toFrontendResult(legacy).definition, def("two"));

  const multi = refs.toResult({ refs: { "linux/amd64": def("x"), "linux/arm64": def("y") }, metadata: {} }, true);
  assert.equal(multi.result.case, "refs");
  const fr = refs.toFrontendResult(fromBinary(gateway.ResultSchema, toBinary(gateway.ResultSchema, multi)));
  assert.deepEqual(Object.keys(fr.refs ?? {}).sort(), ["linux/amd64", "linux/arm64"]);
  assert.deepEqual(fr.refs?.["linux/arm64"], def("y"));
});

void test("Return: the empty ref is scratch, an unknown id is an error, no result is an empty one", () => {
  const refs = new GatewayRefs();
  const scratch = refs.toFrontendResult(create(gateway.ResultSchema, { result: { case: "ref", value: { id: "" } } }));
  assert.equal(scratch.definition, undefined);
  assert.throws(() => refs.toFrontendResult(create(gateway.ResultSchema, { result: { case: "ref", value: { id: "zzz" } } })), /return reference zzz not found/);
  assert.throws(() => refs.toFrontendResult(create(gateway.ResultSchema, { result: { case: "refsDeprecated", value: { refs: { a: "missing" } } } })), /return reference missing not found/);
  assert.deepEqual(refs.toFrontendResult(undefined), { metadata: {} });
});

void test("caps are BuildKit v0.11.6's, sorted by id; interactive containers are marked disabled", () => {
  const fe = frontendCaps();
  const llb = llbCaps();
  assert.equal(fe.length, 22);
  assert.equal(llb.length, 61);
  for (const list of [fe, llb]) assert.deepEqual(list.map((c) => c.ID), [...list.map((c) => c.ID)].sort());
  const byId = new Map(fe.map((c) => [c.ID, c]));
  assert.equal(byId.get("return")?.Enabled, true);
  assert.equal(byId.get("proto.refarray")?.Enabled, true);
  assert.equal(byId.get("solve.inlinereturn")?.Deprecated, true);
  assert.equal(byId.get("gateway.exec")?.Enabled, false);
  assert.match(byId.get("gateway.exec")?.DisabledReasonMsg ?? "", /not supported by kilnd/);
  assert.ok(llb.some((c) => c.ID === "soruce.http.uidgid"), "BuildKit's misspelt cap id is the one clients know");
});

function md(id?: string): grpc.Metadata {
  const m = new grpc.Metadata();
  if (id) m.set(buildIdMetadataKey, id);
  return m;
}

void test("a call finds its build by the build-id metadata, waiting for a solve that registers late", async () => {
  const svc = new GatewayService({ frontends: {}, worker: () => ({ ID: "w" }) });
  try {
    await assert.rejects(svc.lookup(AbortSignal.timeout(1000), md()), /no buildid found in context/);
    await assert.rejects(svc.lookup(AbortSignal.timeout(1000), md("late"), 30), /no such job late/);
    const waiting = svc.lookup(AbortSignal.timeout(1000), md("b1"));
    await new Promise((r) => setTimeout(r, 10));
    const b = svc.start("b1", { progress: { write() {} } });
    assert.equal(await waiting, b);
    assert.throws(() => svc.start("b1", { progress: { write() {} } }), /build ID b1 exists/);
    svc.end(b);
    await assert.rejects(svc.lookup(AbortSignal.timeout(1000), md("b1"), 10), /no such job b1/);
  } finally {
    svc.close();
  }
});

void test("a build as a frontend: Solve runs the named frontend with the controller's bridge, Return completes it", async () => {
  const seen: string[] = [];
  const inner: Frontend = {
    solve: async (_s, bridge, opts) => {
      seen.push(`${opts.attrs.target}:${opts.sessionId}`);
      await bridge.solve(AbortSignal.timeout(1000), def("ctx"));
      return { definition: def("built"), metadata: { "containerimage.config": Buffer.from('{"a":1}') } };
    },
  };
  const warnings: ProgressEvent[] = [];
  const svc = new GatewayService({ frontends: { "dockerfile.v0": inner }, worker: () => ({ ID: "w" }) });
  try {
    const b = svc.start("b2", { progress: { write: (e) => warnings.push(e) } });
    const bridge: FrontendBridge = {
      solve: () => Promise.resolve("h"),
      readFile: () => Promise.resolve(undefined),
      resolveImageConfig: () => Promise.reject(new Error("no")),
    };
    const signal = AbortSignal.timeout(5000);
    // The controller starts the frontend after the client's first calls may have arrived.
    const res = b.llbSolve(signal, create(gateway.SolveRequestSchema, { Frontend: "dockerfile.v0", FrontendOpt: { target: "t" }, allowResultReturn: true, allowResultArrayRef: true }));
    const done = b.solve(signal, bridge, { attrs: {}, sessionId: "sess", buildPlatform: platform });
    const r = await res;
    assert.deepEqual(seen, ["t:sess"]);
    assert.equal(r.result?.result?.case, "ref");
    await assert.rejects(b.llbSolve(signal, create(gateway.SolveRequestSchema, { Frontend: "gateway.v0" })), /invalid frontend: gateway.v0/);
    b.warn(create(gateway.WarnRequestSchema, { digest: "sha256:00", level: 1n, short: Buffer.from("careful") }));
    assert.equal(warnings[0]?.warnings?.[0]?.short, "careful");
    const ret = create(gateway.ReturnRequestSchema, { result: create(gateway.ResultSchema, r.result as gateway.Result) });
    b.return(ret);
    assert.throws(() => b.return(ret), /gateway result is already set/);
    const fr = await done;
    assert.deepEqual(fr.definition, def("built"));
    assert.equal(fr.frontend, "dockerfile.v0", "build info names the frontend that made the returned ref");
    svc.end(b);
  } finally {
    svc.close();
  }
});

void test("Return{error} fails the build with the client's code, message and details", async () => {
  const svc = new GatewayService({ frontends: {}, worker: () => ({ ID: "w" }) });
  try {
    const b = svc.start("b3", { progress: { write() {} } });
    const bridge: FrontendBridge = { solve: () => Promise.resolve("h"), readFile: () => Promise.resolve(undefined), resolveImageConfig: () => Promise.reject(new Error("no")) };
    const done = b.solve(AbortSignal.timeout(5000), bridge, { attrs: {}, sessionId: "s", buildPlatform: platform });
    const status = create(rpcstatus.StatusSchema, { code: grpc.status.INVALID_ARGUMENT, message: "dockerfile parse error on line 1: unknown instruction: BOGUS", details: [{ typeUrl: "github.com/moby/buildkit/errdefs.Source+json", value: Buffer.from("{}") }] });
    b.return(create(gateway.ReturnRequestSchema, { error: status }));
    const err = await done.then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof ReturnedError);
    const se = gatewayServiceError(err);
    assert.equal(se.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(se.details, "dockerfile parse error on line 1: unknown instruction: BOGUS");
    const bin = se.metadata?.get("grpc-status-details-bin")[0] as Buffer;
    assert.equal(fromBinary(rpcstatus.StatusSchema, bin).details[0]?.typeUrl, "github.com/moby/buildkit/errdefs.Source+json");
    svc.end(b);
  } finally {
    svc.close();
  }
});

void test("an error with a Dockerfile location carries errdefs.Source as BuildKit encodes it", () => {
  const err = new KilnError("KILN_BUILD", "boom", { location: { file: "Dockerfile", startLine: 2, endLine: 2, lines: ["RUN x"], allLines: ["FROM a", "RUN x", ""] } });
  const se = gatewayServiceError(err);
  assert.equal(se.code, grpc.status.UNKNOWN);
  const st = fromBinary(rpcstatus.StatusSchema, se.metadata?.get("grpc-status-details-bin")[0] as Buffer);
  assert.equal(st.message, "boom");
  assert.equal(st.details[0]?.typeUrl, sourceDetailType);
  const json = JSON.parse(Buffer.from(st.details[0]!.value).toString()) as { info: { filename: string; data: string }; ranges: unknown[] };
  assert.equal(json.info.filename, "Dockerfile");
  assert.equal(Buffer.from(json.info.data, "base64").toString(), "FROM a\nRUN x\n");
  assert.deepEqual(json.ranges, [{ start: { line: 2 }, end: { line: 2 } }]);
  // Without the whole file, the lines stay at their own numbers.
  const partial = JSON.parse(sourceDetailJSON({ file: "D", startLine: 3, endLine: 3, lines: ["X"] })) as { info: { data: string } };
  assert.equal(Buffer.from(partial.info.data, "base64").toString(), "\n\nX");
  assert.equal(gatewayServiceError(new KilnError("KILN_BUILD", "plain")).metadata, undefined);
});
