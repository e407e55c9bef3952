// The client end of BuildKit's session content attachable, as buildctl serves it for an OCI layout
// output (store "export") and a local cache (`local:DIR`): containerd's content service over
// directories in containerd's local-store layout. A blob is written to ingest/<ref>/data, checked
// against its size and digest, fsynced and renamed into blobs/sha256/<hex>; a reader never sees
// a partial blob. Which store a call is for is named in the metadata.
import * as grpc from "@grpc/grpc-js";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat, writeFile, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { errorMessage, isDigest } from "../util/index.js";
import { contentStoreMethods } from "./contentstore.js";

const storeIdHeader = "buildkit-attachable-store-id";
const readChunk = 1 << 20;

type Raw = Buffer;
const raw = { requestSerialize: (b: Raw) => b, requestDeserialize: (b: Raw) => b, responseSerialize: (b: Raw) => b, responseDeserialize: (b: Raw) => b };

const statusMethod = "/containerd.services.content.v1.Content/Status";

/** The methods this attachable serves, as the session advertises them. */
export const servedContentMethods = [contentStoreMethods.info, contentStoreMethods.read, statusMethod, contentStoreMethods.write, contentStoreMethods.abort];

class StoreError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

/** One directory in containerd's local-store layout. */
export class LocalContentDir {
  /** Refs being written now: containerd's store lets one writer hold a ref at a time. */
  private readonly locked = new Set<string>();

  constructor(readonly dir: string) {}

  /** Creates the store's directories, as containerd's NewStore does (an empty ingest/ stays). */
  async init(): Promise<void> {
    await mkdir(path.join(this.dir, "ingest"), { recursive: true });
  }

  blobFile(digest: string): string {
    if (!isDigest(digest)) throw new StoreError(grpc.status.INVALID_ARGUMENT, `invalid digest ${JSON.stringify(digest)}`);
    return path.join(this.dir, "blobs", "sha256", digest.slice("sha256:".length));
  }

  private ingestDir(ref: string): string {
    return path.join(this.dir, "ingest", createHash("sha256").update(ref).digest("hex"));
  }

  async size(digest: string): Promise<number | undefined> {
    try {
      const st = await stat(this.blobFile(digest));
      return st.isFile() ? st.size : undefined;
    } catch (err) {
      if (err instanceof StoreError) throw err;
      return undefined;
    }
  }

  async status(ref: string): Promise<{ offset: number; total: number } | undefined> {
    const d = this.ingestDir(ref);
    try {
      const st = await stat(path.join(d, "data"));
      const total = Number((await readFile(path.join(d, "total"), "utf8").catch(() => "0")) || 0);
      return { offset: st.size, total };
    } catch {
      return undefined;
    }
  }

  async abort(ref: string): Promise<boolean> {
    const d = this.ingestDir(ref);
    const had = await stat(d).then(
      () => true,
      () => false,
    );
    await rm(d, { recursive: true, force: true });
    return had;
  }

  /** Opens the ref's ingest (continuing what is there, as containerd does); released by `close`. */
  async writer(ref: string, total: number, expected: string): Promise<IngestWriter> {
    if (!ref) throw new StoreError(grpc.status.INVALID_ARGUMENT, "first message must have a reference");
    if (expected && (await this.size(expected)) !== undefined) throw new StoreError(grpc.status.ALREADY_EXISTS, `content ${expected}: already exists`);
    if (this.locked.has(ref)) throw new StoreError(grpc.status.UNAVAILABLE, `ref ${ref} locked: unavailable`);
    this.locked.add(ref);
    try {
      const d = this.ingestDir(ref);
      await mkdir(d, { recursive: true });
      await writeFile(path.join(d, "ref"), ref);
      if (total > 0) await writeFile(path.join(d, "total"), String(total));
      const fh = await open(path.join(d, "data"), "a+");
      const w = new IngestWriter(this, ref, d, fh, () => this.locked.delete(ref));
      await w.rehash();
      return w;
    } catch (err) {
      this.locked.delete(ref);
      throw err;
    }
  }
}

class IngestWriter {
  private hash: Hash = createHash("sha256");
  offset = 0;

  constructor(
    private readonly store: LocalContentDir,
    readonly ref: string,
    private readonly dir: string,
    private readonly fh: FileHandle,
    private readonly release: () => void,
  ) {}

  /** The digest of what an earlier writer left is recomputed before anything is added. */
  async rehash(): Promise<void> {
    this.hash = createHash("sha256");
    this.offset = 0;
    for await (const c of createReadStream("", { fd: this.fh, autoClose: false, start: 0 }) as AsyncIterable<Buffer>) {
      this.hash.update(c);
      this.offset += c.length;
    }
  }

  digest(): string {
    return `sha256:${this.hash.copy().digest("hex")}`;
  }

  async truncate(): Promise<void> {
    await this.fh.truncate(0);
    this.hash = createHash("sha256");
    this.offset = 0;
  }

