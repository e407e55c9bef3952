import { test } from "node:test";
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { OpSchema } from "../api/index.js";
import { git, parseGitProtocol } from "./index.js";

const amd64 = { os: "linux", architecture: "amd64" };

function sourceOf(st: ReturnType<typeof git>) {
  const def = st.marshal({ platform: amd64 });
  const op = fromBinary(OpSchema, def.def[0]!);
  assert.equal(op.op.case, "source");
  return { op, src: op.op.value as { identifier: string; attrs: Record<string, string> }, caps: Object.keys(Object.values(def.metadata)[0]!.caps) };
}

void test("git sources are written as Go's llb.Git writes them", () => {
  const https = sourceOf(git("https://github.com/moby/buildkit.git", "v0.11.6:frontend", { keepGitDir: true }));
  assert.equal(https.src.identifier, "git://github.com/moby/buildkit.git#v0.11.6:frontend");
  assert.deepEqual(Object.keys(https.src.attrs), ["git.authheadersecret", "git.authtokensecret", "git.fullurl", "git.keepgitdir"], "attrs in Go's sorted order");
  assert.equal(https.src.attrs["git.fullurl"], "https://github.com/moby/buildkit.git");
  assert.equal(https.op.platform, undefined, "only image sources carry a platform");
  assert.deepEqual(https.caps.sort(), ["source.git", "source.git.fullurl", "source.git.keepgitdir"]);

  const ssh = sourceOf(git("git@github.com:moby/buildkit.git", ""));
  assert.equal(ssh.src.identifier, "git://github.com/moby/buildkit.git");
  assert.equal(ssh.src.attrs["git.mountsshsock"], "default");
  assert.equal(ssh.src.attrs["git.fullurl"], "git@github.com:moby/buildkit.git");

  const bare = sourceOf(git("github.com/moby/buildkit", "main"));
  assert.equal(bare.src.attrs["git.fullurl"], "https://github.com/moby/buildkit", "no scheme means https");
});

void test("parseGitProtocol strips the scheme and an ssh user", () => {
  assert.deepEqual(parseGitProtocol("ssh://git@host:22/repo.git"), { remote: "host:22/repo.git", protocol: "ssh" });
  assert.deepEqual(parseGitProtocol("git://127.0.0.1:9418/r.git"), { remote: "127.0.0.1:9418/r.git", protocol: "git" });
  assert.deepEqual(parseGitProtocol("user@host:org/repo"), { remote: "host:org/repo", protocol: "ssh" });
  assert.deepEqual(parseGitProtocol("./local"), { remote: "./local", protocol: "unknown" });
});
