// Starts (or stops) the fixture registry as a daemon for the README demo and CI: docker-registry
// on 127.0.0.1:PORT serving the busybox fixture as library/busybox:latest.
// Usage: fixture-registry.sh [start] [--port 5000] [--pid-file F] [--data-dir D] [--log-file F]
//        fixture-registry.sh stop [--pid-file F]
import { readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { request } from "undici";
import { pushBusybox, startRegistry } from "../test/fixtures/registry.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: "string", default: "5000" },
    "pid-file": { type: "string", default: "/tmp/kiln-fixture-registry.pid" },
    "data-dir": { type: "string" },
    "log-file": { type: "string" },
  },
});
const command = positionals[0] ?? "start";
const pidFile = path.resolve(values["pid-file"]!);
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`invalid --port ${values.port}`);
const host = `127.0.0.1:${port}`;
// Config, log and default data live here, so `stop` can clean up what `start` made.
let workDir = path.join(os.tmpdir(), `kiln-fixture-registry-${port}`);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function runningPid(): Promise<number | undefined> {
  const text = await readFile(pidFile, "utf8").catch(() => "");
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
}

async function answers(): Promise<boolean> {
  try {
    const res = await request(`http://${host}/v2/`, { headersTimeout: 2000 });
    await res.body.dump();
    return res.statusCode === 200;
  } catch {
    return false;
  }
}

if (command === "stop") {
  const pid = await runningPid();
  if (pid !== undefined) {
    // The registry's own command line names its config, whose directory `start` created.
    const argv = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
    const config = argv[argv.indexOf("serve") + 1];
    if (argv.some((a) => a.endsWith("docker-registry")) && config && path.basename(path.dirname(config)).startsWith("kiln-fixture-registry-")) {
      workDir = path.dirname(config);
    }
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    if (alive(pid)) process.kill(pid, "SIGKILL");
  }
  await rm(pidFile, { force: true });
  await rm(workDir, { recursive: true, force: true });
  process.exit(0);
} else if (command === "start") {
  if ((await runningPid()) === undefined || !(await answers())) {
    const reg = await startRegistry({ port, detached: true, workDir, dataDir: values["data-dir"] && path.resolve(values["data-dir"]), logFile: values["log-file"] && path.resolve(values["log-file"]) });
    await writeFile(pidFile, `${reg.pid}\n`);
  }
  await pushBusybox(host);
  process.stdout.write(`${host}\n`);
  process.exit(0);
} else {
  process.stderr.write(`unknown command ${command}: use start or stop\n`);
  process.exit(2);
}
