import { test } from "node:test";
import assert from "node:assert/strict";
import { DefinitionSchema } from "../api/index.js";
import { create } from "@bufbuild/protobuf";
import { definitionState } from "./defop.js";
import { FileAction, State, image } from "./index.js";

void test("a State on a marshalled Definition replays its ops byte for byte and builds on them", async () => {
  const run = image("busybox").run({ args: ["sh", "-c", "echo hi > /out/foo"], mounts: [{ dest: "/out", source: State.scratch() }] });
  const original = (await run.getMount("/out").marshal({ platform: { os: "linux", architecture: "amd64" } })).toProto();
  const st = definitionState(original);
  const again = (await st.marshal({ platform: { os: "linux", architecture: "amd64" } })).toProto();
  assert.deepEqual(again.def, original.def, "same ops, same order, same terminal");
  assert.deepEqual(Object.keys(again.metadata).sort(), Object.keys(original.metadata).sort());
  // Used as the source of a copy, the replayed output is an input of the new op.
  const copied = (await State.scratch().file(FileAction.copy(st, "/foo", "/foo2")).marshal({ platform: { os: "linux", architecture: "amd64" } })).toProto();
  for (const op of original.def.slice(0, -1)) assert.ok(copied.def.some((b) => Buffer.compare(Buffer.from(b), Buffer.from(op)) === 0));
  assert.equal(copied.def.length, original.def.length + 1);
  // Empty is scratch; nil is refused as BuildKit refuses it.
  assert.equal((await definitionState(create(DefinitionSchema, {})).marshal()).def.length, 0);
  assert.throws(() => definitionState(undefined), /invalid nil input definition to definition op/);
});
