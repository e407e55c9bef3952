// The engine's records as Control API messages, filled the way BuildKit's controller fills them.
import { hostname } from "node:os";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { control, workertypes } from "../../api/index.js";
import type { GCPolicy, UsageInfo } from "../../cache/index.js";
import type { ProgressEvent } from "../../solver/types.js";
import { diskSpaceBytes, normalizePlatform, type Platform } from "../../util/index.js";

type UsageRecordInit = MessageInitShape<typeof control.UsageRecordSchema>;
type StatusResponseInit = MessageInitShape<typeof control.StatusResponseSchema>;
type WorkerRecordInit = MessageInitShape<typeof workertypes.WorkerRecordSchema>;
type GCPolicyInit = MessageInitShape<typeof workertypes.GCPolicySchema>;

export interface BuildkitVersionInfo {
  package: string;
  version: string;
  revision: string;
}

/** A cache record as DiskUsage and Prune send it (BuildKit leaves the deprecated Parent empty). */
export function usageRecord(u: UsageInfo): UsageRecordInit {
  return {
    ID: u.id,
    Mutable: u.mutable,
    InUse: u.inUse,
    Size: BigInt(Math.trunc(u.size)),
    Parents: u.parents,
    UsageCount: BigInt(u.usageCount),
    Description: u.description,
    CreatedAt: timestampFromDate(u.createdAt),
    LastUsedAt: u.lastUsedAt ? timestampFromDate(u.lastUsedAt) : undefined,
    RecordType: u.recordType,
    Shared: u.shared,
  };
}

/**
 * buildkitd.toml's policies as WorkerRecord.GCPolicy. Field 3 (keepBytes in 0.11's proto) is
 * what newer BuildKit calls reservedSpace; percentages are resolved against the disk of the root.
 */
export function gcPolicyRecords(policies: readonly GCPolicy[], diskTotal: number): GCPolicyInit[] {
  return policies.map((p) => ({
    all: p.all,
    keepDuration: BigInt(Math.trunc(p.keepDurationMs)) * 1_000_000n,
    keepBytes: BigInt(Math.trunc(diskSpaceBytes(p.reservedSpace, diskTotal))),
    filters: p.filters,
  }));
}

/** The OCI worker's labels, with BuildKit's keys (worker/label) and values kiln's worker has. */
export function ociWorkerLabels(extra: Record<string, string> = {}): Record<string, string> {
  const prefix = "org.mobyproject.buildkit.worker.";
  let host = "unknown";
  try {
    host = hostname();
  } catch {
    // BuildKit also falls back to "unknown" when the hostname can't be read.
  }
  return {
    [`${prefix}executor`]: "oci",
    [`${prefix}hostname`]: host,
    [`${prefix}snapshotter`]: "overlayfs",
    // Without CNI every non-"none" exec shares the host's network, which BuildKit reports as host.
    [`${prefix}network`]: "host",
    [`${prefix}oci.process-mode`]: "sandbox",
    [`${prefix}selinux.enabled`]: "false",
    ...extra,
  };
}

export function workerRecord(o: { id: string; labels: Record<string, string>; platforms: readonly Platform[]; gcPolicy: GCPolicyInit[]; version: BuildkitVersionInfo }): WorkerRecordInit {
  return {
    ID: o.id,
    Labels: o.labels,
    platforms: o.platforms.map(normalizePlatform).map((p) => ({ OS: p.os, Architecture: p.architecture, Variant: p.variant ?? "" })),
    GCPolicy: o.gcPolicy,
    BuildkitVersion: { ...o.version },
  };
}

const ts = (d: Date | undefined) => (d ? timestampFromDate(d) : undefined);

/** One progress event as a StatusResponse. */
export function statusResponse(ev: ProgressEvent): StatusResponseInit {
  return {
    vertexes: (ev.vertexes ?? []).map((v) => ({
      digest: v.digest,
      inputs: v.inputs,
      name: v.name,
      cached: v.cached ?? false,
      started: ts(v.started),
      completed: ts(v.completed),
      error: v.error ?? "",
    })),
    statuses: (ev.statuses ?? []).map((s) => ({
      ID: s.id,
      vertex: s.vertex,
      name: s.name ?? "",
      current: BigInt(Math.trunc(s.current)),
      total: BigInt(Math.trunc(s.total ?? 0)),
      timestamp: timestampFromDate(s.timestamp ?? new Date()),
      started: ts(s.started),
      completed: ts(s.completed),
    })),
    logs: (ev.logs ?? []).map((l) => ({
      vertex: l.vertex,
      timestamp: timestampFromDate(l.timestamp),
      stream: BigInt(l.stream),
      msg: l.data,
    })),
    warnings: (ev.warnings ?? []).map((w) => ({
      vertex: w.vertex,
      level: BigInt(w.level),
      short: Buffer.from(w.short),
      detail: (w.detail ?? []).map((d) => Buffer.from(d)),
      url: w.url ?? "",
    })),
  };
}

/** Big log chunks are split so no StatusResponse nears the message limit (BuildKit splits at 1 MiB too). */
export function splitEvent(ev: ProgressEvent, maxLog = 1 << 20): ProgressEvent[] {
  const logs = ev.logs ?? [];
  if (logs.every((l) => l.data.byteLength <= maxLog)) return [ev];
  const out: ProgressEvent[] = [{ ...ev, logs: [] }];
  for (const l of logs) {
    for (let off = 0; off < l.data.byteLength || off === 0; off += maxLog) {
      out.push({ logs: [{ ...l, data: l.data.subarray(off, off + maxLog) }] });
      if (l.data.byteLength === 0) break;
    }
  }
  return out;
}
