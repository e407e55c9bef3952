// Method paths and codecs of the session services. FileSend/DiffCopy is declared with
// BytesMessage but carries fsutil Packets for directory exports, so its codec is chosen per call.
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { auth, filesync, health, methodPath, secrets, sshforward, upload } from "./api.js";

export const methods = {
  healthCheck: methodPath(health.Health, "Check"),
  diffCopy: methodPath(filesync.FileSync, "DiffCopy"),
  fileSend: methodPath(filesync.FileSend, "DiffCopy"),
  credentials: methodPath(auth.Auth, "Credentials"),
  fetchToken: methodPath(auth.Auth, "FetchToken"),
  getSecret: methodPath(secrets.Secrets, "GetSecret"),
  checkAgent: methodPath(sshforward.SSH, "CheckAgent"),
  forwardAgent: methodPath(sshforward.SSH, "ForwardAgent"),
  uploadPull: methodPath(upload.Upload, "Pull"),
} as const;

export const metadataKeys = {
  dirName: "dir-name",
  includePatterns: "include-patterns",
  excludePatterns: "exclude-patterns",
  followPaths: "followpaths",
  exporterPrefix: "exporter-md-",
  sshID: "buildkit.ssh.id",
  exporterID: "buildkit-attachable-exporter-id",
  uploadPath: "urlpath",
  uploadHost: "urlhost",
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

/** Go's url.QueryEscape: unreserved bytes stay, space becomes `+`, the rest `%XX`. */
function queryEscape(v: string): string {
  let out = "";
  for (const b of Buffer.from(v)) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (c === " ") out += "+";
    else out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function queryUnescape(v: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (c === "+") bytes.push(0x20);
    else if (c === "%" && /^[0-9a-fA-F]{2}$/.test(v.slice(i + 1, i + 3))) {
      bytes.push(parseInt(v.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(...Buffer.from(c));
  }
  return Buffer.from(bytes).toString();
}

/**
 * Sets a metadata key to `values`. Header values must be ASCII, so when one is not, all are
 * query-escaped and `<key>-encoded: 1` says so, as newer BuildKit does (older clients cannot
 * decode them, but they could not have received them at all).
 */
export function setMetadataValues(md: grpc.Metadata, key: string, values: readonly string[]): void {
  const encode = values.some((v) => /[^\x00-\x7f]/.test(v));
  md.remove(key);
  for (const v of values) md.add(key, encode ? queryEscape(v) : v);
  if (encode) md.set(`${key}-encoded`, "1");
}

/**
 * Values of a metadata key. Node's HTTP/2 joins repeated header fields with ", ", so a Go peer's
 * repeated values (patterns, method names) arrive as one string and are split again here;
 * values flagged `<key>-encoded` are unescaped.
 */
export function metadataValues(md: grpc.Metadata, key: string): string[] | undefined {
  const raw = md.get(key);
  if (raw.length === 0) return undefined;
  const out: string[] = [];
  for (const v of raw) out.push(...(typeof v === "string" ? v.split(", ") : [v.toString()]));
  const flag = md.get(`${key}-encoded`)[0];
  // Go's strconv.ParseBool spellings of true.
  if (typeof flag === "string" && ["1", "t", "T", "true", "TRUE", "True"].includes(flag)) return out.map(queryUnescape);
  return out;
}
