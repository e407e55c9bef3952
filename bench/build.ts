// Wall-time benchmark of whole builds through the CLI: cold (empty root), unchanged rebuild, and a
// rebuild after one source file changes. Compares with BuildKit (buildctl against a running
// buildkitd, BUILDKIT_HOST) when `buildctl` is on PATH.
// Usage (root): node --import tsx bench/build.ts [--runs N] [--registry-port P]
import { execFile, spawn } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { pushBusybox, startRegistry, writeKilnConfig } from "../test/fixtures/registry.js";

const sh = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "..");
const { values } = parseArgs({ options: { runs: { type: "string", default: "5" } } });
const runs = Number(values.runs);

interface Workload {
  name: string;
  files: Record<string, string>;
  /** The file the "edit" scenario changes. */
  edit: string;
}

const workloads: Workload[] = [
  {
    name: "multistage",
    files: {
      Dockerfile: [
        "FROM busybox AS build",
        "WORKDIR /src",
        "COPY . .",
        "RUN for i in $(seq 1 200); do cat main.txt > out-$i.txt; done && tar -cf /app.tar out-*.txt",
        "FROM busybox",
        "COPY --from=build /app.tar /app.tar",
        "RUN tar -xf /app.tar -C /tmp && ls /tmp | wc -l > /count",
        'CMD ["cat", "/count"]',
      ].join("\n"),
      "main.txt": "hello\n".repeat(1000),
      "other/readme.txt": "docs\n",
    },
    edit: "main.txt",
  },
  {
    name: "many-small-files",
    files: Object.fromEntries([["Dockerfile", "FROM busybox\nCOPY . /ctx\nRUN find /ctx -type f | wc -l > /n\n"], ...Array.from({ length: 2000 }, (_, i) => [`d${i % 20}/f${i}.txt`, `file ${i}\n`])]),
    edit: "d0/f0.txt",
  },
];

function timeCommand(cmd: string, args: string[], env: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${args.join(" ")} failed (${code}):\n${err.slice(-2000)}`));
      else resolve(Number(process.hrtime.bigint() - t0) / 1e6);
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    const p = path.join(dir, name);
    await mkdir(path.dirname(p), { recursive: true });
    await writeFile(p, content);
  }
}

async function hasCommand(cmd: string): Promise<boolean> {
  return sh("sh", ["-c", `command -v ${cmd}`]).then(
    () => true,
    () => false,
  );
}

const reg = await startRegistry();
const tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-bench-"));
try {
  await pushBusybox(reg.host);
  const config = await writeKilnConfig(tmp, reg.host);
  const kiln = path.join(repoRoot, "bin", "kiln");
  const buildctl = (await hasCommand("buildctl")) && process.env.BUILDKIT_HOST ? "buildctl" : undefined;
  const rows: string[] = [];
  for (const w of workloads) {
    const results: Record<string, Record<string, number[]>> = { kiln: { cold: [], noop: [], edit: [] } };
    if (buildctl) results.buildkit = { cold: [], noop: [], edit: [] };
    for (let i = 0; i < runs; i++) {
      const ctx = path.join(tmp, `${w.name}-${i}`);
      await writeFiles(ctx, w.files);
      const root = path.join(tmp, `root-${w.name}-${i}`);
      const out = path.join(tmp, "out.tar");
      const kilnArgs = ["--root", root, "--config", config, "build", ctx, "--progress", "plain", "-o", `type=oci,dest=${out}`];
      const k = results.kiln!;
      k.cold!.push(await timeCommand(process.execPath, [kiln, ...kilnArgs]));
      k.noop!.push(await timeCommand(process.execPath, [kiln, ...kilnArgs]));
      await writeFile(path.join(ctx, w.edit), `edited ${i}\n`);
      k.edit!.push(await timeCommand(process.execPath, [kiln, ...kilnArgs]));
      await rm(root, { recursive: true, force: true });
      if (buildctl) {
        // BuildKit's cache can't be emptied per run without restarting it; prune --all does it.
        await writeFiles(ctx, w.files);
        const b = results.buildkit!;
        const args = ["build", "--frontend", "dockerfile.v0", "--local", `context=${ctx}`, "--local", `dockerfile=${ctx}`, "--output", `type=oci,dest=${out}`];
        await timeCommand(buildctl, ["prune", "--all"]);
        b.cold!.push(await timeCommand(buildctl, args));
        b.noop!.push(await timeCommand(buildctl, args));
        await writeFile(path.join(ctx, w.edit), `edited ${i}\n`);
        b.edit!.push(await timeCommand(buildctl, args));
      }
    }
    for (const [engine, r] of Object.entries(results)) {
      rows.push(`${w.name.padEnd(18)} ${engine.padEnd(9)} cold ${median(r.cold!).toFixed(0).padStart(6)} ms   noop ${median(r.noop!).toFixed(0).padStart(6)} ms   edit ${median(r.edit!).toFixed(0).padStart(6)} ms`);
    }
  }
  console.log(`median of ${runs} runs, wall time per whole CLI invocation (oci tarball export)`);
  for (const r of rows) console.log(r);
} finally {
  await rm(tmp, { recursive: true, force: true });
  await reg.stop();
}
