// Typed error details BuildKit's clients read from `grpc-status-details-bin`: a google.rpc.Status
// whose Any entries hold JSON (grpcerrors.withDetails). errdefs.Source makes buildctl print the
// Dockerfile lines around the failing instruction, as it does for buildkitd.
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DefinitionSchema, rpcstatus, type Definition } from "../../api/index.js";
import { KilnError, type SourceLocation } from "../../util/index.js";
import { StepError } from "../step-error.js";

export const sourceDetailType = "github.com/moby/buildkit/errdefs.Source+json";
export const vertexDetailType = "github.com/moby/buildkit/errdefs.Vertex+json";

/** errdefs.Source as Go's encoding/json writes it (gogo's omitempty tags: no zero fields). */
export function sourceDetailJSON(loc: SourceLocation): string {
  // Without the whole file the lines sit at their own numbers; the lines around them stay blank.
  const all = loc.allLines ?? [...Array<string>(Math.max(loc.startLine - 1, 0)).fill(""), ...loc.lines];
  const data = Buffer.from(all.join("\n")).toString("base64");
  const info: Record<string, unknown> = { filename: loc.file };
  if (data) info.data = data;
  if (loc.definition) info.definition = definitionJSON(fromBinary(DefinitionSchema, loc.definition));
  // One range per line, as BuildKit's parser locates an instruction continued over several lines.
  const ranges = [];
  for (let l = loc.startLine; l <= Math.max(loc.endLine, loc.startLine); l++) ranges.push({ start: { line: l }, end: { line: l } });
  return JSON.stringify({ info, ranges });
}

/** pb.Definition under Go's encoding/json: bytes as base64, `metadata` and each `caps` always present. */
function definitionJSON(def: Definition): Record<string, unknown> {
  const metadata: Record<string, unknown> = {};
  for (const [dgst, m] of Object.entries(def.metadata)) {
    const md: Record<string, unknown> = {};
    if (m.ignoreCache) md.ignore_cache = true;
    if (Object.keys(m.description).length > 0) md.description = m.description;
    md.caps = m.caps;
    metadata[dgst] = md;
  }
  const out: Record<string, unknown> = {};
  if (def.def.length > 0) out.def = def.def.map((b) => Buffer.from(b).toString("base64"));
  out.metadata = metadata;
  return out;
}

/** `status` with the error's typed details attached, when it has any. */
export function withErrorDetails(status: Partial<grpc.StatusObject>, err: unknown): Partial<grpc.StatusObject> {
  if (status.code === undefined || status.code === grpc.status.OK) return status;
  const details: { typeUrl: string; value: Uint8Array }[] = [];
  // The failed step, as BuildKit's errdefs.VertexError names it.
  if (err instanceof StepError && err.vertex) details.push({ typeUrl: vertexDetailType, value: Buffer.from(JSON.stringify({ digest: err.vertex })) });
  const loc = err instanceof KilnError ? err.location : undefined;
  if (loc && loc.startLine >= 1) details.push({ typeUrl: sourceDetailType, value: Buffer.from(sourceDetailJSON(loc)) });
  if (details.length === 0) return status;
  const st = create(rpcstatus.StatusSchema, { code: status.code, message: status.details ?? "", details });
  const metadata = status.metadata ?? new grpc.Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(toBinary(rpcstatus.StatusSchema, st)));
  return { ...status, metadata };
}
