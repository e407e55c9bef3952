import { test } from "node:test";
import assert from "node:assert/strict";
import { diskSpaceBytes, formatBytes, parseConfigDuration, parseDiskSpace, parseGoDuration, ramInBytes } from "./units.js";

test("sizes parse as docker/go-units RAMInBytes does (binary multiples)", () => {
  assert.equal(ramInBytes("512"), 512);
  assert.equal(ramInBytes("10GB"), 10 * 1024 ** 3);
  assert.equal(ramInBytes("10gb"), 10 * 1024 ** 3);
  assert.equal(ramInBytes("10G"), 10 * 1024 ** 3);
  assert.equal(ramInBytes("10GiB"), 10 * 1024 ** 3);
  assert.equal(ramInBytes("512MB"), 512 * 1024 ** 2);
  assert.equal(ramInBytes("1.5g"), 1.5 * 1024 ** 3);
  assert.equal(ramInBytes("2 KiB"), 2048);
  assert.equal(ramInBytes("2 kb"), 2048);
  assert.equal(ramInBytes("100b"), 100);
  assert.equal(ramInBytes("1e3"), 1000);
  assert.equal(ramInBytes("32.5"), 32);
  assert.equal(ramInBytes("0.5k"), 512);
  for (const bad of ["ten", "", "-1", "10Gi", "10GBs", "10 G B", "1.2.3M", "0x10", "10X", "10bb"]) assert.throws(() => ramInBytes(bad), bad);
  assert.deepEqual(parseDiskSpace("90%"), { bytes: 0, percentage: 90 });
  assert.deepEqual(parseDiskSpace('"10GB"'), { bytes: 10 * 1024 ** 3, percentage: 0 });
  assert.deepEqual(parseDiskSpace(1000), { bytes: 1000, percentage: 0 });
  assert.deepEqual(parseDiskSpace(""), { bytes: 0, percentage: 0 });
  for (const bad of ["x%", "%", "1.5%", "ten"]) assert.throws(() => parseDiskSpace(bad), bad);
});

test("percentages become whole GB rounded up, and respect a cap", () => {
  const total = 100 * 2 ** 30;
  assert.equal(diskSpaceBytes({ bytes: 0, percentage: 10 }, total), 11e9);
  assert.equal(diskSpaceBytes({ bytes: 0, percentage: 80, capBytes: 50e9 }, total), 50e9);
  assert.equal(diskSpaceBytes({ bytes: 5, percentage: 80 }, total), 5);
  assert.equal(diskSpaceBytes({ bytes: 0, percentage: 0 }, total), 0);
});

test("durations as Go's time.ParseDuration, or seconds", () => {
  assert.equal(parseGoDuration("48h"), 48 * 3600_000);
  assert.equal(parseGoDuration("1h30m"), 5400_000);
  assert.equal(parseGoDuration("1.5s"), 1500);
  assert.equal(parseGoDuration("300ms"), 300);
  assert.throws(() => parseGoDuration("3 days"));
  assert.equal(parseConfigDuration(60), 60_000);
  assert.equal(parseConfigDuration("120"), 120_000);
});

test("bytes print as tonistiigi/units %.2f", () => {
  assert.equal(formatBytes(0), "0B");
  assert.equal(formatBytes(999), "999B");
  assert.equal(formatBytes(1234), "1.23kB");
  assert.equal(formatBytes(4096), "4.10kB");
  assert.equal(formatBytes(6_030_000), "6.03MB");
  assert.equal(formatBytes(2.5e9), "2.50GB");
});
