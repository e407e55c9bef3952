// Go's os.FileMode bits, which fsutil puts on the wire instead of POSIX st_mode, and the
// conversions both ends of filesync need at the edges.
import { constants } from "node:fs";

export const goMode = {
  dir: 1 << 31,
  append: 1 << 30,
  exclusive: 1 << 29,
  temporary: 1 << 28,
  symlink: 1 << 27,
  device: 1 << 26,
  namedPipe: 1 << 25,
  socket: 1 << 24,
  setuid: 1 << 23,
  setgid: 1 << 22,
  charDevice: 1 << 21,
  sticky: 1 << 20,
  irregular: 1 << 19,
} as const;

/** Go's os.ModeType: any of these bits makes an entry something other than a regular file. */
export const goModeType = (goMode.dir | goMode.symlink | goMode.namedPipe | goMode.socket | goMode.device | goMode.charDevice | goMode.irregular) >>> 0;

const { S_IFMT, S_IFDIR, S_IFLNK, S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK } = constants;
// Linux values; Node's typings omit them.
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;

/** POSIX st_mode → Go os.FileMode, as Go's os.Lstat fills it on Linux. */
export function toGoMode(mode: number): number {
  let m = mode & 0o777;
  switch (mode & S_IFMT) {
    case S_IFBLK:
      m |= goMode.device;
      break;
    case S_IFCHR:
      m |= goMode.device | goMode.charDevice;
      break;
    case S_IFDIR:
      m |= goMode.dir;
      break;
    case S_IFIFO:
      m |= goMode.namedPipe;
      break;
    case S_IFLNK:
      m |= goMode.symlink;
      break;
    case S_IFSOCK:
      m |= goMode.socket;
      break;
    default:
      break;
  }
  if (mode & S_ISGID) m |= goMode.setgid;
  if (mode & S_ISUID) m |= goMode.setuid;
  if (mode & S_ISVTX) m |= goMode.sticky;
  return m >>> 0;
}

/** Go os.FileMode → POSIX st_mode (type bits included). */
export function fromGoMode(m: number): number {
  let mode = m & 0o777;
  if (m & goMode.setuid) mode |= S_ISUID;
  if (m & goMode.setgid) mode |= S_ISGID;
  if (m & goMode.sticky) mode |= S_ISVTX;
  if (m & goMode.dir) mode |= S_IFDIR;
  else if (m & goMode.symlink) mode |= S_IFLNK;
  else if (m & goMode.device) mode |= m & goMode.charDevice ? S_IFCHR : S_IFBLK;
  else if (m & goMode.namedPipe) mode |= S_IFIFO;
  else if (m & goMode.socket) mode |= S_IFSOCK;
  else mode |= S_IFREG;
  return mode;
}

/** The permission and special bits chmod takes, from a Go mode. */
export function goPerm(m: number): number {
  return fromGoMode(m) & 0o7777;
}

/** fsutil's fileCanRequestData: only entries without type bits carry content. */
export function isGoRegular(m: number): boolean {
  return (m & goModeType) === 0;
}

export function goModeKind(m: number): "dir" | "symlink" | "file" | "device" | "fifo" | "other" {
  if (m & goMode.dir) return "dir";
  if (m & goMode.symlink) return "symlink";
  if (m & goMode.device) return "device";
  if (m & goMode.namedPipe) return "fifo";
  if (isGoRegular(m)) return "file";
  return "other";
}
