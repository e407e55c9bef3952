// User resolution against passwd/group contents, following moby/sys/user's GetExecUser.
import assert from "node:assert/strict";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { KilnError, makeTempDir } from "../util/index.js";
import { getUser, resolveUser } from "./user.js";

const passwd = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nweird:x:bad:1001::/:/bin/sh\n";
const group = "# comment\nroot:x:0:\nstaff:x:50:user,other\nuser:x:1000:\nwheel:x:10:user\n";

void test("resolveUser: names, numbers, groups", () => {
  assert.deepEqual(resolveUser("user", passwd, group), { uid: 1000, gid: 1000, additionalGids: [1000, 50, 10] });
  assert.deepEqual(resolveUser("1000", passwd, group), { uid: 1000, gid: 1000, additionalGids: [1000, 50, 10] });
  assert.deepEqual(resolveUser("root", passwd, group), { uid: 0, gid: 0, additionalGids: [0] });
  assert.deepEqual(resolveUser("user:staff", passwd, group), { uid: 1000, gid: 50, additionalGids: [50] });
  assert.deepEqual(resolveUser("user:4242", passwd, group), { uid: 1000, gid: 4242, additionalGids: [4242] });
  // A uid without a passwd entry is fine; it keeps gid 0.
  assert.deepEqual(resolveUser("4000", passwd, group), { uid: 4000, gid: 0, additionalGids: [0] });
  // Unparseable numeric fields read as 0, as Go's parseLine does.
  assert.deepEqual(resolveUser("weird", passwd, group), { uid: 0, gid: 1001, additionalGids: [1001] });
});

void test("resolveUser: missing names are errors, missing files only matter for names", () => {
  assert.throws(() => resolveUser("nobody", passwd, group), (e: unknown) => e instanceof KilnError && e.message === "unable to find user nobody: no matching entries in passwd file");
  assert.throws(() => resolveUser("user:nogroup", passwd, group), /unable to find group nogroup: no matching entries in group file/);
  assert.throws(() => resolveUser("user", undefined, undefined), /unable to find user user/);
  assert.deepEqual(resolveUser("1000", undefined, undefined), { uid: 1000, gid: 0, additionalGids: [0] });
  assert.deepEqual(resolveUser("1000:5", undefined, undefined), { uid: 1000, gid: 5, additionalGids: [5] });
  assert.throws(() => resolveUser("99999999999", passwd, group), /must be in range/);
});

void test("getUser: reads the rootfs through symlinks without escaping it; uid:gid needs no files", async () => {
  await using tmp = await makeTempDir(os.tmpdir(), "kiln-user-test-");
  const root = path.join(tmp.path, "root");
  await mkdir(path.join(root, "real"), { recursive: true });
  await writeFile(path.join(root, "real", "passwd"), passwd);
  await writeFile(path.join(root, "real", "group"), group);
  // /etc is an absolute symlink: it must resolve inside the rootfs, not on the host.
  await symlink("/real", path.join(root, "etc"));
  assert.deepEqual(await getUser(root, "user"), { uid: 1000, gid: 1000, additionalGids: [1000, 50, 10] });
  assert.deepEqual(await getUser(root, "2000:3000"), { uid: 2000, gid: 3000, additionalGids: [3000] });
  assert.deepEqual(await getUser(root, "root:root"), { uid: 0, gid: 0, additionalGids: [0] });
  assert.deepEqual(await getUser(root, ""), { uid: 0, gid: 0, additionalGids: [0] });
  const empty = path.join(tmp.path, "empty");
  await mkdir(empty);
  assert.deepEqual(await getUser(empty, ""), { uid: 0, gid: 0, additionalGids: [0] });
  assert.deepEqual(await getUser(empty, "1234"), { uid: 1234, gid: 0, additionalGids: [0] });
  await assert.rejects(getUser(empty, "user"), /unable to find user user/);
});
