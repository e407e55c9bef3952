// kilnd's command line: buildkitd's flags (so its unit files and scripts work unchanged), merged
// over buildkitd.toml as buildkitd merges them. Flags for workers kiln doesn't have are accepted
// and ignored.
import { Command, Option } from "commander";
import { defaultGCPolicies } from "../../cache/index.js";
import { KilnError } from "../../util/index.js";
import type { KilnConfig } from "../config.js";

export const defaultAddress = "unix:///run/kiln/kilnd.sock";
export const defaultConfigPath = "/etc/kiln/kilnd.toml";

export interface DaemonFlags {
  config?: string;
  debug?: boolean;
  root?: string;
  addr?: string[];
  group?: string;
  tlscert?: string;
  tlskey?: string;
  tlscacert?: string;
  allowInsecureEntitlement?: string[];
  ociWorkerLabels?: string[];
  ociWorkerGc?: string | boolean;
  ociWorkerGcKeepstorage?: string;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** buildkitd flags that configure what kiln doesn't have (containerd, CNI, rootless, …). */
const ignoredValueFlags = [
  "debugaddr",
  "oci-worker-snapshotter",
  "oci-worker-proxy-snapshotter-path",
  "oci-worker-platform",
  "oci-worker-net",
  "oci-cni-config-path",
  "oci-cni-binary-dir",
  "oci-cni-pool-size",
  "oci-worker-binary",
  "oci-worker-apparmor-profile",
  "oci-worker-max-parallelism",
  "containerd-worker-addr",
  "containerd-worker-labels",
  "containerd-worker-platform",
  "containerd-worker-namespace",
  "containerd-worker-net",
  "containerd-cni-config-path",
  "containerd-cni-binary-dir",
  "containerd-cni-pool-size",
  "containerd-worker-snapshotter",
  "containerd-worker-apparmor-profile",
  "containerd-worker-gc-keepstorage",
  "containerd-worker-max-parallelism",
  "cdi-spec-dir",
];
/** Boolean flags (`--flag`, `--flag=false`) likewise accepted and ignored. */
const ignoredBoolFlags = ["rootless", "oci-worker", "oci-worker-rootless", "oci-worker-no-process-sandbox", "oci-worker-selinux", "containerd-worker", "containerd-worker-rootless", "containerd-worker-gc", "containerd-worker-selinux"];

/** The kilnd command; `action` runs with the parsed flags. */
export function daemonCommand(action: (flags: DaemonFlags) => Promise<void>): Command {
  const cmd = new Command("kilnd")
    .description("kiln daemon: serves BuildKit's Control API (moby.buildkit.v1.Control)")
    .option("--config <file>", `path to config file (buildkitd.toml keys; default ${defaultConfigPath} when present)`)
    .option("--debug", "enable debug output in logs")
    .option("--root <dir>", "path to state directory (default /var/lib/kiln)")
    .option("--addr <address>", `listening address (socket or tcp), repeatable (default ${defaultAddress})`, collect)
    .option("--group <group>", "group (name or gid) which will own all Unix socket listening addresses")
    .option("--tlscert <file>", "certificate file to use")
    .option("--tlskey <file>", "key file to use")
    .option("--tlscacert <file>", "ca certificate to verify clients")
    .option("--allow-insecure-entitlement <entitlement>", "allows insecure entitlements e.g. network.host, security.insecure", collect)
    .option("--oci-worker-labels <label>", "user-specific annotation labels (com.example.foo=bar)", collect)
    .option("--oci-worker-gc [bool]", "enable automatic garbage collection on worker")
    .option("--oci-worker-gc-keepstorage <MB>", "amount of storage GC keep locally (MB)")
    .showHelpAfterError()
    .action(async (flags: DaemonFlags) => action(flags));
  for (const f of ignoredValueFlags) cmd.addOption(new Option(`--${f} <value>`, "accepted for buildkitd compatibility; ignored").hideHelp());
  for (const f of ignoredBoolFlags) cmd.addOption(new Option(`--${f} [bool]`, "accepted for buildkitd compatibility; ignored").hideHelp());
  return cmd;
}

function parseBool(flag: string, v: string | boolean | undefined): boolean | undefined {
  if (v === undefined || typeof v === "boolean") return v;
  if (/^(1|t|true)$/i.test(v)) return true;
  if (/^(0|f|false)$/i.test(v)) return false;
  throw new KilnError("KILN_FLAGS", `invalid boolean value ${JSON.stringify(v)} for flag --${flag}`);
}

export interface DaemonSettings {
  root: string;
  debug: boolean;
  addresses: string[];
  gid?: number;
  group?: string;
  tls: { cert?: string; key?: string; ca?: string };
  entitlements: string[];
  labels: Record<string, string>;
  gc: KilnConfig["gc"];
}

/** Flags over the config file, as buildkitd's applyMainFlags; the default address when neither sets one. */
export function mergeSettings(flags: DaemonFlags, cfg: KilnConfig): DaemonSettings {
  const ents = flags.allowInsecureEntitlement ?? cfg.insecureEntitlements;
  for (const e of ents) if (e !== "network.host" && e !== "security.insecure") throw new KilnError("KILN_FLAGS", `invalid entitlement : ${e}`);
  const labels: Record<string, string> = {};
  for (const l of flags.ociWorkerLabels ?? []) {
    const i = l.indexOf("=");
    if (i <= 0) throw new KilnError("KILN_FLAGS", `failed to parse label ${JSON.stringify(l)}: expected KEY=VALUE`);
    labels[l.slice(0, i)] = l.slice(i + 1);
  }
  const gc = { ...cfg.gc };
  const gcOn = parseBool("oci-worker-gc", flags.ociWorkerGc);
  if (gcOn !== undefined) gc.enabled = gcOn;
  if (flags.ociWorkerGcKeepstorage !== undefined) {
    const mb = Number(flags.ociWorkerGcKeepstorage);
    if (!Number.isFinite(mb) || flags.ociWorkerGcKeepstorage.trim() === "") throw new KilnError("KILN_FLAGS", `invalid value ${JSON.stringify(flags.ociWorkerGcKeepstorage)} for flag --oci-worker-gc-keepstorage`);
    gc.policies = defaultGCPolicies({ keepStorage: { bytes: Math.trunc(mb * 1e6), percentage: 0 } });
  }
  const addresses = flags.addr && flags.addr.length > 0 ? flags.addr : cfg.grpc.address.length > 0 ? cfg.grpc.address : [defaultAddress];
  const s: DaemonSettings = {
    root: flags.root ?? cfg.root,
    debug: flags.debug ?? cfg.debug,
    addresses,
    tls: { cert: flags.tlscert ?? cfg.grpc.tls?.cert, key: flags.tlskey ?? cfg.grpc.tls?.key, ca: flags.tlscacert ?? cfg.grpc.tls?.ca },
    entitlements: ents,
    labels,
    gc,
  };
  if (cfg.grpc.gid !== undefined) s.gid = cfg.grpc.gid;
  if (flags.group) s.group = flags.group;
  if ((s.tls.cert && !s.tls.key) || (!s.tls.cert && s.tls.key)) throw new KilnError("KILN_FLAGS", "you must specify key and cert file if one is specified");
  return s;
}
