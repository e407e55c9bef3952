import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { createHash, randomBytes } from "node:crypto";
import { chmod, chown, link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { getAttribute, setAttribute } from "@napi-rs/xattr";
import { addService, bindClient, control } from "../api/index.js";
import { openClientSession, type ClientSession, type ClientSessionOptions } from "./client.js";
import { GrpcSessionManager } from "./remote.js";
import { DiskLocalDirs } from "./localdirs.js";
import type { LocalEntry } from "./types.js";
import type { RemoteSession } from "./wire.js";

interface Harness extends AsyncDisposable {
  root: string;
  relayDir: string;
  mgr: GrpcSessionManager;
  client: grpc.Client;
  handled: Promise<void>[];
  open(opts: Omit<ClientSessionOptions, "id"> & { id?: string }): Promise<{ cs: ClientSession; rs: RemoteSession }>;
}

/** A daemon exposing only Control.Session on a unix socket, and a client channel to it. */
async function harness(mgrOpts: ConstructorParameters<typeof GrpcSessionManager>[0] = {}): Promise<Harness> {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-session-test-"));
  const relayDir = path.join(root, "relays");
  await mkdir(relayDir);
  const mgr = new GrpcSessionManager({ tmpDir: relayDir, ...mgrOpts });
  const handled: Promise<void>[] = [];
  const server = new grpc.Server();
  addService(server, control.Control, { session: (call) => void handled.push(mgr.handle(call)) });
  const sock = path.join(root, "daemon.sock");
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  const client = new grpc.Client(`unix://${sock}`, grpc.credentials.createInsecure());
  const sessions: ClientSession[] = [];
  return {
    root,
    relayDir,
    mgr,
    client,
    handled,
    async open(opts) {
      const cs = await openClientSession(AbortSignal.timeout(30_000), client, { ...opts, id: opts.id ?? randomBytes(8).toString("hex") });
      sessions.push(cs);
      const rs = await mgr.get(AbortSignal.timeout(10_000), cs.id);
      return { cs, rs };
    },
    async [Symbol.asyncDispose]() {
      for (const s of sessions) await s.close();
      mgr.close();
      await Promise.allSettled(handled);
      client.close();
      server.forceShutdown();
      await rm(root, { recursive: true, force: true });
    },
  };
}

const sig = () => AbortSignal.timeout(60_000);

function sha(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** Every entry under dir: type, mode, owner, mtime (ms), size, content digest or link target, inode. */
async function snapshot(dir: string, rel = ""): Promise<Record<string, { kind: string; mode: number; uid: number; gid: number; mtime: number; data: string; ino: number }>> {
  const out: Awaited<ReturnType<typeof snapshot>> = {};
  for (const name of (await readdir(path.join(dir, rel))).sort()) {
    const p = rel === "" ? name : `${rel}/${name}`;
    const abs = path.join(dir, p);
    const st = await lstat(abs);
    const kind = st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "other";
    const data = kind === "file" ? sha(await readFile(abs)) : kind === "symlink" ? await readlink(abs) : "";
    out[p] = { kind, mode: st.mode, uid: st.uid, gid: st.gid, mtime: Math.trunc(st.mtimeMs), data, ino: st.ino };
    if (kind === "dir") Object.assign(out, await snapshot(dir, p));
  }
  return out;
}

const big = randomBytes(5 * 1024 * 1024);

/** A context with every kind of entry the protocol has to carry. */
async function makeTree(dir: string): Promise<void> {
  await mkdir(path.join(dir, "dir/sub"), { recursive: true });
  await writeFile(path.join(dir, "a.txt"), "hello\n");
  await writeFile(path.join(dir, "empty"), "");
  await writeFile(path.join(dir, "big.bin"), big);
  await writeFile(path.join(dir, "dir/sub/nested.txt"), "nested");
  await writeFile(path.join(dir, "dir/run.sh"), "#!/bin/sh\necho hi\n");
  await chmod(path.join(dir, "dir/run.sh"), 0o755);
  await writeFile(path.join(dir, "suid"), "s");
  await chmod(path.join(dir, "suid"), 0o4755);
  await chmod(path.join(dir, "dir/sub"), 0o2750);
  await writeFile(path.join(dir, "owned"), "o");
  await chown(path.join(dir, "owned"), 1234, 5678);
  await symlink("a.txt", path.join(dir, "link"));
  await symlink("/etc/does-not-exist", path.join(dir, "dangling"));
  await link(path.join(dir, "a.txt"), path.join(dir, "hard.txt"));
  await setAttribute(path.join(dir, "dir/run.sh"), "user.kiln", "xattr value");
  await promisify(execFile)("mkfifo", ["-m", "0640", path.join(dir, "fifo")]);
  await utimes(path.join(dir, "a.txt"), 1_600_000_000, 1_600_000_000.25);
  await utimes(path.join(dir, "dir"), 1_500_000_000, 1_500_000_000);
}

void test("session: a directory round-trips through FileSync/DiffCopy with modes, owners, links and contents", async () => {
  await using h = await harness();
  const src = path.join(h.root, "src");
  await makeTree(src);
  const { rs, cs } = await h.open({ attachables: { dirs: { ctx: src } }, keepOwners: true });
  assert.ok(cs.methods.includes("/moby.filesync.v1.FileSync/DiffCopy"));
  assert.ok(rs.supports("/moby.filesync.v1.filesync/diffcopy"), "methods compare case-insensitively");

  const entries = (await rs.localDirs.list(sig(), "ctx", {}))!;
  // Walk order: names by bytes, a directory followed by its contents.
  assert.deepEqual(
    entries.map((e) => e.path),
    ["a.txt", "big.bin", "dangling", "dir", "dir/run.sh", "dir/sub", "dir/sub/nested.txt", "empty", "fifo", "hard.txt", "link", "owned", "suid"],
  );
  assert.equal(entries.find((e) => e.path === "fifo")!.type, "other");
  assert.equal(entries.find((e) => e.path === "fifo")!.mode, 0o10640);
  const by = new Map(entries.map((e) => [e.path, e]));
  assert.equal(by.get("dir/run.sh")!.mode, 0o100755);
  assert.equal(by.get("suid")!.mode, 0o104755);
  assert.equal(by.get("dir/sub")!.mode, 0o42750);
  assert.equal(by.get("link")!.type, "symlink");
  assert.equal(by.get("link")!.linkname, "a.txt");
  assert.equal(by.get("hard.txt")!.type, "file");
  assert.equal(by.get("hard.txt")!.linkname, "a.txt", "the second path of an inode names the first");
  assert.equal(by.get("hard.txt")!.size, 6, "fsutil keeps a hard link's size");
  assert.equal(by.get("owned")!.uid, 1234);
  assert.equal(by.get("owned")!.gid, 5678);
  assert.equal(by.get("big.bin")!.size, big.length);
  assert.equal(by.get("a.txt")!.mtimeMs, 1_600_000_000_250);

  // The in-process listing of the same directory agrees on paths, types and modes (it leaves
  // special files out, which the wire carries).
  const local = (await new DiskLocalDirs({ ctx: src }).list(sig(), "ctx", {}))!;
  assert.deepEqual(
    local.map((e) => [e.path, e.type, e.mode]),
    entries.filter((e) => e.type !== "other").map((e) => [e.path, e.type, e.mode]),
  );

  const dest = path.join(h.root, "dest");
  await mkdir(dest);
  await rs.localDirs.copyTo(sig(), "ctx", entries, dest);
  const want = await snapshot(src);
  const got = await snapshot(dest);
  assert.deepEqual(Object.keys(got), Object.keys(want));
  for (const [p, w] of Object.entries(want)) {
    const g = got[p]!;
    assert.deepEqual({ ...g, ino: 0 }, { ...w, ino: 0 }, p);
  }
  assert.equal(got["hard.txt"]!.ino, got["a.txt"]!.ino, "hard links stay one inode");
  assert.equal(got["fifo"]!.kind, "other");
  assert.equal(String(await getAttribute(path.join(dest, "dir/run.sh"), "user.kiln")), "xattr value");
  assert.notEqual(got["empty"]!.ino, got["a.txt"]!.ino);
  assert.equal(sha(await readFile(path.join(dest, "big.bin"))), sha(big));
});

void test("session: owners are reset to root unless the client keeps them, as buildctl does", async () => {
  await using h = await harness();
  const src = path.join(h.root, "src");
  await mkdir(src);
  await writeFile(path.join(src, "f"), "x");
  await chown(path.join(src, "f"), 42, 43);
  const { rs } = await h.open({ attachables: { dirs: { ctx: src } } });
  const entries = (await rs.localDirs.list(sig(), "ctx", {}))!;
  assert.deepEqual(entries.map((e) => [e.path, e.uid, e.gid]), [["f", 0, 0]]);
  const dest = path.join(h.root, "dest");
  await mkdir(dest);
  await rs.localDirs.copyTo(sig(), "ctx", entries, dest);
  const st = await lstat(path.join(dest, "f"));
  assert.deepEqual([st.uid, st.gid], [0, 0]);
  assert.equal(await readFile(path.join(dest, "f"), "utf8"), "x");
  assert.equal(await rs.localDirs.list(sig(), "nope", {}), undefined, "an unknown dir name is NotFound, not an error");
});

void test("session: include and exclude patterns and followpaths select what the client walks", async () => {
  await using h = await harness();
  const src = path.join(h.root, "src");
  const files = ["a.txt", "b.md", "dir/x.txt", "dir/y.md", "dir/sub/z.txt", "node_modules/m/index.js", "real/t.txt"];
  for (const f of files) {
    await mkdir(path.dirname(path.join(src, f)), { recursive: true });
    await writeFile(path.join(src, f), f);
  }
  await symlink("real/t.txt", path.join(src, "l.txt"));
  const { rs } = await h.open({ attachables: { dirs: { ctx: src } } });
  const paths = async (opts: Parameters<typeof rs.localDirs.list>[2]) => (await rs.localDirs.list(sig(), "ctx", opts))!.map((e) => e.path);

  assert.deepEqual(await paths({ excludePatterns: ["node_modules", "*.md"] }), ["a.txt", "dir", "dir/sub", "dir/sub/z.txt", "dir/x.txt", "dir/y.md", "l.txt", "real", "real/t.txt"]);
  assert.deepEqual(await paths({ excludePatterns: ["**/*.md", "!dir/y.md", "node_modules", "real", "l.txt"] }), ["a.txt", "dir", "dir/sub", "dir/sub/z.txt", "dir/x.txt", "dir/y.md"]);
  // A directory outside the includes is still sent, lazily, as the parent of what is included.
  assert.deepEqual(await paths({ includePatterns: ["dir/sub"] }), ["dir", "dir/sub", "dir/sub/z.txt"]);
  assert.deepEqual(await paths({ includePatterns: ["**/*.txt"], excludePatterns: ["dir/sub"] }), ["a.txt", "dir", "dir/x.txt", "l.txt", "real", "real/t.txt"]);
  // Patterns that are not ASCII travel query-escaped and flagged, as newer BuildKit sends them.
  await writeFile(path.join(src, "dir/sub/ünï cødé, x.txt"), "u");
  assert.deepEqual(await paths({ includePatterns: ["dir/sub/ü*, x.txt"] }), ["dir", "dir/sub", "dir/sub/ünï cødé, x.txt"]);
  await rm(path.join(src, "dir/sub/ünï cødé, x.txt"));
  // followpaths add the symlink's target to what travels.
  assert.deepEqual(await paths({ followPaths: ["l.txt"] }), ["l.txt", "real", "real/t.txt"]);
  assert.deepEqual(await paths({ includePatterns: ["a.txt"], followPaths: ["dir/x.txt"] }), ["a.txt", "dir", "dir/x.txt"]);

  // What is copied is exactly what was listed, with the bytes of the client's files.
  const entries = (await rs.localDirs.list(sig(), "ctx", { includePatterns: ["dir"], excludePatterns: ["**/*.md"] }))!;
  const dest = path.join(h.root, "dest");
  await mkdir(dest);
  await rs.localDirs.copyTo(sig(), "ctx", entries, dest);
  assert.deepEqual(Object.keys(await snapshot(dest)), ["dir", "dir/sub", "dir/sub/z.txt", "dir/x.txt"]);
  assert.equal(await readFile(path.join(dest, "dir/sub/z.txt"), "utf8"), "dir/sub/z.txt");
});

void test("session: unchanged files are hard-linked from the base snapshot instead of transferred", async () => {
  await using h = await harness();
  const src = path.join(h.root, "src");
  await mkdir(src);
  await writeFile(path.join(src, "same"), "unchanged");
  await writeFile(path.join(src, "changed"), "v1");
  const { rs } = await h.open({ attachables: { dirs: { ctx: src } } });
  const first = (await rs.localDirs.list(sig(), "ctx", {}))!;
  const baseDir = path.join(h.root, "base");
  await mkdir(baseDir);
  await rs.localDirs.copyTo(sig(), "ctx", first, baseDir);
  await writeFile(path.join(src, "changed"), "v2, longer");
  const second = (await rs.localDirs.list(sig(), "ctx", {}))!;
  const dest = path.join(h.root, "dest");
  await mkdir(dest);
  await rs.localDirs.copyTo(sig(), "ctx", second, dest, { dir: baseDir, entries: new Map(first.map((e) => [e.path, e])) });
  assert.equal((await lstat(path.join(dest, "same"))).ino, (await lstat(path.join(baseDir, "same"))).ino);
  assert.notEqual((await lstat(path.join(dest, "changed"))).ino, (await lstat(path.join(baseDir, "changed"))).ino);
  assert.equal(await readFile(path.join(dest, "changed"), "utf8"), "v2, longer");
});

void test("session: a copy long after its listing opens a fresh transfer", async () => {
  await using h = await harness();
  const src = path.join(h.root, "src");
  await mkdir(src);
  await writeFile(path.join(src, "f"), "content");
  const { rs } = await h.open({ attachables: { dirs: { ctx: src } } });
  const entries = (await rs.localDirs.list(sig(), "ctx", {}))!;
  // Entries the session did not list itself (e.g. restored from the metadata DB) work too.
  const copy: LocalEntry[] = entries.map((e) => ({ ...e }));
  const dest = path.join(h.root, "dest");
  await mkdir(dest);
  await rs.localDirs.copyTo(sig(), "ctx", copy, dest);
  assert.equal(await readFile(path.join(dest, "f"), "utf8"), "content");

  // A hard link copied without its first path arrives as a file with the shared contents.
  await link(path.join(src, "f"), path.join(src, "g"));
  const linked = (await rs.localDirs.list(sig(), "ctx", {}))!;
  assert.equal(linked.find((e) => e.path === "g")!.linkname, "f");
  const only = path.join(h.root, "only");
  await mkdir(only);
  await rs.localDirs.copyTo(sig(), "ctx", linked.filter((e) => e.path === "g"), only);
  assert.deepEqual(await readdir(only), ["g"]);
  assert.equal(await readFile(path.join(only, "g"), "utf8"), "content");
});

void test("session: secrets are served when present and absent ones are undefined", async () => {
  await using h = await harness();
  const value = randomBytes(1000);
  const { rs } = await h.open({ attachables: { secrets: { get: async (_s, id) => (id === "tok" ? value : undefined) } } });
  assert.ok(rs.secrets);
  assert.deepEqual(Buffer.from((await rs.secrets.get(sig(), "tok"))!), value);
  assert.equal(await rs.secrets.get(sig(), "missing"), undefined);
  const { rs: none } = await h.open({ attachables: {} });
  assert.equal(none.secrets, undefined, "a client that serves no secrets offers none");
  assert.equal(none.supports("/moby.buildkit.secrets.v1.Secrets/GetSecret"), false);
});

void test("session: registry credentials, including identity tokens", async () => {
  await using h = await harness();
  const { rs } = await h.open({
    attachables: {
      credentials: {
        credentials: async (_s, host) =>
          host === "reg.example" ? { username: "u", password: "p" } : host === "tok.example" ? { identityToken: "idt" } : undefined,
      },
    },
  });
  assert.deepEqual(await rs.credentials.credentials(sig(), "reg.example"), { username: "u", password: "p" });
  assert.deepEqual(await rs.credentials.credentials(sig(), "tok.example"), { identityToken: "idt" });
  assert.equal(await rs.credentials.credentials(sig(), "anon.example"), undefined);
});

void test("session: ssh agent connections are relayed byte for byte", async () => {
  await using h = await harness();
  const agentSock = path.join(h.root, "agent.sock");
  // An echo server stands in for ssh-agent: the relay must carry bytes both ways, unchanged.
  const agent = createServer((c) => c.pipe(c));
  await new Promise<void>((r) => agent.listen(agentSock, r));
  try {
    const { rs } = await h.open({ attachables: { ssh: { has: (id) => id === "default", socketPath: async () => agentSock } } });
    assert.ok(rs.ssh);
    assert.equal(await rs.ssh.check!(sig(), "other"), false);
    assert.equal(await rs.ssh.check!(sig(), "default"), true);
    await assert.rejects(rs.ssh.listen(sig(), "other", { uid: 0, gid: 0, mode: 0o600 }), /other/);
    const fwd = await rs.ssh.listen(sig(), "default", { uid: 0, gid: 0, mode: 0o600 });
    const payload = randomBytes(200_000);
    const echoed = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let n = 0;
      const c = connect(fwd.path);
      c.on("data", (d: Buffer) => {
        chunks.push(d);
        n += d.length;
        if (n >= payload.length) {
          c.end();
          resolve(Buffer.concat(chunks));
        }
      });
      c.on("error", reject);
      c.write(payload);
    });
    assert.deepEqual(echoed, payload);
    assert.equal((await lstat(fwd.path)).mode & 0o777, 0o600);
    await fwd[Symbol.asyncDispose]();
    await assert.rejects(lstat(fwd.path), { code: "ENOENT" });
  } finally {
    agent.close();
  }
});

