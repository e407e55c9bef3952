import { test } from "node:test";
import assert from "node:assert/strict";
import { amd64Variants, canRun, emulationHint } from "./emulation.js";

test("amd64 microarchitecture levels come from the CPU flags, each level needing the ones below", () => {
  const v2 = "cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3";
  const v3 = "avx avx2 bmi1 bmi2 f16c fma abm movbe xsave";
  const v4 = "avx512f avx512bw avx512cd avx512dq avx512vl";
  assert.deepEqual(amd64Variants(`processor\t: 0\nflags\t\t: fpu sse2 ${v2} ${v3} ${v4}\n`), ["v2", "v3", "v4"]);
  assert.deepEqual(amd64Variants(`flags\t\t: fpu ${v2} ${v3}\n`), ["v2", "v3"]);
  assert.deepEqual(amd64Variants(`flags\t\t: fpu ${v2} ${v4}\n`), ["v2"], "v4 without v3 is not v4");
  assert.deepEqual(amd64Variants("flags\t\t: fpu sse2\n"), []);
  assert.deepEqual(amd64Variants(""), []);
});

test("canRun compares normalised platforms; the hint says how to get emulation", () => {
  const supported = [
    { os: "linux", architecture: "amd64" },
    { os: "linux", architecture: "arm64" },
    { os: "linux", architecture: "arm", variant: "v7" },
  ];
  assert.ok(canRun(supported, { os: "linux", architecture: "arm64", variant: "v8" }));
  assert.ok(canRun(supported, { os: "linux", architecture: "arm" }));
  assert.ok(!canRun(supported, { os: "linux", architecture: "arm", variant: "v6" }));
  assert.ok(!canRun(supported, { os: "linux", architecture: "s390x" }));
  assert.match(emulationHint({ os: "linux", architecture: "s390x" }), /linux\/s390x.*apt-get install qemu-user-static.*kiln binfmt --install all/);
});