  async write(data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, this.offset + done);
      done += bytesWritten;
    }
    this.hash.update(data);
    this.offset += data.length;
  }

  async commit(size: number, expected: string): Promise<void> {
    if (size > 0 && size !== this.offset) throw new StoreError(grpc.status.FAILED_PRECONDITION, `unexpected commit size ${this.offset}, expected ${size}`);
    const got = this.digest();
    if (expected && got !== expected) throw new StoreError(grpc.status.FAILED_PRECONDITION, `unexpected commit digest ${got}, expected ${expected}`);
    await this.fh.sync();
    const target = this.store.blobFile(got);
    if ((await this.store.size(got)) !== undefined) {
      await rm(this.dir, { recursive: true, force: true });
      throw new StoreError(grpc.status.ALREADY_EXISTS, `content ${got}: already exists`);
    }
    await mkdir(path.dirname(target), { recursive: true });
    await rename(path.join(this.dir, "data"), target);
    // The rename itself is made durable before the daemon hears the blob is there.
    const dh = await open(path.dirname(target), "r");
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  async close(): Promise<void> {
    try {
      await this.fh.close();
    } finally {
      this.release();
    }
  }
}

// ---- messages (containerd's content.proto, written by hand: few and flat) ----

function fields(b: Buffer, on: (field: number, r: BinaryReader, wire: number) => boolean): void {
  const r = new BinaryReader(b);
  while (r.pos < r.len) {
    const [f, w] = r.tag();
    if (!on(f, r, w)) r.skip(w);
  }
}

function decodeString1(b: Buffer): string {
  let s = "";
  fields(b, (f, r, w) => (f === 1 && w === 2 ? ((s = r.string()), true) : false));
  return s;
}

interface WriteRequest {
  action: number;
  ref: string;
  total: number;
  expected: string;
  offset: number;
  data: Uint8Array;
}

function decodeWriteRequest(b: Buffer): WriteRequest {
  const req: WriteRequest = { action: 0, ref: "", total: 0, expected: "", offset: 0, data: new Uint8Array() };
  fields(b, (f, r, w) => {
    if (f === 1 && w === 0) req.action = r.int32();
    else if (f === 2 && w === 2) req.ref = r.string();
    else if (f === 3 && w === 0) req.total = Number(r.int64());
    else if (f === 4 && w === 2) req.expected = r.string();
    else if (f === 5 && w === 0) req.offset = Number(r.int64());
    else if (f === 6 && w === 2) req.data = r.bytes();
    else return false;
    return true;
  });
  return req;
}

function encodeWriteResponse(action: number, offset: number, total: number, digest: string): Buffer {
  const w = new BinaryWriter();
  if (action) w.uint32((1 << 3) | 0).int32(action);
  if (offset) w.uint32((4 << 3) | 0).int64(offset);
  if (total) w.uint32((5 << 3) | 0).int64(total);
  if (digest) w.uint32((6 << 3) | 2).string(digest);
  return Buffer.from(w.finish());
}

// ---- the service ----

function storeOf(stores: ReadonlyMap<string, LocalContentDir>, md: grpc.Metadata): LocalContentDir {
  const id = md.get(storeIdHeader)[0];
  if (id === undefined) throw new StoreError(grpc.status.INVALID_ARGUMENT, `request lacks metadata "${storeIdHeader}"`);
  const s = stores.get(String(id));
  if (!s) throw new StoreError(grpc.status.NOT_FOUND, `unknown store ${String(id)}`);
  return s;
}

function toStatus(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof StoreError) return { code: err.code, details: err.message };
  return { code: grpc.status.UNKNOWN, details: errorMessage(err) };
}

