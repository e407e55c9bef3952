// The daemon end of BuildKit's session content attachable: containerd's content service
// (Info, Read, Write, Abort) served by the client, one store per id (an OCI layout directory, a
// local cache directory). Writes follow containerd's proxy writer: Stat with the expected digest,
// Write at increasing offsets, Commit with size and digest — the client's store verifies both.
import * as grpc from "@grpc/grpc-js";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { KilnError } from "../util/index.js";
import type { ContentStores } from "./types.js";

const infoMethod = "/containerd.services.content.v1.Content/Info";
const readMethod = "/containerd.services.content.v1.Content/Read";
const writeMethod = "/containerd.services.content.v1.Content/Write";
const abortMethod = "/containerd.services.content.v1.Content/Abort";
/** The metadata that names the store a call is for. */
const storeIdHeader = "buildkit-attachable-store-id";

export const contentStoreMethods = { info: infoMethod, read: readMethod, write: writeMethod, abort: abortMethod } as const;

/** containerd's WriteAction. */
const actionStat = 0;
const actionWrite = 1;
const actionCommit = 2;

/** Bytes per Write message: containerd copies with 1 MiB buffers, well under gRPC's message limit. */
const writeChunk = 1 << 20;
/** Write messages sent before the first of them must have been answered. */
const writeWindow = 8;

// WriteContentRequest{action=1, ref=2, total=3, expected=4, offset=5, data=6}
function encodeWrite(req: { action: number; ref?: string; total?: number; expected?: string; offset?: number; data?: Uint8Array }): Buffer {
  const w = new BinaryWriter();
  if (req.action) w.uint32((1 << 3) | 0).int32(req.action);
  if (req.ref) w.uint32((2 << 3) | 2).string(req.ref);
  if (req.total) w.uint32((3 << 3) | 0).int64(req.total);
  if (req.expected) w.uint32((4 << 3) | 2).string(req.expected);
  if (req.offset) w.uint32((5 << 3) | 0).int64(req.offset);
  if (req.data && req.data.length > 0) w.uint32((6 << 3) | 2).bytes(req.data);
  return Buffer.from(w.finish());
}

// WriteContentResponse{action=1, started_at=2, updated_at=3, offset=4, total=5, digest=6}
function decodeWriteResponse(b: Buffer): { offset: number; digest: string } {
  const r = new BinaryReader(b);
  let offset = 0;
  let digest = "";
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 4 && wire === 0) offset = Number(r.int64());
    else if (field === 6 && wire === 2) digest = r.string();
    else r.skip(wire);
  }
  return { offset, digest };
}

// containerd's messages are few and flat: written by hand rather than generated.
// InfoRequest{digest=1}; ReadContentRequest{digest=1, offset=2, size=3}.
function encodeDigest(digest: string): Buffer {
  return Buffer.from(new BinaryWriter().uint32((1 << 3) | 2).string(digest).finish());
}

// InfoResponse{info=1: Info{digest=1, size=2, …}}
function decodeInfoSize(b: Buffer): number {
  const r = new BinaryReader(b);
  let size = 0;
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === 2) {
      const inner = new BinaryReader(r.bytes());
      while (inner.pos < inner.len) {
        const [f, w] = inner.tag();
        if (f === 2 && w === 0) size = Number(inner.int64());
        else inner.skip(w);
      }
    } else r.skip(wire);
  }
  return size;
}

// ReadContentResponse{offset=1, data=2}
function decodeData(b: Buffer): Uint8Array {
  const r = new BinaryReader(b);
  let data: Uint8Array = new Uint8Array();
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 2 && wire === 2) data = r.bytes();
    else r.skip(wire);
  }
  return data;
}

function storeMetadata(storeId: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(storeIdHeader, storeId);
  return md;
}

export class RemoteContentStores implements ContentStores {
  constructor(
    private readonly client: grpc.Client,
    private readonly closed: AbortSignal,
    /** Whether the client serves Write (buildctl's attachable serves containerd's whole service). */
    readonly writable = false,
  ) {}

  info(signal: AbortSignal, storeId: string, digest: string): Promise<{ size: number } | undefined> {
    const sig = AbortSignal.any([signal, this.closed]);
    return new Promise((resolve, reject) => {
      const call = this.client.makeUnaryRequest(infoMethod, (d: string) => encodeDigest(d), (b: Buffer) => b, digest, storeMetadata(storeId), {}, (err, res) => {
        sig.removeEventListener("abort", onAbort);
        if (err) {
          if (err.code === grpc.status.NOT_FOUND) resolve(undefined);
          else reject(new KilnError("KILN_SESSION", `content store ${storeId}: info ${digest}: ${err.details || err.message}`, { cause: err }));
        } else resolve({ size: decodeInfoSize(res!) });
      });
      const onAbort = () => call.cancel();
      if (sig.aborted) call.cancel();
      else sig.addEventListener("abort", onAbort, { once: true });
    });
  }

