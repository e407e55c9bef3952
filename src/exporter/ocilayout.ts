// Writes an OCI image layout (oci-layout, index.json, blobs/) as a tarball stream, or the Docker
// archive form (manifest.json, repositories) that `docker load` reads.
import tar from "tar-stream";
import { pipeline } from "node:stream/promises";
import type { Readable, Writable } from "node:stream";
import type { ContentStore } from "../content/types.js";
import type { Descriptor } from "../api/oci.js";
import { assertDigest } from "../util/index.js";

export interface LayoutEntry {
  name: string;
  data?: string | Buffer;
  blob?: Descriptor;
}

const epoch = new Date(0);

/** Streams the given entries as a tar to `out`; blobs are read from the store, never buffered. */
export async function writeTar(signal: AbortSignal, content: ContentStore, entries: LayoutEntry[], out: Writable): Promise<void> {
  const pack = tar.pack();
  const writing = pipeline(pack, out, { signal });
  try {
    const seen = new Set<string>();
    for (const e of entries) {
      if (seen.has(e.name)) continue;
      seen.add(e.name);
      if (e.blob) {
        const digest = assertDigest(e.blob.digest);
        const info = await content.info(digest);
        if (!info) throw new Error(`blob ${digest} missing from the content store`);
        await new Promise<void>((resolve, reject) => {
          const entry = pack.entry({ name: e.name, size: info.size, mode: 0o444, mtime: epoch, uname: "", gname: "" }, (err) => (err ? reject(err) : resolve()));
          // A cancelled pipeline destroys the entry too; its error must reach us, not crash the process.
          entry.on("error", reject);
          const rs: Readable = content.createReadStream(digest);
          rs.on("error", reject);
          rs.pipe(entry);
        });
      } else {
        const data = typeof e.data === "string" ? Buffer.from(e.data) : e.data ?? Buffer.alloc(0);
        await new Promise<void>((resolve, reject) => pack.entry({ name: e.name, size: data.length, mode: 0o444, mtime: epoch }, data, (err) => (err ? reject(err) : resolve())));
      }
    }
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    throw err;
  } finally {
    await writing.catch((err: unknown) => {
      if (!pack.destroyed) throw err;
    });
  }
}

export function blobPath(d: Descriptor): string {
  return `blobs/${d.digest.replace(":", "/")}`;
}
