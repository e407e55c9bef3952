// Resolves an exec's `user` string to uid/gid/additional gids from the rootfs' /etc/passwd and
// /etc/group, with the semantics BuildKit gets from moby/sys/user's GetExecUser.
import { open } from "node:fs/promises";
import { KilnError, secureJoin } from "../util/index.js";

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Always contains `gid` first unless it was already listed (containerd's ensureAdditionalGids). */
  additionalGids: number[];
}

const MAX_ID = 2 ** 31 - 1;
// A passwd/group file bigger than this is refused rather than read into memory.
const MAX_USER_FILE_BYTES = 10 << 20;

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** Go's strconv.Atoi on a field, with conversion errors read as 0 like parseLine does. */
function atoiLoose(s: string | undefined): number {
  if (s === undefined || !/^[+-]?\d+$/.test(s)) return 0;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : 0;
}

/** Numeric user or group argument: undefined when not numeric (a name). */
function parseNumeric(val: string): number | undefined {
  if (val === "" || !/^[+-]?\d+$/.test(val)) return undefined;
  const n = Number(val);
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_ID) {
    throw new KilnError("KILN_USER", `uids and gids must be in range 0-${MAX_ID}`);
  }
  return n;
}

function lines(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
}

export function parsePasswd(text: string): PasswdEntry[] {
  return lines(text).map((l) => {
    const p = l.split(":");
    return { name: p[0] ?? "", uid: atoiLoose(p[2]), gid: atoiLoose(p[3]), home: p[5] ?? "" };
  });
}

export function parseGroup(text: string): GroupEntry[] {
  return lines(text)
    .filter((l) => !l.startsWith("#"))
    .map((l) => {
      const p = l.split(":");
      const list = p[3];
      return { name: p[0] ?? "", gid: atoiLoose(p[2]), members: list ? list.split(",") : [] };
    });
}

/** Reads a user database file inside `root`; undefined when absent or not a regular file, as BuildKit treats both. */
async function readUserFile(root: string, rel: string): Promise<string | undefined> {
  const p = await secureJoin(root, rel);
  let fh;
  try {
    fh = await open(p, "r");
  } catch {
    return undefined;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return undefined;
    if (st.size > MAX_USER_FILE_BYTES) throw new KilnError("KILN_USER", `${rel} exceeds ${MAX_USER_FILE_BYTES} bytes`);
    return await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
}

/** BuildKit's fast path: "uid:gid" with both numeric (or "root") never reads the rootfs. */
function parseUidGid(spec: string): [number, number] | undefined {
  const i = spec.indexOf(":");
  if (i < 0) return undefined;
  const part = (s: string): number | undefined => {
    if (s === "root") return 0;
    if (!/^\d+$/.test(s)) return undefined;
    const n = Number(s);
    return n <= 0xffffffff ? n : undefined;
  };
  const uid = part(spec.slice(0, i));
  const gid = part(spec.slice(i + 1));
  return uid === undefined || gid === undefined ? undefined : [uid, gid];
}

/** Pure core of the lookup, given the files' contents (undefined = file missing). */
export function resolveUser(spec: string, passwd: string | undefined, group: string | undefined): ResolvedUser {
  const [userArg = "", groupArg = ""] = spec.split(":");
  const uidArg = parseNumeric(userArg);
  const gidArg = parseNumeric(groupArg);
  let uid = 0;
  let gid = 0;
  let sgids: number[] = [];

  const users = passwd === undefined ? [] : parsePasswd(passwd);
  const match = users.find((u) => (userArg === "" ? u.uid === 0 : uidArg !== undefined ? u.uid === uidArg : u.name === userArg));
  let matchedName = "";
  if (match) {
    matchedName = match.name;
    uid = match.uid;
    gid = match.gid;
  } else if (userArg !== "") {
    if (uidArg === undefined) throw new KilnError("KILN_USER", `unable to find user ${userArg}: no matching entries in passwd file`);
    uid = uidArg;
  }

  if (groupArg !== "" || matchedName !== "") {
    const groups = group === undefined ? [] : parseGroup(group);
    if (groupArg !== "") {
      const g = groups.find((x) => (gidArg !== undefined ? x.gid === gidArg : x.name === groupArg));
      if (g) gid = g.gid;
      else if (gidArg !== undefined) gid = gidArg;
      else throw new KilnError("KILN_USER", `unable to find group ${groupArg}: no matching entries in group file`);
    } else {
      sgids = groups.filter((x) => x.members.includes(matchedName)).map((x) => x.gid);
    }
  }
  return withPrimaryGid(uid, gid, sgids);
}

function withPrimaryGid(uid: number, gid: number, sgids: number[]): ResolvedUser {
  return { uid, gid, additionalGids: sgids.includes(gid) ? sgids : [gid, ...sgids] };
}

/**
 * Resolves `spec` ("", "name", "uid", "name:group", "uid:gid") inside the mounted rootfs.
 * The default "" is root and never fails, even with a broken passwd file.
 */
export async function getUser(rootfs: string, spec: string): Promise<ResolvedUser> {
  const isDefault = spec === "";
  const s = isDefault ? "0" : spec;
  const fast = parseUidGid(s);
  if (fast) return withPrimaryGid(fast[0], fast[1], []);
  try {
    const [passwd, group] = await Promise.all([readUserFile(rootfs, "/etc/passwd"), readUserFile(rootfs, "/etc/group")]);
    return resolveUser(s, passwd, group);
  } catch (err) {
    if (isDefault) return withPrimaryGid(0, 0, []);
    throw err;
  }
}
