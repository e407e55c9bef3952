// Go tells a nil *pb.Definition in a FrontendInputs map from an empty one: gogo writes the
// nil one's map entry with no value field, and BuildKit's frontends refuse it ("invalid nil input
// definition to definition op"). protobuf-es decodes such an entry as an empty message, which
// would silently be an empty context. These helpers read the request bytes once more for
// value-less entries, so the frontend sees them as undefined, as Go does.
import type * as grpc from "@grpc/grpc-js";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import type { pb } from "../../api/index.js";

/** The keys of the entries of map field `fieldNo` (string keys) that came without a value field. */
export function valuelessMapKeys(buf: Uint8Array, fieldNo: number): string[] {
  const keys: string[] = [];
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no !== fieldNo || wt !== WireType.LengthDelimited) {
      r.skip(wt, no);
      continue;
    }
    const entry = new BinaryReader(r.bytes());
    let key = "";
    let hasValue = false;
    while (entry.pos < entry.len) {
      const [eno, ewt] = entry.tag();
      if (eno === 1 && ewt === WireType.LengthDelimited) key = entry.string();
      else {
        if (eno === 2) hasValue = true;
        entry.skip(ewt, eno);
      }
    }
    if (!hasValue) keys.push(key);
  }
  return keys;
}

const valueless = new WeakMap<object, ReadonlySet<string>>();

/**
 * `method` of the grpc-js service definition `def` decodes its requests remembering which
 * entries of map field `fieldNo` came without a value; `inputsOf` reads them back.
 */
export function trackValuelessEntries(def: grpc.ServiceDefinition, method: string, fieldNo: number): void {
  const m = def[method];
  if (!m) throw new Error(`no method ${method} in the service definition`);
  const decode = m.requestDeserialize;
  (m as { requestDeserialize: (buf: Buffer) => unknown }).requestDeserialize = (buf: Buffer) => {
    const msg = decode(buf) as object;
    const keys = valuelessMapKeys(buf, fieldNo);
    if (keys.length > 0) valueless.set(msg, new Set(keys));
    return msg;
  };
}

/** A request's FrontendInputs, with the entries sent without a value (Go's nil) as undefined. */
export function inputsOf(req: object, inputs: Record<string, pb.Definition>): Record<string, pb.Definition | undefined> {
  const nil = valueless.get(req);
  if (!nil) return inputs;
  const out: Record<string, pb.Definition | undefined> = { ...inputs };
  for (const k of nil) out[k] = undefined;
  return out;
}