  async *read(signal: AbortSignal, storeId: string, digest: string): AsyncIterable<Uint8Array> {
    const sig = AbortSignal.any([signal, this.closed]);
    const call = this.client.makeServerStreamRequest(readMethod, (d: string) => encodeDigest(d), (b: Buffer) => b, digest, storeMetadata(storeId), {});
    const onAbort = () => call.cancel();
    sig.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const msg of call as AsyncIterable<Buffer>) yield decodeData(msg);
    } finally {
      sig.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  async write(signal: AbortSignal, storeId: string, desc: { digest: string; size: number }, data: () => AsyncIterable<Uint8Array>): Promise<boolean> {
    if (!this.writable) throw new KilnError("KILN_SESSION", `content store ${storeId}: the client does not accept writes`);
    const sig = AbortSignal.any([signal, this.closed]);
    // One ingest per blob: the same name lets a retried write find (and restart) the first one's.
    const ref = `kiln-${desc.digest}`;
    const call = this.client.makeBidiStreamRequest(writeMethod, (b: Buffer) => b, (b: Buffer) => b, storeMetadata(storeId), {});
    const onAbort = () => call.cancel();
    sig.addEventListener("abort", onAbort, { once: true });
    const responses = (call as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    const exchange = async (req: Parameters<typeof encodeWrite>[0]) => {
      call.write(encodeWrite(req));
      const next = await responses.next();
      if (next.done) throw new KilnError("KILN_SESSION", `content store ${storeId}: write ${desc.digest}: the client ended the stream`);
      return decodeWriteResponse(next.value);
    };
    let committed = false;
    try {
      await exchange({ action: actionStat, ref, total: desc.size, expected: desc.digest });
      // Writes are sent ahead of their replies (the client's store takes them in order and
      // answers each with its new offset), a few at a time, so a large blob is not one round
      // trip per MiB.
      let offset = 0;
      const awaited: number[] = [];
      const settle = async () => {
        const want = awaited.shift()!;
        const next = await responses.next();
        if (next.done) throw new KilnError("KILN_SESSION", `content store ${storeId}: write ${desc.digest}: the client ended the stream`);
        const got = decodeWriteResponse(next.value).offset;
        if (got !== want) throw new KilnError("KILN_SESSION", `content store ${storeId}: write ${desc.digest}: the client is at offset ${got}, expected ${want}`);
      };
      let pending: Uint8Array[] = [];
      let pendingBytes = 0;
      const flush = async () => {
        const chunk = Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        // Offset 0 restarts an ingest an earlier attempt left behind (containerd truncates it).
        const ok = call.write(encodeWrite({ action: actionWrite, offset, data: chunk }));
        offset += chunk.length;
        awaited.push(offset);
        if (awaited.length >= writeWindow) await settle();
        // A call that fails while full never drains: its end settles the wait too.
        if (!ok) await new Promise((resolve) => [call.once("drain", resolve), call.once("close", resolve), call.once("error", resolve)]);
      };
      for await (const c of data()) {
        sig.throwIfAborted();
        pending.push(c);
        pendingBytes += c.length;
        if (pendingBytes >= writeChunk) await flush();
      }
      if (pendingBytes > 0) await flush();
      while (awaited.length > 0) await settle();
      if (offset !== desc.size) throw new KilnError("KILN_DIGEST_MISMATCH", `blob ${desc.digest}: read ${offset} bytes, expected ${desc.size}`);
      const res = await exchange({ action: actionCommit, total: desc.size, offset, expected: desc.digest });
      if (res.digest !== desc.digest || res.offset !== desc.size) throw new KilnError("KILN_DIGEST_MISMATCH", `content store ${storeId}: blob ${desc.digest} committed as ${res.digest} (${res.offset} bytes)`);
      committed = true;
      call.end();
      // The stream's status says whether the commit held; anything after the reply is drained.
      for (let n = await responses.next(); !n.done; n = await responses.next());
      return true;
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.ALREADY_EXISTS) return false;
      if (sig.aborted) throw sig.reason;
      if (!committed) await this.abortIngest(storeId, ref);
      const e = err as grpc.ServiceError;
      if (typeof e.code === "number") throw new KilnError("KILN_SESSION", `content store ${storeId}: write ${desc.digest}: ${e.details || e.message}`, { cause: err });
      throw err;
    } finally {
      sig.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  /** Best effort: a failed write's partial data is removed from the client's store. */
  private abortIngest(storeId: string, ref: string): Promise<void> {
    const req = Buffer.from(new BinaryWriter().uint32((1 << 3) | 2).string(ref).finish());
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(abortMethod, (b: Buffer) => b, (b: Buffer) => b, req, storeMetadata(storeId), { deadline: Date.now() + 5000 }, () => resolve());
    });
  }
}
