// Test fixture: a tiny busybox rootfs with a passwd/group database, built from Debian's busybox-static.
import { execFile } from "node:child_process";
import { copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const BUSYBOX = "/bin/busybox";

/** Creates the rootfs at `dir`: /bin/busybox with applet links, /etc/passwd and /etc/group. */
export async function makeBusyboxRootfs(dir: string): Promise<void> {
  await mkdir(path.join(dir, "bin"), { recursive: true });
  await copyFile(BUSYBOX, path.join(dir, "bin", "busybox"));
  const { stdout } = await run(BUSYBOX, ["--list"]);
  for (const applet of stdout.split("\n").filter((a) => a !== "" && a !== "busybox")) {
    await symlink("busybox", path.join(dir, "bin", applet));
  }
  for (const d of ["etc", "tmp", "root", "home/user", "proc", "dev", "sys"]) await mkdir(path.join(dir, d), { recursive: true });
  await writeFile(path.join(dir, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n");
  await writeFile(path.join(dir, "etc", "group"), "root:x:0:\nstaff:x:50:user\nuser:x:1000:\n");
}
