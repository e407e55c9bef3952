// Compression round trips: parallel gzip is one valid gzip member (gunzip, the gzip CLI),
// deterministic whatever the concurrency; zstd reads back; estargz lays out its TOC per the spec.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { encodeTarHeader, tarPadding, TAR_TRAILER, TypeDir, TypeLink, TypeReg, TypeSymlink } from "../../snapshot/index.js";
import { EstargzWriter, gzipParallel, readTOC, zstdCompress, zstdDecompress } from "./index.js";
import { FooterSize as FooterSizeForTest } from "./estargz.js";

const run = promisify(execFile);

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

async function* chunks(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

function sample(n: number): Buffer {
  const text = Buffer.from("the quick brown fox jumps over the lazy dog 0123456789\n".repeat(Math.ceil(n / 2 / 55)));
  return Buffer.concat([randomBytes(Math.floor(n / 2)), text]).subarray(0, n);
}

const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

describe("compression: parallel gzip", () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-gz-"));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  for (const n of [0, 1, 1 << 20, (3 << 20) + 12345]) {
    it(`round-trips ${n} bytes as one gzip member that the gzip CLI accepts`, async () => {
      const data = sample(n);
      const gz = await collect(gzipParallel(chunks(data, 70_001), { blockSize: 1 << 20 }));
      assert.deepEqual(zlib.gunzipSync(gz), data);
      const f = path.join(tmp, `t${n}.gz`);
      await writeFile(f, gz);
      await run("gzip", ["-t", f]);
      const { stdout } = await run("gzip", ["-dc", f], { encoding: "buffer", maxBuffer: 64 << 20 });
      assert.ok(Buffer.compare(stdout, data) === 0);
    });
  }

  it("gives the same bytes whatever the concurrency and input chunking, and compresses like zlib", async () => {
    const data = sample(5 << 20);
    const a = await collect(gzipParallel(chunks(data, 4096), { concurrency: 1 }));
    const b = await collect(gzipParallel(chunks(data, 1 << 20), { concurrency: 8 }));
    assert.ok(a.equals(b));
    const single = zlib.gzipSync(data);
    assert.ok(a.length < single.length * 1.01, `parallel ${a.length} vs zlib ${single.length}`);
  });

  it("honours the level", async () => {
    const data = sample(2 << 20);
    const fast = await collect(gzipParallel(chunks(data, 1 << 16), { level: 1 }));
    const best = await collect(gzipParallel(chunks(data, 1 << 16), { level: 9 }));
    const stored = await collect(gzipParallel(chunks(data, 1 << 16), { level: 0 }));
    assert.ok(stored.length > data.length);
    assert.ok(best.length <= fast.length);
    for (const g of [fast, best, stored]) assert.ok(zlib.gunzipSync(g).equals(data));
  });
});

