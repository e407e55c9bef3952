// `--progress rawjson`: every update as the JSON encoding/json makes of BuildKit's
// client.SolveStatus, one object per line: the struct's field order and json tags (empty fields
// omitted where the tag says omitempty; `id`, `current`, `timestamp` and a log's `data` always
// present), []byte as base64, times in RFC 3339 with nanoseconds.
import type { ProgressEvent } from "../../../solver/types.js";
import { goJSONString, goTimeJSON } from "./gofmt.js";

type Field = [name: string, json: string | undefined];

function object(fields: Field[]): string {
  return "{" + fields.filter((f): f is [string, string] => f[1] !== undefined).map(([k, v]) => `${goJSONString(k)}:${v}`).join(",") + "}";
}

const str = (s: string | undefined) => (s ? goJSONString(s) : undefined);
const num = (n: number | undefined) => (n ? String(Math.trunc(n)) : undefined);
const time = (d: Date | undefined) => (d ? goJSONString(goTimeJSON(d.getTime())) : undefined);
const bytes = (b: Uint8Array | string) => goJSONString(Buffer.from(b).toString("base64"));
const array = (items: string[]) => (items.length > 0 ? `[${items.join(",")}]` : undefined);

/** One SolveStatus as a JSON line; `now` stands in for a status update's missing timestamp. */
export function solveStatusJSON(ev: ProgressEvent, now: number): string | undefined {
  const vertexes = (ev.vertexes ?? []).map((v) =>
    object([
      ["digest", str(v.digest)],
      ["inputs", array(v.inputs.map((i) => goJSONString(i)))],
      ["name", str(v.name)],
      ["started", time(v.started)],
      ["completed", time(v.completed)],
      ["cached", v.cached ? "true" : undefined],
      ["error", str(v.error)],
    ]),
  );
  const statuses = (ev.statuses ?? []).map((s) =>
    object([
      ["id", goJSONString(s.id)],
      ["vertex", str(s.vertex)],
      ["name", str(s.name)],
      ["total", num(s.total)],
      ["current", String(Math.trunc(s.current))],
      ["timestamp", goJSONString(goTimeJSON(s.timestamp?.getTime() ?? now))],
      ["started", time(s.started)],
      ["completed", time(s.completed)],
    ]),
  );
  const logs = (ev.logs ?? []).map((l) =>
    object([
      ["vertex", str(l.vertex)],
      ["stream", num(l.stream)],
      ["data", bytes(l.data)],
      ["timestamp", goJSONString(goTimeJSON(l.timestamp.getTime()))],
    ]),
  );
  const warnings = (ev.warnings ?? []).map((w) =>
    object([
      ["vertex", str(w.vertex)],
      ["level", num(w.level)],
      ["short", w.short ? bytes(w.short) : undefined],
      ["detail", array((w.detail ?? []).map(bytes))],
    ]),
  );
  const out = object([
    ["vertexes", array(vertexes)],
    ["statuses", array(statuses)],
    ["logs", array(logs)],
    ["warnings", array(warnings)],
  ]);
  return out === "{}" ? undefined : out;
}
