import { test } from "node:test";
import assert from "node:assert/strict";
import { daemonCommand, defaultAddress, mergeSettings, type DaemonFlags } from "./flags.js";
import { parseListenAddress, takeSystemdFds } from "./listen.js";
import { loadConfig } from "../config.js";

void test("listen addresses: unix, tcp (v4, v6, any host), fd, and buildkitd's errors", () => {
  assert.deepEqual(parseListenAddress("unix:///run/kiln/kilnd.sock"), { kind: "unix", path: "/run/kiln/kilnd.sock" });
  assert.deepEqual(parseListenAddress("tcp://127.0.0.1:1234"), { kind: "tcp", host: "127.0.0.1", port: 1234 });
  assert.deepEqual(parseListenAddress("tcp://[::1]:1234"), { kind: "tcp", host: "::1", port: 1234 });
  assert.deepEqual(parseListenAddress("tcp://:1234"), { kind: "tcp", host: "", port: 1234 });
  assert.deepEqual(parseListenAddress("fd://"), { kind: "fd" });
  assert.deepEqual(parseListenAddress("fd://4"), { kind: "fd", fd: 4 });
  assert.throws(() => parseListenAddress("/run/kilnd.sock"), /does not contain proto, you meant unix:\/\/\/run\/kilnd.sock \?/);
  assert.throws(() => parseListenAddress("http://x:1"), /addr http:\/\/x:1 not supported/);
  assert.throws(() => parseListenAddress("tcp://host"), /expected tcp:\/\/HOST:PORT/);
  assert.throws(() => parseListenAddress("tcp://host:99999"), /expected tcp:\/\/HOST:PORT/);
  assert.throws(() => parseListenAddress("fd://x"), /fd:\/\/NUMBER/);
});

function parse(argv: string[]): DaemonFlags {
  let got: DaemonFlags | undefined;
  const cmd = daemonCommand(async (f) => {
    got = f;
  });
  cmd.exitOverride();
  cmd.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  void cmd.parse(argv, { from: "user" });
  assert.ok(got);
  return got;
}

void test("flags: repeatable --addr, TLS, group; buildkitd's worker flags are accepted", () => {
  const f = parse([
    "--addr", "unix:///a.sock", "--addr=tcp://0.0.0.0:1234", "--tlscert", "c.pem", "--tlskey=k.pem", "--tlscacert", "ca.pem", "--group", "docker", "--root", "/r", "--debug",
    "--oci-worker=true", "--containerd-worker=false", "--oci-worker-snapshotter=overlayfs", "--oci-worker-gc", "--oci-worker-gc-keepstorage", "5000",
    "--oci-worker-labels", "a=b", "--oci-worker-labels=c=d=e", "--rootless", "--oci-worker-net", "host", "--debugaddr", "0.0.0.0:6060", "--allow-insecure-entitlement", "network.host",
  ]);
  assert.deepEqual(f.addr, ["unix:///a.sock", "tcp://0.0.0.0:1234"]);
  assert.equal(f.tlscert, "c.pem");
  assert.equal(f.tlskey, "k.pem");
  assert.equal(f.tlscacert, "ca.pem");
  assert.equal(f.group, "docker");
  assert.equal(f.root, "/r");
  assert.equal(f.debug, true);
  assert.deepEqual(f.ociWorkerLabels, ["a=b", "c=d=e"]);
  assert.deepEqual(f.allowInsecureEntitlement, ["network.host"]);
  assert.throws(() => parse(["--no-such-flag"]), /unknown option/);
});

void test("settings: flags override the config file; defaults as buildkitd's", async () => {
  const cfg = await loadConfig(undefined);
  const d = mergeSettings({}, cfg);
  assert.deepEqual(d.addresses, [defaultAddress]);
  assert.equal(d.root, "/var/lib/kiln");
  assert.equal(d.gc.enabled, true);

  cfg.grpc = { address: ["tcp://127.0.0.1:1"], gid: 42, tls: { cert: "cfg.pem", key: "cfg.key", ca: "cfgca.pem" } };
  cfg.root = "/cfgroot";
  const c = mergeSettings({}, cfg);
  assert.deepEqual(c.addresses, ["tcp://127.0.0.1:1"]);
  assert.equal(c.gid, 42);
  assert.deepEqual(c.tls, { cert: "cfg.pem", key: "cfg.key", ca: "cfgca.pem" });
  assert.equal(c.root, "/cfgroot");

  const f = mergeSettings({ addr: ["unix:///x.sock"], root: "/flagroot", tlscert: "f.pem", ociWorkerGc: "false", ociWorkerLabels: ["k=v"], ociWorkerGcKeepstorage: "1000" }, cfg);
  assert.deepEqual(f.addresses, ["unix:///x.sock"]);
  assert.equal(f.root, "/flagroot");
  assert.equal(f.tls.cert, "f.pem");
  assert.equal(f.tls.key, "cfg.key");
  assert.equal(f.gc.enabled, false);
  assert.deepEqual(f.labels, { k: "v" });
  // gckeepstorage stands in for reservedSpace in every size-limited default rule.
  assert.equal(f.gc.policies[1]?.reservedSpace.bytes, 1e9);

  const plain = await loadConfig(undefined);
  assert.throws(() => mergeSettings({ tlscert: "only-cert.pem" }, plain), /must specify key and cert/);
  assert.throws(() => mergeSettings({ allowInsecureEntitlement: ["device"] }, plain), /invalid entitlement : device/);
  assert.throws(() => mergeSettings({ ociWorkerGc: "maybe" }, plain), /invalid boolean value/);
  assert.throws(() => mergeSettings({ ociWorkerLabels: ["novalue"] }, plain), /KEY=VALUE/);
});

void test("systemd sockets: only for this pid, from fd 3, and the variables are cleared", () => {
  const env: NodeJS.ProcessEnv = { LISTEN_PID: String(process.pid), LISTEN_FDS: "2", LISTEN_FDNAMES: "a:b" };
  assert.deepEqual(takeSystemdFds(env), [3, 4]);
  assert.equal(env.LISTEN_PID, undefined);
  assert.equal(env.LISTEN_FDS, undefined);
  assert.equal(env.LISTEN_FDNAMES, undefined);
  assert.deepEqual(takeSystemdFds({ LISTEN_PID: "1", LISTEN_FDS: "1" }), []);
  assert.deepEqual(takeSystemdFds({}), []);
});