/** Registers the content service for `stores` (store id → directory) on a session's server. */
export function addContentStoreService(server: grpc.Server, stores: ReadonlyMap<string, LocalContentDir>, life: AbortSignal): string[] {
  server.addService(
    {
      Info: { path: contentStoreMethods.info, requestStream: false, responseStream: false, ...raw },
      Read: { path: contentStoreMethods.read, requestStream: false, responseStream: true, ...raw },
      Status: { path: statusMethod, requestStream: false, responseStream: false, ...raw },
      Write: { path: contentStoreMethods.write, requestStream: true, responseStream: true, ...raw },
      Abort: { path: contentStoreMethods.abort, requestStream: false, responseStream: false, ...raw },
    },
    {
      Info: (call: grpc.ServerUnaryCall<Raw, Raw>, cb: grpc.sendUnaryData<Raw>) => {
        void (async () => {
          const s = storeOf(stores, call.metadata);
          const digest = decodeString1(call.request);
          const size = await s.size(digest);
          if (size === undefined) throw new StoreError(grpc.status.NOT_FOUND, `content digest ${digest}: not found`);
          const info = new BinaryWriter().uint32((1 << 3) | 2).string(digest).uint32((2 << 3) | 0).int64(size).finish();
          return Buffer.from(new BinaryWriter().uint32((1 << 3) | 2).bytes(info).finish());
        })().then(
          (res) => cb(null, res),
          (err: unknown) => cb(toStatus(err)),
        );
      },
      Status: (call: grpc.ServerUnaryCall<Raw, Raw>, cb: grpc.sendUnaryData<Raw>) => {
        void (async () => {
          const s = storeOf(stores, call.metadata);
          const ref = decodeString1(call.request);
          const st = await s.status(ref);
          if (!st) throw new StoreError(grpc.status.NOT_FOUND, `ref ${ref}: not found`);
          const inner = new BinaryWriter().uint32((3 << 3) | 2).string(ref);
          if (st.offset) inner.uint32((4 << 3) | 0).int64(st.offset);
          if (st.total) inner.uint32((5 << 3) | 0).int64(st.total);
          return Buffer.from(new BinaryWriter().uint32((1 << 3) | 2).bytes(inner.finish()).finish());
        })().then(
          (res) => cb(null, res),
          (err: unknown) => cb(toStatus(err)),
        );
      },
      Abort: (call: grpc.ServerUnaryCall<Raw, Raw>, cb: grpc.sendUnaryData<Raw>) => {
        void (async () => {
          const ref = decodeString1(call.request);
          if (!(await storeOf(stores, call.metadata).abort(ref))) throw new StoreError(grpc.status.NOT_FOUND, `ref ${ref}: not found`);
          return Buffer.alloc(0);
        })().then(
          (res) => cb(null, res),
          (err: unknown) => cb(toStatus(err)),
        );
      },
      Read: (call: grpc.ServerWritableStream<Raw, Raw>) => {
        void serveRead(call, stores).then(
          () => call.end(),
          (err: unknown) => call.emit("error", toStatus(err)),
        );
      },
      Write: (call: grpc.ServerDuplexStream<Raw, Raw>) => {
        void serveWrite(call, stores, life).then(
          () => call.end(),
          (err: unknown) => call.emit("error", toStatus(err)),
        );
      },
    },
  );
  return servedContentMethods;
}

async function serveRead(call: grpc.ServerWritableStream<Raw, Raw>, stores: ReadonlyMap<string, LocalContentDir>): Promise<void> {
  const s = storeOf(stores, call.metadata);
  let digest = "";
  let offset = 0;
  let size = 0;
  fields(call.request, (f, r, w) => {
    if (f === 1 && w === 2) digest = r.string();
    else if (f === 2 && w === 0) offset = Number(r.int64());
    else if (f === 3 && w === 0) size = Number(r.int64());
    else return false;
    return true;
  });
  const total = await s.size(digest);
  if (total === undefined) throw new StoreError(grpc.status.NOT_FOUND, `content digest ${digest}: not found`);
  if (offset > total) throw new StoreError(grpc.status.OUT_OF_RANGE, `offset ${offset} beyond ${total} bytes`);
  const end = size > 0 ? Math.min(total, offset + size) : total;
  if (end === offset) return;
  const rs = createReadStream(s.blobFile(digest), { start: offset, end: end - 1, highWaterMark: readChunk });
  let at = offset;
  try {
    for await (const c of rs as AsyncIterable<Buffer>) {
      if (call.cancelled) return;
      const msg = new BinaryWriter();
      if (at) msg.uint32((1 << 3) | 0).int64(at);
      msg.uint32((2 << 3) | 2).bytes(c);
      if (!call.write(Buffer.from(msg.finish()))) await new Promise((resolve) => call.once("drain", resolve));
      at += c.length;
    }
  } finally {
    rs.destroy();
  }
}

/** containerd's Write session: the first message names the ref; each message gets one reply. */
async function serveWrite(call: grpc.ServerDuplexStream<Raw, Raw>, stores: ReadonlyMap<string, LocalContentDir>, life: AbortSignal): Promise<void> {
  const s = storeOf(stores, call.metadata);
  const requests = (call as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const first = await requests.next();
  if (first.done) return;
  let req = decodeWriteRequest(first.value);
  let total = req.total;
  let expected = req.expected;
  const w = await s.writer(req.ref, total, expected);
  try {
    for (;;) {
      if (life.aborted || call.cancelled) return;
      if (req.expected) {
        expected = req.expected;
        if ((await s.size(expected)) !== undefined) {
          await s.abort(w.ref);
          throw new StoreError(grpc.status.ALREADY_EXISTS, `blob with expected digest ${expected} exists`);
        }
      }
      if (req.total > 0) total = req.total;
      if (req.action === 1 || req.action === 2) {
        if (req.offset > 0 && req.offset !== w.offset) throw new StoreError(grpc.status.OUT_OF_RANGE, `write @${req.offset} must occur at current offset ${w.offset}`);
        if (req.offset === 0 && w.offset > 0) await w.truncate();
        if (req.data.length > 0) await w.write(req.data);
        if (req.action === 2) await w.commit(total, expected);
      } else if (req.action !== 0) throw new StoreError(grpc.status.INVALID_ARGUMENT, `unknown write action ${req.action}`);
      call.write(encodeWriteResponse(req.action, w.offset, total, w.digest()));
      if (req.action === 2) return;
      const next = await requests.next();
      // The daemon went away mid-write: the ingest stays, as containerd keeps it, for a retry to continue or abort.
      if (next.done) return;
      req = decodeWriteRequest(next.value);
    }
  } finally {
    await w.close();
  }
}
