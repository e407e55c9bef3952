// Mount-point stub bookkeeping (no real mounts needed).
import assert from "node:assert/strict";
import { mkdir, readFile, stat, symlink, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { makeTempDir } from "../util/index.js";
import { collectMountStubs, removeMountStubs } from "./mount.js";

void test("stubs: only missing paths are listed, only empty ones removed, parent times kept", async () => {
  await using tmp = await makeTempDir(os.tmpdir(), "kiln-stubs-test-");
  const root = tmp.path;
  await mkdir(path.join(root, "etc"));
  await writeFile(path.join(root, "etc", "hosts"), "keep\n");
  await symlink("/etc", path.join(root, "link"));
  const stubs = await collectMountStubs(root, ["/a/b/c", "/etc", "/link/new", "/"], true);
  assert.deepEqual(
    stubs.map((s) => path.relative(root, s)),
    ["etc/resolv.conf", "a/b/c", "a/b", "a", "etc/new"],
  );
  // What runc would create as mount points; a/b gets real content and so survives.
  await writeFile(path.join(root, "etc", "resolv.conf"), "");
  await mkdir(path.join(root, "a", "b", "c"), { recursive: true });
  await writeFile(path.join(root, "a", "b", "data"), "x");
  await mkdir(path.join(root, "etc", "new"));
  const when = new Date("2020-01-02T03:04:05Z");
  await utimes(path.join(root, "etc"), when, when);
  await removeMountStubs(root, stubs);
  await assert.rejects(stat(path.join(root, "etc", "resolv.conf")));
  await assert.rejects(stat(path.join(root, "etc", "new")));
  await assert.rejects(stat(path.join(root, "a", "b", "c")));
  await stat(path.join(root, "a", "b", "data"));
  assert.equal((await stat(path.join(root, "etc"))).mtime.getTime(), when.getTime());
  assert.equal(await readFile(path.join(root, "etc", "hosts"), "utf8"), "keep\n");

  const flat = await collectMountStubs(root, ["/x/y"], false);
  assert.deepEqual(
    flat.map((s) => path.relative(root, s)),
    ["etc/resolv.conf", "x/y"],
  );
});
