// Typed error details BuildKit's clients read from `grpc-status-details-bin`: a google.rpc.Status
// whose Any entries hold JSON (grpcerrors.withDetails). errdefs.Source makes buildctl print the
// Dockerfile lines around the failing instruction, as it does for buildkitd.
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { rpcstatus } from "../../api/index.js";
import { KilnError, type SourceLocation } from "../../util/index.js";

export const sourceDetailType = "github.com/moby/buildkit/errdefs.Source+json";

/** errdefs.Source as Go's encoding/json writes it (gogo's omitempty tags: no zero fields). */
export function sourceDetailJSON(loc: SourceLocation): string {
  // Without the whole file the lines sit at their own numbers; the lines around them stay blank.
  const all = loc.allLines ?? [...Array<string>(Math.max(loc.startLine - 1, 0)).fill(""), ...loc.lines];
  const data = Buffer.from(all.join("\n")).toString("base64");
  const info: Record<string, unknown> = { filename: loc.file };
  if (data) info.data = data;
  return JSON.stringify({ info, ranges: [{ start: { line: loc.startLine }, end: { line: loc.endLine } }] });
}

/** `status` with the error's typed details attached, when it has any. */
export function withErrorDetails(status: Partial<grpc.StatusObject>, err: unknown): Partial<grpc.StatusObject> {
  const loc = err instanceof KilnError ? err.location : undefined;
  if (!loc || loc.startLine < 1 || status.code === undefined || status.code === grpc.status.OK) return status;
  const st = create(rpcstatus.StatusSchema, {
    code: status.code,
    message: status.details ?? "",
    details: [{ typeUrl: sourceDetailType, value: Buffer.from(sourceDetailJSON(loc)) }],
  });
  const metadata = status.metadata ?? new grpc.Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(toBinary(rpcstatus.StatusSchema, st)));
  return { ...status, metadata };
}
