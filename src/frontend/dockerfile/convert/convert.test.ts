// The converter's LLB shapes, checked against what BuildKit's dockerfile2llb emits for the same
// Dockerfile: mounts of every type, heredocs, --link merges, remote sources, stage reachability.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MountType, NetMode, SecurityMode, CacheSharingOpt } from "../../../api/index.js";
import type { ExecOp, FileOp, SourceOp } from "../../../api/index.js";
import { loadDefinition, type LoadedDefinition, type LoadedOp } from "../../../llb/index.js";
import { KilnError, type Platform } from "../../../util/index.js";
import { convertDockerfile, type ConvertOptions } from "./convert.js";

const amd64: Platform = { os: "linux", architecture: "amd64" };
const digest = "sha256:" + "ab".repeat(32);

function imageConfig(extra: Record<string, unknown> = {}): Uint8Array {
  return Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: ["sha256:" + "cd".repeat(32)] }, config: { Env: ["PATH=/bin"] }, ...extra }));
}

async function convert(dockerfile: string, extra: Partial<ConvertOptions> = {}, configs: Record<string, Uint8Array> = {}) {
  const resolved: string[] = [];
  const res = await convertDockerfile(AbortSignal.timeout(5000), {
    dockerfile,
    filename: "Dockerfile",
    buildArgs: {},
    labels: {},
    buildPlatform: amd64,
    targetPlatform: amd64,
    contextName: "context",
    sessionId: "sess",
    excludePatterns: [],
    noCache: false,
    resolveImageConfig: async (ref) => {
      resolved.push(ref);
      const cfg = configs[ref];
      if (cfg === undefined && /nosuch|buildr/.test(ref)) throw new Error("not found");
      return { ref, digest, config: cfg ?? imageConfig() };
    },
    ...extra,
  });
  const def = loadDefinition(res.state.marshal({ platform: amd64 }).toBinary());
  return { res, def, resolved };
}

/** The definition's ops of one kind, inputs before the ops that use them. */
function ops(def: LoadedDefinition, kind: "exec" | "file" | "source" | "merge"): LoadedOp[] {
  const order: LoadedOp[] = [];
  const seen = new Set<string>();
  const visit = (d: string) => {
    if (seen.has(d)) return;
    seen.add(d);
    const o = def.ops.get(d)!;
    for (const i of o.inputs) visit(i.digest);
    order.push(o);
  };
  visit(def.root!.digest);
  return order.filter((o) => o.op.op.case === kind);
}
const exec = (o: LoadedOp) => o.op.op.value as ExecOp;
const file = (o: LoadedOp) => o.op.op.value as FileOp;
const source = (o: LoadedOp) => o.op.op.value as SourceOp;
const name = (o: LoadedOp) => o.metadata?.description["llb.customname"];

