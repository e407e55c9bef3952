import { test } from "node:test";
import assert from "node:assert/strict";
import { parseUlimits } from "./dockerfile-frontend.js";

void test("ulimit attr: Docker's NAME=SOFT[:HARD] list, refused as BuildKit refuses it", () => {
  assert.deepEqual(parseUlimits(""), []);
  assert.deepEqual(parseUlimits("nofile=1062:1062,nproc=512"), [
    { name: "nofile", soft: 1062, hard: 1062 },
    { name: "nproc", soft: 512, hard: 512 },
  ]);
  assert.deepEqual(parseUlimits("core=-1:-1"), [{ name: "core", soft: -1, hard: -1 }]);
  assert.throws(() => parseUlimits("nofile"), /invalid ulimit argument: nofile/);
  assert.throws(() => parseUlimits("as=1"), /invalid ulimit type: as/);
  assert.throws(() => parseUlimits("nofile=2:1"), /soft limit must be less than or equal to hard limit: 2 > 1/);
  assert.throws(() => parseUlimits("nofile=1:2:3"), /too many limit value arguments/);
  assert.throws(() => parseUlimits("nofile=x"), /invalid syntax/);
});