void test("session: FileSend carries a byte stream and the exporter metadata to the client", async () => {
  await using h = await harness();
  const received: { md: Record<string, string>; chunks: Buffer[] }[] = [];
  const { rs } = await h.open({
    attachables: {
      fileTarget: async (md) => {
        const r = { md, chunks: [] as Buffer[] };
        received.push(r);
        return new Writable({
          write(chunk: Buffer, _e, cb) {
            r.chunks.push(chunk);
            cb();
          },
        });
      },
    },
  });
  const payload = randomBytes(3 * 1024 * 1024 + 17);
  const fs = await rs.openFileSend(sig(), { "containerimage.digest": "sha256:abc", "image.name": "x/y:z", "note": "größe 100%" });
  // Large writes are split into messages the client accepts.
  fs.stream.write(payload.subarray(0, 1 << 20));
  fs.stream.write(payload.subarray(1 << 20));
  await fs.close();
  assert.equal(received.length, 1);
  assert.deepEqual(received[0]!.md, { "containerimage.digest": "sha256:abc", "image.name": "x/y:z", note: "größe 100%" });
  assert.equal(sha(Buffer.concat(received[0]!.chunks)), sha(payload));
});

void test("session: sendDirectory writes the daemon's tree into the client's target as the client's own", async () => {
  await using h = await harness();
  const src = path.join(h.root, "src");
  await makeTree(src);
  const target = path.join(h.root, "out");
  await mkdir(target);
  await writeFile(path.join(target, "kept"), "merge keeps what was there");
  await writeFile(path.join(target, "a.txt"), "replaced");
  const { rs } = await h.open({ attachables: { dirTarget: target, fileTarget: async () => new Writable({ write: (_c, _e, cb) => cb() }) } });
  await rs.sendDirectory(sig(), src);
  const want = await snapshot(src);
  const got = await snapshot(target);
  assert.equal(got["kept"]!.data, sha(Buffer.from("merge keeps what was there")));
  for (const [p, w] of Object.entries(want)) {
    const g = got[p]!;
    assert.ok(g, p);
    assert.deepEqual({ ...g, ino: 0, uid: 0, gid: 0 }, { ...w, ino: 0, uid: 0, gid: 0 }, p);
    assert.deepEqual([g.uid, g.gid], [process.getuid!(), process.getgid!()], `${p} belongs to the client`);
  }
  assert.equal(got["hard.txt"]!.ino, got["a.txt"]!.ino);
  assert.equal(String(await getAttribute(path.join(target, "dir/run.sh"), "user.kiln")), "xattr value");
  // The same stream method also still takes a byte stream when both targets are offered.
  const fs = await rs.openFileSend(sig(), {});
  fs.stream.end(Buffer.from("bytes"));
  await fs.close();
});

