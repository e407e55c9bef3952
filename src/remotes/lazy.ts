// A Readable that opens its real source on first read, and owns that source's cancellation: the
// content store dedups ingests, so a joiner's source is never read and must cost no request.
import { Readable } from "node:stream";

export function lazyReadable(open: (signal: AbortSignal) => Promise<Readable>): Readable {
  const controller = new AbortController();
  let inner: Readable | undefined;
  let opening = false;
  const out: Readable = new Readable({
    read() {
      if (inner) {
        inner.resume();
        return;
      }
      if (opening) return;
      opening = true;
      open(controller.signal).then(
        (src) => {
          if (out.destroyed) {
            src.destroy();
            return;
          }
          inner = src;
          src.on("data", (chunk: Buffer) => {
            if (!out.push(chunk)) src.pause();
          });
          src.once("end", () => out.push(null));
          src.once("error", (err) => out.destroy(err));
        },
        (err: Error) => out.destroy(err),
      );
    },
    destroy(err, cb) {
      controller.abort(err ?? undefined);
      inner?.destroy();
      cb(err);
    },
  });
  return out;
}
