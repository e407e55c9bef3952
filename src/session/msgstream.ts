// A pull-style view of a grpc-js message stream (either end of a bidi call): awaitable sends that
// respect back-pressure, and receives from a bounded queue, so protocol loops can stop reading at
// any point without destroying the call (which would end it without a status).
import { CanceledError } from "../util/index.js";

export interface MessageConn<In, Out> {
  send(msg: Out): Promise<void>;
  /** The next message, or undefined at the peer's end of stream. */
  recv(): Promise<In | undefined>;
  /** Half-closes our side. */
  closeSend(): void;
}

const highWater = 32;

/** What both grpc-js call objects (client and server side) offer as object-mode streams. */
export interface ObjectStream extends NodeJS.EventEmitter {
  write(chunk: never, cb?: (err?: Error | null) => void): boolean;
  end(): unknown;
  pause(): unknown;
  resume(): unknown;
  isPaused(): boolean;
  readonly writableEnded: boolean;
  readonly destroyed: boolean;
}

export function messageConn<In, Out>(stream: ObjectStream, signal: AbortSignal, decode: (m: unknown) => In = (m) => m as In, encode: (m: Out) => unknown = (m) => m): MessageConn<In, Out> {
  const queue: In[] = [];
  let ended = false;
  let failure: unknown;
  let waiter: { resolve: () => void } | undefined;
  const wake = () => {
    const w = waiter;
    waiter = undefined;
    w?.resolve();
  };
  const fail = (err: unknown) => {
    failure ??= err;
    wake();
  };
  stream.on("data", (m: unknown) => {
    try {
      queue.push(decode(m));
    } catch (err) {
      fail(err);
      return;
    }
    if (queue.length >= highWater) stream.pause();
    wake();
  });
  stream.on("end", () => {
    ended = true;
    wake();
  });
  stream.on("error", fail);
  // A server call cancelled by its client reports it only through this event.
  stream.on("cancelled", () => fail(new CanceledError("stream cancelled by the peer")));
  const onAbort = () => fail(new CanceledError(signal.reason));
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  stream.once("close", () => {
    signal.removeEventListener("abort", onAbort);
    if (!ended) fail(new Error("stream closed"));
  });

  return {
    async send(msg: Out): Promise<void> {
      if (failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure));
      // Only a full buffer makes the sender wait; waiting for every message's flush would cost a
      // turn of the event loop per packet.
      if (stream.write(encode(msg) as never)) return;
      await new Promise<void>((resolve, reject) => {
        const done = (err?: unknown) => {
          stream.off("drain", onDrain);
          stream.off("close", onClose);
          signal.removeEventListener("abort", onAbort);
          if (err === undefined) resolve();
          else reject(err instanceof Error ? err : new Error(String(err)));
        };
        const onDrain = () => done();
        const onClose = () => done(failure ?? new Error("stream closed"));
        const onAbort = () => done(new CanceledError(signal.reason));
        stream.once("drain", onDrain);
        stream.once("close", onClose);
        if (signal.aborted) onAbort();
        else signal.addEventListener("abort", onAbort, { once: true });
      });
    },
    async recv(): Promise<In | undefined> {
      for (;;) {
        if (queue.length > 0) {
          const m = queue.shift()!;
          if (queue.length < highWater / 2 && stream.isPaused()) stream.resume();
          return m;
        }
        if (failure !== undefined) throw failure;
        if (ended) return undefined;
        await new Promise<void>((resolve) => (waiter = { resolve }));
      }
    },
    closeSend() {
      if (!stream.writableEnded) stream.end();
    },
  };
}
