// The daemon end of BuildKit's session content attachable: containerd's content service
// (Info, Read) served by the client, one store per id (an OCI layout directory).
import * as grpc from "@grpc/grpc-js";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { KilnError } from "../util/index.js";
import type { ContentStores } from "./types.js";

const infoMethod = "/containerd.services.content.v1.Content/Info";
const readMethod = "/containerd.services.content.v1.Content/Read";
/** The metadata that names the store a call is for. */
const storeIdHeader = "buildkit-attachable-store-id";

export const contentStoreMethods = { info: infoMethod, read: readMethod } as const;

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
}
