// Content digests in the OCI form `sha256:<hex>`.
import { createHash } from "node:crypto";

export type Digest = `sha256:${string}`;

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export function digestOf(data: string | Uint8Array): Digest {
  return `sha256:${sha256Hex(data)}`;
}

const digestPattern = /^sha256:[a-f0-9]{64}$/;

export function isDigest(s: string): s is Digest {
  return digestPattern.test(s);
}

export function assertDigest(s: string): Digest {
  if (!isDigest(s)) throw new Error(`invalid digest ${JSON.stringify(s)}`);
  return s;
}

export function digestHex(d: Digest): string {
  return d.slice("sha256:".length);
}
