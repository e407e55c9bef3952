// kiln: buildctl's commands and flags plus `kiln build PATH`, running the engine in-process.
// Each command lives in its own module and registers itself here.
import { Command } from "commander";
import { registerBuild } from "./build.js";
import { registerBinfmt } from "./binfmt.js";
import { registerDiskUsage } from "./du.js";
import { registerPrune } from "./prune.js";
import { registerDebug } from "./debug.js";
import { registerDaemonFlags } from "./daemon.js";

export async function main(argv: string[]): Promise<number> {
  const program = new Command("kiln")
    .description("Build container images from Dockerfiles; BuildKit-compatible")
    .option("--root <dir>", "state directory (default /var/lib/kiln, or the config's root)")
    .option("--config <file>", "buildkitd.toml-style config file")
    .option("--debug", "print error causes and stacks")
    .showHelpAfterError();
  registerDaemonFlags(program);
  let exitCode = 0;
  const setExit = (code: number) => {
    exitCode = code;
  };
  registerBuild(program, setExit);
  registerBinfmt(program, setExit);
  registerDiskUsage(program, setExit);
  registerPrune(program, setExit);
  registerDebug(program, setExit);
  await program.parseAsync(argv, { from: "user" });
  return exitCode;
}
