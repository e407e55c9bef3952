// The ref table of one gateway-driven build (BuildKit's llbBridgeForwarder.refs): every result a
// client gets from LLBBridge/Solve is an id here. A ref is its LLB definition until someone needs
// its files (ReadFile, ReadDir, StatFile, Evaluate); only then is it solved, once. Return turns
// ids back into definitions, so the controller solves and exports the result as one graph.
// A result's attestations (the Dockerfile frontend's SBOM scans) travel the same way: their refs
// are ids in this table, and Return's attestations reach the exporter as the frontend made them.
import { randomBytes } from "node:crypto";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { gateway, pb } from "../../api/index.js";
import type { FrontendAttestation, FrontendResult } from "../../frontend/index.js";
import { KilnError } from "../../util/index.js";

interface Entry {
  definition: Uint8Array;
  /** The frontend whose result this is, if any (build info names it). */
  frontend?: string;
  /** The engine's handle of the solved result, once someone asked for it. */
  solved?: Promise<string>;
}

/** BuildKit's identity.NewID: 25 characters of base 36. */
export function newRefId(): string {
  const n = BigInt(`0x${randomBytes(16).toString("hex")}`);
  return n.toString(36).padStart(25, "0").slice(-25);
}

export class GatewayRefs {
  private readonly entries = new Map<string, Entry>();

