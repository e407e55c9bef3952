// Method paths and codecs of the session services. FileSend/DiffCopy is declared with
// BytesMessage but carries fsutil Packets for directory exports, so its codec is chosen per call.
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { auth, filesync, health, methodPath, secrets, sshforward } from "../api/index.js";

export const methods = {
  healthCheck: methodPath(health.Health, "Check"),
  diffCopy: methodPath(filesync.FileSync, "DiffCopy"),
  fileSend: methodPath(filesync.FileSend, "DiffCopy"),
  credentials: methodPath(auth.Auth, "Credentials"),
  fetchToken: methodPath(auth.Auth, "FetchToken"),
  getSecret: methodPath(secrets.Secrets, "GetSecret"),
  checkAgent: methodPath(sshforward.SSH, "CheckAgent"),
  forwardAgent: methodPath(sshforward.SSH, "ForwardAgent"),
} as const;

export const metadataKeys = {
  dirName: "dir-name",
  includePatterns: "include-patterns",
  excludePatterns: "exclude-patterns",
  followPaths: "followpaths",
  exporterPrefix: "exporter-md-",
  sshID: "buildkit.ssh.id",
} as const;

export function encoder<S extends DescMessage>(schema: S): (m: MessageInitShape<S>) => Buffer {
  return (m) => {
    const bin = toBinary(schema, create(schema, m));
    return Buffer.from(bin.buffer, bin.byteOffset, bin.byteLength);
  };
}

export function decoder<S extends DescMessage>(schema: S): (b: Buffer) => MessageShape<S> {
  return (b) => fromBinary(schema, b);
}

/** Starts a bidi call of `path` whose messages are `In`/`Out` of the given schemas. */
export function bidiCall<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  path: string,
  input: I,
  output: O,
  metadata: grpc.Metadata,
): grpc.ClientDuplexStream<MessageInitShape<I>, MessageShape<O>> {
  return client.makeBidiStreamRequest(path, encoder(input), decoder(output), metadata, {});
}

/**
 * Values of a metadata key. Node's HTTP/2 joins repeated header fields with ", ", so a Go peer's
 * repeated values (patterns, method names) arrive as one string and are split again here.
 */
export function metadataValues(md: grpc.Metadata, key: string): string[] | undefined {
  const raw = md.get(key);
  if (raw.length === 0) return undefined;
  const out: string[] = [];
  for (const v of raw) out.push(...(typeof v === "string" ? v.split(", ") : [v.toString()]));
  return out;
}
