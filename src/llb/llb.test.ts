import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DefinitionSchema, MountType, OpSchema } from "../api/index.js";
import type { Op } from "../api/index.js";
import { digestOf, KilnError } from "../util/index.js";
import { FileAction, State, image, loadDefinition, local, merge, normalizeImageRef, ownerFromString, type Output, type Vertex } from "./index.js";

const amd64 = { os: "linux", architecture: "amd64" };
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const decode = (b: Uint8Array): Op => fromBinary(OpSchema, b);

/** A State on an op known only by digest, to reproduce graphs whose other ops we cannot rebuild. */
function stubState(digest: string): State {
  const v: Vertex = {
    inputs: () => [],
    marshal: () => ({ digest, bytes: new Uint8Array(), metadata: { ignoreCache: false, description: new Map(), caps: new Set(), progressGroup: undefined, exportCache: undefined }, location: undefined }),
  };
  const o: Output = { vertex: v, platform: undefined, index: () => 0 };
  return State.fromOutput(o);
}

function execOf(b: Uint8Array) {
  const op = decode(b);
  assert.equal(op.op.case, "exec");
  return op.op.value;
}

// Golden digests: Go-built Dockerfile LLB graphs (`buildctl debug dump-llb --dot` output kept in a
// public dataset of Dockerfile builds, linux/amd64). They predate Meta.removeMountStubsRecursive.
void test("golden: image source ops match Go digests", () => {
  const busybox = image("busybox", { platform: amd64 }).marshal({ platform: amd64 });
  assert.equal(digestOf(busybox.def[0]!), "sha256:08a03f3ffe5fba421a6403c31e153425ced631d108868f30e04985f99d69326e");
  assert.equal(
    hex(busybox.def[0]!),
    "1a310a2f" + Buffer.from("docker-image://docker.io/library/busybox:latest").toString("hex") + "520e0a05" + Buffer.from("amd64").toString("hex") + "1205" + Buffer.from("linux").toString("hex") + "5a00",
  );
  const alpine = image("alpine", { platform: amd64 }).marshal({ platform: amd64 });
  assert.equal(digestOf(alpine.def[0]!), "sha256:665ba8b2cdc0cb0200e2a42a6b3c0f8f684089f4cd1b81494fbb9805879120f7");
});

void test("golden: WORKDIR mkdir file op matches Go", () => {
  const st = image("alpine", { platform: amd64 }).file(FileAction.mkdir("/app", 0o755, { makeParents: true }), { platform: amd64 });
  const d = st.marshal({ platform: amd64 });
  assert.equal(digestOf(d.def[1]!), "sha256:8b5944087bea72c9a7cf80d56804b24e810a3acc9cdddb7155e1e83a7a0d11d0");
});

void test("golden: ADD copy with two inputs matches Go", () => {
  const ctx = stubState("sha256:8872413345b1a910e955a75639b2f00a43c705319bd9fa12c28ab13430a3bbc2");
  const action = FileAction.copy(ctx, "/", "/foo/", {
    followSymlinks: true,
    copyDirContentsOnly: true,
    attemptUnpack: true,
    createDestPath: true,
    allowWildcard: true,
    allowEmptyWildcard: true,
  });
  const d = image("busybox", { platform: amd64 }).file(action, { platform: amd64 }).marshal({ platform: amd64 });
  assert.equal(digestOf(d.def[d.def.length - 2]!), "sha256:8046227af94b6eb82133e56fd45c7480e65b0fab92e91ac588c9d213f5fbd0b7");
});

void test("golden: RUN exec op matches Go apart from the v0.11 removeMountStubsRecursive flag", () => {
  const st = image("busybox", { platform: amd64 })
    .addEnv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    .run({ args: ["/bin/sh", "-c", "echo hello > /newfile"], platform: amd64 });
  const d = st.marshal({ platform: amd64 });
  const op = decode(d.def[1]!);
  assert.equal(op.op.case, "exec");
  if (op.op.case !== "exec") return;
  assert.equal(op.op.value.meta?.removeMountStubsRecursive, true);
  op.op.value.meta!.removeMountStubsRecursive = false;
  assert.equal(digestOf(toBinary(OpSchema, op)), "sha256:86576b45c26679ce5a3c5b0ae3e7776a52e2f8efc0e3b201d868db3f641b24d6");
});

