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

/** Messages a server call may have handed to HTTP/2 before a send waits for them to be flushed. */
const maxInFlight = 256;

type SendMessage = (msg: unknown, done: (err?: Error | null) => void) => void;

/**
 * grpc-js's server call stream writes one message at a time: each waits for the previous one's
 * HTTP/2 write to complete, a turn of the event loop, so a listing of thousands of small packets
 * takes thousands of turns. The call underneath takes messages directly and lets HTTP/2 queue and
 * batch them; sends go there, with our own window, when the stream has one (grpc-js ≥ 1.10's
 * ServerDuplexStreamImpl), else through the stream.
 */
export function directSender(stream: ObjectStream): SendMessage | undefined {
  const call = (stream as { call?: { sendMessage?: unknown } }).call;
  if (typeof call?.sendMessage !== "function" || typeof (stream as { sendMetadata?: unknown }).sendMetadata !== "function") return undefined;
  const send = call.sendMessage as SendMessage;
  return (msg, done) => send.call(call, msg, done);
}

export function messageConn<In, Out>(stream: ObjectStream, signal: AbortSignal, decode: (m: unknown) => In = (m) => m as In, encode: (m: Out) => unknown = (m) => m): MessageConn<In, Out> {
  const queue: In[] = [];
  let ended = false;
  let failure: unknown;
  let waiter: { resolve: () => void } | undefined;
  const direct = directSender(stream);
  let inFlight = 0;
  // Several producers may share a call (a listing and the file senders).
  const sendWaiters: (() => void)[] = [];
  const wakeSender = () => {
    for (const w of sendWaiters.splice(0)) w();
  };
  const wake = () => {
    const w = waiter;
    waiter = undefined;
    w?.resolve();
    wakeSender();
  };
  const fail = (err: unknown) => {
    failure ??= err;
    wake();
  };
  const throwIfFailed = () => {
    if (failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure));
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
      throwIfFailed();
      if (direct) {
        if (stream.writableEnded || stream.destroyed) throw new Error("stream closed");
        inFlight++;
        direct(encode(msg), (err) => {
          inFlight--;
          if (err) fail(err);
          else if (inFlight <= maxInFlight / 2) wakeSender();
        });
        // A failed write or a cancelled call never calls back: the stream's events end the wait.
        while (inFlight >= maxInFlight) {
          await new Promise<void>((resolve) => sendWaiters.push(resolve));
          throwIfFailed();
        }
        return;
      }
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
