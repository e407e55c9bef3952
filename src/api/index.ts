// The data-only API surface: generated protobuf types (flat and as `pb`) plus OCI image types.
export * from "./oci.js";
export * from "./gen/github.com/moby/buildkit/solver/pb/ops_pb.js";
export * as pb from "./gen/github.com/moby/buildkit/solver/pb/ops_pb.js";
