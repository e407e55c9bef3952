import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { control, workertypes } from "../../api/index.js";
import { defaultGCPolicies } from "../../cache/index.js";
import { CanceledError, KilnError, type Digest } from "../../util/index.js";
import { gcPolicyRecords, ociWorkerLabels, splitEvent, statusResponse, usageRecord, workerRecord } from "./convert.js";
import { toServiceError } from "./service.js";

const d = `sha256:${"a".repeat(64)}` as Digest;

void test("usage records carry BuildKit's fields and survive the wire", () => {
  const u = { id: "r1", parents: ["p1"], mutable: false, inUse: true, size: 4096, createdAt: new Date(1_700_000_000_123), lastUsedAt: undefined, usageCount: 3, description: "copy /a /a", recordType: "regular", shared: false };
  const m = fromBinary(control.UsageRecordSchema, toBinary(control.UsageRecordSchema, create(control.UsageRecordSchema, usageRecord(u))));
  assert.equal(m.ID, "r1");
  assert.deepEqual(m.Parents, ["p1"]);
  assert.equal(m.Parent, "");
  assert.equal(m.Size, 4096n);
  assert.equal(m.InUse, true);
  assert.equal(m.UsageCount, 3n);
  assert.equal(m.LastUsedAt, undefined);
  assert.equal(timestampDate(m.CreatedAt!).getTime(), 1_700_000_000_123);
  assert.equal(m.RecordType, "regular");
});

void test("GC policies: durations in ns; field 3 is the reserved space, percentages resolved on the disk", () => {
  const recs = gcPolicyRecords(defaultGCPolicies({}), 100 * 2 ** 30);
  assert.equal(recs.length, 4);
  assert.deepEqual(recs[0]!.filters, ["type==source.local", "type==exec.cachemount", "type==source.git.checkout"]);
  assert.equal(recs[0]!.keepDuration, 48n * 3600n * 1_000_000_000n);
  assert.equal(recs[0]!.keepBytes, 0n);
  // 10% of 100 GiB in whole GB, rounded up as BuildKit does, capped at 10 GB.
  assert.equal(recs[2]!.keepBytes, 10_000_000_000n);
  assert.equal(recs[3]!.all, true);
});

void test("worker record: the OCI worker's labels and normalised platforms", () => {
  const labels = ociWorkerLabels({ team: "kiln" });
  assert.equal(labels["org.mobyproject.buildkit.worker.executor"], "oci");
  assert.equal(labels["org.mobyproject.buildkit.worker.snapshotter"], "overlayfs");
  assert.equal(labels.team, "kiln");
  const w = create(workertypes.WorkerRecordSchema, workerRecord({ id: "w", labels, platforms: [{ os: "linux", architecture: "arm64", variant: "v8" }, { os: "linux", architecture: "amd64" }], gcPolicy: [], version: { package: "p", version: "v", revision: "r" } }));
  assert.deepEqual(
    w.platforms.map((p) => [p.OS, p.Architecture, p.Variant]),
    [
      ["linux", "arm64", ""],
      ["linux", "amd64", ""],
    ],
  );
  assert.equal(w.BuildkitVersion?.version, "v");
});

void test("progress events as StatusResponse; big logs are split", () => {
  const t = new Date(1_700_000_000_000);
  const s = create(
    control.StatusResponseSchema,
    statusResponse({
      vertexes: [{ digest: d, name: "RUN x", inputs: [d], started: t, completed: t, cached: false, error: "boom" }],
      statuses: [{ id: "pull", vertex: d, current: 5, total: 10, timestamp: t }],
      logs: [{ vertex: d, stream: 2, data: Buffer.from("hi"), timestamp: t }],
      warnings: [{ vertex: d, level: 1, short: "w", detail: ["x"] }],
    }),
  );
  assert.equal(s.vertexes[0]!.error, "boom");
  assert.equal(s.vertexes[0]!.cached, false);
  assert.equal(s.statuses[0]!.total, 10n);
  assert.equal(s.logs[0]!.stream, 2n);
  assert.equal(Buffer.from(s.logs[0]!.msg).toString(), "hi");
  assert.equal(Buffer.from(s.warnings[0]!.short).toString(), "w");
  const big = splitEvent({ logs: [{ vertex: d, stream: 1, data: Buffer.alloc(2.5 * (1 << 20), 1), timestamp: t }] });
  assert.equal(big.length, 4);
  assert.equal(big.reduce((n, e) => n + (e.logs ?? []).reduce((m, l) => m + l.data.byteLength, 0), 0), 2.5 * (1 << 20));
});

void test("engine errors as gRPC statuses", () => {
  assert.equal(toServiceError(new CanceledError()).code, grpc.status.CANCELLED);
  assert.equal(toServiceError(new KilnError("KILN_NO_JOB", "no such job x")).code, grpc.status.NOT_FOUND);
  assert.equal(toServiceError(new KilnError("KILN_UNIMPLEMENTED", "later")).code, grpc.status.UNIMPLEMENTED);
  const e = toServiceError(new KilnError("KILN_BUILD", "RUN false: exit code 1"));
  assert.equal(e.code, grpc.status.UNKNOWN);
  assert.equal(e.details, "RUN false: exit code 1");
});
