// Many `kiln build` clients on one kilnd: ten at once (distinct and identical Dockerfiles, the
// identical steps running once), a client killed mid-RUN (its container goes, the others finish),
// a client that stops reading its export (the others are not held up), and the daemon's memory
// coming back near its idle level afterwards.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";
import { spawnKiln, startKilnd, type ClientProc, type Kilnd } from "../helpers/kilnd.js";

const sh = promisify(execFile);

/** Pids of processes whose command line is exactly `argv`. */
async function pidsRunning(argv: string[]): Promise<number[]> {
  const want = argv.join("\0");
  const out: number[] = [];
  for (const e of await readdir("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, "utf8").catch(() => "");
    if (cmd.replace(/\0$/, "") === want) out.push(Number(e));
  }
  return out;
}

async function until(what: string, ms: number, fn: () => Promise<boolean> | boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

// The shared registry outlives this file's describe: other files in the same run still use it.
after(async () => {
  await stopSharedRegistry();
});

describe("many clients on one kilnd", { concurrency: false }, () => {
  let env: KilnEnv;
  let kilnd: Kilnd;
  let addr = "";
  let idleRSS = 0;
  const build = (args: string[], opts: { readStdout?: boolean } = {}): ClientProc => spawnKiln(["--addr", addr, "build", ...args], opts);

  before(async () => {
    env = await kilnEnv();
    addr = `unix://${path.join(env.tmp, "kilnd.sock")}`;
    // Enough parallelism for every client's step to run at once (the default is the CPU count).
    const config = path.join(env.tmp, "kilnd.toml");
    await writeFile(config, `[worker.oci]\n  max-parallelism = 16\n\n${await readFile(env.config, "utf8")}`);
    kilnd = await startKilnd(["--root", path.join(env.tmp, "kilnd-root"), "--config", config, "--addr", addr]);
    // Idle, but warmed: one small build has loaded everything a build needs.
    const warm = await build([await env.context({ Dockerfile: "FROM busybox\nRUN echo warm > /w\n" })]).done;
    assert.equal(warm.code, 0, warm.stderr);
    await sleep(1000);
    idleRSS = await kilnd.rssKiB();
    console.log(`kilnd VmRSS idle after one build: ${idleRSS} KiB`);
  });

  after(async () => {
    await kilnd?.stop();
    await env?.close();
  });

  test("ten clients at once, five distinct and five identical Dockerfiles: all succeed, the identical step runs once", async () => {
    const stamp = Date.now();
    const shared = await Promise.all(Array.from({ length: 5 }, () => env.context({ Dockerfile: `FROM busybox\nRUN sleep 2 && echo shared-${stamp} && date +%s%N > /stamp\n` })));
    const distinct = await Promise.all(Array.from({ length: 5 }, (_, i) => env.context({ Dockerfile: `FROM busybox\nCOPY f /f\nRUN sleep 1 && echo distinct-${i}-${stamp} > /d\n`, f: `file ${i}\n` })));
    const outs = Array.from({ length: 10 }, (_, i) => path.join(env.tmp, `ten-${i}`));
    const t0 = Date.now();
    const runs = [...shared, ...distinct].map((ctx, i) => build([ctx, "-o", `type=local,dest=${outs[i]}`]));
    const results = await Promise.all(runs.map((r) => r.done));
    const took = Date.now() - t0;
    results.forEach((r, i) => assert.equal(r.code, 0, `client ${i}: ${r.stderr}`));
    const stamps = new Set(await Promise.all(outs.slice(0, 5).map((o) => readFile(path.join(o, "stamp"), "utf8"))));
    assert.equal(stamps.size, 1, "the five identical builds took one run's result");
    for (let i = 0; i < 5; i++) {
      assert.equal(await readFile(path.join(outs[5 + i]!, "d"), "utf8"), `distinct-${i}-${stamp}\n`);
      assert.equal(await readFile(path.join(outs[5 + i]!, "f"), "utf8"), `file ${i}\n`);
    }
    // Serially the RUN steps alone would take 5 × 1 s + 5 × 2 s.
    assert.ok(took < 60_000, `ten builds took ${took} ms`);
    console.log(`ten builds: ${took} ms; kilnd VmRSS ${await kilnd.rssKiB()} KiB`);
  });

  test("a client killed (SIGKILL) mid-RUN stops its build only: its container goes, the others finish", async () => {
    const stamp = Date.now() % 1000;
    const victimSleep = String(300 + stamp);
    // Each step's own process: sh execs the last command of `-c`, where it would run busybox's
    // applets inside itself otherwise. The ENV line makes the steps new to the cache.
    const otherSleep = ["14", "15"];
    const victim = build([await env.context({ Dockerfile: `FROM busybox\nRUN echo victim-started && sleep ${victimSleep}\n` })]);
    const others = await Promise.all(
      [0, 1].map(async (i) => {
        const out = path.join(env.tmp, `survivor-${i}`);
        return { out, run: build([await env.context({ Dockerfile: `FROM busybox\nENV RUN_ID=${Date.now()}-${i}\nRUN sleep ${otherSleep[i]}\nRUN echo survived-${i} > /s\n` }), "-o", `type=local,dest=${out}`]) };
      }),
    );
    await until("the victim's step to run", 60_000, async () => (await pidsRunning(["sleep", victimSleep])).length === 1);
    const othersRunning = async () => (await pidsRunning(["sleep", otherSleep[0]!])).length + (await pidsRunning(["sleep", otherSleep[1]!])).length;
    await until("the others' steps to run", 60_000, async () => (await othersRunning()) === 2);
    const containers = async () => (await sh("runc", ["list", "-q"])).stdout.split("\n").filter((id) => id.includes(`kiln-${kilnd.pid}-`));
    const before = (await containers()).length;
    assert.ok(before >= 3, `three containers run (${before})`);

    victim.child.kill("SIGKILL");
    assert.equal((await victim.done).signal, "SIGKILL");
    await until("the victim's container to go", 15_000, async () => (await pidsRunning(["sleep", victimSleep])).length === 0);
    assert.equal(await othersRunning(), 2, "the other builds' steps still run");
    assert.equal((await containers()).length, before - 1);

    for (const [i, o] of others.entries()) {
      const r = await o.run.done;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await readFile(path.join(o.out, "s"), "utf8"), `survived-${i}\n`);
    }
    assert.equal(kilnd.proc.exitCode, null, "kilnd still runs");
  });

  test("a client that stops reading its export stream doesn't stall the others", async () => {
    const stamp = Date.now();
    const slowCtx = await env.context({ Dockerfile: `FROM busybox\nRUN head -c 50331648 /dev/urandom > /big && echo ${stamp}\n` });
    // Its stdout is a pipe nobody reads: once the pipe and the buffers on the way are full, the
    // client blocks writing and reads nothing more from the daemon.
    const slow = build([slowCtx, "-o", "type=tar,dest=-"], { readStdout: false });
    slow.child.stdout!.pause();
    await until("the slow client's export to start", 120_000, () => slow.stderr().includes("exporting to client tarball"));
    await sleep(2000);
    assert.equal(slow.child.exitCode, null, "the slow client cannot finish without being read");

    const t0 = Date.now();
    const quick = await Promise.all([0, 1, 2].map(async (i) => build([await env.context({ Dockerfile: `FROM busybox\nRUN echo quick-${i}-${stamp} > /q\n` }), "-o", `type=local,dest=${path.join(env.tmp, `quick-${stamp}-${i}`)}`]).done));
    const took = Date.now() - t0;
    quick.forEach((r) => assert.equal(r.code, 0, r.stderr));
    assert.equal(slow.child.exitCode, null, "the slow client was still stalled while the others finished");
    assert.ok(took < 30_000, `three small builds took ${took} ms beside a stalled client`);

    // Reading again lets it finish with the whole tarball.
    let bytes = 0;
    slow.child.stdout!.on("data", (d: Buffer) => (bytes += d.length));
    slow.child.stdout!.resume();
    const r = await slow.done;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(bytes > 48 << 20, `the tarball arrived whole (${bytes} bytes)`);
    console.log(`slow client: kilnd VmRSS ${await kilnd.rssKiB()} KiB`);
  });

  test("Ctrl-C cancels the remote build (exit 130, its container goes); a failing step exits 1 with the in-process message", async () => {
    const secs = String(400 + (Date.now() % 1000));
    const run = build([await env.context({ Dockerfile: `FROM busybox\nRUN echo started && sleep ${secs}\n` })]);
    await until("the step to run", 60_000, async () => (await pidsRunning(["sleep", secs])).length === 1);
    run.child.kill("SIGINT");
    const r = await run.done;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /\nerror: build canceled\n$/);
    await until("the canceled step's container to go", 15_000, async () => (await pidsRunning(["sleep", secs])).length === 0);

    const failCtx = await env.context({ Dockerfile: `FROM busybox\nRUN exit 3\n` });
    const remote = await build([failCtx]).done;
    const local = await env.run(["build", failCtx]);
    assert.equal(remote.code, 1);
    assert.equal(local.code, 1);
    const errLine = (t: string) => t.split("\n").filter((l) => l.startsWith("error:"));
    assert.deepEqual(errLine(remote.stderr), ['error: [2/2] RUN exit 3: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3']);
    // The Dockerfile excerpt too: the daemon sends the location as BuildKit's errdefs.Source.
    const excerpt = (t: string) => t.slice(t.lastIndexOf("\nDockerfile:"));
    assert.match(excerpt(remote.stderr), /^\nDockerfile:2\n-+\n {3}2 \| >>> RUN exit 3\n-+\nerror: /);
    assert.equal(excerpt(remote.stderr), excerpt(local.stderr));
  });

  test("kilnd's memory returns near its idle level after the builds", async () => {
    // What stays is allocator and V8 heap capacity, not live objects (a heap snapshot taken here
    // holds ~18 MB): allow 100 MiB over idle, a fraction of what ten builds and a 48 MiB export
    // would pin if their buffers or results were kept.
    const margin = 100 * 1024;
    let rss = 0;
    for (let i = 0; i < 20; i++) {
      rss = await kilnd.rssKiB();
      if (rss < idleRSS + margin) break;
      await sleep(1000);
    }
    console.log(`kilnd VmRSS: idle ${idleRSS} KiB, after the builds ${rss} KiB`);
    assert.ok(rss < idleRSS + margin, `VmRSS ${rss} KiB after the builds, ${idleRSS} KiB idle`);
  });
});
