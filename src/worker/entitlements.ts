// Entitlements: privileges a build must be granted twice, by the request (`--allow`) and by the
// daemon's configuration (`insecure-entitlements`), before an exec may use them.
import { NetMode, SecurityMode } from "../api/index.js";
import type { LoadedOp } from "../llb/index.js";
import { KilnError } from "../util/index.js";

export const entitlementNames = ["network.host", "security.insecure"] as const;
export type Entitlement = (typeof entitlementNames)[number];

function parseEntitlement(s: string): Entitlement {
  if (!(entitlementNames as readonly string[]).includes(s)) throw new KilnError("KILN_ENTITLEMENT", `unknown entitlement ${s}`);
  return s as Entitlement;
}

/**
 * The entitlements a build gets: those it asks for, each of which the daemon must support
 * (BuildKit's entitlements.WhiteList).
 */
export function grantEntitlements(requested: readonly string[], supported: readonly string[]): Set<Entitlement> {
  const sup = new Set(supported.map(parseEntitlement));
  const out = new Set<Entitlement>();
  for (const r of requested) {
    const e = parseEntitlement(r);
    if (!sup.has(e)) {
      throw new KilnError("KILN_ENTITLEMENT", `granting entitlement ${e} is not allowed by build daemon configuration`, {
        hint: `add it to insecure-entitlements in buildkitd.toml: insecure-entitlements = ["${e}"]`,
      });
    }
    out.add(e);
  }
  return out;
}

/** Refuses an exec that needs an entitlement the build was not granted (llbsolver.ValidateEntitlements). */
export function validateEntitlements(lop: LoadedOp, granted: ReadonlySet<Entitlement>): void {
  const op = lop.op.op;
  if (op.case !== "exec") return;
  const need = (e: Entitlement) => {
    if (!granted.has(e)) throw new KilnError("KILN_ENTITLEMENT", `${e} is not allowed`, { hint: `allow it with --allow ${e} (and insecure-entitlements in buildkitd.toml)` });
  };
  if (op.value.network === NetMode.HOST) need("network.host");
  if (op.value.security === SecurityMode.INSECURE) need("security.insecure");
}