void test("golden: terminal op", () => {
  const term = toBinary(OpSchema, create(OpSchema, { inputs: [{ digest: "sha256:234266d1d6afb8793d0745c8972a7e98dbf3d7f83c96510bad5fd8454595c3b9", index: 0n }] }));
  assert.equal(digestOf(term), "sha256:58e1767e108e91a0e120189bdc7f79590dee3521dd343b3f7ad32df17b8fa412");
});

function sampleState(): State {
  const ctx = local("context", { sessionId: "sess", sharedKeyHint: "context", excludePatterns: ["*.md", "a&b"], includePatterns: ["src"] });
  return image("busybox", { platform: amd64 })
    .addEnv("B", "2")
    .addEnv("A", "1")
    .dir("/work")
    .user("app")
    .run({ args: ["make"], customName: "build", mounts: [{ dest: "/src", source: ctx, readonly: true }] })
    .root()
    .file(FileAction.copy(ctx, "out", "bin/", { mode: 0o755 }));
}

void test("marshal is deterministic", () => {
  const a = sampleState().marshal({ platform: amd64 });
  const b = sampleState().marshal({ platform: amd64 });
  assert.deepEqual(a.def.map(hex), b.def.map(hex));
  assert.equal(hex(a.toBinary()), hex(b.toBinary()));
  const s = sampleState();
  assert.equal(hex(s.marshal({ platform: amd64 }).toBinary()), hex(s.marshal({ platform: amd64 }).toBinary()));
});

function keyOffsets(bytes: Uint8Array, keys: string[]): number[] {
  const buf = Buffer.from(bytes);
  return keys.map((k) => {
    const i = buf.indexOf(k);
    assert.ok(i >= 0, `${k} not found`);
    return i;
  });
}

void test("maps are written sorted by key, key and value both present", () => {
  const d = local("ctx", { sessionId: "s", sharedKeyHint: "h", followPaths: ["f"], excludePatterns: ["e"], includePatterns: ["i"] }).marshal({ platform: amd64 });
  const keys = ["local.excludepatterns", "local.followpaths", "local.includepattern", "local.session", "local.sharedkeyhint"];
  const offs = keyOffsets(d.def[0]!, keys);
  assert.deepEqual([...offs].sort((x, y) => x - y), offs);
  const op = decode(d.def[0]!);
  assert.equal(op.platform, undefined, "local sources carry no platform");
  assert.equal(op.op.case === "source" && op.op.value.attrs["local.excludepatterns"], '["e"]');

  const md = Object.keys(d.metadata);
  assert.deepEqual([...md].sort(), md);
  const full = d.toBinary();
  assert.deepEqual(keyOffsets(full, md), [...keyOffsets(full, md)].sort((x, y) => x - y));
  const caps = Object.keys(d.metadata[digestOf(d.def[0]!)]!.caps);
  assert.deepEqual(caps, ["source.local", "source.local.excludepatterns", "source.local.followpaths", "source.local.includepatterns", "source.local.sessionid", "source.local.sharedkeyhint"]);
  // A map<string,bool> entry is key (field 1) then value true (field 2).
  assert.ok(hex(full).includes("0a0c" + Buffer.from("source.local").toString("hex") + "1001"));
});

void test("Go JSON escaping of pattern lists", () => {
  const d = local("c", { sessionId: "s", excludePatterns: ["a&b", "<x>"] }).marshal();
  const op = decode(d.def[0]!);
  assert.equal(op.op.case === "source" && op.op.value.attrs["local.excludepatterns"], '["a\\u0026b","\\u003cx\\u003e"]');
});

void test("terminal op shape and definition-level caps", () => {
  const d = sampleState().marshal({ platform: amd64 });
  const last = decode(d.def[d.def.length - 1]!);
  assert.equal(last.op.case, undefined);
  assert.equal(last.inputs.length, 1);
  assert.equal(last.platform, undefined);
  assert.equal(last.constraints, undefined);
  assert.equal(last.inputs[0]!.digest, digestOf(d.def[d.def.length - 2]!));
  const tmeta = d.metadata[digestOf(d.def[d.def.length - 1]!)]!;
  assert.deepEqual(Object.keys(tmeta.caps), ["constraints", "meta.description", "platform"]);
  // Go always attaches a Source, with an (empty) location list per op.
  assert.ok(d.source);
  assert.equal(Object.keys(d.source.locations).length, d.def.length - 1);
  // Scratch marshals to an empty definition.
  assert.equal(State.scratch().marshal().toBinary().length, 0);
});