void test("RUN --mount of each type becomes BuildKit's mount shape", async () => {
  const { def, resolved } = await convert(
    [
      "FROM busybox AS gen",
      "RUN touch /x",
      "FROM busybox",
      "WORKDIR /w",
      "RUN --mount=type=cache,target=/c,sharing=locked,uid=5,mode=0700 --mount=type=cache,id=shared,target=rel \\",
      "    --mount=type=bind,from=gen,source=/x,target=/g --mount=type=bind,target=/ctx,rw --mount=type=bind,from=alpine,target=/a \\",
      "    --mount=type=tmpfs,target=/t,size=1m --mount=type=secret,id=tok --mount=type=secret,id=k,env=KEY \\",
      "    --mount=type=ssh --mount=type=ssh,id=other,target=/s,mode=0666 true",
    ].join("\n"),
    { buildArgs: { BUILDKIT_CACHE_MOUNT_NS: "ns" } },
  );
  assert.ok(resolved.includes("docker.io/library/alpine:latest"), "an image named by from= is resolved and pinned");
  const runs = ops(def, "exec").map(exec);
  const run = runs.find((e) => e.meta!.args.at(-1) === "true")!;
  const byDest = new Map(run.mounts.map((m) => [m.dest, m]));
  const c = byDest.get("/c")!;
  assert.equal(c.mountType, MountType.CACHE);
  assert.equal(c.cacheOpt!.ID, "ns//c");
  assert.equal(c.cacheOpt!.sharing, CacheSharingOpt.LOCKED);
  assert.equal(c.selector, "/cache", "uid/mode come from a directory made for the mount");
  const rel = byDest.get("/w/rel")!;
  assert.equal(rel.cacheOpt!.ID, "ns/shared");
  assert.equal(rel.input, -1n, "a cache mount without from= starts on scratch");
  assert.equal(byDest.get("/g")!.selector, "/x");
  assert.equal(byDest.get("/g")!.readonly, true);
  const ctx = byDest.get("/ctx")!;
  assert.equal(ctx.readonly, false);
  assert.equal(ctx.output, -1n, "rw binds discard their writes");
  assert.equal(byDest.get("/t")!.mountType, MountType.TMPFS);
  assert.equal(byDest.get("/t")!.TmpfsOpt!.size, 1048576n);
  const tok = byDest.get("/run/secrets/tok")!;
  assert.equal(tok.mountType, MountType.SECRET);
  assert.deepEqual([tok.secretOpt!.ID, tok.secretOpt!.mode, tok.secretOpt!.optional], ["tok", 0o400, true]);
  assert.deepEqual(
    run.secretenv.map((s) => [s.ID, s.name]),
    [["k", "KEY"]],
  );
  assert.equal(byDest.get("/run/buildkit/ssh_agent.0")!.SSHOpt!.ID, "");
  assert.equal(byDest.get("/s")!.SSHOpt!.mode, 0o666);
  assert.ok(run.meta!.env.includes("SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0"));
  const permissions = ops(def, "file").find((o) => name(o) === "[internal] settings cache mount permissions")!;
  const mk = file(permissions).actions[0]!.action;
  assert.equal(mk.case, "mkdir");
  assert.equal(mk.case === "mkdir" && mk.value.mode, 0o700);
});

void test("--network and --security set the exec's modes", async () => {
  const { def } = await convert("FROM busybox\nRUN --network=none true\nRUN --network=host --security=insecure true\n");
  const [a, b] = ops(def, "exec").map(exec);
  assert.deepEqual([a!.network, a!.security], [NetMode.NONE, SecurityMode.SANDBOX]);
  assert.deepEqual([b!.network, b!.security], [NetMode.HOST, SecurityMode.INSECURE]);
});

void test("RUN heredocs: inline script, shebang file mounted at /dev/pipes, shell heredoc passed through", async () => {
  const { def } = await convert("FROM busybox\nRUN <<EOF\necho a\nEOF\nRUN <<EOT\n#!/bin/sh\necho b\nEOT\nRUN cat <<X >/f\nc\nX\n");
  const runs = ops(def, "exec").map(exec);
  assert.deepEqual(runs.map((r) => r.meta!.args), [
    ["/bin/sh", "-c", "echo a\n"],
    ["/bin/sh", "-c", "/dev/pipes/EOT"],
    ["/bin/sh", "-c", "cat <<X >/f\nc\nX"],
  ]);
  const pipes = runs[1]!.mounts.find((m) => m.dest === "/dev/pipes/")!;
  assert.deepEqual([pipes.readonly, pipes.selector], [true, "/"]);
});

