// protobuf-es service descriptors as grpc-js service definitions, plus typed server and client
// shapes derived from them, so the generated descriptors stay the one source of truth and no
// second codegen (grpc-js stubs) is needed.
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";

type Kind = "unary" | "server_streaming" | "client_streaming" | "bidi_streaming";

type MethodsOf<S> = S extends GenService<infer R> ? R : never;

/** The handler grpc-js calls for each method, typed from the descriptor. Handlers take init shapes for what they send. */
export type ServiceImpl<S extends GenService<GenServiceMethods>> = {
  [K in keyof MethodsOf<S>]: MethodsOf<S>[K] extends { methodKind: infer M extends Kind; input: infer I extends DescMessage; output: infer O extends DescMessage }
    ? M extends "unary"
      ? grpc.handleUnaryCall<MessageShape<I>, MessageInitShape<O>>
      : M extends "server_streaming"
        ? grpc.handleServerStreamingCall<MessageShape<I>, MessageInitShape<O>>
        : M extends "client_streaming"
          ? grpc.handleClientStreamingCall<MessageShape<I>, MessageInitShape<O>>
          : grpc.handleBidiStreamingCall<MessageShape<I>, MessageInitShape<O>>
    : never;
};

/** A typed client: unary calls return promises; streaming calls return grpc-js call objects. */
export type ServiceClient<S extends GenService<GenServiceMethods>> = {
  [K in keyof MethodsOf<S>]: MethodsOf<S>[K] extends { methodKind: infer M extends Kind; input: infer I extends DescMessage; output: infer O extends DescMessage }
    ? M extends "unary"
      ? (req: MessageInitShape<I>, opts?: CallOpts) => Promise<MessageShape<O>>
      : M extends "server_streaming"
        ? (req: MessageInitShape<I>, opts?: CallOpts) => grpc.ClientReadableStream<MessageShape<O>>
        : M extends "client_streaming"
          ? never
          : (opts?: CallOpts) => grpc.ClientDuplexStream<MessageInitShape<I>, MessageShape<O>>
    : never;
} & { readonly raw: grpc.Client };

export interface CallOpts {
  metadata?: grpc.Metadata;
  signal?: AbortSignal;
  deadline?: grpc.Deadline;
}

function serializer(schema: DescMessage): (msg: unknown) => Buffer {
  return (msg) => {
    const m = create(schema, msg as MessageInitShape<DescMessage>);
    const bin = toBinary(schema, m);
    return Buffer.from(bin.buffer, bin.byteOffset, bin.byteLength);
  };
}

function deserializer(schema: DescMessage): (buf: Buffer) => unknown {
  return (buf) => fromBinary(schema, buf);
}

/** The gRPC path of a method: /package.Service/Method. */
export function methodPath(svc: DescService, method: string): string {
  return `/${svc.typeName}/${method}`;
}

/** grpc-js's ServiceDefinition for a protobuf-es service; method keys are the descriptor's local names. */
export function grpcServiceDefinition(svc: DescService): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of svc.methods) {
    def[m.localName] = {
      path: methodPath(svc, m.name),
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: serializer(m.input),
      requestDeserialize: deserializer(m.input),
      responseSerialize: serializer(m.output),
      responseDeserialize: deserializer(m.output),
      originalName: m.name,
    };
  }
  return def;
}

/** Registers `impl` for `svc` on a grpc-js server. */
export function addService<S extends GenService<GenServiceMethods>>(server: grpc.Server, svc: S, impl: Partial<ServiceImpl<S>>): void {
  server.addService(grpcServiceDefinition(svc), impl as grpc.UntypedServiceImplementation);
}

function callOptions(opts: CallOpts | undefined): grpc.CallOptions {
  const o: grpc.CallOptions = {};
  if (opts?.deadline !== undefined) o.deadline = opts.deadline;
  return o;
}

function bindAbort(call: { cancel(): void }, signal: AbortSignal | undefined): void {
  if (!signal) return;
  if (signal.aborted) call.cancel();
  else signal.addEventListener("abort", () => call.cancel(), { once: true });
}

/** A typed client for `svc` over an existing grpc-js channel (so several services share one connection). */
export function makeClient<S extends GenService<GenServiceMethods>>(svc: S, address: string, credentials: grpc.ChannelCredentials, options: grpc.ClientOptions = {}): ServiceClient<S> {
  const raw = new grpc.Client(address, credentials, options);
  return bindClient(svc, raw);
}

/** Typed methods for `svc` on an existing grpc-js client (shared channel). */
export function bindClient<S extends GenService<GenServiceMethods>>(svc: S, raw: grpc.Client): ServiceClient<S> {
  const out: Record<string, unknown> = { raw };
  for (const m of svc.methods) {
    const p = methodPath(svc, m.name);
    const ser = serializer(m.input);
    const de = deserializer(m.output);
    switch (m.methodKind) {
      case "unary":
        out[m.localName] = (req: unknown, opts?: CallOpts) =>
          new Promise((resolve, reject) => {
            const call = raw.makeUnaryRequest(p, ser, de, req, opts?.metadata ?? new grpc.Metadata(), callOptions(opts), (err, res) => (err ? reject(err) : resolve(res)));
            bindAbort(call, opts?.signal);
          });
        break;
      case "server_streaming":
        out[m.localName] = (req: unknown, opts?: CallOpts) => {
          const call = raw.makeServerStreamRequest(p, ser, de, req, opts?.metadata ?? new grpc.Metadata(), callOptions(opts));
          bindAbort(call, opts?.signal);
          return call;
        };
        break;
      case "bidi_streaming":
        out[m.localName] = (opts?: CallOpts) => {
          const call = raw.makeBidiStreamRequest(p, ser, de, opts?.metadata ?? new grpc.Metadata(), callOptions(opts));
          bindAbort(call, opts?.signal);
          return call;
        };
        break;
      default:
        break;
    }
  }
  return out as ServiceClient<S>;
}

/** BuildKit raises gRPC's message limits to 16 MiB (large LLB definitions, big status batches). */
export const maxMessageBytes = 16 << 20;