void test("exec meta carries env, dir and user; mounts sorted with root first", () => {
  const ctx = local("c", { sessionId: "s" });
  const base = image("busybox", { platform: amd64 }).addEnv("X", "1").addEnv("Y", "2").addEnv("X", "3").dir("/a").dir("b").user("nobody");
  assert.deepEqual(base.env(), ["Y=2", "X=3"]);
  assert.equal(base.getDir(), "/a/b");
  const es = base.run({
    args: ["true"],
    mounts: [
      { dest: "/z", source: ctx },
      { dest: "/cache", type: "cache", sharing: "locked" },
      { dest: "/ro", source: ctx, readonly: true },
      { dest: "/tmp", type: "tmpfs", tmpfsSize: 1024 },
      { dest: "/run/secrets/tok", type: "secret", secret: { id: "tok" } },
      { dest: "/m", source: ctx, selector: "sub" },
    ],
    network: "none",
  });
  const d = es.marshal({ platform: amd64 });
  const exec = execOf(d.def[d.def.length - 2]!);
  assert.deepEqual(exec.meta?.env, ["Y=2", "X=3"]);
  assert.equal(exec.meta?.cwd, "/a/b");
  assert.equal(exec.meta?.user, "nobody");
  assert.equal(exec.network, 2);
  assert.deepEqual(
    exec.mounts.map((m) => [m.dest, Number(m.input), Number(m.output), m.mountType]),
    [
      ["/", 0, 0, MountType.BIND],
      ["/cache", -1, -1, MountType.CACHE],
      ["/m", 1, 1, MountType.BIND],
      ["/ro", 1, -1, MountType.BIND],
      ["/tmp", -1, -1, MountType.TMPFS],
      ["/z", 1, 2, MountType.BIND],
      ["/run/secrets/tok", 0, 0, MountType.SECRET],
    ],
  );
  assert.equal(exec.mounts[1]!.cacheOpt?.ID, "/cache");
  assert.equal(exec.mounts[6]!.secretOpt?.mode, 0o400);
  // The run's overrides do not leak into the result State.
  assert.equal(es.root().getEnv("X"), "3");
  assert.equal(es.getNetwork(), "sandbox");
  // getMount gives the mount's own output index.
  const z = es.getMount("/z").marshal({ platform: amd64 });
  assert.equal(Number(decode(z.def[z.def.length - 1]!).inputs[0]!.index), 2);
  assert.throws(() => es.getMount("/tmp").marshal({ platform: amd64 }), KilnError);
  const caps = Object.keys(d.metadata[digestOf(d.def[d.def.length - 2]!)]!.caps);
  for (const c of ["exec.meta.base", "exec.meta.network", "exec.mount.bind", "exec.mount.cache", "exec.mount.selector", "exec.mount.tmpfs", "exec.mount.tmpfs.size", "exec.mount.secret"]) {
    assert.ok(caps.includes(c), c);
  }
});

void test("negative int64 uses the 10-byte varint", () => {
  const d = State.scratch().run({ args: ["x"] }).marshal({ platform: amd64 });
  const exec = execOf(d.def[0]!);
  assert.equal(exec.mounts[0]!.input, -1n);
  assert.ok(hex(d.def[0]!).includes("08ffffffffffffffffff01"), "Mount.input = -1");
});

