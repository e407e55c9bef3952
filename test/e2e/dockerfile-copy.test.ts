// COPY and ADD end to end: wildcards, directories versus their contents, trailing slashes,
// --exclude, --parents, --chown by name, --chmod, --link, ADD's archive extraction; whiteouts,
// hard links, setuid bits and fifos carried through layers into the image.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { lstat, mkdir, readFile, readdir, symlink, writeFile, access } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

const sh = promisify(execFile);
let env: KilnEnv;
let ctx: string;

before(async () => {
  env = await kilnEnv();
  ctx = await env.context({
    "a.txt": "A\n",
    "b.txt": "B\n",
    "c.md": "C\n",
    "dir/x.txt": "X\n",
    "dir/sub/y.txt": "Y\n",
    "payload/p.txt": "P\n",
    "payload/deep/q.txt": "Q\n",
  });
  // One archive per compression ADD must recognise, plus a file that only looks like one.
  await sh("tar", ["-cf", path.join(ctx, "plain.tar"), "-C", path.join(ctx, "payload"), "."]);
  for (const [flag, ext] of [["-z", "gz"], ["-j", "bz2"], ["-J", "xz"], ["--zstd", "zst"]] as const) {
    await sh("tar", [flag, "-cf", path.join(ctx, `arch.tar.${ext}`), "-C", path.join(ctx, "payload"), "p.txt"]);
  }
  await writeFile(path.join(ctx, "fake.tar.gz"), "not an archive\n");
  await symlink("payload/deep/q.txt", path.join(ctx, "link.txt"));
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

async function buildLocal(dockerfile: string, name: string): Promise<string> {
  await writeFile(path.join(ctx, `${name}.Dockerfile`), dockerfile);
  const dest = path.join(env.tmp, name);
  const r = await env.run(["build", ctx, "-f", path.join(ctx, `${name}.Dockerfile`), "-o", `type=local,dest=${dest}`]);
  assert.equal(r.code, 0, r.stderr);
  return dest;
}

async function buildImage(dockerfile: string, name: string): Promise<{ rootfs: string; config: Record<string, unknown> }> {
  await writeFile(path.join(ctx, `${name}.Dockerfile`), dockerfile);
  const out = path.join(env.tmp, `${name}.tar`);
  const r = await env.run(["build", ctx, "-f", path.join(ctx, `${name}.Dockerfile`), "-o", `type=oci,dest=${out},name=img:t`]);
  assert.equal(r.code, 0, r.stderr);
  const dir = `${out}.d`;
  await mkdir(dir, { recursive: true });
  await sh("tar", ["-xf", out, "-C", dir]);
  const bundle = `${out}.bundle`;
  await sh("umoci", ["unpack", "--image", `${dir}:t`, bundle]);
  const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(await readFile(path.join(dir, "blobs", index.manifests[0]!.digest.replace(":", "/")), "utf8")) as { config: { digest: string } };
  const config = JSON.parse(await readFile(path.join(dir, "blobs", manifest.config.digest.replace(":", "/")), "utf8")) as Record<string, unknown>;
  return { rootfs: path.join(bundle, "rootfs"), config };
}

const ls = async (p: string) => (await readdir(p)).sort();

test("wildcards, directories and trailing slashes follow BuildKit's copy rules", async () => {
  const d = await buildLocal(
    [
      "FROM busybox",
      "RUN mkdir /existing && touch /existing/old",
      "COPY *.txt /w1/",
      "COPY dir /d1",
      "COPY dir /existing/",
      "COPY a.txt /newfile",
      "COPY a.txt /newdir/",
      "COPY a.txt b.txt /multi/",
      "COPY d?r/sub /q/",
      "COPY dir/*.txt /dw/",
      "COPY dir/s?b/y.t?t /deep/",
      "COPY [ab].txt /cls/",
      "COPY nomatch* /none/",
      "WORKDIR /rel",
      "COPY a.txt here/",
      "COPY a.txt .",
      "COPY link.txt /via-link",
    ].join("\n"),
    "rules",
  );
  assert.equal(await readFile(path.join(d, "via-link"), "utf8"), "Q\n", "a symlinked source is followed, and its target was sent");
  assert.deepEqual(await ls(path.join(d, "w1")), ["a.txt", "b.txt", "link.txt"]);
  assert.ok((await lstat(path.join(d, "w1", "link.txt"))).isFile(), "a matched symlink is followed");
  assert.deepEqual(await ls(path.join(d, "d1")), ["sub", "x.txt"], "a directory's contents, not the directory");
  assert.deepEqual(await ls(path.join(d, "existing")), ["old", "sub", "x.txt"]);
  assert.equal(await readFile(path.join(d, "newfile"), "utf8"), "A\n");
  assert.deepEqual(await ls(path.join(d, "newdir")), ["a.txt"]);
  assert.deepEqual(await ls(path.join(d, "multi")), ["a.txt", "b.txt"]);
  assert.deepEqual(await ls(path.join(d, "q")), ["y.txt"]);
  // Wildcards below the first path element: the context sync must send what they match.
  assert.deepEqual(await ls(path.join(d, "dw")), ["x.txt"]);
  assert.deepEqual(await ls(path.join(d, "deep")), ["y.txt"]);
  assert.deepEqual(await ls(path.join(d, "cls")), ["a.txt", "b.txt"]);
  await assert.rejects(access(path.join(d, "none")), "an empty wildcard copies nothing");
  assert.deepEqual(await ls(path.join(d, "rel")), ["a.txt", "here"]);
});

test("--exclude, --parents, --chown by name and --chmod", async () => {
  const d = await buildLocal(
    [
      "FROM busybox",
      "RUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd && echo 'crew:x:2345:' >> /etc/group && echo 'other:x:3456:' >> /etc/group",
      "COPY --exclude=*.md --exclude=dir/sub --exclude=*.tar* --exclude=*.Dockerfile --exclude=payload --exclude=link.txt . /ex/",
      "COPY --parents dir/sub/*.txt a.txt /par/",
      "COPY --parents ./dir/./sub/y.txt /piv/",
      "COPY --chown=app dir /owned/dir",
      "COPY --chown=app:other a.txt /owned/a.txt",
      "COPY --chown=7:8 --chmod=640 b.txt dir /modes/",
    ].join("\n"),
    "flags",
  );
  assert.deepEqual(await ls(path.join(d, "ex")), ["a.txt", "b.txt", "dir"]);
  assert.deepEqual(await ls(path.join(d, "ex", "dir")), ["x.txt"]);
  assert.deepEqual(await ls(path.join(d, "par")), ["a.txt", "dir"]);
  assert.deepEqual(await ls(path.join(d, "par", "dir", "sub")), ["y.txt"]);
  assert.deepEqual(await ls(path.join(d, "piv")), ["sub"]);
  const owned = await lstat(path.join(d, "owned", "dir", "sub", "y.txt"));
  assert.deepEqual([owned.uid, owned.gid], [1234, 2345], "the name resolves in the destination's /etc/passwd");
  const ownedDir = await lstat(path.join(d, "owned", "dir"));
  assert.deepEqual([ownedDir.uid, ownedDir.gid], [1234, 2345]);
  const a = await lstat(path.join(d, "owned", "a.txt"));
  assert.deepEqual([a.uid, a.gid], [1234, 3456]);
  const b = await lstat(path.join(d, "modes", "b.txt"));
  assert.deepEqual([b.uid, b.gid, b.mode & 0o7777], [7, 8, 0o640]);
  assert.equal((await lstat(path.join(d, "modes", "sub"))).mode & 0o777, 0o640, "--chmod applies to directories too");
});

test("a --chown name missing from the destination falls back to root's ids, as BuildKit's file op does", async () => {
  const { rootfs } = await buildImage(["FROM busybox", "COPY --chown=nobody-here a.txt /u.txt", "COPY --chown=nobody:nogroup-here a.txt /g.txt"].join("\n"), "badchown");
  const u = await lstat(path.join(rootfs, "u.txt"));
  assert.deepEqual([u.uid, u.gid], [0, 0]);
  const g = await lstat(path.join(rootfs, "g.txt"));
  assert.deepEqual([g.uid, g.gid], [65534, 65534], "the user's own gid stays");
});

test("ADD unpacks local tar archives of every compression; COPY and remote-looking names do not", async () => {
  const d = await buildLocal(
    ["FROM scratch", "ADD plain.tar /plain/", "ADD arch.tar.gz arch.tar.bz2 /multi/", "ADD arch.tar.xz /xz", "ADD arch.tar.zst /zst/", "ADD fake.tar.gz /fake/", "COPY plain.tar /copied/"].join("\n"),
    "unpack",
  );
  assert.deepEqual(await ls(path.join(d, "plain")), ["deep", "p.txt"]);
  assert.equal(await readFile(path.join(d, "plain", "deep", "q.txt"), "utf8"), "Q\n");
  assert.deepEqual(await ls(path.join(d, "multi")), ["p.txt"]);
  assert.deepEqual(await ls(path.join(d, "xz")), ["p.txt"]);
  assert.deepEqual(await ls(path.join(d, "zst")), ["p.txt"]);
  assert.deepEqual(await ls(path.join(d, "fake")), ["fake.tar.gz"]);
  assert.deepEqual(await ls(path.join(d, "copied")), ["plain.tar"]);
});

test("COPY --link adds an independent layer merged over the stage", async () => {
  const { rootfs, config } = await buildImage(
    [
      "FROM busybox AS other",
      "RUN echo other > /o",
      "FROM busybox",
      "RUN echo before > /before",
      "COPY --link a.txt dir /linked/",
      "COPY --link --from=other /o /from-stage",
      "RUN cat /linked/a.txt /linked/x.txt > /after",
    ].join("\n"),
    "link",
  );
  assert.equal(await readFile(path.join(rootfs, "after"), "utf8"), "A\nX\n");
  assert.equal(await readFile(path.join(rootfs, "from-stage"), "utf8"), "other\n");
  assert.equal(await readFile(path.join(rootfs, "before"), "utf8"), "before\n");
  const history = config.history as { created_by: string; empty_layer?: boolean }[];
  const layers = (config.rootfs as { diff_ids: string[] }).diff_ids;
  assert.equal(history.filter((h) => !h.empty_layer).length, layers.length);
});

test("whiteouts, hard links, setuid bits and fifos survive layers and copies into the image", async () => {
  const { rootfs } = await buildImage(
    [
      "FROM busybox AS base",
      "RUN mkdir -p /data/gone-dir && echo keep > /data/keep && echo gone > /data/gone && echo x > /data/gone-dir/x && mkfifo /data/fifo && echo h > /data/h1 && ln /data/h1 /data/h2 && cp /bin/busybox /data/suid && chmod 4755 /data/suid && chmod 2755 /data/gone-dir",
      "RUN rm -rf /data/gone /data/gone-dir && mkdir /data/gone-dir && echo new > /data/gone-dir/new",
      "FROM busybox",
      "COPY --from=base /data /copied",
      "COPY --from=base /data /data",
    ].join("\n"),
    "special",
  );
  for (const dir of ["data", "copied"]) {
    const d = path.join(rootfs, dir);
    assert.deepEqual(await ls(d), ["fifo", "gone-dir", "h1", "h2", "keep", "suid"], dir);
    assert.deepEqual(await ls(path.join(d, "gone-dir")), ["new"], `${dir}: the recreated directory holds only what came after`);
    assert.ok((await lstat(path.join(d, "fifo"))).isFIFO());
    const [h1, h2] = [await lstat(path.join(d, "h1")), await lstat(path.join(d, "h2"))];
    assert.equal(h1.ino, h2.ino, `${dir}: hard links stay linked`);
    assert.equal((await lstat(path.join(d, "suid"))).mode & 0o7777, 0o4755);
  }
});
