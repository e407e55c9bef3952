// /etc/hosts and /etc/resolv.conf contents, IP formatting, and the spec's fixed parts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { hostsFileContent } from "./hosts.js";
import { goNetIPString, goNetipString, isLoopback, parseIP } from "./ip.js";
import { buildResolvConf } from "./resolvconf.js";
import { dedupMounts, generateSpec, processEnv } from "./spec.js";

void test("hosts file: BuildKit's layout, canonical IPs", () => {
  assert.equal(hostsFileContent(""), "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n");
  assert.equal(
    hostsFileContent("box", [
      { host: "a", ip: "10.0.0.1" },
      { host: "b", ip: "2001:DB8:0:0:0:0:0:1" },
      { host: "c", ip: "::ffff:1.2.3.4" },
    ]),
    "127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.1\ta\n2001:db8::1\tb\n1.2.3.4\tc\n",
  );
  assert.throws(() => hostsFileContent("", [{ host: "x", ip: "not-an-ip" }]), /invalid IP address/);
});

void test("IP text as Go prints it", () => {
  const f = (s: string) => goNetipString(parseIP(s)!);
  assert.equal(f("0:0:0:0:0:0:0:1"), "::1");
  assert.equal(f("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  assert.equal(f("fe80::1%eth0"), "fe80::1%eth0");
  assert.equal(f("::ffff:127.0.0.1"), "::ffff:127.0.0.1");
  assert.equal(goNetIPString(parseIP("::ffff:7f00:1")!), "127.0.0.1");
  assert.equal(f("1:2:3:4:5:6:7:8"), "1:2:3:4:5:6:7:8");
  assert.equal(f("::"), "::");
  assert.ok(isLoopback(parseIP("127.0.0.53")!));
  assert.ok(isLoopback(parseIP("::1")!));
  assert.ok(isLoopback(parseIP("::ffff:127.0.0.1")!));
  assert.ok(!isLoopback(parseIP("10.0.0.1")!));
  assert.equal(parseIP("300.1.1.1"), undefined);
});

void test("resolv.conf: loopback servers dropped outside host networking, defaults when none left", () => {
  const host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.com corp\noptions edns0 trust-ad\nsortlist 1.2.3.4\r\n";
  assert.equal(buildResolvConf(host, "none"), "nameserver 10.0.0.2\nsearch example.com corp\noptions edns0 trust-ad\nsortlist 1.2.3.4\n");
  assert.equal(buildResolvConf(host, "sandbox"), buildResolvConf(host, "none"));
  assert.equal(buildResolvConf(host, "host"), "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.com corp\noptions edns0 trust-ad\nsortlist 1.2.3.4\n");
  const fallback = "nameserver 8.8.8.8\nnameserver 8.8.4.4\nnameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844\n";
  assert.equal(buildResolvConf("nameserver 127.0.0.1\nnameserver ::1\n", "none"), fallback);
  assert.equal(buildResolvConf(undefined, "host"), fallback);
  assert.equal(buildResolvConf("", "sandbox"), fallback);
});

void test("resolv.conf: configured DNS overrides and is trusted as given", () => {
  const host = "nameserver 10.0.0.2\nsearch a\noptions ndots:2\n";
  assert.equal(
    buildResolvConf(host, "none", { nameservers: ["127.0.0.1", "1.1.1.1"], search: [".", "x.org"], options: ["ndots:1"] }),
    "nameserver 127.0.0.1\nnameserver 1.1.1.1\nsearch x.org\noptions ndots:1\n",
  );
  assert.equal(buildResolvConf(host, "none", { search: [] }), "nameserver 10.0.0.2\nsearch a\noptions ndots:2\n");
  assert.throws(() => buildResolvConf(host, "none", { nameservers: ["nope"] }), /bad nameserver/);
});

void test("spec: env merge, mount dedup, namespaces per network mode", () => {
  assert.deepEqual(processEnv(["A=1", "UNSET", "PATH=/x"]), ["A=1", "PATH=/x"]);
  assert.deepEqual(processEnv([]), ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
  const m = (destination: string, source: string) => ({ destination, source, type: "bind", options: [] });
  assert.deepEqual(dedupMounts([m("/a", "1"), m("/b", "2"), m("/a", "3")]), [m("/a", "3"), m("/b", "2")]);
  const base = {
    id: "x1",
    rootfsPath: "/r",
    rootfsReadonly: false,
    args: ["true"],
    env: [],
    cwd: "/",
    tty: false,
    user: { uid: 0, gid: 0, additionalGids: [0] },
    hostname: "h",
    hostsPath: "/b/hosts",
    resolvConfPath: "/b/resolv.conf",
    mounts: [m("/etc/hosts", "/mine")],
    cgroupParent: "/kiln/",
  };
  const none = generateSpec({ ...base, network: "none" });
  assert.deepEqual(
    none.linux.namespaces.map((n) => n.type),
    ["pid", "ipc", "uts", "mount", "network"],
  );
  assert.equal(none.linux.cgroupsPath, "/kiln/x1");
  assert.equal(none.process.noNewPrivileges, false);
  assert.equal(none.process.rlimits, undefined);
  // The exec's own mount over /etc/hosts wins, in the generated one's place.
  const dests = none.mounts.map((x) => x.destination);
  assert.deepEqual(dests, ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/etc/resolv.conf", "/etc/hosts", "/sys/fs/cgroup"]);
  assert.equal(none.mounts[7]!.source, "/mine");
  for (const network of ["host", "sandbox"] as const) {
    assert.ok(!generateSpec({ ...base, network }).linux.namespaces.some((n) => n.type === "network"));
  }
});
