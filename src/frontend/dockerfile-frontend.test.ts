import { test } from "node:test";
import assert from "node:assert/strict";
import { digestOf } from "../util/index.js";
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

void test("FrontendInputs named context (and dockerfile) replace the client's directories", async () => {
  const { DockerfileFrontend } = await import("./dockerfile-frontend.js");
  const { State, FileAction, loadDefinition } = await import("../llb/index.js");
  const platform = { os: "linux", architecture: "amd64" };
  const ctxDef = (await State.scratch().file(FileAction.mkfile("/foo", 0o644, "x")).marshal({ platform })).toProto();
  const dfDef = (await State.scratch().file(FileAction.mkfile("/Dockerfile", 0o644, "FROM scratch\nCOPY foo foo2\n")).marshal({ platform })).toProto();
  const solved: Uint8Array[] = [];
  const bridge = {
    solve: async (_s: AbortSignal, def: Uint8Array) => String(solved.push(def) - 1),
    // Only the dockerfile input's ops hold the Dockerfile.
    readFile: async (_s: AbortSignal, ref: string, p: string) =>
      p === "Dockerfile" && Buffer.from(solved[Number(ref)]!).includes(Buffer.from(dfDef.def[0]!)) ? Buffer.from("FROM scratch\nCOPY foo foo2\n") : undefined,
    resolveImageConfig: async () => {
      throw new Error("no images here");
    },
  };
  const res = await new DockerfileFrontend().solve(AbortSignal.timeout(5000), bridge, { attrs: {}, sessionId: "s", buildPlatform: platform, inputs: { context: ctxDef, dockerfile: dfDef } });
  const ids = [...loadDefinition(res.definition!).ops.values()].flatMap((o) => (o.op.op.case === "source" ? [o.op.op.value.identifier] : []));
  assert.deepEqual(ids, [], "no local source: the context is the input's ops");
  const ld = loadDefinition(res.definition!);
  for (const b of ctxDef.def.slice(0, -1)) assert.ok(ld.ops.has(digestOf(b)), "the context input's ops are in the build");
  assert.ok(solved.every((d) => !Buffer.from(d).toString("latin1").includes("local://")), "nothing was read from the client");
});
