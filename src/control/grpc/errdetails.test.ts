import { test } from "node:test";
import assert from "node:assert/strict";
import { local } from "../../llb/index.js";
import { fromBinary } from "@bufbuild/protobuf";
import { rpcstatus } from "../../api/index.js";
import { StepError } from "../step-error.js";
import { sourceDetailJSON, sourceDetailType, vertexDetailType } from "./errdetails.js";
import { toServiceError } from "./service.js";

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

void test("a failed step goes over the wire as BuildKit sends it: its own message, the step as an errdefs.Vertex detail", () => {
  const digest = `sha256:${"ab".repeat(32)}`;
  const err = new StepError("KILN_EXEC", "[2/2] RUN exit 3", digest, 'process "/bin/sh -c exit 3" did not complete successfully: exit code: 3', {
    location: { file: "Dockerfile", startLine: 2, endLine: 2, lines: ["RUN exit 3"], allLines: ["FROM busybox", "RUN exit 3"] },
  });
  assert.equal(err.message, '[2/2] RUN exit 3: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3');
  const status = toServiceError(err);
  assert.equal(status.details, 'process "/bin/sh -c exit 3" did not complete successfully: exit code: 3');
  const st = fromBinary(rpcstatus.StatusSchema, status.metadata!.get("grpc-status-details-bin")[0] as Buffer);
  assert.deepEqual(
    st.details.map((d) => d.typeUrl),
    [vertexDetailType, sourceDetailType],
  );
  assert.deepEqual(JSON.parse(Buffer.from(st.details[0]!.value).toString()), { digest });
});
