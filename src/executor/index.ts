// The executor subsystem: runs one process in a container over a prepared rootfs (runc + OCI spec).
export { ExitError, type ContainerMount, type Executor, type NetworkMode, type ProcessSpec, type RunOptions } from "./types.js";
export { RuncExecutor, RuncError, runcAvailable, type RuncExecutorOptions } from "./runc.js";
export type { DNSConfig } from "./resolvconf.js";
export type { OciRlimit } from "./spec.js";
export { getUser, type ResolvedUser } from "./user.js";
