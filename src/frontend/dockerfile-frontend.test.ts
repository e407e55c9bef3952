import { test } from "node:test";
import assert from "node:assert/strict";
import { isArchive, parseUlimits } from "./dockerfile-frontend.js";

void test("ulimit attr: Docker's NAME=SOFT[:HARD] list, refused as BuildKit refuses it", () => {
  assert.deepEqual(parseUlimits(""), []);
  assert.deepEqual(parseUlimits("nofile=1062:1062,nproc=512"), [
    { name: "nofile", soft: 1062, hard: 1062 },
    { name: "nproc", soft: 512, hard: 512 },
  ]);
  assert.deepEqual(parseUlimits("core=-1:-1"), [{ name: "core", soft: -1, hard: -1 }]);
  assert.throws(() => parseUlimits("nofile"), /invalid ulimit argument: nofile/);
  assert.throws(() => parseUlimits("as=1"), /invalid ulimit type: as/);
  assert.throws(() => parseUlimits("nofile=2:1"), /soft limit must be less than or equal to hard limit: 2 > 1/);
  assert.throws(() => parseUlimits("nofile=1:2:3"), /too many limit value arguments/);
  assert.throws(() => parseUlimits("nofile=x"), /invalid syntax/);
});

void test("isArchive: compressed streams by magic number, a tar by its header checksum", () => {
  assert.equal(isArchive(Buffer.from([0x1f, 0x8b, 0x08, 0])), true);
  assert.equal(isArchive(Buffer.from("BZh91AY")), true);
  assert.equal(isArchive(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1])), true);
  assert.equal(isArchive(Buffer.from("FROM scratch\nCOPY foo /\n")), false);
  const header = Buffer.alloc(512);
  header.write("Dockerfile", 0);
  header.write("0000644\0", 100);
  header.write("00000000012\0", 124);
  header.write("0", 156);
  header.write("ustar\0" + "00", 257);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  header.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  assert.equal(isArchive(header), true);
  header[0] = 0x45;
  assert.equal(isArchive(header), false, "a header whose checksum no longer matches");
});

void test("parser warnings go to the Dockerfile's load step once, however many platforms are built", async () => {
  const { DockerfileFrontend } = await import("./dockerfile-frontend.js");
  const dockerfile = Buffer.from("FROM scratch\nCOPY \\\n\nDockerfile .\n");
  const warnings: { vertex: string; short: string; url?: string }[] = [];
  const solved: string[] = [];
  const bridge = {
    solve: async (_s: AbortSignal, def: Uint8Array) => {
      solved.push(Buffer.from(def).toString("latin1"));
      return String(solved.length - 1);
    },
    readFile: async (_s: AbortSignal, ref: string, p: string) => (solved[Number(ref)]!.includes("local://dockerfile") && p === "Dockerfile" ? dockerfile : undefined),
    resolveImageConfig: async () => {
      throw new Error("no images here");
    },
    warn: (vertex: string, w: { short: string; url?: string }) => warnings.push({ vertex, short: w.short, url: w.url }),
  };
  await new DockerfileFrontend().solve(AbortSignal.timeout(5000), bridge, { attrs: { platform: "linux/amd64,linux/arm64" }, sessionId: "s", buildPlatform: { os: "linux", architecture: "amd64" } });
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]!.short, "Empty continuation line found in: COPY Dockerfile .");
  assert.equal(warnings[0]!.url, "https://github.com/moby/moby/pull/33719");
  assert.match(warnings[0]!.vertex, /^sha256:[0-9a-f]{64}$/);
});
