// The registry client: references, resolver (pull, push, auth, mirrors), credentials, image pull.
export * from "./types.js";
export * from "./reference.js";
export { RegistryResolver, manifestAccept, type RegistryResolverOptions, type PushBlobOptions } from "./resolver.js";
export { RegistryError, type RegistryAttempt } from "./errors.js";
export { registryEndpoints, isLocalhost, type RegistryEndpoint } from "./hosts.js";
export { parseChallenges, type Challenge } from "./auth.js";
export { DockerConfigCredentials, dockerHubAuthKey, type DockerConfigCredentialsOptions } from "./credentials.js";
export { pullImage, choosePlatform, type PullOptions, type PulledImage } from "./pull.js";
export { pushImage, withRetry, isRetryable, type PushImageOptions, type PushProgress, type RetryOptions } from "./push.js";