void test("session: get waits for a session to connect, and times out for one that never does", async () => {
  await using h = await harness();
  const waiting = h.mgr.get(sig(), "prefix:late-one", 10_000);
  await h.open({ id: "late-one", attachables: {} });
  assert.equal((await waiting).id, "late-one");
  await assert.rejects(h.mgr.get(sig(), "never", 200), /no active session for never/);
  const ac = new AbortController();
  const pending = h.mgr.get(ac.signal, "never", 10_000);
  ac.abort();
  await assert.rejects(pending, { code: "KILN_CANCELED" });
});

void test("session: a client disconnect aborts `closed`, fails transfers in flight and leaves no relay behind", async () => {
  await using h = await harness();
  const src = path.join(h.root, "src");
  await mkdir(src);
  for (let i = 0; i < 50; i++) await writeFile(path.join(src, `f${i}`), randomBytes(64 * 1024));
  const { cs, rs } = await h.open({ attachables: { dirs: { ctx: src } } });
  assert.equal(rs.closed.aborted, false);
  assert.equal((await readdir(h.relayDir)).length, 1, "one private relay dir while the session lives");
  const entries = (await rs.localDirs.list(sig(), "ctx", {}))!;
  const dest = path.join(h.root, "dest");
  await mkdir(dest);
  const copying = rs.localDirs.copyTo(sig(), "ctx", entries, dest).then(
    () => undefined,
    (err: Error) => err,
  );
  const closed = new Promise<void>((r) => rs.closed.addEventListener("abort", () => r()));
  await cs.close();
  await closed;
  assert.equal(rs.closed.aborted, true);
  // The copy either finished before the close reached it or failed; it never hangs.
  const err = await copying;
  if (err) assert.match(err.message, /transferring local directory|cancel/i);
  await Promise.all(h.handled);
  assert.deepEqual(await readdir(h.relayDir), [], "the relay socket and its directory are gone");
  await assert.rejects(h.mgr.get(sig(), cs.id, 100), /no active session/);
  await cs.done;
});

