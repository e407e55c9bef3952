// ADD's archive extraction (Docker's compatibility rule): a local file that is a tar archive,
// plain or compressed with gzip, bzip2, xz or zstd, is unpacked into the destination instead of
// copied. Every path is resolved inside the destination, so entries and symlinks already there
// cannot lead outside it.
import { spawn } from "node:child_process";
import { createReadStream } from "node:fs";
import { chmod, lchown, link, lstat, lutimes, mkdir, open, rm, symlink, utimes } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { PassThrough, type Readable, type Transform } from "node:stream";
import { createGunzip } from "node:zlib";
import { setAttribute } from "@napi-rs/xattr";
import { readTar, type TarEntryHeader } from "../snapshot/index.js";
import { KilnError, secureJoin, throwIfAborted } from "../util/index.js";

type Compression = "gzip" | "bzip2" | "xz" | "zstd" | "none";

const require = createRequire(import.meta.url);

function detect(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head.length >= 3 && head.subarray(0, 3).toString("latin1") === "BZh") return "bzip2";
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return "xz";
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return "zstd";
  return "none";
}

/** A decompressing stream for `file`; external decompressors run as child processes, as Docker's do. */
function decompressed(signal: AbortSignal, file: string, kind: Compression): Readable {
  const input = createReadStream(file, { signal });
  switch (kind) {
    case "none":
      return input;
    case "gzip":
      return input.pipe(createGunzip());
    case "zstd": {
      const { DecompressStream } = require("zstd-napi") as { DecompressStream: new () => Transform };
      return input.pipe(new DecompressStream());
    }
    case "bzip2":
    case "xz": {
      const child = spawn(kind, ["-d", "-c", "-q"], { stdio: ["pipe", "pipe", "ignore"], signal });
      const out = new PassThrough();
      child.on("error", (err) => out.destroy(new KilnError("KILN_UNPACK", `${kind}: ${err.message}`, { cause: err })));
      child.stdin.on("error", () => {});
      input.pipe(child.stdin);
      child.stdout.pipe(out);
      child.on("close", (code) => {
        if (code !== 0 && code !== null) out.destroy(new KilnError("KILN_UNPACK", `${kind} exited with code ${code}`));
      });
      out.on("close", () => {
        if (child.exitCode === null) child.kill();
      });
      return out;
    }
  }
}

/** Go's tar header checksum test: an all-zero or corrupt first block is not an archive. */
function isTarHeader(block: Buffer): boolean {
  if (block.length < 512 || block.every((b) => b === 0)) return false;
  const field = block.subarray(148, 156).toString("latin1").replace(/\0.*$/s, "").trim();
  if (!/^[0-7]+$/.test(field)) return false;
  const want = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return want === unsigned || want === signed;
}

async function readAtMost(stream: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of stream) {
      chunks.push(c as Buffer);
      size += (c as Buffer).length;
      if (size >= n) break;
    }
  } catch {
    // undecodable data is simply not an archive
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, n);
}

