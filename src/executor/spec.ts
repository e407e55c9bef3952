// The OCI runtime spec (config.json) for one exec: containerd's default Linux spec as BuildKit
// adjusts it (executor/oci/spec.go, spec_linux.go), minus the parts Kiln does not do yet.
import type { NetworkMode } from "./types.js";
import type { ResolvedUser } from "./user.js";

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

export interface OciRlimit {
  type: string;
  hard: number;
  soft: number;
}

export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[] };
    rlimits?: OciRlimit[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: {
    resources: { devices: { allow: boolean; access: string }[] };
    cgroupsPath: string;
    namespaces: { type: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}

/** runc 1.1 (Debian 12) implements runtime-spec 1.0.2. */
const OCI_VERSION = "1.0.2";

/** containerd's default capability set, which BuildKit keeps for sandboxed execs. */
export const DEFAULT_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

/** What the LLB client puts in an exec's env when it has no PATH (system.DefaultPathEnvUnix). */
export const DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const MASKED_PATHS = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
  "/proc/scsi",
];

const READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/** containerd's default mounts without /run, which BuildKit removes (moby/buildkit#429). */
function defaultMounts(): OciMount[] {
  return [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
  ];
}

function roBind(source: string, destination: string): OciMount {
  return { destination, type: "bind", source, options: ["nosuid", "noexec", "nodev", "rbind", "ro"] };
}

/**
 * containerd's WithEnv merge over an empty default: entries without "=" ask to unset a default and
 * so vanish. PATH is added when missing so that bare program names resolve, as every LLB client
 * does before the op reaches a worker.
 */
export function processEnv(env: readonly string[]): string[] {
  const out = env.filter((e) => e.includes("="));
  if (!out.some((e) => e.startsWith("PATH="))) out.unshift(DEFAULT_PATH_ENV);
  return out;
}

/** Later mounts at the same destination replace earlier ones but keep the earlier position. */
export function dedupMounts(mounts: readonly OciMount[]): OciMount[] {
  const out: OciMount[] = [];
  const seen = new Map<string, number>();
  for (const m of mounts) {
    const i = seen.get(m.destination);
    if (i === undefined) {
      seen.set(m.destination, out.length);
      out.push(m);
    } else {
      out[i] = m;
    }
  }
  return out;
}

export interface SpecInput {
  id: string;
  rootfsPath: string;
  rootfsReadonly: boolean;
  args: string[];
  env: string[];
  cwd: string;
  tty: boolean;
  user: ResolvedUser;
  hostname: string;
  network: NetworkMode;
  /** security.insecure: BuildKit's WithInsecureSpec plus writable sysfs and cgroupfs. */
  insecure?: boolean;
  /** The capabilities this process may hand on (its bounding set, bit per capability number). */
  boundingCaps?: bigint;
  hostsPath: string;
  resolvConfPath: string;
  /** The exec's own mounts, already in runtime form and in the order runc must mount them. */
  mounts: OciMount[];
  /** Parent of every container's cgroup (one per id beneath it). */
  cgroupParent: string;
  /** Only on a cgroup v2 host: on v1 a cgroup namespace meets non-standard hierarchies with EINVAL (moby/buildkit#4108). */
  cgroupNamespace?: boolean;
  rlimits?: OciRlimit[];
}

export function generateSpec(input: SpecInput): OciSpec {
  // "sandbox" would be a CNI-managed netns in BuildKit; without CNI it shares the host's, like "host".
  const namespaces = [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }];
  if (input.network === "none") namespaces.push({ type: "network" });
  if (input.cgroupNamespace) namespaces.push({ type: "cgroup" });
  const mounts = dedupMounts([
    ...defaultMounts(),
    roBind(input.resolvConfPath, "/etc/resolv.conf"),
    roBind(input.hostsPath, "/etc/hosts"),
    { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["ro", "nosuid", "noexec", "nodev"] },
    ...input.mounts,
  ]);
  const spec: OciSpec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: input.tty,
      user: { uid: input.user.uid, gid: input.user.gid, additionalGids: input.user.additionalGids },
      args: input.args,
      env: processEnv(input.env),
      cwd: input.cwd,
      capabilities: {
        bounding: [...DEFAULT_CAPABILITIES],
        effective: [...DEFAULT_CAPABILITIES],
        permitted: [...DEFAULT_CAPABILITIES],
      },
      // BuildKit (oci.WithNewPrivileges) lifts containerd's default so setuid programs such as sudo work.
      noNewPrivileges: false,
    },
    root: { path: input.rootfsPath, readonly: input.rootfsReadonly },
    hostname: input.hostname,
    mounts,
    linux: {
      resources: { devices: [{ allow: false, access: "rwm" }] },
      cgroupsPath: `${input.cgroupParent.replace(/\/+$/, "")}/${input.id}`,
      namespaces,
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
    },
  };
  if (input.rlimits && input.rlimits.length > 0) spec.process.rlimits = input.rlimits;
  if (input.insecure) makeInsecure(spec, input.boundingCaps);
  return spec;
}

/** Every capability up to CAP_CHECKPOINT_RESTORE, as BuildKit's insecure mode grants them. */
export const ALL_CAPABILITIES = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
  "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
  "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
  "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
  "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
];

function makeInsecure(spec: OciSpec, bounding: bigint | undefined): void {
  // A capability this process lacks cannot be granted (runc would fail to apply it).
  const caps = ALL_CAPABILITIES.filter((_, n) => bounding === undefined || ((bounding >> BigInt(n)) & 1n) === 1n);
  spec.process.capabilities = { bounding: [...caps], effective: [...caps], permitted: [...caps] };
  spec.linux.maskedPaths = [];
  spec.linux.readonlyPaths = [];
  spec.linux.resources.devices = [{ allow: true, access: "rwm" }];
  for (const m of spec.mounts) {
    if (m.type === "sysfs" || m.type === "cgroup") m.options = m.options.filter((o) => o !== "ro");
  }
}