void test("session: the daemon shutting down ends client sessions", async () => {
  await using h = await harness();
  const { cs, rs } = await h.open({ attachables: {} });
  h.mgr.close();
  await Promise.all(h.handled);
  assert.equal(rs.closed.aborted, true);
  await cs.done;
  assert.deepEqual(await readdir(h.relayDir), []);
});

void test("session: a copy cancelled by its signal stops, and the session serves the next one", async () => {
  await using h = await harness();
  const src = path.join(h.root, "src");
  await mkdir(src);
  for (let i = 0; i < 40; i++) await writeFile(path.join(src, `f${i}`), randomBytes(256 * 1024));
  const { rs } = await h.open({ attachables: { dirs: { ctx: src } } });
  const entries = (await rs.localDirs.list(sig(), "ctx", {}))!;
  const ac = new AbortController();
  const dest = path.join(h.root, "dest");
  await mkdir(dest);
  const copying = rs.localDirs.copyTo(ac.signal, "ctx", entries, dest);
  ac.abort();
  await assert.rejects(copying, { code: "KILN_CANCELED" });
  assert.equal(rs.closed.aborted, false);
  const again = path.join(h.root, "again");
  await mkdir(again);
  await rs.localDirs.copyTo(sig(), "ctx", (await rs.localDirs.list(sig(), "ctx", {}))!, again);
  assert.deepEqual(await readFile(path.join(again, "f39")), await readFile(path.join(src, "f39")));
});