/** The archive's compression when `file` is a regular file holding a tar archive. */
export async function archiveKind(signal: AbortSignal, file: string): Promise<Compression | undefined> {
  const st = await lstat(file).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  const fh = await open(file, "r");
  let head: Buffer;
  try {
    const buf = Buffer.alloc(8);
    const { bytesRead } = await fh.read(buf, 0, 8, 0);
    head = buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  const kind = detect(head);
  const first = await readAtMost(decompressed(signal, file, kind), 512);
  return isTarHeader(first) ? kind : undefined;
}

interface Owner {
  uid: number;
  gid: number;
}

/** Creates missing directories of `rel` under root (0755), owned by `owner` when given. */
async function mkdirAll(root: string, rel: string, owner: Owner | undefined, time: number | undefined): Promise<void> {
  let cur = "";
  for (const seg of rel.split("/").filter(Boolean)) {
    cur += "/" + seg;
    const p = await secureJoin(root, cur);
    const st = await lstat(p).catch(() => undefined);
    if (st?.isDirectory()) continue;
    if (st) throw new KilnError("KILN_UNPACK", `mkdir ${cur}: not a directory`);
    await mkdir(p, { mode: 0o755 });
    if (owner) await lchown(p, owner.uid, owner.gid);
    if (time !== undefined) await utimes(p, time, time);
  }
}

/**
 * Extracts the archive `file` into `dest` (a path inside `root`, created like Docker's MkdirAll
 * with `owner`/`time`). Entries keep their own owners, modes, times and xattrs.
 */
export async function unpackArchive(signal: AbortSignal, file: string, kind: Compression, root: string, dest: string, owner: Owner | undefined, time: number | undefined): Promise<void> {
  await mkdirAll(root, dest, owner, time);
  const base = path.posix.normalize("/" + dest);
  const dirTimes: { p: string; hdr: TarEntryHeader }[] = [];
  const input = decompressed(signal, file, kind);
  try {
    for await (const entry of readTar(input)) {
      throwIfAborted(signal);
      const hdr = entry.header;
      const name = path.posix.normalize("/" + hdr.name.toString("utf8"));
      if (name === "/") {
        for await (const chunk of entry.body()) void chunk;
        continue;
      }
      const rel = path.posix.join(base, name);
      await mkdirAll(root, path.posix.dirname(rel), undefined, undefined);
      const p = await secureJoin(root, rel, false);
      const existing = await lstat(p).catch(() => undefined);
      const isDir = hdr.typeflag === 0x35;
      if (existing && !(existing.isDirectory() && isDir)) await rm(p, { recursive: true, force: true });
      await writeEntry(signal, root, base, p, hdr, entry.body());
      if (isDir) dirTimes.push({ p, hdr });
    }
  } finally {
    input.destroy();
  }
  // Directory times last: writing their children changed them.
  for (const { p, hdr } of dirTimes.reverse()) await utimes(p, timeOf(hdr.atime ?? hdr.mtime), timeOf(hdr.mtime));
}

function timeOf(t: { sec: number; nsec: number }): number {
  return t.sec + t.nsec / 1e9;
}

async function writeEntry(signal: AbortSignal, root: string, base: string, p: string, hdr: TarEntryHeader, body: AsyncIterable<Buffer>): Promise<void> {
  const drain = async () => {
    for await (const chunk of body) void chunk;
  };
  const mode = hdr.mode & 0o7777;
  switch (hdr.typeflag) {
    case 0x35: // directory
      await drain();
      await mkdir(p, { mode: 0o755 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "EEXIST") throw err;
      });
      break;
    case 0x00:
    case 0x30: // regular file
    case 0x37: {
      const fh = await open(p, "wx", 0o600);
      try {
        for await (const chunk of body) {
          throwIfAborted(signal);
          await fh.write(chunk);
        }
      } finally {
        await fh.close();
      }
      break;
    }
    case 0x31: {
      // hard link to an entry of this archive
      await drain();
      const target = await secureJoin(root, path.posix.join(base, path.posix.normalize("/" + hdr.linkname.toString("utf8"))), false);
      await link(target, p);
      return;
    }
    case 0x32: // symlink
      await drain();
      await symlink(hdr.linkname.toString("utf8"), p);
      break;
    case 0x33:
    case 0x34:
    case 0x36: {
      await drain();
      await mknod(p, hdr.typeflag === 0x36 ? "p" : hdr.typeflag === 0x33 ? "c" : "b", hdr.devmajor, hdr.devminor);
      break;
    }
    default:
      // PAX/GNU metadata entries are consumed by the reader; anything else is skipped, as Docker does.
      await drain();
      return;
  }
  for (const [k, v] of hdr.xattrs) await setAttribute(p, k, v).catch(() => {});
  await lchown(p, hdr.uid, hdr.gid);
  if (hdr.typeflag !== 0x32) await chmod(p, mode);
  if (hdr.typeflag !== 0x35) await lutimes(p, timeOf(hdr.atime ?? hdr.mtime), timeOf(hdr.mtime));
}

/** `mknod PATH p` (a fifo) or `mknod PATH c|b MAJOR MINOR`: Node cannot make device nodes itself. */
export function mknod(dest: string, type: "p" | "c" | "b", major = 0, minor = 0): Promise<void> {
  const args = [dest, type];
  if (type !== "p") args.push(String(major), String(minor));
  return new Promise((resolve, reject) => {
    const child = spawn("mknod", args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new KilnError("KILN_FILEOP", `mknod ${args.join(" ")}: ${stderr.trim()}`))));
  });
}
