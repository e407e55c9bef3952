import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { fsutil } from "../api/index.js";
import { decodePacket, encodePacket } from "./packetcodec.js";

type PacketInit = MessageInitShape<typeof fsutil.PacketSchema>;
const { PACKET_STAT, PACKET_REQ, PACKET_DATA, PACKET_FIN, PACKET_ERR } = fsutil.Packet_PacketType;

test("packetcodec: packets encode to the bytes protobuf-es writes", () => {
  const packets: PacketInit[] = [
    { type: PACKET_STAT },
    { type: PACKET_STAT, stat: { path: "a/b.txt", mode: 0o644, size: 12n, modTime: 1_700_000_000_123_456_789n } },
    { type: PACKET_STAT, stat: { path: "dir", mode: (0x80000000 | 0o755) >>> 0, uid: 1000, gid: 1000, modTime: -5n } },
    { type: PACKET_STAT, stat: { path: "é/\u{1F600}", mode: 0o777 | 0x8000000, linkname: "../target ü" } },
    { type: PACKET_STAT, stat: { path: "dev", mode: 0x4000000 | 0x200000 | 0o600, devmajor: 4n, devminor: 1048575n, size: 0n } },
    { type: PACKET_STAT, stat: { path: "x", mode: 0o600, xattrs: { "user.a": new Uint8Array([1, 2, 3]), "security.capability": new Uint8Array(0) } } },
    { type: PACKET_STAT, stat: { path: "big", mode: 0o600, size: 1n << 40n, modTime: (1n << 63n) - 1n } },
    { type: PACKET_REQ, ID: 7 },
    { type: PACKET_REQ, ID: 0xffffffff },
    { type: PACKET_DATA, ID: 3, data: Buffer.alloc(40_000, 0x61) },
    { type: PACKET_DATA, ID: 3 },
    { type: PACKET_FIN },
    { type: PACKET_ERR, data: Buffer.from("boom") },
  ];
  for (const p of packets) {
    const want = Buffer.from(toBinary(fsutil.PacketSchema, create(fsutil.PacketSchema, p)));
    assert.deepEqual(encodePacket(p), want, JSON.stringify(p, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)));
  }
});

test("packetcodec: packets decode to what protobuf-es reads", () => {
  const packets: PacketInit[] = [
    { type: PACKET_STAT },
    { type: PACKET_STAT, stat: { path: "a/b.txt", mode: 0o644, size: 12n, modTime: 1_700_000_000_123_456_789n } },
    { type: PACKET_STAT, stat: { path: "dir", mode: (0x80000000 | 0o755) >>> 0, uid: 1000, gid: 0xffffffff, modTime: -5n } },
    { type: PACKET_STAT, stat: { path: "é/\u{1F600}", mode: 0o777 | 0x8000000, linkname: "../target ü" } },
    { type: PACKET_STAT, stat: { path: "dev", mode: 0x4000000 | 0x200000 | 0o600, devmajor: 4n, devminor: 1048575n } },
    { type: PACKET_STAT, stat: { path: "x", mode: 0o600, xattrs: { "user.a": new Uint8Array([1, 2, 3]), "security.capability": new Uint8Array(0) } } },
    { type: PACKET_STAT, stat: { path: "big", mode: 0o600, size: 1n << 40n, modTime: (1n << 63n) - 1n, devmajor: -(1n << 63n) } },
    { type: PACKET_REQ, ID: 7 },
    { type: PACKET_REQ, ID: 0xffffffff },
    { type: PACKET_DATA, ID: 3, data: Buffer.alloc(40_000, 0x61) },
    { type: PACKET_DATA, ID: 3 },
    { type: PACKET_FIN },
    { type: PACKET_ERR, data: Buffer.from("boom") },
  ];
  for (const p of packets) {
    const bin = Buffer.from(toBinary(fsutil.PacketSchema, create(fsutil.PacketSchema, p)));
    const got = decodePacket(bin);
    const want = fromBinary(fsutil.PacketSchema, bin);
    assert.deepEqual({ ...got, stat: got.stat && { ...got.stat } }, { ...want, stat: want.stat && { ...want.stat } });
  }
  // Fields a newer peer adds are skipped.
  const unknown = Buffer.concat([Buffer.from([(15 << 3) | 2, 2, 0x61, 0x62, (14 << 3) | 0, 0x96, 0x01]), encodePacket({ type: PACKET_REQ, ID: 9 })]);
  assert.equal(decodePacket(unknown).ID, 9);
  assert.throws(() => decodePacket(Buffer.from([(2 << 3) | 2, 10, 0x0a])), /truncated/);
});
