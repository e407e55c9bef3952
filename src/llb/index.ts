// LLB: a pure, typed builder producing BuildKit-identical pb.Definition bytes, and its loader.
export { State, ExecState, FileAction, type MountOpt, type RunOptions } from "./state.js";
export { image, local, http, git, ociLayout, parseGitProtocol, type ImageOptions, type LocalOptions, type HttpOptions, type GitOptions, type OCILayoutOptions } from "./source.js";
export { merge, diff } from "./mergediff.js";
export { marshalDefinition, loadDefinition, type DefinitionBytes, type MarshalOptions, type SourceMapInput, type LoadedDefinition, type LoadedOp } from "./definition.js";
export type { CopyOptions, MkdirOptions, MkfileOptions, RmOptions, Timestamp } from "./fileop.js";
export type { SecretMountOpt, ProxyEnvOpt } from "./exec.js";
export { ownerFromString, newUniqueId, type Constraints, type LLBPlatform, type OwnerSpec, type UserSpec, type NetworkMode, type SecurityModeName, type Output, type Vertex } from "./core.js";
export { normalizeImageRef, parseNormalizedNamed, formatRef, tagNameOnly, withDigest, type NormalizedRef } from "./reference.js";
export { definitionState } from "./defop.js";