void test("file action chain: indexes, relative paths and owners", () => {
  const other = image("alpine", { platform: amd64 }).dir("/src");
  const base = image("busybox", { platform: amd64 }).dir("/app");
  const chain = FileAction.mkdir("data", 0o1755, { owner: { user: { name: "app" }, group: { id: 0 } } })
    .copy(other, "lib/x", "dest/.", { owner: ownerFromString("1000:staff") })
    .mkfile("f.txt", 0o644, "hi", { timestamp: 1_700_000_000n * 1_000_000_000n })
    .rm("/tmp/*", { allowWildcard: true });
  const d = base.file(chain).marshal({ platform: amd64 });
  const op = decode(d.def[d.def.length - 2]!);
  assert.equal(op.op.case, "file");
  if (op.op.case !== "file") return;
  assert.deepEqual(
    op.inputs.map((i) => i.digest),
    [digestOf(d.def[0]!), digestOf(d.def[1]!)].sort((a, b) => (a === op.inputs[0]!.digest ? -1 : b === op.inputs[0]!.digest ? 1 : 0)),
  );
  const acts = op.op.value.actions;
  assert.deepEqual(
    acts.map((a) => [Number(a.input), Number(a.secondaryInput), Number(a.output), a.action.case]),
    [
      [0, -1, -1, "mkdir"],
      [2, 1, -1, "copy"],
      [3, -1, -1, "mkfile"],
      [4, -1, 0, "rm"],
    ],
  );
  const [mk, cp, mf, rm] = acts.map((a) => a.action);
  assert.ok(mk?.case === "mkdir" && cp?.case === "copy" && mf?.case === "mkfile" && rm?.case === "rm");
  assert.equal(mk.value.path, "/app/data");
  assert.equal(mk.value.mode, 0o755);
  assert.equal(mk.value.timestamp, -1n);
  assert.equal(mk.value.owner?.user?.user.case, "byName");
  assert.equal(mk.value.owner?.user?.user.case === "byName" && mk.value.owner.user.user.value.input, 0n);
  assert.deepEqual(mk.value.owner?.group?.user, { case: "byID", value: 0 });
  assert.equal(cp.value.src, "/src/lib/x");
  assert.equal(cp.value.dest, "/app/dest/.");
  assert.equal(cp.value.mode, -1);
  assert.deepEqual(cp.value.owner?.user?.user, { case: "byID", value: 1000 });
  assert.equal(cp.value.owner?.group?.user.case, "byName");
  assert.equal(mf.value.path, "/app/f.txt");
  assert.equal(mf.value.timestamp, 1_700_000_000_000_000_000n);
  assert.equal(rm.value.path, "/tmp/*");
  // byID 0 is a oneof member, so it is written even though it is zero.
  assert.ok(hex(d.def[d.def.length - 2]!).includes("12021000"));
});

void test("copy from scratch and onto scratch use -1", () => {
  const d = State.scratch().file(FileAction.copy(State.scratch(), "/a", "/b")).marshal({ platform: amd64 });
  const op = decode(d.def[0]!);
  assert.equal(op.inputs.length, 0);
  assert.ok(op.op.case === "file");
  const a = op.op.case === "file" ? op.op.value.actions[0]! : undefined;
  assert.equal(a?.input, -1n);
  assert.equal(a?.secondaryInput, -1n);
});

void test("local without session gets local.unique from the marshal", () => {
  const s = local("ctx");
  const a = decode(s.marshal({ localUniqueId: "u1" }).def[0]!);
  assert.equal(a.op.case === "source" && a.op.value.attrs["local.unique"], "u1");
  assert.notEqual(hex(s.marshal().def[0]!), hex(s.marshal().def[0]!));
});

void test("image references normalise like distribution/reference", () => {
  assert.equal(normalizeImageRef("busybox"), "docker.io/library/busybox:latest");
  assert.equal(normalizeImageRef("foo/bar:1"), "docker.io/foo/bar:1");
  assert.equal(normalizeImageRef("index.docker.io/library/alpine"), "docker.io/library/alpine:latest");
  assert.equal(normalizeImageRef("localhost:5000/x"), "localhost:5000/x:latest");
  assert.equal(normalizeImageRef("ghcr.io/a/b@sha256:" + "a".repeat(64)), "ghcr.io/a/b@sha256:" + "a".repeat(64));
  assert.throws(() => normalizeImageRef("Busybox"));
  assert.throws(() => normalizeImageRef("a".repeat(64)));
  const pinned = image("alpine:3.18", { resolvedDigest: "sha256:" + "b".repeat(64) }).marshal({ platform: amd64 });
  assert.equal(decode(pinned.def[0]!).op.case === "source" && (decode(pinned.def[0]!).op.value as { identifier: string }).identifier, "docker-image://docker.io/library/alpine:3.18@sha256:" + "b".repeat(64));
  const bare = image("alpine", { resolvedDigest: "sha256:" + "b".repeat(64) }).marshal({ platform: amd64 });
  assert.equal((decode(bare.def[0]!).op.value as { identifier: string }).identifier, "docker-image://docker.io/library/alpine@sha256:" + "b".repeat(64));
  // Bad references fail when marshalled, as in Go.
  const bad = image("UPPER");
  assert.throws(() => bad.marshal(), KilnError);
});

