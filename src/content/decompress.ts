// A stored layer blob as its uncompressed tar stream, for whoever unpacks it (a lazy ref's
// extraction, an image pull): gzip, zstd or plain, chosen by the media type.
import { createRequire } from "node:module";
import { PassThrough, pipeline, type Readable, type Transform } from "node:stream";
import { createGunzip } from "node:zlib";
import { KilnError } from "../util/index.js";

const require = createRequire(import.meta.url);
let zstd: { DecompressStream: new () => Transform } | undefined;

/** The compression a layer media type names (BuildKit's spellings, OCI and Docker). */
export function layerCompression(mediaType: string): "gzip" | "zstd" | "uncompressed" | undefined {
  if (mediaType.endsWith("gzip") || mediaType === "application/vnd.docker.image.rootfs.diff.tar.gzip") return "gzip";
  if (mediaType.endsWith("zstd")) return "zstd";
  if (mediaType.endsWith(".tar") || mediaType.endsWith("diff.tar")) return "uncompressed";
  return undefined;
}

/** `blob` decompressed; errors of either side end the returned stream. */
export function decompressLayer(blob: Readable, mediaType: string): Readable {
  let t: Transform;
  switch (layerCompression(mediaType)) {
    case "gzip":
      // Bigger output pieces than zlib's 16 KiB: fewer trips between the thread pool and the main thread.
      t = createGunzip({ chunkSize: 256 << 10 });
      break;
    case "zstd":
      zstd ??= require("zstd-napi") as { DecompressStream: new () => Transform };
      t = new zstd.DecompressStream();
      break;
    case "uncompressed":
      t = new PassThrough();
      break;
    default:
      blob.destroy();
      throw new KilnError("KILN_UNSUPPORTED", `cannot unpack a layer of media type ${mediaType}`);
  }
  return pipeline(blob, t, () => {});
}