  /** Registers a result; no definition (scratch, an empty solve) is the empty id, never stored. */
  add(definition: Uint8Array | undefined, frontend?: string): string {
    if (!definition) return "";
    const id = newRefId();
    this.entries.set(id, { definition, ...(frontend ? { frontend } : {}) });
    return id;
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  definition(id: string): Uint8Array | undefined {
    return this.entries.get(id)?.definition;
  }

  /**
   * The solved result of `id` (an engine handle), solving it on first use; concurrent callers
   * share one solve. A failed solve is forgotten, so a later call tries again.
   */
  evaluate(id: string, solve: (definition: Uint8Array) => Promise<string>): Promise<string> {
    const e = this.entries.get(id);
    if (!e) return Promise.reject(new KilnError("KILN_NOT_FOUND", `no such ref: ${id}`));
    if (!e.solved) {
      const p = solve(e.definition);
      e.solved = p;
      p.catch(() => {
        if (e.solved === p) delete e.solved;
      });
    }
    return e.solved;
  }

  /** A returned ref's definition; an id this build never handed out is an error (as BuildKit's cloneRef). */
  private returned(id: string): Uint8Array | undefined {
    if (id === "") return undefined;
    const def = this.definition(id);
    if (!def) throw new KilnError("KILN_NOT_FOUND", `return reference ${id} not found`);
    return def;
  }

  /** A Return{result} as the frontend result the controller solves and exports. */
  toFrontendResult(r: gateway.Result | undefined): FrontendResult {
    const fr = this.resultOf(r);
    const ids = r?.result.case === "ref" ? [r.result.value.id] : r?.result.case === "refDeprecated" ? [r.result.value] : r?.result.case === "refs" ? Object.values(r.result.value.refs).map((v) => v.id) : r?.result.case === "refsDeprecated" ? Object.values(r.result.value.refs) : [];
    const frontend = ids.map((id) => this.entries.get(id)?.frontend).find((f) => f !== undefined);
    const attestations = this.returnedAttestations(r?.attestations ?? {});
    return { ...fr, ...(frontend ? { frontend } : {}), ...(attestations ? { attestations } : {}) };
  }

  /** Return's attestations by platform id, each ref back to its definition (BuildKit's AttestationFromPB). */
  private returnedAttestations(byPlatform: Record<string, gateway.Attestations>): Record<string, FrontendAttestation[]> | undefined {
    const entries = Object.entries(byPlatform).filter(([, list]) => list.attestation.length > 0);
    if (entries.length === 0) return undefined;
    const out: Record<string, FrontendAttestation[]> = {};
    for (const [platform, list] of entries) {
      out[platform] = list.attestation.map((a) => {
        // A bundle's statements name their own subjects; a predicate's are the image unless raw ones are given.
        if (a.kind === gateway.AttestationKind.InToto && a.inTotoSubjects.some((s) => s.kind !== gateway.InTotoSubjectKind.Self)) {
          throw new KilnError("KILN_UNIMPLEMENTED", "attestations with raw in-toto subjects are not supported by kilnd");
        }
        const definition = a.ref ? this.returned(a.ref.id) : undefined;
        // Only callbacks have no ref, and they cannot cross the gateway.
        if (!definition) throw new KilnError("KILN_FRONTEND", `attestation ${JSON.stringify(a.path)} for ${platform} has no result to read it from`);
        const core = a.metadata[sbomCoreKey];
        return {
          kind: a.kind === gateway.AttestationKind.Bundle ? "bundle" : "in-toto",
          definition,
          path: a.path,
          ...(a.inTotoPredicateType ? { predicateType: a.inTotoPredicateType } : {}),
          ...(core ? { sbomCore: Buffer.from(core).toString("utf8") } : {}),
        };
      });
    }
    return out;
  }

  private resultOf(r: gateway.Result | undefined): FrontendResult {
    const metadata: Record<string, Uint8Array> = { ...(r?.metadata ?? {}) };
    const res = r?.result;
    const multi = (ids: Record<string, string>): FrontendResult => {
      const refs: Record<string, Uint8Array> = {};
      for (const [k, id] of Object.entries(ids)) {
        const def = this.returned(id);
        if (!def) throw new KilnError("KILN_UNIMPLEMENTED", `result ${k} has an empty ref: empty refs in a result map are not supported by kilnd`);
        refs[k] = def;
      }
      return { refs, metadata };
    };
    switch (res?.case) {
      case "refDeprecated":
        return { definition: this.returned(res.value), metadata };
      case "ref":
        return { definition: this.returned(res.value.id), metadata };
      case "refsDeprecated":
        return multi(res.value.refs);
      case "refs":
        return multi(Object.fromEntries(Object.entries(res.value.refs).map(([k, v]) => [k, v.id])));
      default:
        return { metadata };
    }
  }

  /**
   * A frontend's result as an LLBBridge Result: each definition becomes a new ref, sent with its
   * definition (proto.refarray) or as a bare id for older clients.
   */
  toResult(fr: FrontendResult, arrayRefs: boolean, frontend?: string): gateway.Result {
    const ref = (def: Uint8Array | undefined) => ({ id: this.add(def, frontend), def: def ? fromBinary(pb.DefinitionSchema, def) : undefined });
    let result: MessageInitShape<typeof gateway.ResultSchema>["result"];
    if (fr.refs) {
      const refs = Object.entries(fr.refs).map(([k, d]) => [k, ref(d)] as const);
      result = arrayRefs ? { case: "refs", value: { refs: Object.fromEntries(refs) } } : { case: "refsDeprecated", value: { refs: Object.fromEntries(refs.map(([k, v]) => [k, v.id])) } };
    } else {
      const r = ref(fr.definition);
      result = arrayRefs ? { case: "ref", value: r } : { case: "refDeprecated", value: r.id };
    }
    const attestations: Record<string, MessageInitShape<typeof gateway.AttestationsSchema>> = {};
    for (const [platform, list] of Object.entries(fr.attestations ?? {})) {
      attestations[platform] = { attestation: list.map((a) => attestationMessage(a, ref(a.definition))) };
    }
    return create(gateway.ResultSchema, { result, metadata: { ...fr.metadata }, attestations });
  }
}

/** The metadata keys BuildKit's result.Attestation carries an SBOM's role in. */
const reasonKey = "reason";
const sbomCoreKey = "sbom-core";

/** A frontend attestation as the LLBBridge message (BuildKit's AttestationToPB), its result a ref like any other. */
function attestationMessage(a: FrontendAttestation, ref: MessageInitShape<typeof gateway.RefSchema>): MessageInitShape<typeof gateway.AttestationSchema> {
  const metadata: Record<string, Uint8Array> = {};
  if (a.sbomCore !== undefined) {
    metadata[reasonKey] = Buffer.from("sbom");
    metadata[sbomCoreKey] = Buffer.from(a.sbomCore);
  }
  return {
    kind: a.kind === "bundle" ? gateway.AttestationKind.Bundle : gateway.AttestationKind.InToto,
    metadata,
    ref,
    path: a.path,
    inTotoPredicateType: a.predicateType ?? "",
  };
}

/** A Definition message as the bytes the engine loads; an empty one (no ops) is no definition. */
export function definitionBytes(d: pb.Definition | undefined): Uint8Array | undefined {
  if (!d || d.def.length === 0) return undefined;
  return toBinary(pb.DefinitionSchema, d);
}
