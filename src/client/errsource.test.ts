import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { rpcstatus } from "../api/index.js";
import { errorSourceLocation } from "./client.js";

void test("errorSourceLocation spans every range BuildKit sent (one per line of a continued instruction)", () => {
  const lines = ["from scratch", "run wh\\", "at", "env bar=baz"];
  const source = {
    info: { filename: "Dockerfile", data: Buffer.from(lines.join("\n")).toString("base64") },
    ranges: [
      { start: { line: 2 }, end: { line: 2 } },
      { start: { line: 3 }, end: { line: 3 } },
    ],
  };
  const st = create(rpcstatus.StatusSchema, { code: 2, message: "boom", details: [{ typeUrl: "github.com/moby/buildkit/errdefs.Source+json", value: Buffer.from(JSON.stringify(source)) }] });
  const metadata = new grpc.Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(toBinary(rpcstatus.StatusSchema, st)));
  const loc = errorSourceLocation({ metadata });
  assert.deepEqual(loc && { file: loc.file, start: loc.startLine, end: loc.endLine, lines: loc.lines }, { file: "Dockerfile", start: 2, end: 3, lines: ["run wh\\", "at"] });
});
