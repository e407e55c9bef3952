import { test } from "node:test";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { gateway, grpcServiceDefinition, pb } from "../../api/index.js";
import { inputsOf, trackValuelessEntries, valuelessMapKeys } from "./nil-inputs.js";

/** A SolveRequest whose FrontendInputs hold `present` (empty definitions) and, without values, `nil`. */
function request(present: string[], nil: string[]): Buffer {
  const head = toBinary(gateway.SolveRequestSchema, create(gateway.SolveRequestSchema, { Frontend: "dockerfile.v0", FrontendInputs: Object.fromEntries(present.map((k) => [k, create(pb.DefinitionSchema, {})])) }));
  // gogo's encoding of a nil map value: the entry holds only its key.
  const entries = nil.map((k) => Buffer.concat([Buffer.from([0x6a, k.length + 2, 0x0a, k.length]), Buffer.from(k)]));
  return Buffer.concat([head, ...entries]);
}

void test("map entries without a value are found by key; entries with one (even an empty message) are not", () => {
  const field = gateway.SolveRequestSchema.field.FrontendInputs.number;
  assert.deepEqual(valuelessMapKeys(request(["context"], ["dockerfile"]), field), ["dockerfile"]);
  assert.deepEqual(valuelessMapKeys(request(["context", "dockerfile"], []), field), []);
  assert.deepEqual(valuelessMapKeys(request([], ["a", "b"]), field), ["a", "b"]);
});

void test("a tracked method's requests give their value-less inputs back as undefined", () => {
  const def = grpcServiceDefinition(gateway.LLBBridge);
  trackValuelessEntries(def, "solve", gateway.SolveRequestSchema.field.FrontendInputs.number);
  const req = def.solve!.requestDeserialize(request(["context"], ["dockerfile"])) as gateway.SolveRequest;
  const inputs = inputsOf(req, req.FrontendInputs);
  assert.deepEqual(Object.keys(inputs).sort(), ["context", "dockerfile"]);
  assert.equal(inputs.dockerfile, undefined);
  assert.ok(inputs.context);
  // An untracked request is returned as it is.
  const plain = create(gateway.SolveRequestSchema, { FrontendInputs: { context: create(pb.DefinitionSchema, {}) } });
  assert.equal(inputsOf(plain, plain.FrontendInputs), plain.FrontendInputs);
});
