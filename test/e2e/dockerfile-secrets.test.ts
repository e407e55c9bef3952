// Secrets and ssh agents daemonless: `--secret` files and env vars mounted for one RUN (file or
// env var), absent from every layer, the config, the history, the cache key and the logs; `--ssh`
// forwarding an agent socket (a running ssh-agent, or key files loaded into a private one).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { copyFile, lstat, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { kilnEnv, stepStates, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

const sh = promisify(execFile);
let env: KilnEnv;
let agent: ChildProcess | undefined;
const fileSecret = "file-secret-7f3a9c1d-value";
const envSecret = "env-secret-2b8e4d6f-value";
const sha = (s: string) => createHash("sha256").update(s).digest("hex");

before(async () => {
  env = await kilnEnv();
});
after(async () => {
  agent?.kill();
  await env?.close();
  await stopSharedRegistry();
});

/** Every file of an OCI tarball (blobs decompressed) as one buffer, to search for leaks. */
async function allImageBytes(tarball: string): Promise<Buffer> {
  const dir = `${tarball}.d`;
  await mkdir(dir, { recursive: true });
  await sh("tar", ["-xf", tarball, "-C", dir]);
  const out: Buffer[] = [await readFile(path.join(dir, "index.json"))];
  for (const name of await readdir(path.join(dir, "blobs", "sha256"))) {
    const b = await readFile(path.join(dir, "blobs", "sha256", name));
    out.push(b[0] === 0x1f && b[1] === 0x8b ? gunzipSync(b) : b);
  }
  return Buffer.concat(out);
}

test("a secret used in RUN reaches the step and nothing else", async () => {
  const secretFile = path.join(env.tmp, "secret.txt");
  await writeFile(secretFile, fileSecret);
  const ctx = await env.context({
    Dockerfile: [
      "FROM busybox",
      "RUN --mount=type=secret,id=mysecret sha256sum /run/secrets/mysecret | cut -d' ' -f1 > /sum && ls -la /run/secrets/mysecret",
      "RUN --mount=type=secret,id=mysecret,target=/custom/secret,uid=1000,mode=0440 stat -c '%u %a' /custom/secret > /stat",
      "RUN --mount=type=secret,id=envsecret,env=TOKEN sh -c 'printf %s \"$TOKEN\" | sha256sum | cut -d\" \" -f1 > /envsum'",
      "RUN --mount=type=secret,id=not-given ls /run/secrets > /optional 2>&1 || echo absent > /optional",
      "RUN if [ -e /run/secrets ]; then echo present; else echo absent; fi > /run-after",
    ].join("\n"),
  });
  const out = path.join(env.tmp, "secret.tar");
  const args = ["build", ctx, "--secret", `id=mysecret,src=${secretFile}`, "--secret", "id=envsecret,env=KILN_TEST_SECRET"];
  const r = await env.run([...args, "-o", `type=oci,dest=${out}`], { env: { KILN_TEST_SECRET: envSecret } });
  assert.equal(r.code, 0, r.stderr);
  const local = path.join(env.tmp, "secret-local");
  const l = await env.run([...args, "-o", `type=local,dest=${local}`], { env: { KILN_TEST_SECRET: envSecret } });
  assert.equal(l.code, 0, l.stderr);
  assert.equal((await readFile(path.join(local, "sum"), "utf8")).trim(), sha(fileSecret));
  assert.equal((await readFile(path.join(local, "stat"), "utf8")).trim(), "1000 440");
  assert.equal((await readFile(path.join(local, "envsum"), "utf8")).trim(), sha(envSecret));
  assert.equal((await readFile(path.join(local, "optional"), "utf8")).trim(), "absent", "an optional secret not given is not mounted");
  assert.equal((await readFile(path.join(local, "run-after"), "utf8")).trim(), "absent", "no mount point is left behind");
  await assert.rejects(lstat(path.join(local, "custom", "secret")));

  const bytes = await allImageBytes(out);
  for (const s of [fileSecret, envSecret]) {
    assert.ok(!bytes.includes(s), "the secret is in no layer, config or manifest");
    assert.ok(!r.stderr.includes(s) && !r.stdout.includes(s), "the secret is not in the logs");
  }

  // Another value of the secret is the same step: secrets are not part of cache keys.
  await writeFile(secretFile, "a different value");
  const again = await env.run([...args], { env: { KILN_TEST_SECRET: "changed too" } });
  assert.equal(again.code, 0, again.stderr);
  assert.ok([...stepStates(again.stderr)].filter(([n]) => n.includes("RUN")).every(([, s]) => s === "CACHED"), again.stderr);

  const required = await env.context({ Dockerfile: "FROM busybox\nRUN --mount=type=secret,id=nope,required=true true\n" });
  const m = await env.run(["build", required]);
  assert.equal(m.code, 1);
  assert.match(m.stderr, /Dockerfile:2[\s\S]*secret nope: not found/);
});

