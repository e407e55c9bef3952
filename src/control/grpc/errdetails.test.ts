import { test } from "node:test";
import assert from "node:assert/strict";
import { local } from "../../llb/index.js";
import { sourceDetailJSON } from "./errdetails.js";

void test("errdefs.Source: a range per line of the instruction, the whole file, the LLB the file was read with", async () => {
  const lines = ["from scratch", "run wh\\", "at", "env bar=baz"];
  const def = (await local("dockerfile", { followPaths: ["Dockerfile"], sessionId: "s" }).marshal()).toBinary();
  const json = JSON.parse(sourceDetailJSON({ file: "Dockerfile", startLine: 2, endLine: 3, lines: lines.slice(1, 3), allLines: lines, definition: def })) as {
    info: { filename: string; data: string; definition: { def: string[]; metadata: Record<string, { caps: Record<string, boolean> }> } };
    ranges: { start: { line: number }; end: { line: number } }[];
  };
  assert.equal(json.info.filename, "Dockerfile");
  assert.equal(Buffer.from(json.info.data, "base64").toString(), lines.join("\n"));
  assert.deepEqual(json.ranges, [
    { start: { line: 2 }, end: { line: 2 } },
    { start: { line: 3 }, end: { line: 3 } },
  ]);
  assert.equal(json.info.definition.def.length, 2, "the local source and its terminal op");
  assert.ok(Object.values(json.info.definition.metadata).some((m) => m.caps["source.local.followpaths"]));
  // Without a definition the field is left out, as Go's omitempty does.
  assert.equal("definition" in (JSON.parse(sourceDetailJSON({ file: "Dockerfile", startLine: 1, endLine: 1, lines: ["x"] })) as { info: object }).info, false);
});
