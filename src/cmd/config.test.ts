// buildkitd.toml's GC keys, read from real files the way BuildKit's config and getGCPolicy read them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { loadConfig } from "./config.js";
import { KilnError, diskSpaceBytes } from "../util/index.js";

async function withConfig(toml: string, fn: (file: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-config-"));
  try {
    const file = path.join(dir, "buildkitd.toml");
    await writeFile(file, toml);
    await fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

test("no config: GC on, BuildKit's four default policies", async () => {
  const cfg = await loadConfig(undefined);
  assert.equal(cfg.gc.enabled, true);
  assert.equal(cfg.gc.policies.length, 4);
  assert.deepEqual(cfg.gc.policies[2]!.maxUsedSpace, { bytes: 0, percentage: 80, capBytes: 100e9 });
});

test("newer keys: reservedSpace, maxUsedSpace, minFreeSpace feed the default policies", async () => {
  await withConfig(`[worker.oci]\n  gc = true\n  reservedSpace = "1GB"\n  maxUsedSpace = "90%"\n  minFreeSpace = 1000000\n`, async (file) => {
    const { gc } = await loadConfig(file);
    assert.equal(gc.policies.length, 4);
    const last = gc.policies[3]!;
    assert.equal(last.all, true);
    assert.deepEqual(last.reservedSpace, { bytes: GiB, percentage: 0 });
    assert.deepEqual(last.maxUsedSpace, { bytes: 0, percentage: 90 });
    assert.deepEqual(last.minFreeSpace, { bytes: 1e6, percentage: 0 });
    // 90% of a 100 GiB disk, rounded up to whole GB.
    assert.equal(diskSpaceBytes(last.maxUsedSpace, 100 * GiB), 91e9);
    // The first policy keeps its own 512 MB limit.
    assert.equal(gc.policies[0]!.maxUsedSpace.bytes, 512e6);
  });
});

test("gckeepstorage is the older reservedSpace; gc = false turns automatic collection off", async () => {
  await withConfig(`[worker.oci]\n  gc = false\n  gckeepstorage = "10GB"\n`, async (file) => {
    const { gc } = await loadConfig(file);
    assert.equal(gc.enabled, false);
    assert.deepEqual(gc.policies[2]!.reservedSpace, { bytes: 10 * GiB, percentage: 0 });
    assert.deepEqual(gc.policies[2]!.maxUsedSpace, { bytes: 0, percentage: 0 });
  });
  // Ignored once any newer key is set.
  await withConfig(`[worker.oci]\n  gckeepstorage = "10GB"\n  maxUsedSpace = "2GB"\n`, async (file) => {
    const { gc } = await loadConfig(file);
    assert.deepEqual(gc.policies[2]!.reservedSpace, { bytes: 0, percentage: 0 });
    assert.deepEqual(gc.policies[2]!.maxUsedSpace, { bytes: 2 * GiB, percentage: 0 });
  });
});

test("[[worker.oci.gcpolicy]] rules replace the defaults, in order; keepBytes is the older reservedSpace", async () => {
  const toml = `
[worker.oci]
  gckeepstorage = 9000

[[worker.oci.gcpolicy]]
  keepBytes = "512MB"
  keepDuration = "48h"
  filters = ["type==source.local", "type==exec.cachemount"]

[[worker.oci.gcpolicy]]
  all = true
  keepBytes = 1024000000
  keepDuration = 3600

[[worker.oci.gcpolicy]]
  all = true
  reservedSpace = "1GB"
  keepBytes = "5GB"
  maxUsedSpace = "20%"
  minFreeSpace = "10GB"
`;
  await withConfig(toml, async (file) => {
    const { gc } = await loadConfig(file);
    assert.equal(gc.policies.length, 3);
    const [a, b, c] = gc.policies as [(typeof gc.policies)[0], (typeof gc.policies)[0], (typeof gc.policies)[0]];
    assert.deepEqual([a.all, a.filters, a.keepDurationMs, a.reservedSpace.bytes], [false, ["type==source.local", "type==exec.cachemount"], 48 * 3600_000, 512 * MiB]);
    assert.deepEqual([b.all, b.keepDurationMs, b.reservedSpace.bytes], [true, 3600_000, 1024000000]);
    assert.deepEqual([c.reservedSpace.bytes, c.maxUsedSpace.percentage, c.minFreeSpace.bytes], [GiB, 20, 10 * GiB]);
  });
});

test("bad GC values are config errors", async () => {
  for (const bad of [`maxUsedSpace = "lots"`, `reservedSpace = "1.5%"`, `[[worker.oci.gcpolicy]]\n  keepDuration = "2 days"`]) {
    await withConfig(`[worker.oci]\n  ${bad}\n`, async (file) => {
      await assert.rejects(loadConfig(file), (e: unknown) => e instanceof KilnError && e.code === "KILN_CONFIG", bad);
    });
  }
});
