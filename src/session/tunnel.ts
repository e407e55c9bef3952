// The Control.Session call as a byte pipe: each BytesMessage is an arbitrary slice of one HTTP/2
// connection, so both ends turn the call into a Duplex. grpc-js can serve over a Duplex (the
// connection injector) but cannot dial over one, so the daemon end relays it through a unix socket
// in a private directory that only its own channel connects to.
import { Duplex } from "node:stream";
import { createServer, type Socket } from "node:net";
import { mkdtemp, rm, chmod } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { directSender, type ObjectStream } from "./msgstream.js";


/** Bytes gathered into one message before it is sent without waiting for the next turn. */
const coalesceBytes = 64 << 10;
/** Bytes handed to a server call's HTTP/2 stream before writers wait. */
const maxInFlightBytes = 4 << 20;

/**
 * A Duplex over a stream of `{data}` messages (either end of Control.Session). Ending the Duplex
 * half-closes the call; the call's end of stream ends the Duplex's readable side.
 *
 * HTTP/2 writes frame by frame, and a listing is thousands of small frames: the chunks written
 * in one turn of the event loop travel as one message, so the call's per-message cost is paid
 * per batch. Writes are acknowledged at once unless the call is full, since HTTP/2 waits for each
 * acknowledgement before writing on.
 */
export function bytesCallToDuplex(call: ObjectStream): Duplex {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let scheduled: NodeJS.Immediate | undefined;
  let full = false;
  const blocked: (() => void)[] = [];
  const direct = directSender(call);
  let inFlightBytes = 0;
  const flush = () => {
    clearImmediate(scheduled);
    scheduled = undefined;
    if (pendingBytes === 0 || call.destroyed || call.writableEnded) return;
    const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    if (direct) {
      // The daemon's end: its server call would take one message per turn (see directSender).
      inFlightBytes += data.length;
      direct({ data }, () => {
        inFlightBytes -= data.length;
        if (full && inFlightBytes <= maxInFlightBytes / 2) {
          full = false;
          for (const w of blocked.splice(0)) w();
        }
      });
      if (inFlightBytes > maxInFlightBytes) full = true;
      return;
    }
    if (!call.write({ data } as never) && !full) {
      full = true;
      call.once("drain", () => {
        full = false;
        for (const w of blocked.splice(0)) w();
      });
    }
  };
  const duplex: Duplex = new Duplex({
    read() {
      if (call.isPaused()) call.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      if (call.destroyed || call.writableEnded) {
        cb(new Error("session stream closed"));
        return;
      }
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= coalesceBytes) flush();
      else scheduled ??= setImmediate(flush);
      if (full) blocked.push(() => cb());
      else cb();
    },
    final(cb) {
      flush();
      if (!call.writableEnded) call.end();
      cb();
    },
    destroy(err, cb) {
      clearImmediate(scheduled);
      pending = [];
      call.off("data", onData);
      for (const w of blocked.splice(0)) w();
      cb(err);
    },
  });
  const onData = (m: { data: Uint8Array }) => {
    const buf = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
    if (buf.length > 0 && !duplex.push(buf)) call.pause();
  };
  call.on("data", onData);
  call.once("end", () => duplex.push(null));
  call.once("error", (err: Error) => duplex.destroy(err));
  call.once("cancelled", () => duplex.destroy(new Error("session cancelled")));
  return duplex;
}

/** "/kiln-session-XXXXXX" + "/tunnel-<16 hex>.sock". */
const socketNameBytes = 20 + 29;

export interface UnixRelay extends AsyncDisposable {
  /** A grpc-js target: `unix:///…/tunnel-<id>.sock`. */
  readonly target: string;
  readonly socketPath: string;
  readonly dir: string;
}

/**
 * Listens on a fresh unix socket (in a 0700 temp dir) and pipes the first connection to `duplex`;
 * the listener closes (and its socket file goes) as soon as that connection arrives, so nothing
 * else can reach the tunnel.
 */
export async function relayThroughUnixSocket(duplex: Duplex, parent = os.tmpdir()): Promise<UnixRelay> {
  // A unix socket path must fit sun_path (108 bytes); a deep parent falls back to the system's.
  if (Buffer.byteLength(parent) + socketNameBytes > 107) parent = os.tmpdir();
  const dir = await mkdtemp(path.join(parent, "kiln-session-"));
  let conn: Socket | undefined;
  const server = createServer((sock) => {
    if (conn) {
      sock.destroy();
      return;
    }
    conn = sock;
    server.close();
    sock.on("error", () => duplex.destroy());
    duplex.on("error", () => sock.destroy());
    sock.pipe(duplex);
    duplex.pipe(sock);
  });
  try {
    await chmod(dir, 0o700);
    const socketPath = path.join(dir, `tunnel-${randomBytes(8).toString("hex")}.sock`);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return {
      target: `unix://${socketPath}`,
      socketPath,
      dir,
      async [Symbol.asyncDispose]() {
        conn?.destroy();
        if (server.listening) await new Promise<void>((r) => server.close(() => r()));
        duplex.destroy();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    server.close();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
