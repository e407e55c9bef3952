// JSON as Go's encoding/json writes it, so config and manifest bytes (and digests) match Go tools:
// `<`, `>`, `&`, U+2028 and U+2029 are escaped; key order is the order the object was built in.

export function goJSON(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/** Returns a copy of `obj` with its keys in sorted order (Go marshals maps sorted). */
export function sortedKeys<T extends Record<string, unknown>>(obj: T): T {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(obj).sort()) if (obj[k] !== undefined) out[k] = obj[k];
  return out as T;
}