void test("session: an aborted FileSend stops the stream where it was, and later streams still work", async () => {
  await using h = await harness();
  const targets: { got: Buffer[]; closed: Promise<void> }[] = [];
  const { rs } = await h.open({
    attachables: {
      fileTarget: async () => {
        const got: Buffer[] = [];
        const w = new Writable({
          write(chunk: Buffer, _e, cb) {
            got.push(chunk);
            cb();
          },
        });
        targets.push({ got, closed: new Promise((r) => w.once("close", () => r())) });
        return w;
      },
    },
  });
  const fs = await rs.openFileSend(sig(), {});
  fs.stream.write(Buffer.from("partial"));
  for (let i = 0; i < 100 && (targets[0]?.got.length ?? 0) === 0; i++) await new Promise((r) => setTimeout(r, 10));
  fs.abort(new Error("export failed"));
  assert.equal(fs.stream.destroyed, true);
  await targets[0]!.closed;
  assert.equal(Buffer.concat(targets[0]!.got).toString(), "partial", "nothing after the abort reaches the client");
  const next = await rs.openFileSend(sig(), {});
  next.stream.end(Buffer.from("whole"));
  await next.close();
  assert.equal(Buffer.concat(targets[1]!.got).toString(), "whole");
});

void test("session: a second session with a live id is refused", async () => {
  await using h = await harness();
  await h.open({ id: "dup", attachables: {} });
  const second = await openClientSession(sig(), h.client, { id: "dup", attachables: {} });
  await assert.rejects(second.done, /already exists/);
  await second.close();
});

