// buildx's attestation flags as frontend attributes: `--attest type=provenance,mode=max`,
// `--provenance[=true|false|min|max|mode=…]` and `--sbom[=true|false|generator=IMAGE]`.
import { KilnError } from "../../util/index.js";

function isFalse(v: string): boolean {
  return ["0", "f", "F", "FALSE", "false", "False"].includes(v);
}

function isTrue(v: string): boolean {
  return ["1", "t", "T", "TRUE", "true", "True"].includes(v);
}

/** One `--attest` value: `type=NAME` plus that attestation's parameters (`disabled=true` drops it). */
function attestSpec(spec: string): [string, string] | undefined {
  const fields = spec.split(",").filter((f) => f !== "");
  let type: string | undefined;
  let disabled = false;
  const rest: string[] = [];
  for (const f of fields) {
    const eq = f.indexOf("=");
    const k = eq < 0 ? f : f.slice(0, eq);
    const v = eq < 0 ? "" : f.slice(eq + 1);
    if (k === "type") type = v;
    else if (k === "disabled") disabled = isTrue(v);
    else rest.push(f);
  }
  if (!type) throw new KilnError("KILN_FLAGS", `invalid --attest ${JSON.stringify(spec)}: type is required (type=provenance or type=sbom)`);
  if (type !== "provenance" && type !== "sbom") throw new KilnError("KILN_FLAGS", `invalid --attest ${JSON.stringify(spec)}: unknown attestation type ${JSON.stringify(type)}`);
  return disabled ? undefined : [type, rest.join(",")];
}

/** The `attest:*` frontend attributes the flags ask for. */
export function attestAttrs(flags: { attest?: string[]; provenance?: string | boolean; sbom?: string | boolean }): Record<string, string> {
  const out: Record<string, string> = {};
  for (const spec of flags.attest ?? []) {
    const a = attestSpec(spec);
    if (a) out[`attest:${a[0]}`] = a[1];
  }
  const shorthand = (type: "provenance" | "sbom", v: string | boolean | undefined) => {
    if (v === undefined || v === false) return;
    const s = v === true ? "" : v;
    if (isFalse(s)) return;
    // An optional flag value can swallow the context path (`--sbom ./app`): say so rather than build the wrong thing.
    if (!(isTrue(s) || s === "" || s.includes("=") || (type === "provenance" && (s === "min" || s === "max")))) {
      throw new KilnError("KILN_FLAGS", `invalid --${type} ${JSON.stringify(s)}: expected true, false${type === "provenance" ? ", min, max" : ""} or KEY=VALUE,…`, { hint: `write --${type}=VALUE, or put --${type} after the context path` });
    }
    if (isTrue(s) || s === "") out[`attest:${type}`] = type === "provenance" ? "mode=min" : "";
    else if (type === "provenance" && (s === "min" || s === "max")) out[`attest:${type}`] = `mode=${s}`;
    else out[`attest:${type}`] = s;
  };
  shorthand("provenance", flags.provenance);
  shorthand("sbom", flags.sbom);
  return out;
}
