import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { workertypes } from "../../api/index.js";
import { goDuration, printWorkersTable, printWorkersVerbose, unitsBytesG } from "./debug.js";
import { TabWriter } from "./tabwriter.js";

void test("Go's Duration.String", () => {
  const ms = (n: number) => BigInt(n) * 1_000_000n;
  assert.equal(goDuration(0n), "0s");
  assert.equal(goDuration(ms(48 * 3600_000)), "48h0m0s");
  assert.equal(goDuration(ms(60 * 24 * 3600_000)), "1440h0m0s");
  assert.equal(goDuration(ms(90_000)), "1m30s");
  assert.equal(goDuration(ms(1500)), "1.5s");
  assert.equal(goDuration(ms(300)), "300ms");
  assert.equal(goDuration(1500n), "1.5µs");
  assert.equal(goDuration(12n), "12ns");
});

void test("units.Bytes %g: decimal units, shortest digits, whole bytes below 1 kB", () => {
  assert.equal(unitsBytesG(512), "512B");
  assert.equal(unitsBytesG(1200), "1.2kB");
  assert.equal(unitsBytesG(512e6), "512MB");
  assert.equal(unitsBytesG(10e9), "10GB");
  assert.equal(unitsBytesG(512 * 1024 * 1024), "536.870912MB");
});

void test("debug workers prints buildctl's table and verbose form", () => {
  const w = create(workertypes.WorkerRecordSchema, {
    ID: "abc",
    Labels: { "org.mobyproject.buildkit.worker.hostname": "h", "org.mobyproject.buildkit.worker.executor": "oci" },
    platforms: [
      { OS: "linux", Architecture: "amd64" },
      { OS: "linux", Architecture: "arm", Variant: "v7" },
    ],
    GCPolicy: [
      { all: false, filters: ["type==source.local", "type==exec.cachemount"], keepDuration: 48n * 3600n * 1_000_000_000n, keepBytes: 512_000_000n },
      { all: true, keepBytes: 0n },
    ],
    BuildkitVersion: { package: "p", version: "v1", revision: "r" },
  });
  let out = "";
  const sink = { write: (s: string) => (out += s) };
  printWorkersTable(new TabWriter(sink), [w]);
  assert.equal(out, "ID\tPLATFORMS\nabc\tlinux/amd64,linux/arm/v7\n");
  out = "";
  printWorkersVerbose(new TabWriter(sink), [w]);
  assert.equal(
    out,
    [
      "ID:\t\tabc",
      "Platforms:\tlinux/amd64,linux/arm/v7",
      "BuildKit:\tp v1 r",
      "Labels:",
      "\torg.mobyproject.buildkit.worker.executor:\toci",
      "\torg.mobyproject.buildkit.worker.hostname:\th",
      "GC Policy rule#0:",
      "\tAll:\t\tfalse",
      "\tFilters:\ttype==source.local type==exec.cachemount",
      "\tKeep Duration:\t48h0m0s",
      "\tKeep Bytes:\t512MB",
      "GC Policy rule#1:",
      "\tAll:\ttrue",
      "",
      "",
    ].join("\n"),
  );
});
