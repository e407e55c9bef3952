// The data-only API surface: generated protobuf types (flat and as `pb`) plus OCI image types.
export * from "./oci.js";
export * from "./gen/github.com/moby/buildkit/solver/pb/ops_pb.js";
export * as pb from "./gen/github.com/moby/buildkit/solver/pb/ops_pb.js";
export * as control from "./gen/github.com/moby/buildkit/api/services/control/control_pb.js";
export * as workertypes from "./gen/github.com/moby/buildkit/api/types/worker_pb.js";
export * as gateway from "./gen/github.com/moby/buildkit/frontend/gateway/pb/gateway_pb.js";
export * as apicaps from "./gen/github.com/moby/buildkit/util/apicaps/pb/caps_pb.js";
export * as fsutil from "./gen/github.com/tonistiigi/fsutil/types/wire_pb.js";
export * as fsutilstat from "./gen/github.com/tonistiigi/fsutil/types/stat_pb.js";
export * as filesync from "./gen/github.com/moby/buildkit/session/filesync/filesync_pb.js";
export * as auth from "./gen/github.com/moby/buildkit/session/auth/auth_pb.js";
export * as secrets from "./gen/github.com/moby/buildkit/session/secrets/secrets_pb.js";
export * as sshforward from "./gen/github.com/moby/buildkit/session/sshforward/ssh_pb.js";
export * as upload from "./gen/github.com/moby/buildkit/session/upload/upload_pb.js";
export * as health from "./gen/grpc/health/v1/health_pb.js";
export * as rpcstatus from "./gen/google/rpc/status_pb.js";
export * as sourcepolicy from "./gen/github.com/moby/buildkit/sourcepolicy/pb/policy_pb.js";
export * from "./grpc.js";
