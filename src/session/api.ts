// The protobuf modules the session and the CLI's daemon client use, imported one by one:
// api/index.js initialises every descriptor it re-exports, which costs a daemon client ~60 ms
// at each start (the gateway's alone ~20 ms) for messages it never sends.
export * as control from "../api/gen/github.com/moby/buildkit/api/services/control/control_pb.js";
export * as pb from "../api/gen/github.com/moby/buildkit/solver/pb/ops_pb.js";
export * as workertypes from "../api/gen/github.com/moby/buildkit/api/types/worker_pb.js";
export * as fsutil from "../api/gen/github.com/tonistiigi/fsutil/types/wire_pb.js";
export * as filesync from "../api/gen/github.com/moby/buildkit/session/filesync/filesync_pb.js";
export * as auth from "../api/gen/github.com/moby/buildkit/session/auth/auth_pb.js";
export * as secrets from "../api/gen/github.com/moby/buildkit/session/secrets/secrets_pb.js";
export * as sshforward from "../api/gen/github.com/moby/buildkit/session/sshforward/ssh_pb.js";
export * as upload from "../api/gen/github.com/moby/buildkit/session/upload/upload_pb.js";
export * as health from "../api/gen/grpc/health/v1/health_pb.js";
export * as rpcstatus from "../api/gen/google/rpc/status_pb.js";
export * from "../api/grpc.js";
