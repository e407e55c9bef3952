export * from "./types.js";
export * from "./localdirs.js";
export * from "./patterns.js";
export * from "./secrets.js";
export * from "./ssh.js";
export * from "./followlinks.js";
export * from "./wire.js";
export { GrpcSessionManager, GrpcRemoteSession } from "./remote.js";
export { openClientSession, type ClientSession, type ClientSessionOptions } from "./client.js";