void test("merge skips scratch and layers in order", () => {
  const a = image("busybox", { platform: amd64 });
  const b = image("alpine", { platform: amd64 });
  assert.equal(merge([State.scratch(), a]), a);
  const d = merge([a, b]).marshal({ platform: amd64 });
  const op = decode(d.def[2]!);
  assert.equal(op.op.case, "merge");
  assert.equal(op.platform, undefined);
  assert.deepEqual(Object.keys(d.metadata[digestOf(d.def[2]!)]!.caps), ["mergeop"]);
});

void test("loadDefinition round-trips a marshalled graph", () => {
  const d = sampleState().marshal({ platform: amd64 });
  const loaded = loadDefinition(d.toBinary());
  assert.equal(loaded.ops.size, d.def.length - 1);
  assert.deepEqual(loaded.root, { digest: digestOf(d.def[d.def.length - 2]!), index: 0 });
  for (const op of loaded.ops.values()) {
    for (const i of op.inputs) assert.ok(loaded.ops.has(i.digest));
    assert.deepEqual(op.metadata, d.metadata[op.digest]);
  }
  assert.ok(loaded.source);
  assert.equal(loadDefinition(d.toProto()).ops.size, loaded.ops.size);
});

void test("loadDefinition validates", () => {
  assert.deepEqual(loadDefinition(new Uint8Array()).root, undefined);
  const d = image("busybox", { platform: amd64 }).marshal({ platform: amd64 });
  const withDefs = (def: Uint8Array[]) => toBinary(DefinitionSchema, create(DefinitionSchema, { def }));
  assert.throws(() => loadDefinition(withDefs([d.def[1]!])), /invalid LLB with 1 vertexes/);
  assert.throws(() => loadDefinition(withDefs([d.def[0]!, d.def[0]!])), /invalid LLB with 1 vertexes/);
  assert.throws(() => loadDefinition(withDefs([d.def[0]!, toBinary(OpSchema, create(OpSchema, {}))])), /no inputs on last vertex/);
  const dangling = toBinary(OpSchema, create(OpSchema, { inputs: [{ digest: "sha256:" + "0".repeat(64) }] }));
  assert.throws(() => loadDefinition(withDefs([d.def[0]!, dangling])), /invalid missing input digest/);
  const noArgs = toBinary(OpSchema, create(OpSchema, { op: { case: "exec", value: { meta: {}, mounts: [{ dest: "/" }] } } }));
  const term = toBinary(OpSchema, create(OpSchema, { inputs: [{ digest: digestOf(noArgs) }] }));
  assert.throws(() => loadDefinition(withDefs([noArgs, term])), /no args/);
  assert.throws(() => loadDefinition(new Uint8Array([0xff, 0xff])), KilnError);
  // Duplicate entries collapse by digest.
  const dup = loadDefinition(withDefs([d.def[0]!, d.def[0]!, d.def[1]!]));
  assert.equal(dup.ops.size, 1);
});

void test("digests cover the exact bytes received", () => {
  const d = image("busybox", { platform: amd64 }).marshal({ platform: amd64 });
  // Same op with an unknown field appended: a different digest, and the loader must keep it.
  const odd = new Uint8Array([...d.def[0]!, 0xf8, 0x06, 0x01]);
  const term = toBinary(OpSchema, create(OpSchema, { inputs: [{ digest: digestOf(odd) }] }));
  const loaded = loadDefinition(toBinary(DefinitionSchema, create(DefinitionSchema, { def: [odd, term] })));
  assert.deepEqual([...loaded.ops.keys()], [digestOf(odd)]);
});