void test("session: a client that stops answering health checks is dropped after two failures", async () => {
  await using h = await harness({ healthIntervalMs: 50, healthTimeoutMs: 100 });
  // A healthy session survives many rounds of checks.
  const { rs: healthy } = await h.open({ attachables: {} });
  // A client that opens the call and advertises Health/Check, but never serves HTTP/2 on it.
  const md = new grpc.Metadata();
  md.set("x-docker-expose-session-uuid", "mute");
  md.add("x-docker-expose-session-grpc-method", "/grpc.health.v1.Health/Check");
  const call = bindClient(control.Control, h.client).session({ metadata: md });
  call.on("error", () => undefined);
  call.on("data", () => undefined);
  try {
    const mute = await h.mgr.get(sig(), "mute");
    const t0 = Date.now();
    await new Promise<void>((r) => mute.closed.addEventListener("abort", () => r()));
    assert.ok(Date.now() - t0 < 5_000);
    assert.equal(healthy.closed.aborted, false);
    assert.match(String((mute.closed.reason as Error).message), /health check failed/);
  } finally {
    call.cancel();
  }
});

void test("session: several transfers and calls share one session at once", async () => {
  await using h = await harness();
  const dirs: Record<string, string> = {};
  for (const n of ["one", "two", "three"]) {
    dirs[n] = path.join(h.root, n);
    await mkdir(dirs[n]);
    for (let i = 0; i < 20; i++) await writeFile(path.join(dirs[n], `${n}-${i}`), randomBytes(100_000 + i));
  }
  const { rs } = await h.open({ attachables: { dirs, secrets: { get: async (_s, id) => Buffer.from(`secret ${id}`) } } });
  await Promise.all([
    ...Object.keys(dirs).map(async (n) => {
      const entries = (await rs.localDirs.list(sig(), n, {}))!;
      const dest = path.join(h.root, `dest-${n}`);
      await mkdir(dest);
      await rs.localDirs.copyTo(sig(), n, entries, dest);
      assert.deepEqual(Object.values(await snapshot(dest)).map((e) => e.data), Object.values(await snapshot(dirs[n]!)).map((e) => e.data));
    }),
    ...Array.from({ length: 20 }, async (_, i) => assert.equal(Buffer.from((await rs.secrets!.get(sig(), `s${i}`))!).toString(), `secret s${i}`)),
  ]);
});

