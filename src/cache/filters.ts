// containerd's filter syntax, as BuildKit's du and prune take it: `field==value`, `field!=value`,
// `field~=regexp`, or a bare `field` (present / true); selectors joined by commas must all match,
// and a list of filter strings matches when any of them does.

type Selector = { field: string; op: "==" | "!=" | "~=" | "exists"; value: string; re?: RegExp };

/** Looks a field up on the target: its value and whether it is present. */
export type FieldGetter = (field: string) => [string, boolean];

export interface Filter {
  matches(get: FieldGetter): boolean;
}

function parseOne(text: string): Selector[] {
  if (text === "") return [];
  const out: Selector[] = [];
  // Values may be Go-quoted strings; a comma outside quotes separates selectors.
  const parts: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"' && text[i - 1] !== "\\") quoted = !quoted;
    if (c === "," && !quoted) {
      parts.push(cur);
      cur = "";
    } else cur += c;
  }
  parts.push(cur);
  for (const raw of parts) {
    const p = raw.trim();
    const m = /^([A-Za-z][A-Za-z0-9_.]*)\s*(==|!=|~=)\s*(.*)$/.exec(p);
    if (!m) {
      if (!/^[A-Za-z][A-Za-z0-9_.]*$/.test(p)) throw new Error(`invalid filter ${JSON.stringify(text)}: bad selector ${JSON.stringify(p)}`);
      out.push({ field: p, op: "exists", value: "" });
      continue;
    }
    let value = m[3]!;
    if (value.startsWith('"')) value = JSON.parse(value) as string;
    if (value === "") throw new Error(`invalid filter ${JSON.stringify(text)}: missing value`);
    const sel: Selector = { field: m[1]!, op: m[2] as Selector["op"], value };
    if (sel.op === "~=") sel.re = new RegExp(value);
    out.push(sel);
  }
  return out;
}

/** Parses filter strings; an empty list matches everything. Throws on bad syntax. */
export function parseFilters(list: string[]): Filter {
  const alternatives = list.map(parseOne);
  return {
    matches(get) {
      if (alternatives.length === 0) return true;
      return alternatives.some((sels) =>
        sels.every((s) => {
          const [v, present] = get(s.field);
          switch (s.op) {
            case "exists":
              return present;
            case "==":
              return present && v === s.value;
            case "!=":
              return !present || v !== s.value;
            case "~=":
              return present && s.re!.test(v);
          }
        }),
      );
    },
  };
}
