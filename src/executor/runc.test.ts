// Integration tests for RuncExecutor against the real runc, over a busybox rootfs (needs root).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, readFile, readdir, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { CanceledError, KilnError, makeTempDir, type TempDir } from "../util/index.js";
import type { MountSpec } from "../snapshot/types.js";
import { ExitError, RuncError, RuncExecutor, runcAvailable, type RunOptions } from "./index.js";
import { makeBusyboxRootfs } from "./testrootfs.js";

const execFileP = promisify(execFile);

const isRoot = process.getuid?.() === 0;
const canRun = isRoot && (await runcAvailable(AbortSignal.timeout(5000)));
const skip = canRun ? false : "needs root and runc";

class Collect extends Writable {
  text = "";
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.text += chunk.toString("utf8");
    cb();
  }
}

let seq = 0;
const ids: string[] = [];
function newId(): string {
  const id = `kilntest-${process.pid}-${++seq}`;
  ids.push(id);
  return id;
}

async function runcIds(): Promise<string[]> {
  const { stdout } = await execFileP("runc", ["list", "-q"]);
  return stdout.split("\n").filter((l) => l !== "");
}

async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  return text
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((mp) => mp === dir || mp.startsWith(dir + "/"));
}

describe("RuncExecutor", { skip }, () => {
  let tmp: TempDir;
  let lower: string;
  let execRoot: string;
  let executor: RuncExecutor;

  before(async () => {
    tmp = await makeTempDir(os.tmpdir(), "kiln-executor-test-");
    lower = path.join(tmp.path, "rootfs");
    await makeBusyboxRootfs(lower);
    execRoot = path.join(tmp.path, "executor");
    executor = new RuncExecutor({ root: execRoot });
  });

  after(async () => {
    if (!tmp) return;
    const left = await mountsUnder(tmp.path);
    for (const mp of left.reverse()) await execFileP("umount", ["-l", mp]).catch(() => {});
    await tmp[Symbol.asyncDispose]();
    assert.deepEqual(left, [], "no mounts left behind");
  });

  const bindRoot = (): MountSpec[] => [{ type: "bind", source: lower, options: ["rbind"] }];

  async function overlayRoot(): Promise<{ mounts: MountSpec[]; upper: string }> {
    const dir = path.join(tmp.path, `ovl-${++seq}`);
    const upper = path.join(dir, "upper");
    const work = path.join(dir, "work");
    await mkdir(upper, { recursive: true });
    await mkdir(work, { recursive: true });
    return { mounts: [{ type: "overlay", source: "overlay", options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${work}`] }], upper };
  }

  async function sh(script: string, extra: Partial<RunOptions> = {}, signal = new AbortController().signal): Promise<{ stdout: string; stderr: string }> {
    const stdout = new Collect();
    const stderr = new Collect();
    await executor.run(signal, {
      id: newId(),
      rootfs: bindRoot(),
      mounts: [],
      process: { args: ["/bin/sh", "-c", script], env: [], cwd: "/", user: "" },
      network: "host",
      stdout,
      stderr,
      ...extra,
    });
    return { stdout: stdout.text, stderr: stderr.text };
  }

  async function assertNoLeftovers(): Promise<void> {
    const running = await runcIds();
    assert.deepEqual(
      running.filter((id) => ids.includes(id)),
      [],
      "no runc containers of ours",
    );
    assert.deepEqual(await mountsUnder(execRoot), [], "no mounts under the executor root");
    assert.deepEqual(await readdir(execRoot), [], "no bundles left");
  }

  test("captures stdout and stderr", async () => {
    const r = await sh("echo hello; echo oops >&2");
    assert.equal(r.stdout, "hello\n");
    assert.equal(r.stderr, "oops\n");
    await assertNoLeftovers();
  });

  test("non-zero exit rejects with ExitError carrying the code", async () => {
    await assert.rejects(sh("exit 3"), (err: unknown) => {
      assert.ok(err instanceof ExitError);
      assert.equal(err.exitCode, 3);
      assert.deepEqual(err.args, ["/bin/sh", "-c", "exit 3"]);
      assert.ok(!(err instanceof RuncError));
      return true;
    });
    await assertNoLeftovers();
  });

  test("death by signal is 128+n", async () => {
    // Only SIGKILL reaches a pid namespace's init without a handler, so it comes from outside.
    const id = newId();
    const running = sh("sleep 100", { id });
    for (let i = 0; i < 200 && !(await runcIds()).includes(id); i++) await new Promise((r) => setTimeout(r, 10));
    await execFileP("runc", ["kill", id, "KILL"]);
    await assert.rejects(running, (err: unknown) => err instanceof ExitError && err.exitCode === 137);
    await assertNoLeftovers();
  });

  test("a program that cannot start is a RuncError with runc's reason", async () => {
    const id = newId();
    await assert.rejects(
      executor.run(new AbortController().signal, {
        id,
        rootfs: bindRoot(),
        mounts: [],
        process: { args: ["/no/such/program"], env: [], cwd: "/", user: "" },
        network: "host",
      }),
      (err: unknown) => {
        assert.ok(err instanceof RuncError, String(err));
        assert.match(err.runcMessage, /no such file/i);
        return true;
      },
    );
    await assertNoLeftovers();
  });

  test("user by name gets its groups; uid:gid is taken as given; default is root", async () => {
    assert.equal((await sh("id", { process: { args: ["id"], env: [], cwd: "/", user: "user" } })).stdout, "uid=1000(user) gid=1000(user) groups=50(staff),1000(user)\n");
    assert.equal((await sh("id", { process: { args: ["id"], env: [], cwd: "/", user: "1000:1000" } })).stdout, "uid=1000(user) gid=1000(user) groups=1000(user)\n");
    assert.equal((await sh("id", { process: { args: ["id"], env: [], cwd: "/", user: "user:staff" } })).stdout, "uid=1000(user) gid=50(staff) groups=50(staff)\n");
    assert.equal((await sh("id", { process: { args: ["id"], env: [], cwd: "/", user: "" } })).stdout, "uid=0(root) gid=0(root) groups=0(root)\n");
    await assert.rejects(
      sh("id", { process: { args: ["id"], env: [], cwd: "/", user: "nobody" } }),
      (err: unknown) => err instanceof KilnError && /unable to find user nobody/.test(err.message),
    );
    await assertNoLeftovers();
  });

  test("env is passed; PATH and HOME are filled in when missing", async () => {
    const r = await sh("env | sort", { process: { args: ["/bin/sh", "-c", "env | sort"], env: ["FOO=bar", "EMPTY="], cwd: "/", user: "user" } });
    const lines = r.stdout.split("\n");
    assert.ok(lines.includes("FOO=bar"));
    assert.ok(lines.includes("EMPTY="));
    assert.ok(lines.includes("HOME=/home/user"));
    assert.ok(lines.includes("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    const own = await sh("echo $PATH", { process: { args: ["/bin/sh", "-c", "echo $PATH"], env: ["PATH=/bin"], cwd: "/", user: "" } });
    assert.equal(own.stdout, "/bin\n");
  });

  test("missing cwd is created, owned by the user, in the layer", async () => {
    const { mounts, upper } = await overlayRoot();
    const r = await sh("pwd; touch f", { rootfs: mounts, process: { args: ["/bin/sh", "-c", "pwd; touch f"], env: [], cwd: "/work/dir", user: "user" } });
    assert.equal(r.stdout, "/work/dir\n");
    for (const p of ["work", "work/dir"]) {
      const st = await stat(path.join(upper, p));
      assert.equal(st.uid, 1000);
      assert.equal(st.gid, 1000);
    }
    await stat(path.join(upper, "work/dir/f"));
    await assertNoLeftovers();
  });

  test("overlay rootfs: writes land in the upper dir; hosts/resolv.conf stubs do not", async () => {
    const { mounts, upper } = await overlayRoot();
    await sh("echo data > /newfile; cat /etc/hosts >/dev/null", { rootfs: mounts });
    assert.equal(await readFile(path.join(upper, "newfile"), "utf8"), "data\n");
    await assert.rejects(stat(path.join(lower, "newfile")));
    await assert.rejects(stat(path.join(upper, "etc/hosts")));
    await assert.rejects(stat(path.join(upper, "etc/resolv.conf")));
    await assert.rejects(stat(path.join(lower, "etc/hosts")));
    await assertNoLeftovers();
  });

  test("/etc/hosts has localhost, the hostname and extra hosts; resolv.conf is present", async () => {
    const r = await sh("cat /etc/hosts; hostname; grep -c nameserver /etc/resolv.conf", {
      extraHosts: [{ host: "myhost", ip: "10.1.2.3" }],
    });
    const lines = r.stdout.split("\n");
    assert.deepEqual(lines.slice(0, 4), ["127.0.0.1\tlocalhost buildkitsandbox", "::1\tlocalhost ip6-localhost ip6-loopback", "10.1.2.3\tmyhost", "buildkitsandbox"]);
    assert.ok(Number(lines[4]) >= 1, "at least one nameserver");
    const named = await sh("hostname; head -1 /etc/hosts", { hostname: "custom" });
    assert.equal(named.stdout, "custom\n127.0.0.1\tlocalhost custom\n");
    await assert.rejects(sh("echo x > /etc/hosts"), ExitError);
  });

  test('network "none" has only loopback; "host" sees the host\'s interfaces', async () => {
    const ifaces = (out: string) =>
      out
        .split("\n")
        .slice(2)
        .map((l) => l.split(":")[0]!.trim())
        .filter((l) => l !== "");
    const none = await sh("cat /proc/net/dev", { network: "none" });
    assert.deepEqual(ifaces(none.stdout), ["lo"]);
    const host = await sh("cat /proc/net/dev", { network: "host" });
    const hostIfaces = ifaces(await readFile("/proc/net/dev", "utf8"));
    assert.deepEqual(ifaces(host.stdout).sort(), hostIfaces.sort());
  });

  test("abort mid-run kills the container quickly and leaves nothing behind", async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 300);
    await assert.rejects(sh("sleep 100", {}, ac.signal), CanceledError);
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0}ms`);
    await assertNoLeftovers();
  });

  test("abort before start rejects without running anything", async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(sh("echo never", {}, ac.signal), CanceledError);
    await assertNoLeftovers();
  });

  test("readonly rootfs rejects writes", async () => {
    await assert.rejects(
      sh("touch /x", { rootfsReadonly: true }),
      (err: unknown) => err instanceof ExitError && err.exitCode === 1,
    );
    await assert.rejects(stat(path.join(lower, "x")));
    await assertNoLeftovers();
  });

  test("bind mounts at /mnt (rw and ro), tmpfs mounts, nested destinations", async () => {
    const host = path.join(tmp.path, "hostdir");
    await mkdir(host, { recursive: true });
    await writeFile(path.join(host, "file"), "from host\n");
    const r = await sh("cat /mnt/file; echo back > /mnt/out; echo t > /mnt/tmp/t; cat /mnt/tmp/t; mount | grep -c ' /mnt/tmp '", {
      mounts: [
        { destination: "/mnt/tmp", mount: { type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev"] } },
        { destination: "/mnt", mount: { type: "bind", source: host, options: ["rbind"] } },
      ],
    });
    assert.equal(r.stdout, "from host\nt\n1\n");
    assert.equal(await readFile(path.join(host, "out"), "utf8"), "back\n");
    await assert.rejects(
      sh("echo no > /ro/out", { mounts: [{ destination: "/ro", mount: { type: "bind", source: host, options: ["rbind"] }, readonly: true }] }),
      ExitError,
    );
    // The stub dirs runc created in the rootfs for /ro and /mnt are removed again (one made inside
    // the bind source for /mnt/tmp stays, as in BuildKit).
    await assert.rejects(stat(path.join(lower, "ro")));
    await assert.rejects(stat(path.join(lower, "mnt")));
    await assertNoLeftovers();
  });

  test("an overlay mount that is not the rootfs", async () => {
    const { mounts, upper } = await overlayRoot();
    await sh("ls /data/bin/busybox >/dev/null && echo x > /data/written", { mounts: [{ destination: "/data", mount: mounts[0]! }] });
    assert.equal(await readFile(path.join(upper, "written"), "utf8"), "x\n");
    await assert.rejects(stat(path.join(lower, "data")));
    await assertNoLeftovers();
  });

  test("/proc, /dev/null, /dev/shm and /dev/pts are usable", async () => {
    const r = await sh("test -r /proc/self/status && echo proc; echo x > /dev/null && echo null; echo s > /dev/shm/f && cat /dev/shm/f; test -d /dev/pts && echo pts; cat /proc/1/cmdline | tr '\\0' ' '");
    assert.equal(r.stdout, "proc\nnull\ns\npts\n/bin/sh -c " + "test -r /proc/self/status && echo proc; echo x > /dev/null && echo null; echo s > /dev/shm/f && cat /dev/shm/f; test -d /dev/pts && echo pts; cat /proc/1/cmdline | tr '\\0' ' '" + " ");
  });

  test("capabilities are BuildKit's default set", async () => {
    const r = await sh("grep CapEff /proc/self/status");
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
    assert.equal(r.stdout.trim(), "CapEff:\t00000000a80425fb");
  });

  test("concurrent runs do not interfere", async () => {
    // Each gets its own rootfs, as execs do: runc's mount-point stubs in a shared writable rootfs would race.
    const roots = await Promise.all([1, 2, 3, 4].map(() => overlayRoot()));
    const outs = await Promise.all(roots.map((r, i) => sh(`echo ${i + 1}`, { rootfs: r.mounts })));
    assert.deepEqual(
      outs.map((o) => o.stdout),
      ["1\n", "2\n", "3\n", "4\n"],
    );
    await assertNoLeftovers();
  });

  test("a missing runc binary is a clear KilnError", async () => {
    const bad = new RuncExecutor({ root: execRoot, runcBinary: "/nonexistent/runc" });
    await assert.rejects(
      bad.run(new AbortController().signal, {
        id: newId(),
        rootfs: bindRoot(),
        mounts: [],
        process: { args: ["true"], env: [], cwd: "/", user: "" },
        network: "host",
      }),
      (err: unknown) => err instanceof KilnError && err.code === "KILN_RUNC_MISSING",
    );
    assert.equal(await runcAvailable(AbortSignal.timeout(1000), "/nonexistent/runc"), false);
  });
});