void test("session: aborting the client's signal cancels the session on both ends", async () => {
  await using h = await harness();
  const ac = new AbortController();
  const cs = await openClientSession(ac.signal, h.client, { id: "abortable", attachables: {} });
  const rs = await h.mgr.get(sig(), "abortable");
  ac.abort();
  await assert.rejects(cs.done, /session ended/);
  await new Promise<void>((r) => (rs.closed.aborted ? r() : rs.closed.addEventListener("abort", () => r())));
  await Promise.all(h.handled);
  assert.deepEqual(await readdir(h.relayDir), []);
});

void test("session: the client opens Control.Session with BuildKit's headers, one method value each", async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-session-hdr-"));
  const server = new grpc.Server();
  const seen = new Promise<grpc.Metadata>((resolve) => {
    addService(server, control.Control, {
      session: (call) => {
        resolve(call.metadata);
        call.end();
      },
    });
  });
  const sock = path.join(root, "d.sock");
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  const client = new grpc.Client(`unix://${sock}`, grpc.credentials.createInsecure());
  try {
    const cs = await openClientSession(sig(), client, {
      name: "proj",
      sharedKey: "proj:node1",
      attachables: { dirs: { context: root }, secrets: { get: async () => undefined }, dirTarget: root },
    });
    const md = await seen;
    assert.equal(md.get("x-docker-expose-session-uuid")[0], cs.id);
    assert.match(cs.id, /^[0-9a-z]{25}$/);
    assert.equal(md.get("x-docker-expose-session-name")[0], "proj");
    assert.equal(md.get("x-docker-expose-session-sharedkey")[0], "proj:node1");
    const methods = md
      .get("x-docker-expose-session-grpc-method")
      .flatMap((v) => String(v).split(", "))
      .sort();
    assert.deepEqual(methods, [
      "/grpc.health.v1.Health/Check",
      "/moby.buildkit.secrets.v1.Secrets/GetSecret",
      "/moby.filesync.v1.FileSend/DiffCopy",
      "/moby.filesync.v1.FileSync/DiffCopy",
    ]);
    await cs.done;
    await cs.close();
  } finally {
    client.close();
    server.forceShutdown();
    await rm(root, { recursive: true, force: true });
  }
});