/** ssh-add and the libraries it needs, to run inside busybox through the host's dynamic loader. */
async function sshAddTools(dir: string): Promise<void> {
  const { stdout } = await sh("ldd", ["/usr/bin/ssh-add"]);
  const libs = [...stdout.matchAll(/(\/\S+\.so[.\d]*)/g)].map((m) => m[1]!);
  await mkdir(path.join(dir, "tools", "lib"), { recursive: true });
  await copyFile("/usr/bin/ssh-add", path.join(dir, "tools", "ssh-add"));
  for (const lib of libs) await copyFile(lib, path.join(dir, "tools", "lib", path.basename(lib)));
}

test("--ssh forwards an agent: key files, a running agent, custom targets; a missing agent fails", async () => {
  const key = path.join(env.tmp, "id_test");
  await sh("ssh-keygen", ["-t", "ed25519", "-N", "", "-C", "kiln-test-key", "-f", key, "-q"]);
  const fingerprint = (await sh("ssh-keygen", ["-lf", `${key}.pub`])).stdout.split(" ")[1]!;
  const ctx = await env.context({
    Dockerfile: [
      "FROM busybox",
      "ARG N",
      "RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh sh -c 'echo $SSH_AUTH_SOCK > /sock; /tools/lib/ld-linux-x86-64.so.2 --library-path /tools/lib /tools/ssh-add -l > /keys'",
      "RUN --mount=type=ssh,id=other,target=/agent.sock,mode=0666,required=true sh -c 'echo $SSH_AUTH_SOCK > /sock2; stat -c %a /agent.sock > /mode2'",
    ].join("\n"),
  });
  await sshAddTools(ctx);

  const viaKeys = path.join(env.tmp, "ssh-keys");
  const k = await env.run(["build", ctx, "--build-arg", "N=1", "--ssh", `default=${key}`, "--ssh", `other=${key}`, "-o", `type=local,dest=${viaKeys}`]);
  assert.equal(k.code, 0, k.stderr);
  assert.match(await readFile(path.join(viaKeys, "keys"), "utf8"), new RegExp(`${fingerprint.replace(/[+/]/g, "\\$&")} kiln-test-key`));
  assert.equal((await readFile(path.join(viaKeys, "sock"), "utf8")).trim(), "/run/buildkit/ssh_agent.0");
  assert.equal((await readFile(path.join(viaKeys, "sock2"), "utf8")).trim(), "/agent.sock");
  assert.equal((await readFile(path.join(viaKeys, "mode2"), "utf8")).trim(), "666");

  // A running agent, found through SSH_AUTH_SOCK.
  const sock = path.join(env.tmp, "agent.sock");
  agent = spawn("ssh-agent", ["-D", "-a", sock], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    if (await lstat(sock).then(() => true, () => false)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  await sh("ssh-add", ["-q", key], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
  const viaAgent = path.join(env.tmp, "ssh-agent");
  const a = await env.run(["build", ctx, "--build-arg", "N=2", "--ssh", "default", "--ssh", `other=${sock}`, "-o", `type=local,dest=${viaAgent}`], { env: { SSH_AUTH_SOCK: sock } });
  assert.equal(a.code, 0, a.stderr);
  assert.match(await readFile(path.join(viaAgent, "keys"), "utf8"), /kiln-test-key/);

  const missing = await env.run(["build", ctx, "--build-arg", "N=3", "--ssh", `default=${key}`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no SSH key "other" forwarded from the client/);
});