void test("COPY --link copies onto scratch and merges; ADD of URLs and git repos use their sources", async () => {
  const { def, res } = await convert(
    [
      "FROM busybox",
      "COPY --link --chown=app:staff a.txt /dst/",
      "ADD --checksum=sha256:" + "0".repeat(64) + " https://example.com/files/x.tar.gz /dl/",
      "ADD --keep-git-dir https://example.com/org/repo.git#v1:sub /src",
      "COPY --parents --exclude=*.md docs/./guide/*.txt /out/",
    ].join("\n"),
  );
  const merge = ops(def, "merge");
  assert.equal(merge.length, 1);
  assert.match(name(merge[0]!)!, /LINK COPY --link --chown=app:staff a.txt \/dst\//);
  const srcs = ops(def, "source").map(source);
  const httpSrc = srcs.find((s) => s.identifier.startsWith("https://"))!;
  assert.deepEqual(httpSrc.attrs, { "http.checksum": "sha256:" + "0".repeat(64), "http.filename": "x.tar.gz" });
  const gitSrc = srcs.find((s) => s.identifier.startsWith("git://"))!;
  assert.equal(gitSrc.identifier, "git://example.com/org/repo.git#v1:sub");
  assert.equal(gitSrc.attrs["git.keepgitdir"], "true");
  assert.equal(gitSrc.attrs["git.fullurl"], "https://example.com/org/repo.git");
  const copies = ops(def, "file").flatMap((o) => file(o).actions.map((a) => a.action)).filter((a) => a.case === "copy").map((a) => a.value);
  const linked = copies.find((c) => c.src === "/a.txt")!;
  assert.equal(linked.owner?.user?.user.case, "byName");
  const dl = copies.find((c) => c.src === "/x.tar.gz")!;
  assert.equal(dl.attemptUnpackDockerCompatibility, false, "remote files are never unpacked");
  const parents = copies.find((c) => c.includePatterns.length > 0)!;
  assert.deepEqual([parents.src, parents.includePatterns, parents.excludePatterns], ["/docs", ["guide/*.txt"], ["*.md"]]);
  assert.deepEqual(
    res.image.history!.map((h) => h.created_by),
    [
      "COPY a.txt /dst/ # buildkit",
      "ADD https://example.com/files/x.tar.gz /dl/ # buildkit",
      "ADD https://example.com/org/repo.git#v1:sub /src # buildkit",
      "COPY docs/./guide/*.txt /out/ # buildkit",
    ],
  );
});

void test("only stages the target needs are resolved; unknown --from images fail with a suggestion", async () => {
  const { resolved } = await convert("FROM nosuch-unused AS unused\nRUN false\nFROM busybox\nRUN true\n");
  assert.deepEqual(resolved, ["docker.io/library/busybox:latest"]);
  await assert.rejects(convert("FROM busybox AS builder\nFROM busybox\nCOPY --from=buildr /x /x\n"), (err: unknown) => {
    assert.ok(err instanceof KilnError);
    assert.equal(err.message, "buildr: not found (did you mean builder?)");
    assert.equal(err.location?.startLine, 3);
    return true;
  });
  await assert.rejects(convert("FROM busybox\nCOPY --from=3 /x /x\n"), /invalid stage index 3/);
  await assert.rejects(convert("FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n"), /circular dependency detected on stage: a/);
  await assert.rejects(convert("FROM busybox\n", { target: "nope" }), /target stage nope could not be found/);
});

void test("ONBUILD triggers of a base run in the stage that uses it and leave the config", async () => {
  const base = imageConfig({ config: { Env: ["PATH=/bin"], OnBuild: ["RUN echo triggered", "ENV FROM_TRIGGER=1"] } });
  const { def, res } = await convert("FROM onbuild-base\nRUN echo own\n", {}, { "docker.io/library/onbuild-base:latest": base });
  assert.deepEqual(
    ops(def, "exec").map((o) => exec(o).meta!.args.at(-1)),
    ["echo triggered", "echo own"],
  );
  assert.equal(res.image.config!.OnBuild, null);
  assert.ok(res.image.config!.Env!.includes("FROM_TRIGGER=1"));
});

void test("platform args reach a stage only when declared; declared args enter RUN history", async () => {
  const { def, res } = await convert("FROM busybox\nARG TARGETARCH\nARG X=1\nRUN echo $TARGETARCH\nRUN true\n", { buildArgs: { X: "2" } });
  const run = exec(ops(def, "exec")[0]!);
  assert.ok(run.meta!.env.includes("TARGETARCH=amd64"));
  assert.ok(run.meta!.env.includes("X=2"));
  assert.deepEqual(res.image.history!.at(-1)!.created_by, "RUN |2 TARGETARCH=amd64 X=2 /bin/sh -c true # buildkit");
  const { res: undeclared } = await convert("FROM busybox\nRUN true\n", { buildArgs: { TARGETARCH: "arm64", HTTP_PROXY: "http://p" } });
  assert.equal(undeclared.image.history!.at(-1)!.created_by, "RUN /bin/sh -c true # buildkit");
});

void test("ADD --unpack overrides the defaults: local archives unpack, URLs do not", async () => {
  const { def } = await convert("FROM busybox\nADD --unpack=false a.tar /a/\nADD --unpack https://example.com/b.tar.gz /b/\nADD c.tar /c/\n");
  const copies = ops(def, "file").flatMap((o) => file(o).actions.map((a) => a.action)).filter((a) => a.case === "copy").map((a) => a.value);
  assert.deepEqual(
    copies.map((c) => [c.src, c.attemptUnpackDockerCompatibility]),
    [
      ["/a.tar", false],
      ["/b.tar.gz", true],
      ["/c.tar", true],
    ],
  );
});

test("multi-platform step names lead with the platform, with ->ARCH where a stage builds for another target", async () => {
  const arm64: Platform = { os: "linux", architecture: "arm64" };
  const df = [
    "FROM --platform=$BUILDPLATFORM busybox AS build",
    "RUN echo tool",
    "ARG TARGETARCH",
    "RUN echo $TARGETARCH",
    "FROM busybox",
    "COPY --from=build /x /x",
    "WORKDIR /w",
    "RUN true",
    "",
  ].join("\n");
  const { def } = await convert(df, { targetPlatform: arm64, prefixPlatform: true });
  const names = [...ops(def, "source"), ...ops(def, "exec"), ...ops(def, "file")].map(name);
  assert.deepEqual(names.filter((n) => n !== undefined && n.startsWith("[")).sort(), [
    "[linux/amd64 build 1/3] FROM docker.io/library/busybox:latest@" + digest,
    "[linux/amd64 build 2/3] RUN echo tool",
    "[linux/amd64->arm64 build 3/3] RUN echo arm64",
    "[linux/arm64 stage-1 1/4] FROM docker.io/library/busybox:latest@" + digest,
    "[linux/arm64 stage-1 2/4] COPY --from=build /x /x",
    "[linux/arm64 stage-1 3/4] WORKDIR /w",
    "[linux/arm64 stage-1 4/4] RUN true",
  ].sort());
  // Without the option (one platform), names are as before.
  const single = await convert(df, { targetPlatform: arm64 });
  assert.ok(ops(single.def, "exec").map(name).includes("[build 2/3] RUN echo tool"));
});

void test("a windows stage gets cmd /S /C and a windows PATH; linux keeps /bin/sh -c", async () => {
  const windows: Platform = { os: "windows", architecture: "amd64" };
  const df = "FROM scratch\nENTRYPOINT foo bar\n";
  const win = await convert(df, { targetPlatform: windows });
  assert.deepEqual(win.res.image.config?.Entrypoint, ["cmd", "/S", "/C", "foo bar"]);
  assert.deepEqual(win.res.image.config?.Env, ["PATH=c:\\Windows\\System32;c:\\Windows"]);
  const linux = await convert(df);
  assert.deepEqual(linux.res.image.config?.Entrypoint, ["/bin/sh", "-c", "foo bar"]);
  assert.deepEqual(linux.res.image.config?.Env, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
});

void test("hostname, shm-size and ulimit options reach every RUN", async () => {
  const { def } = await convert("FROM busybox\nRUN true\nFROM busybox\nRUN --mount=type=tmpfs,target=/t false\n", {
    hostname: "foo",
    shmSize: 134217728,
    ulimits: [{ name: "nofile", soft: 1062, hard: 2048 }],
  });
  const runs = ops(def, "exec").map(exec);
  assert.equal(runs.length, 1, "only the target stage is built");
  const run = runs[0]!;
  assert.equal(run.meta?.hostname, "foo");
  assert.deepEqual(run.meta?.ulimit.map((u) => [u.Name, u.Soft, u.Hard]), [["nofile", 1062n, 2048n]]);
  const shm = run.mounts.find((m) => m.dest === "/dev/shm");
  assert.equal(shm?.mountType, MountType.TMPFS);
  assert.equal(shm?.TmpfsOpt?.size, 134217728n);
  assert.ok(run.mounts.some((m) => m.dest === "/t" && m.mountType === MountType.TMPFS));
  // Without the options nothing is added.
  const plain = ops((await convert("FROM busybox\nRUN true\n")).def, "exec").map(exec)[0]!;
  assert.equal(plain.meta?.hostname, "");
  assert.deepEqual(plain.meta?.ulimit, []);
  assert.equal(plain.mounts.length, 1);
});

void test("no-cache: every stage, or only the named ones (any case)", async () => {
  const df = "FROM busybox AS s0\nRUN echo a\nFROM busybox AS s1\nRUN echo b\nFROM scratch\nCOPY --from=s0 /a /\nCOPY --from=s1 /b /\n";
  const ignored = async (noCache: ConvertOptions["noCache"]) => {
    const { def } = await convert(df, { noCache });
    return ops(def, "exec")
      .filter((o) => o.metadata?.ignoreCache)
      .map((o) => exec(o).meta?.args.at(-1))
      .sort();
  };
  assert.deepEqual(await ignored(false), []);
  assert.deepEqual(await ignored(true), ["echo a", "echo b"]);
  assert.deepEqual(await ignored(["S1"]), ["echo b"]);
  assert.deepEqual(await ignored(["nosuchstage"]), []);
});

void test("named contexts stand in for a stage (its commands skipped) or an image name (FROM and COPY --from)", async () => {
  const { local: localState } = await import("../../../llb/index.js");
  const asked: string[] = [];
  const contextByName: ConvertOptions["contextByName"] = async (name, p) => {
    asked.push(`${name} ${p.architecture}`);
    if (name === "base") return { state: localState("basedir", { sessionId: "sess" }) };
    if (name === "docker.io/library/alpine:latest") return { state: localState("alpinedir", { sessionId: "sess" }), image: { config: { Env: ["FROM_CTX=1"] } } };
    return undefined;
  };
  const df = ["FROM busybox AS base", "RUN never", "FROM alpine", "COPY --from=base /o* /", "COPY --from=alpine /x /y", "RUN true", ""].join("\n");
  const { res, def, resolved } = await convert(df, { contextByName });
  assert.deepEqual(resolved, [], "no image was resolved: both names were given as contexts");
  const runs = ops(def, "exec").map((o) => exec(o).meta?.args.at(-1));
  assert.deepEqual(runs, ["true"], "the replaced stage's RUN is not in the graph");
  const locals = ops(def, "source").map((o) => source(o).identifier);
  assert.deepEqual([...new Set(locals)].sort(), ["local://alpinedir", "local://basedir"]);
  assert.ok(res.image.config?.Env?.includes("FROM_CTX=1"), "the context's image config is the stage's");
  assert.ok(asked.includes("base amd64"));
  // scratch is never looked up.
  asked.length = 0;
  await convert("FROM scratch\nCOPY a /b\n", { contextByName });
  assert.deepEqual(asked, []);
});

void test("SOURCE_DATE_EPOCH dates the history entries the build writes, not the base image's", async () => {
  const base = imageConfig({ history: [{ created: "2023-01-02T03:04:05Z", created_by: "base layer" }] });
  const { res } = await convert("FROM busybox\nENTRYPOINT foo\nRUN true\n", { buildArgs: { SOURCE_DATE_EPOCH: "1445412480" } }, { "docker.io/library/busybox:latest": base });
  assert.deepEqual(
    res.image.history?.map((h) => h.created),
    ["2023-01-02T03:04:05Z", "2015-10-21T07:28:00Z", "2015-10-21T07:28:00Z"],
  );
  const plain = await convert("FROM scratch\nENTRYPOINT foo\n");
  assert.equal(plain.res.image.history?.[0]?.created, undefined);
  await assert.rejects(convert("FROM scratch\n", { buildArgs: { SOURCE_DATE_EPOCH: "soon" } }), /invalid SOURCE_DATE_EPOCH: soon/);
});
