import { test } from "node:test";
import assert from "node:assert/strict";
import { formatPlatform, hostPlatform, normalizePlatform, parsePlatform, platformDirName, platformEquals, platformVector } from "./platform.js";

const host = hostPlatform();
const fmt = (s: string) => formatPlatform(parsePlatform(s));

test("parsePlatform normalises what users type as containerd does", () => {
  const cases: [string, string][] = [
    ["linux/amd64", "linux/amd64"],
    ["linux/arm64/v8", "linux/arm64"],
    ["linux/arm64/8", "linux/arm64"],
    ["linux/aarch64", "linux/arm64"],
    ["linux/arm", "linux/arm/v7"],
    ["linux/arm/7", "linux/arm/v7"],
    ["linux/arm/v6", "linux/arm/v6"],
    ["linux/arm/6", "linux/arm/v6"],
    ["linux/armhf", "linux/arm/v7"],
    ["linux/armel", "linux/arm/v6"],
    ["linux/x86_64", "linux/amd64"],
    ["linux/x86-64/v1", "linux/amd64"],
    ["linux/amd64/v3", "linux/amd64/v3"],
    ["linux/i386", "linux/386"],
    ["Linux/AMD64", "linux/amd64"],
    ["macos/arm64", "darwin/arm64"],
    ["windows/amd64", "windows/amd64"],
    ["amd64", `${host.os}/amd64`],
    ["arm64", `${host.os}/arm64`],
    ["arm", `${host.os}/arm/v7`],
    ["aarch64", `${host.os}/arm64`],
    ["riscv64", `${host.os}/riscv64`],
    [" linux/s390x ", "linux/s390x"],
  ];
  for (const [input, want] of cases) assert.equal(fmt(input), want, input);
});

test("local, an empty spec and a lone OS name mean this machine", () => {
  assert.deepEqual(parsePlatform("local"), host);
  assert.deepEqual(parsePlatform(""), host);
  assert.deepEqual(parsePlatform("linux"), host);
  assert.equal(parsePlatform("windows").architecture, host.architecture);
  assert.equal(parsePlatform("windows").os, "windows");
});

test("bad platform specifiers are refused", () => {
  assert.throws(() => parsePlatform("notanarch"), /unknown operating system or architecture/);
  assert.throws(() => parsePlatform("linux/*"), /wildcards/);
  assert.throws(() => parsePlatform("linux/arm64/v8/x"), /cannot parse platform specifier/);
  assert.throws(() => parsePlatform("linux//amd64"), /invalid component/);
  assert.throws(() => parsePlatform("linux/am d64"), /invalid component/);
});

test("normalised platforms compare equal and name split folders", () => {
  assert.ok(platformEquals({ os: "linux", architecture: "arm64", variant: "v8" }, { os: "linux", architecture: "aarch64" }));
  assert.ok(platformEquals({ os: "linux", architecture: "arm" }, { os: "linux", architecture: "arm", variant: "v7" }));
  assert.ok(!platformEquals({ os: "linux", architecture: "arm", variant: "v6" }, { os: "linux", architecture: "arm" }));
  assert.deepEqual(normalizePlatform({ os: "linux", architecture: "amd64", variant: "" }), { os: "linux", architecture: "amd64" });
  assert.equal(platformDirName({ os: "linux", architecture: "arm" }), "linux_arm_v7");
  assert.equal(platformDirName({ os: "linux", architecture: "arm64", variant: "v8" }), "linux_arm64");
});

test("platformVector lists what a platform runs, best first, as containerd's matcher", () => {
  const names = (spec: string) => platformVector(parsePlatform(spec)).map(formatPlatform);
  assert.deepEqual(names("linux/amd64/v3"), ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]);
  assert.deepEqual(names("linux/amd64"), ["linux/amd64", "linux/386"]);
  assert.deepEqual(names("linux/arm/v7"), ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]);
  assert.deepEqual(names("linux/arm64"), ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]);
  assert.deepEqual(names("linux/riscv64"), ["linux/riscv64"]);
});