describe("compression: zstd", () => {
  it("round-trips through zstd-napi and the zstd CLI, identically at any chunking", async () => {
    const data = sample(3 << 20);
    const z1 = await collect(zstdCompress(chunks(data, 1000), undefined));
    const z2 = await collect(zstdCompress(chunks(data, 1 << 20), undefined));
    assert.ok(z1.equals(z2));
    assert.deepEqual(z1.subarray(0, 4), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
    assert.ok((await collect(zstdDecompress(chunks(z1, 5000)))).equals(data));
    const tmp = await mkdtemp(path.join(os.tmpdir(), "kiln-zst-"));
    try {
      await writeFile(path.join(tmp, "a.zst"), z1);
      const { stdout } = await run("zstd", ["-dc", path.join(tmp, "a.zst")], { encoding: "buffer", maxBuffer: 64 << 20 });
      assert.ok(Buffer.compare(stdout, data) === 0);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});

interface FileSpec {
  name: string;
  type: number;
  data?: Buffer;
  link?: string;
  mtime?: number;
  pax?: Map<string, Buffer>;
}

function makeTar(files: FileSpec[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    const size = f.type === TypeReg ? (f.data?.length ?? 0) : 0;
    parts.push(encodeTarHeader({ typeflag: f.type, name: f.name, linkname: f.link, size, mode: f.type === TypeDir ? 0o755 : 0o644, uid: 1000, gid: 1000, uname: "u", gname: "g", mtime: f.mtime ?? 1_700_000_000, pax: f.pax }));
    if (size > 0) parts.push(f.data!, tarPadding(size));
  }
  parts.push(TAR_TRAILER);
  return Buffer.concat(parts);
}

describe("compression: estargz", () => {
  it("writes the input tar losslessly, a gzip member per file chunk, the TOC member and the footer", async () => {
    const big = sample((9 << 20) + 100);
    const small = Buffer.from("hello\n");
    const tar = makeTar([
      { name: "etc/", type: TypeDir },
      { name: "etc/hello", type: TypeReg, data: small, mtime: 1_600_000_000 },
      { name: "empty", type: TypeReg, data: Buffer.alloc(0) },
      { name: "big.bin", type: TypeReg, data: big },
      { name: "link", type: TypeSymlink, link: "etc/hello" },
      { name: "hard", type: TypeLink, link: "etc/hello" },
      { name: "cap", type: TypeReg, data: Buffer.from("x"), pax: new Map([["SCHILY.xattr.user.k", Buffer.from([0, 1, 2])]]) },
    ]);
    const w = new EstargzWriter({ chunkSize: 4 << 20 });
    const blob = await collect(w.run(chunks(tar, 100_000)));
    const res = w.result!;
    // Whole-blob decompression is the input tar followed by the TOC tar.
    const all = zlib.gunzipSync(blob);
    assert.ok(all.subarray(0, tar.length).equals(tar), "input tar reproduced byte for byte");
    assert.equal(res.uncompressedSize, all.length);
    assert.equal(res.diffId, sha(all));

    const { toc, tocDigest, tocOffset } = readTOC(blob);
    assert.equal(tocDigest, res.tocDigest);
    assert.equal(blob.length - tocOffset - FooterSizeForTest > 0, true);
    assert.equal(toc.version, 1);
    const names = toc.entries!.map((e) => `${e.type}:${e.name}`);
    assert.deepEqual(names, ["dir:etc/", "reg:etc/hello", "reg:empty", "reg:big.bin", "chunk:big.bin", "chunk:big.bin", "symlink:link", "hardlink:hard", "reg:cap"]);
    const byName = (n: string) => toc.entries!.find((e) => e.name === n && e.type !== "chunk")!;
    assert.equal(byName("etc/hello").digest, sha(small));
    assert.equal(byName("etc/hello").size, small.length);
    assert.equal(byName("etc/hello").modtime, "2020-09-13T12:26:40Z");
    assert.equal(byName("etc/hello").uid, 1000);
    assert.equal(byName("etc/").userName, "u", "first entry of a uid carries its name");
    assert.equal(byName("etc/hello").userName, undefined, "later entries of the same uid omit it");
    assert.equal(byName("empty").digest, sha(Buffer.alloc(0)));
    assert.equal(byName("empty").offset, undefined);
    assert.equal(byName("link").linkName, "etc/hello");
    assert.equal(byName("cap").xattrs?.["user.k"], Buffer.from([0, 1, 2]).toString("base64"));
    assert.equal(byName("big.bin").digest, sha(big));
    // Every chunk starts a gzip member at its offset and decompresses to the chunk's bytes.
    const chunkEnts = toc.entries!.filter((e) => e.name === "big.bin");
    assert.deepEqual(
      chunkEnts.map((e) => [e.chunkOffset ?? 0, e.chunkSize]),
      [
        [0, 4 << 20],
        [4 << 20, 4 << 20],
        [8 << 20, undefined],
      ],
    );
    const dataEnts = toc.entries!.filter((e) => e.offset !== undefined);
    for (const e of chunkEnts) {
      const start = e.offset!;
      const next = dataEnts.map((d) => d.offset!).filter((o) => o > start).sort((a, b) => a - b)[0] ?? tocOffset;
      const member = zlib.gunzipSync(blob.subarray(start, next));
      const len = e.chunkSize ?? big.length - (e.chunkOffset ?? 0);
      const want = big.subarray(e.chunkOffset ?? 0, (e.chunkOffset ?? 0) + len);
      assert.ok(member.subarray(0, len).equals(want), `chunk at ${e.chunkOffset}`);
      assert.equal(e.chunkDigest, sha(want));
    }
  });

  it("refuses a tar that already has a TOC", async () => {
    const tar = makeTar([{ name: "stargz.index.json", type: TypeReg, data: Buffer.from("{}") }]);
    const w = new EstargzWriter();
    await assert.rejects(collect(w.run(chunks(tar, 512))), /existing TOC JSON is not allowed/);
  });

  it("handles an empty layer", async () => {
    const w = new EstargzWriter();
    const blob = await collect(w.run(chunks(TAR_TRAILER, 512)));
    const { toc } = readTOC(blob);
    assert.equal(toc.entries, null);
    assert.ok(zlib.gunzipSync(blob).subarray(0, 1024).equals(TAR_TRAILER));
  });
});
