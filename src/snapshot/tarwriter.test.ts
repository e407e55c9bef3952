// Byte-for-byte checks of the tar writer against goldens written by Go's archive/tar
// (testdata/gen-tar-golden.go), plus a round trip through our reader.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { encodeTarHeader, tarPadding, TAR_TRAILER, type TarHeader } from "./tarwriter.js";
import { readTar } from "./tarreader.js";

interface Case {
  name: string;
  format: "pax" | "unknown";
  typeflag: string;
  hname: string;
  linkname: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  devmajor: number;
  devminor: number;
  pax: Record<string, string>;
  data: string;
}

const dir = path.join(import.meta.dirname, "testdata");
const b64 = (s: string) => Buffer.from(s, "base64");

async function load(): Promise<{ cases: Case[]; golden: Record<string, string> }> {
  const cases = JSON.parse(await readFile(path.join(dir, "tarcases.json"), "utf8")) as Case[];
  const golden = JSON.parse(await readFile(path.join(dir, "tar-golden.json"), "utf8")) as Record<string, string>;
  return { cases, golden };
}

async function* chunks(b: Buffer): AsyncGenerator<Buffer> {
  yield b.subarray(0, 700);
  yield b.subarray(700);
}

function headerOf(c: Case): TarHeader {
  return {
    typeflag: c.typeflag.charCodeAt(0),
    name: b64(c.hname),
    linkname: b64(c.linkname),
    size: c.size,
    mode: c.mode,
    uid: c.uid,
    gid: c.gid,
    mtime: c.mtime,
    devmajor: c.devmajor,
    devminor: c.devminor,
    pax: new Map(Object.entries(c.pax).map(([k, v]) => [k, b64(v)])),
  };
}

test("tar writer matches Go archive/tar byte for byte", async () => {
  const { cases, golden } = await load();
  assert.ok(cases.length > 30);
  for (const c of cases) {
    const data = b64(c.data);
    const got = Buffer.concat([encodeTarHeader(headerOf(c)), data, tarPadding(data.length)]);
    const want = b64(golden[c.name]!);
    assert.equal(got.toString("hex"), want.toString("hex"), `case ${c.name}`);
  }
});

test("tar reader reads back what the writer wrote", async () => {
  const { cases } = await load();
  for (const c of cases) {
    const data = b64(c.data);
    const bytes = Buffer.concat([encodeTarHeader(headerOf(c)), data, tarPadding(data.length), TAR_TRAILER]);
    const entries = [];
    for await (const e of readTar(chunks(bytes))) {
      const chunks: Buffer[] = [];
      for await (const ch of e.body()) chunks.push(ch);
      entries.push({ h: e.header, body: Buffer.concat(chunks) });
    }
    assert.equal(entries.length, 1, c.name);
    const { h, body } = entries[0]!;
    assert.equal(h.name.toString("hex"), b64(c.hname).toString("hex"), `${c.name} name`);
    assert.equal(h.linkname.toString("hex"), b64(c.linkname).toString("hex"), `${c.name} linkname`);
    assert.equal(h.uid, c.uid, `${c.name} uid`);
    assert.equal(h.mtime.sec, c.mtime, `${c.name} mtime`);
    assert.equal(h.mode, c.mode, `${c.name} mode`);
    assert.equal(h.devmajor, c.devmajor);
    assert.equal(h.devminor, c.devminor);
    assert.equal(body.toString("hex"), data.toString("hex"), `${c.name} body`);
    for (const [k, v] of Object.entries(c.pax)) {
      assert.equal(h.xattrs.get(k.slice("SCHILY.xattr.".length))?.toString("hex"), b64(v).toString("hex"), `${c.name} ${k}`);
    }
  }
});
