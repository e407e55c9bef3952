// ADD of remote sources: files from an http server on 127.0.0.1 (with good and bad --checksum,
// revalidated by ETag), and git repositories served by `git daemon` from a local bare repo.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import { access, lstat, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stepStates, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";
import { freePort } from "../fixtures/registry.js";

const sh = promisify(execFile);
let env: KilnEnv;
let http: Server;
let base = "";
let gitd: ChildProcess | undefined;
let gitBase = "";
const served = { bodies: 0, notModified: 0 };
const hello = "hello over http\n";
const lastModified = "Wed, 21 Oct 2015 07:28:00 GMT";
/** More files the http server serves, by path. */
const routes = new Map<string, Buffer>();
/** Directory served under /dumb/ (the bare repositories). */
let dumbRoot = "";

before(async () => {
  env = await kilnEnv();
  http = createServer((req, res) => {
    const extra = routes.get(req.url ?? "");
    if (extra) {
      res.writeHead(200).end(extra);
      return;
    }
    // The bare repositories as plain files: git's dumb http transport.
    if (req.url?.startsWith("/dumb/") && dumbRoot) {
      const file = path.join(dumbRoot, path.posix.normalize(req.url.slice("/dumb/".length).split("?")[0]!).replace(/^(\.\.\/)+/, ""));
      readFile(file).then(
        (b) => res.writeHead(200).end(b),
        () => res.writeHead(404).end(),
      );
      return;
    }
    if (req.url === "/files/hello.txt") {
      if (req.headers["if-none-match"]?.includes('"v1"')) {
        served.notModified++;
        res.writeHead(304, { etag: '"v1"' }).end();
        return;
      }
      served.bodies++;
      res.writeHead(200, { etag: '"v1"', "last-modified": lastModified, "content-type": "text/plain" }).end(hello);
      return;
    }
    res.writeHead(404).end("not found\n");
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;

  // A repository with a branch, a tag and a subdirectory, served read-only over git://.
  const work = path.join(env.tmp, "gitwork");
  const repos = path.join(env.tmp, "gitrepos");
  await mkdir(path.join(work, "sub"), { recursive: true });
  await mkdir(repos, { recursive: true });
  const g = (args: string[], cwd = work) => sh("git", ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main", ...args], { cwd });
  await g(["init", "-q"]);
  await writeFile(path.join(work, "top.txt"), "v1 top\n");
  await writeFile(path.join(work, "sub", "inner.txt"), "v1 inner\n");
  await g(["add", "."]);
  await g(["commit", "-q", "-m", "one"]);
  await g(["tag", "-a", "v1", "-m", "v1"]);
  await writeFile(path.join(work, "top.txt"), "v2 top\n");
  await g(["commit", "-q", "-am", "two"]);
  await g(["clone", "-q", "--bare", work, path.join(repos, "repo.git")], env.tmp);
  await sh("git", ["update-server-info"], { cwd: path.join(repos, "repo.git") });
  dumbRoot = repos;
  const port = await freePort();
  gitd = spawn("git", ["daemon", "--export-all", `--base-path=${repos}`, "--reuseaddr", "--listen=127.0.0.1", `--port=${port}`, repos], { stdio: "ignore" });
  gitBase = `git://127.0.0.1:${port}`;
  for (let i = 0; i < 50; i++) {
    try {
      await sh("git", ["ls-remote", `${gitBase}/repo.git`]);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});
after(async () => {
  gitd?.kill();
  await new Promise((r) => http?.close(r));
  await env?.close();
  await stopSharedRegistry();
});

test("ADD of an http URL: the file, its mode and time; --checksum good and bad; ETag revalidation", async () => {
  const sum = `sha256:${createHash("sha256").update(hello).digest("hex")}`;
  const ctx = await env.context({ Dockerfile: `FROM scratch\nADD ${base}/files/hello.txt /dl/\n` });
  const dest = path.join(env.tmp, "http-1");
  const r = await env.run(["build", ctx, "-o", `type=local,dest=${dest}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(path.join(dest, "dl", "hello.txt"), "utf8"), hello);
  const st = await lstat(path.join(dest, "dl", "hello.txt"));
  assert.equal(st.mode & 0o777, 0o600, "downloads are 0600, as Docker's ADD makes them");
  assert.equal(st.mtimeMs, Date.parse(lastModified));
  assert.equal(served.bodies, 1);

  // Unchanged on the server (304 for the known ETag): the step is a cache hit, nothing downloaded.
  const again = await env.run(["build", ctx]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(served.bodies, 1);
  assert.ok(served.notModified >= 1);
  assert.equal(stepStates(again.stderr).get(`[1/1] ADD ${base}/files/hello.txt /dl/`), "CACHED");

  const good = await env.context({ Dockerfile: `FROM scratch\nADD --checksum=${sum} ${base}/files/hello.txt /good.txt\n` });
  const g = await env.run(["build", good, "-o", `type=local,dest=${path.join(env.tmp, "http-good")}`]);
  assert.equal(g.code, 0, g.stderr);
  assert.equal(await readFile(path.join(env.tmp, "http-good", "good.txt"), "utf8"), hello);

  const wrong = `sha256:${"0".repeat(64)}`;
  const bad = await env.context({ Dockerfile: `FROM scratch\nADD --checksum=${wrong} ${base}/files/hello.txt /bad.txt\n` });
  const b = await env.run(["build", bad, "-o", `type=local,dest=${path.join(env.tmp, "http-bad")}`]);
  assert.equal(b.code, 1);
  assert.match(b.stderr, new RegExp(`digest mismatch ${sum}: ${wrong}`));
  await assert.rejects(access(path.join(env.tmp, "http-bad")));

  const missing = await env.context({ Dockerfile: `FROM scratch\nADD ${base}/nope.txt /\n` });
  const m = await env.run(["build", missing]);
  assert.equal(m.code, 1);
  assert.match(m.stderr, /invalid response status 404/);
});

test("ADD of a git repository: a ref and subdirectory, the default branch, --keep-git-dir", async () => {
  const ctx = await env.context({
    Dockerfile: [
      "FROM scratch",
      `ADD ${gitBase}/repo.git#v1:sub /tagged/`,
      `ADD ${gitBase}/repo.git /head/`,
      `ADD --keep-git-dir ${gitBase}/repo.git#main /withgit/`,
    ].join("\n"),
  });
  const dest = path.join(env.tmp, "git-1");
  const r = await env.run(["build", ctx, "-o", `type=local,dest=${dest}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await readdir(path.join(dest, "tagged")), ["inner.txt"]);
  assert.equal(await readFile(path.join(dest, "tagged", "inner.txt"), "utf8"), "v1 inner\n");
  assert.deepEqual((await readdir(path.join(dest, "head"))).sort(), ["sub", "top.txt"]);
  assert.equal(await readFile(path.join(dest, "head", "top.txt"), "utf8"), "v2 top\n");
  assert.ok((await readdir(path.join(dest, "withgit"))).includes(".git"));
  const head = (await sh("git", ["--git-dir", path.join(dest, "withgit", ".git"), "log", "--format=%s"])).stdout;
  assert.equal(head, "two\n");
  const origin = (await sh("git", ["--git-dir", path.join(dest, "withgit", ".git"), "remote", "get-url", "origin"])).stdout.trim();
  assert.equal(origin, `${gitBase}/repo.git`);

  // The same commit again: every step is a cache hit.
  const again = await env.run(["build", ctx]);
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /#\d+ DONE/);

  const missing = await env.context({ Dockerfile: `FROM scratch\nADD ${gitBase}/repo.git#nosuchbranch /x/\n` });
  const m = await env.run(["build", missing]);
  assert.equal(m.code, 1);
  assert.match(m.stderr, /repository does not contain ref nosuchbranch/);
});

test("the context attr: a tarball URL (unpacked, contextsubdir), a Dockerfile URL, a git repository with a local Dockerfile", async () => {
  const out = (name: string) => path.join(env.tmp, name);
  const tree = await env.context({ Dockerfile: "FROM scratch\nCOPY foo /bar\n", foo: "from tar\n", "sub/dir/foo": "from subdir\n" });
  await sh("tar", ["-czf", out("ctx.tar.gz"), "-C", tree, "."]);
  routes.set("/ctx.tar.gz", await readFile(out("ctx.tar.gz")));
  routes.set("/df", Buffer.from("FROM busybox\nRUN echo plain > /which\n"));

  const tarball = await env.run(["build", "--frontend", "dockerfile.v0", "--opt", `context=${base}/ctx.tar.gz`, "-o", `type=local,dest=${out("ctx-tar")}`]);
  assert.equal(tarball.code, 0, tarball.stderr);
  assert.equal(await readFile(path.join(out("ctx-tar"), "bar"), "utf8"), "from tar\n");

  // The Dockerfile from the client, the context a directory of the tarball.
  const dfDir = await env.context({ Dockerfile: "FROM scratch\nCOPY foo /bar\n" });
  const sub = await env.run(["build", "--frontend", "dockerfile.v0", "--local", `dockerfile=${dfDir}`, "--opt", "dockerfilekey=dockerfile", "--opt", `context=${base}/ctx.tar.gz`, "--opt", "contextsubdir=sub/dir", "-o", `type=local,dest=${out("ctx-sub")}`]);
  assert.equal(sub.code, 0, sub.stderr);
  assert.equal(await readFile(path.join(out("ctx-sub"), "bar"), "utf8"), "from subdir\n");

  // Not an archive: the file is the Dockerfile, whatever the filename attr says.
  const plain = await env.run(["build", "--frontend", "dockerfile.v0", "--opt", `context=${base}/df`, "--opt", "filename=bogus", "-o", `type=local,dest=${out("ctx-df")}`]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal((await readFile(path.join(out("ctx-df"), "which"), "utf8")).trim(), "plain");

  // A repository over the dumb http transport can't be fetched shallow: fetched in full instead.
  const dumb = await env.context({ Dockerfile: `FROM scratch\nADD ${base}/dumb/repo.git#v1 /r/\n` });
  const viaDumb = await env.run(["build", dumb, "-o", `type=local,dest=${out("ctx-dumb")}`]);
  assert.equal(viaDumb.code, 0, viaDumb.stderr);
  assert.equal(await readFile(path.join(out("ctx-dumb"), "r", "top.txt"), "utf8"), "v1 top\n");

  const gitDf = await env.context({ Dockerfile: "FROM scratch\nCOPY top.txt /top\n" });
  const fromGit = await env.run(["build", "--frontend", "dockerfile.v0", "--local", `dockerfile=${gitDf}`, "--opt", "dockerfilekey=dockerfile", "--opt", `context=${gitBase}/repo.git#v1`, "-o", `type=local,dest=${out("ctx-git")}`]);
  assert.equal(fromGit.code, 0, fromGit.stderr);
  assert.equal(await readFile(path.join(out("ctx-git"), "top"), "utf8"), "v1 top\n");
});
