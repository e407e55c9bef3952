// `kiln build` through a real kilnd, over a unix socket and over TCP with mutual TLS: every
// exporter's output reaches the client (oci, docker, tar to a file and to stdout, local, an image
// pushed to the registry and read back with skopeo), several outputs in one build, --ssh and
// --secret served through the session, the porcelain finding the daemon by itself, --ref-file,
// and the records a build leaves being reclaimable (du, prune) once it is over.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { kilnEnv, repoRoot, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";
import { startRegistry } from "../fixtures/registry.js";
import { makeCerts, spawnKiln, startKilnd, type Kilnd } from "../helpers/kilnd.js";

const sh = promisify(execFile);

/** Member names of a tarball, `./` stripped. */
async function tarNames(file: string): Promise<string[]> {
  const { stdout } = await sh("tar", ["-tf", file], { maxBuffer: 64 << 20 });
  return stdout.split("\n").filter(Boolean).map((n) => n.replace(/^\.\//, ""));
}

/** ssh-add and the libraries it needs, to run inside busybox through the host's dynamic loader. */
async function sshAddTools(dir: string): Promise<void> {
  const { stdout } = await sh("ldd", ["/usr/bin/ssh-add"]);
  const libs = [...stdout.matchAll(/(\/\S+\.so[.\d]*)/g)].map((m) => m[1]!);
  await mkdir(path.join(dir, "tools", "lib"), { recursive: true });
  await copyFile("/usr/bin/ssh-add", path.join(dir, "tools", "ssh-add"));
  for (const lib of libs) await copyFile(lib, path.join(dir, "tools", "lib", path.basename(lib)));
}

// The shared registry outlives this file's describe: other files in the same run still use it.
after(async () => {
  await stopSharedRegistry();
});

describe("kiln build through kilnd", { concurrency: false }, () => {
  let env: KilnEnv;
  let kilnd: Kilnd;
  let unix = "";
  let tcp = "";
  let tls: string[] = [];

  before(async () => {
    env = await kilnEnv();
    await makeCerts(env.tmp);
    const sock = path.join(env.tmp, "kilnd.sock");
    unix = `unix://${sock}`;
    kilnd = await startKilnd([
      "--root", path.join(env.tmp, "kilnd-root"), "--config", env.config, "--addr", unix, "--addr", "tcp://127.0.0.1:0",
      "--tlscert", path.join(env.tmp, "server.pem"), "--tlskey", path.join(env.tmp, "server.key"), "--tlscacert", path.join(env.tmp, "ca.pem"),
    ]);
    tcp = `tcp://${(await kilnd.waitFor(/running server on (127\.0\.0\.1:\d+)/))[1]}`;
    tls = ["--tlscacert", path.join(env.tmp, "ca.pem"), "--tlscert", path.join(env.tmp, "client.pem"), "--tlskey", path.join(env.tmp, "client.key")];
  });

  after(async () => {
    await kilnd?.stop();
    await env?.close();
  });

  for (const transport of ["unix", "tcp+mtls"] as const) {
    test(`${transport}: oci, docker, tar, local and a registry push in one build; tar to stdout; one oci output with metadata`, async () => {
      const addr = transport === "unix" ? ["--addr", unix] : ["--addr", tcp, ...tls];
      const ctx = await env.context({ Dockerfile: `FROM busybox\nCOPY hello.txt /hello.txt\nRUN echo built-by-kilnd > /proof && echo ${transport} > /transport\nCMD ["cat", "/proof"]\n`, "hello.txt": "hello\n" });
      const out = path.join(env.tmp, `out-${transport}`);
      const image = `${env.registryHost}/kilnd/app:${transport.replace("+", "-")}`;
      const md = path.join(out, "md.json");
      const r = await env.run([
        ...addr, "build", ctx,
        "-o", `type=oci,dest=${out}/img.oci.tar,name=example.com/kilnd/app:v1`,
        "-o", `type=docker,dest=${out}/img.docker.tar,name=example.com/kilnd/app:v1`,
        "-o", `type=tar,dest=${out}/rootfs.tar`,
        "-o", `type=local,dest=${out}/local`,
        "-o", `type=image,name=${image},push=true`,
        "--metadata-file", md,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /RUN echo built-by-kilnd > \/proof.*\n#\d+ DONE/);

      assert.ok((await tarNames(`${out}/img.oci.tar`)).includes("index.json"));
      const oci = JSON.parse((await sh("skopeo", ["inspect", "--config", `oci-archive:${out}/img.oci.tar`])).stdout) as { config?: { Cmd?: string[] } };
      assert.deepEqual(oci.config?.Cmd, ["cat", "/proof"]);
      assert.ok((await tarNames(`${out}/img.docker.tar`)).includes("manifest.json"));
      const docker = JSON.parse((await sh("skopeo", ["inspect", "--config", `docker-archive:${out}/img.docker.tar`])).stdout) as { config?: { Cmd?: string[] } };
      assert.deepEqual(docker.config?.Cmd, ["cat", "/proof"]);
      const rootfs = await tarNames(`${out}/rootfs.tar`);
      assert.ok(rootfs.includes("proof") && rootfs.includes("hello.txt") && rootfs.includes("bin/busybox"), rootfs.slice(0, 20).join(" "));
      assert.equal(await readFile(`${out}/local/proof`, "utf8"), "built-by-kilnd\n");
      assert.equal(await readFile(`${out}/local/hello.txt`, "utf8"), "hello\n");

      const meta = JSON.parse(await readFile(md, "utf8")) as Record<string, string>;
      assert.match(meta["containerimage.digest"] ?? "", /^sha256:[0-9a-f]{64}$/);
      const pushed = JSON.parse((await sh("skopeo", ["inspect", "--tls-verify=false", `docker://${image}`])).stdout) as { Digest: string };
      const pushedConfig = JSON.parse((await sh("skopeo", ["inspect", "--tls-verify=false", "--config", `docker://${image}`])).stdout) as { config?: { Cmd?: string[] } };
      assert.deepEqual(pushedConfig.config?.Cmd, ["cat", "/proof"]);

      // One output: BuildKit v0.11's Exporter fields; dest=- streams the tarball to stdout.
      const stdoutTar = spawnKiln([...addr, "build", ctx, "-o", "type=tar,dest=-"], { env: { BUILDKIT_PROGRESS: "plain" } });
      const s = await stdoutTar.done;
      assert.equal(s.code, 0, s.stderr);
      assert.ok(s.stdout.length > 1 << 20, `stdout carries the tarball (${s.stdout.length} bytes)`);
      assert.match(s.stdout.subarray(0, 512).toString("latin1"), /ustar/);

      const single = await env.run([...addr, "build", ctx, "-o", `type=oci,dest=${out}/single.oci.tar`, "--metadata-file", `${out}/single.json`]);
      assert.equal(single.code, 0, single.stderr);
      assert.match(single.stderr, /#\d+ CACHED/, "an unchanged rebuild is cached");
      const index = JSON.parse((await sh("tar", ["-xOf", `${out}/single.oci.tar`, "index.json"])).stdout) as { manifests: { digest: string }[] };
      assert.equal((JSON.parse(await readFile(`${out}/single.json`, "utf8")) as Record<string, string>)["containerimage.digest"], index.manifests[0]?.digest, "the metadata names the tarball's image");
      assert.ok(pushed.Digest);
    });
  }

  test("--target, --build-arg, --platform, --no-cache, --allow and -t pass through to the daemon", async () => {
    const ctx = await env.context({
      Dockerfile: ["FROM busybox AS base", "ARG WHO=nobody", "ARG TARGETPLATFORM", 'RUN echo "$WHO on $TARGETPLATFORM" > /who', "FROM base AS other", "RUN exit 1", ""].join("\n"),
    });
    const out = path.join(env.tmp, "flags-out");
    const args = ["--addr", unix, "build", ctx, "--target", "base", "--build-arg", "WHO=kilnd", "--platform", "linux/amd64", "-t", "example.com/kilnd/named:v1", "-o", `type=local,dest=${out}`];
    // The entitlement reaches the daemon, whose configuration doesn't grant it.
    const denied = await env.run([...args, "--allow", "network.host"]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /^error: granting entitlement network\.host is not allowed by build daemon configuration$/m);
    const r = await env.run(args);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(path.join(out, "who"), "utf8"), "kilnd on linux/amd64\n");
    const again = await env.run([...args, "--no-cache"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /RUN echo "kilnd on linux\/amd64" > \/who\n#\d+ DONE/, "--no-cache runs the step again");
  });

  test("--progress tty in a real terminal (tmux) renders the daemon's Status stream as BuildKit's frame", async () => {
    const ctx = await env.context({ Dockerfile: `FROM busybox\nRUN echo tty-through-kilnd-${Date.now()} > /x\n` });
    const session = `kilnd-tty-${process.pid}`;
    const cmd = ["env", "-u", "BUILDKIT_PROGRESS", process.execPath, path.join(repoRoot, "bin", "kiln"), "--addr", unix, "build", ctx, "--progress", "tty"];
    const quoted = cmd.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
    await sh("tmux", ["new-session", "-d", "-x", "120", "-y", "40", "-s", session, `${quoted}; echo EXIT=$?; sleep 60`]);
    try {
      let text = "";
      for (const deadline = Date.now() + 90_000; !/EXIT=\d+/.test(text); await new Promise((r) => setTimeout(r, 100))) {
        if (Date.now() > deadline) throw new Error(`build did not finish:\n${text}`);
        text = (await sh("tmux", ["capture-pane", "-p", "-t", session])).stdout;
      }
      assert.match(text, /EXIT=0/, text);
      assert.match(text, /^\[\+\] Building \d+\.\ds \(\d+\/\d+\) FINISHED *$/m, text);
      assert.match(text, /^ => \[2\/2\] RUN echo tty-through-kilnd-\d+ > \/x +\d+\.\ds$/m, text);
    } finally {
      await sh("tmux", ["kill-session", "-t", session]).catch(() => undefined);
    }
  });

  test("-t --push to a registry with basic auth: the credentials come from the client's $DOCKER_CONFIG through the session", async () => {
    const reg = await startRegistry({ htpasswd: { kiln: "s3cret" } });
    try {
      const cfgDir = await mkdtemp(path.join(env.tmp, "docker-config-"));
      await writeFile(path.join(cfgDir, "config.json"), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from("kiln:s3cret").toString("base64") } } }));
      const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo pushed-with-auth > /p\n" });
      const md = path.join(env.tmp, "auth-md.json");
      const ok = await env.run(["--addr", unix, "build", ctx, "-t", `${reg.host}/kilnd/secure:v1`, "--push", "--metadata-file", md], { env: { DOCKER_CONFIG: cfgDir } });
      assert.equal(ok.code, 0, ok.stderr);
      const pushed = JSON.parse((await sh("skopeo", ["inspect", "--tls-verify=false", "--creds", "kiln:s3cret", `docker://${reg.host}/kilnd/secure:v1`])).stdout) as { Digest: string };
      assert.equal(pushed.Digest, (JSON.parse(await readFile(md, "utf8")) as Record<string, string>)["containerimage.digest"]);
      const denied = await env.run(["--addr", unix, "build", ctx, "-t", `${reg.host}/kilnd/secure:v2`, "--push"], { env: { DOCKER_CONFIG: await mkdtemp(path.join(env.tmp, "empty-")) } });
      assert.equal(denied.code, 1);
      assert.match(denied.stderr, /401 Unauthorized/);
    } finally {
      await reg.stop();
    }
  });

  test("--secret and --ssh are served to the daemon through the session; missing ones fail as daemonless", async () => {
    const key = path.join(env.tmp, "id_ed25519");
    await sh("ssh-keygen", ["-t", "ed25519", "-N", "", "-C", "kilnd-test-key", "-f", key, "-q"]);
    const fingerprint = (await sh("ssh-keygen", ["-lf", `${key}.pub`])).stdout.split(" ")[1]!;
    const ctx = await env.context({
      Dockerfile: [
        "FROM busybox",
        "RUN --mount=type=secret,id=token cp /run/secrets/token /token-copy",
        "RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh /tools/lib/ld-linux-x86-64.so.2 --library-path /tools/lib /tools/ssh-add -l > /keys",
        "",
      ].join("\n"),
    });
    await sshAddTools(ctx);
    const secretFile = path.join(env.tmp, "token.txt");
    await sh("sh", ["-c", `printf s3cr3t-through-kilnd > ${secretFile}`]);
    const out = path.join(env.tmp, "ssh-secret-out");
    const r = await env.run(["--addr", unix, "build", ctx, "--secret", `id=token,src=${secretFile}`, "--ssh", `default=${key}`, "-o", `type=local,dest=${out}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(path.join(out, "token-copy"), "utf8"), "s3cr3t-through-kilnd");
    assert.match(await readFile(path.join(out, "keys"), "utf8"), new RegExp(`${fingerprint.replace(/[+/]/g, "\\$&")} kilnd-test-key`));
    assert.doesNotMatch(r.stderr, /s3cr3t/);

    const noSsh = await env.run(["--addr", unix, "build", ctx, "--secret", `id=token,src=${secretFile}`, "--no-cache"]);
    assert.equal(noSsh.code, 1);
    assert.match(noSsh.stderr, /^error: .*ssh/im);
    assert.equal(noSsh.stderr.trim().split("\n").filter((l) => l.startsWith("error:")).length, 1, "one error line");
  });

  test("no --addr, BUILDKIT_HOST, --root or --config: kiln build finds the daemon at the default address; --ref-file, --progress rawjson", async () => {
    const ctx = await env.context({ Dockerfile: "FROM busybox\nRUN echo found > /found\n" });
    const out = path.join(env.tmp, "autodetect");
    const refFile = path.join(env.tmp, "ref.txt");
    const env2: Record<string, string> = { KILN_DEFAULT_HOST: unix, BUILDKIT_HOST: "", BUILDKIT_PROGRESS: "rawjson" };
    const r = await spawnKiln(["build", ctx, "-o", `type=local,dest=${out}`, "--ref-file", refFile], { env: env2 }).done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(path.join(out, "found"), "utf8"), "found\n");
    const ref = await readFile(refFile, "utf8");
    assert.match(ref, /^[0-9a-z]{25}$/);
    const lines = r.stderr.trim().split("\n").map((l) => JSON.parse(l) as { vertexes?: { name: string }[] });
    assert.ok(lines.some((l) => l.vertexes?.some((v) => v.name.includes("RUN echo found"))));
    // The daemon ran it: its records show the step, and the in-process root was never created.
    const du = spawnKiln(["--addr", unix, "du", "--verbose"]);
    assert.match((await du.done).stdout.toString(), /echo found/);

    // An explicit --root means in-process even with the daemon up.
    const local = await env.run(["build", ctx, "-o", `type=local,dest=${out}-local`], { env: { KILN_DEFAULT_HOST: unix, BUILDKIT_HOST: "" } });
    assert.equal(local.code, 0, local.stderr);
    assert.equal(await readFile(path.join(`${out}-local`, "found"), "utf8"), "found\n");

    // A dead default address: in-process, no delay worth the name.
    const none = spawnKiln(["--root", path.join(env.tmp, "root-none"), "debug", "workers"], { env: { KILN_DEFAULT_HOST: `unix://${env.tmp}/nothing.sock` } });
    assert.equal((await none.done).code, 0);
  });

  test("after builds through kilnd, du shows their records reclaimable and prune removes them", async () => {
    const ctx = await env.context({ Dockerfile: `FROM busybox\nRUN echo reclaim-${Date.now()} > /r\n` });
    const r = await env.run(["--addr", unix, "build", ctx]);
    assert.equal(r.code, 0, r.stderr);
    // GC and the release of shared results happen just after the solve returns.
    await new Promise((res) => setTimeout(res, 500));
    const du = await spawnKiln(["--addr", unix, "du", "--verbose"]).done;
    assert.equal(du.code, 0, du.stderr);
    const text = du.stdout.toString();
    // Cache records only: kiln's own state (metadata database, content store) is no BuildKit record.
    assert.doesNotMatch(text, /kiln-metadata/);
    const blocks = text.split("\n\n").filter((b) => /^ID:/m.test(b));
    assert.ok(blocks.length > 0, text);
    const inUse = blocks.filter((b) => /^Reclaimable:\s+false/m.test(b));
    assert.deepEqual(inUse, [], "no record stays in use after the build");
    const prune = await spawnKiln(["--addr", unix, "prune", "--all"]).done;
    assert.equal(prune.code, 0, prune.stderr);
    const left = (await spawnKiln(["--addr", unix, "du", "--verbose"]).done).stdout.toString();
    // Nothing is left, as BuildKit's tests expect of prune --all.
    assert.deepEqual(left.split("\n\n").filter((b) => /^ID:/m.test(b)), [], left);
  });
});

