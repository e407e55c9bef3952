// buildkitd.toml, read with BuildKit's key names; kiln and kilnd share it.
import { readFile } from "node:fs/promises";
import { parse } from "smol-toml";
import os from "node:os";
import { KilnError } from "../util/index.js";
import type { RegistryHostConfig } from "../remotes/types.js";
import { defaultGCPolicies, type GCPolicy } from "../cache/index.js";
import { parseConfigDuration, parseDiskSpace, type DiskSpace } from "../util/index.js";

export interface KilnConfig {
  root: string;
  debug: boolean;
  maxParallelism: number;
  registries: Record<string, RegistryHostConfig>;
  grpc: { address: string[]; gid?: number; tls?: { cert?: string; key?: string; ca?: string } };
  /** `[worker.oci]` gc, gckeepstorage, reservedSpace/maxUsedSpace/minFreeSpace and `[[worker.oci.gcpolicy]]`. */
  gc: { enabled: boolean; policies: GCPolicy[] };
  /** `insecure-entitlements`: what builds may be granted with --allow ("network.host", "security.insecure"). */
  insecureEntitlements: string[];
}

export const defaultRoot = "/var/lib/kiln";

function asRecord(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function strings(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  if (Array.isArray(v)) return v.map(String);
  return [String(v)];
}

export async function loadConfig(file: string | undefined): Promise<KilnConfig> {
  const cfg: KilnConfig = { root: defaultRoot, debug: false, maxParallelism: os.availableParallelism(), registries: {}, grpc: { address: [] }, gc: { enabled: true, policies: defaultGCPolicies({}) }, insecureEntitlements: [] };
  if (!file) return cfg;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new KilnError("KILN_CONFIG", `failed to read config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new KilnError("KILN_CONFIG", `failed to parse config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof doc.root === "string") cfg.root = doc.root;
  if (typeof doc.debug === "boolean") cfg.debug = doc.debug;
  cfg.insecureEntitlements = strings(doc["insecure-entitlements"]) ?? [];
  const grpc = asRecord(doc.grpc);
  cfg.grpc.address = strings(grpc.address) ?? [];
  if (typeof grpc.gid === "number") cfg.grpc.gid = grpc.gid;
  const tls = asRecord(grpc.tls);
  cfg.grpc.tls = { cert: tls.cert as string | undefined, key: tls.key as string | undefined, ca: tls.ca as string | undefined };
  const oci = asRecord(asRecord(doc.worker).oci);
  if (typeof oci["max-parallelism"] === "number") cfg.maxParallelism = oci["max-parallelism"];
  try {
    cfg.gc = parseGC(oci);
  } catch (err) {
    throw new KilnError("KILN_CONFIG", `invalid GC settings in ${file}: ${(err as Error).message}`, { cause: err });
  }
  for (const [host, raw] of Object.entries(asRecord(doc.registry))) {
    const r = asRecord(raw);
    const hc: RegistryHostConfig = {};
    const mirrors = strings(r.mirrors);
    if (mirrors) hc.mirrors = mirrors;
    if (typeof r.http === "boolean") hc.http = r.http;
    if (typeof r.insecure === "boolean") hc.insecure = r.insecure;
    const ca = strings(r.ca);
    if (ca) hc.ca = ca;
    cfg.registries[host] = hc;
  }
  return cfg;
}

/**
 * `[worker.oci]`'s GC keys as BuildKit's getGCPolicy reads them: explicit `[[gcpolicy]]` rules
 * (keepBytes standing in for an unset reservedSpace), else the default policies built from
 * reservedSpace/maxUsedSpace/minFreeSpace (gckeepstorage standing in for all three unset).
 */
export function parseGC(oci: Record<string, unknown>): KilnConfig["gc"] {
  const space = (v: unknown): DiskSpace | undefined => (v === undefined ? undefined : parseDiskSpace(v));
  const none: DiskSpace = { bytes: 0, percentage: 0 };
  const isSet = (d: DiskSpace | undefined): d is DiskSpace => d !== undefined && (d.bytes !== 0 || d.percentage !== 0);
  const rules = Array.isArray(oci.gcpolicy) ? (oci.gcpolicy as unknown[]).map(asRecord) : [];
  const policies: GCPolicy[] =
    rules.length > 0
      ? rules.map((r) => {
          const reserved = space(r.reservedSpace);
          const keepBytes = space(r.keepBytes);
          return {
            all: r.all === true,
            filters: strings(r.filters) ?? [],
            keepDurationMs: r.keepDuration === undefined ? 0 : parseConfigDuration(r.keepDuration),
            reservedSpace: isSet(reserved) ? reserved : (keepBytes ?? none),
            maxUsedSpace: space(r.maxUsedSpace) ?? none,
            minFreeSpace: space(r.minFreeSpace) ?? none,
          };
        })
      : defaultGCPolicies({ reservedSpace: space(oci.reservedSpace), maxUsedSpace: space(oci.maxUsedSpace), minFreeSpace: space(oci.minFreeSpace), keepStorage: space(oci.gckeepstorage) });
  return { enabled: oci.gc !== false, policies };
}
