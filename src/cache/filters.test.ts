import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFilters } from "./filters.js";

const rec = (fields: Record<string, string | boolean>) => (f: string): [string, boolean] => {
  const v = fields[f];
  if (v === undefined || v === false) return ["", false];
  return [v === true ? "" : v, true];
};

test("containerd filters: commas are AND, a list is OR", () => {
  const local = rec({ type: "source.local", mutable: false, immutable: true });
  const mount = rec({ type: "exec.cachemount", mutable: true });
  assert.ok(parseFilters([]).matches(local));
  assert.ok(parseFilters(["type==source.local"]).matches(local));
  assert.ok(!parseFilters(["type==source.local"]).matches(mount));
  assert.ok(!parseFilters(["type==source.local,type==exec.cachemount"]).matches(local), "AND never matches two types");
  assert.ok(parseFilters(["type==source.local", "type==exec.cachemount"]).matches(mount));
  assert.ok(parseFilters(["type!=source.local"]).matches(mount));
  assert.ok(parseFilters(["type~=^exec\\."]).matches(mount));
  assert.ok(parseFilters(["mutable"]).matches(mount));
  assert.ok(!parseFilters(["mutable"]).matches(local));
  assert.ok(parseFilters(['description=="a,b"']).matches(rec({ description: "a,b" })));
  assert.throws(() => parseFilters(["type=="]));
  assert.throws(() => parseFilters(["!!"]));
});
