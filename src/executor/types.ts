// The executor's boundary: run one process in a container over a prepared rootfs.
import type { Writable } from "node:stream";
import type { MountSpec } from "../snapshot/types.js";

export interface ProcessSpec {
  args: string[];
  env: string[];
  cwd: string;
  /** "", "name", "uid", "name:group", "uid:gid"; resolved in the rootfs' /etc/passwd and /etc/group. */
  user: string;
  tty?: boolean;
}

export interface ContainerMount {
  destination: string;
  mount: MountSpec;
  readonly?: boolean;
}

export type NetworkMode = "host" | "none" | "sandbox";

export interface RunOptions {
  /** Unique container id (becomes the runc id). */
  id: string;
  /** The mounts that make up `/`; the executor mounts them and unmounts them afterwards. */
  rootfs: MountSpec[];
  rootfsReadonly?: boolean;
  mounts: ContainerMount[];
  process: ProcessSpec;
  hostname?: string;
  network: NetworkMode;
  /** "insecure" (RUN --security=insecure): all capabilities and devices, /sys and cgroups writable. */
  security?: "sandbox" | "insecure";
  extraHosts?: { host: string; ip: string }[];
  /** The exec's own limits (RUN's ulimit); they replace the executor's defaults. */
  rlimits?: { type: string; soft: number; hard: number }[];
  stdout?: Writable;
  stderr?: Writable;
}

export interface Executor {
  /** Runs the process to completion. Rejects with ExitError on a non-zero exit; aborting kills the container. */
  run(signal: AbortSignal, opts: RunOptions): Promise<void>;
}

export class ExitError extends Error {
  constructor(readonly exitCode: number, readonly args: string[]) {
    super(`process ${JSON.stringify(args)} did not complete successfully: exit code: ${exitCode}`);
    this.name = "ExitError";
  }
}
