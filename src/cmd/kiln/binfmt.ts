// `kiln binfmt`: shows and sets up QEMU emulation for foreign-platform RUN steps, with the flags of
// the tonistiigi/binfmt image BuildKit's users know (`--install all`, `--uninstall arm64`).
import type { Command } from "commander";
import { formatPlatform } from "../../util/index.js";
import { printError } from "./errors.js";

export function registerBinfmt(program: Command, setExit: (code: number) => void): void {
  program
    .command("binfmt")
    .description("show the platforms this machine can build for; --install registers QEMU emulators (needs qemu-user-static)")
    .option("--install <list>", "comma-separated architectures (arm64,riscv64,…) or all")
    .option("--uninstall <list>", "comma-separated architectures or all")
    .action(async (flags: { install?: string; uninstall?: string }) => {
      try {
        const { installEmulators, registeredEmulators, supportedPlatforms, uninstallEmulators } = await import("../../worker/index.js");
        const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
        if (flags.uninstall) for (const n of await uninstallEmulators(list(flags.uninstall))) process.stderr.write(`uninstalling: ${n} OK\n`);
        if (flags.install) for (const n of await installEmulators(list(flags.install))) process.stderr.write(`installing: ${n} OK\n`);
        const status = {
          supported: (await supportedPlatforms()).map(formatPlatform),
          emulators: (await registeredEmulators()).map((e) => e.name),
        };
        process.stdout.write(JSON.stringify(status, null, 2) + "\n");
        setExit(0);
      } catch (err) {
        setExit(printError(err, program.opts<{ debug?: boolean }>().debug ?? false, false));
      }
    });
}
