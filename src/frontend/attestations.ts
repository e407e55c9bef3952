// The `attest:TYPE=` frontend attributes (and `build-arg:BUILDKIT_ATTEST_TYPE`) and the SBOM
// scanner: an image whose command writes in-toto statements about the files mounted into it, run
// as one more LLB step whose output directory is the attestation bundle (BuildKit's
// frontend/attestations).
import { State, image, parseNormalizedNamed, formatRef, tagNameOnly, type LLBPlatform } from "../llb/index.js";
import type { ImageConfig } from "../api/oci.js";
import { KilnError, type Platform } from "../util/index.js";
import type { FrontendAttestation, FrontendBridge } from "./types.js";

export const defaultSBOMGenerator = "docker/buildkit-syft-scanner:stable-1";
/** The file-name stem of the scan of the image itself; the others are `sbom-<name>`. */
export const coreSBOMName = "sbom";
const srcDir = "/run/src/";
const outDir = "/run/out/";

export type AttestRequests = { sbom?: Record<string, string>; provenance?: Record<string, string> };

/** Splits one CSV record as Go's encoding/csv does (quoted fields may hold commas and `""`). */
function csvFields(v: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i <= v.length) {
    if (v[i] === '"') {
      let s = "";
      i++;
      for (;;) {
        if (i >= v.length) throw new Error(`extraneous or missing " in quoted-field`);
        if (v[i] === '"') {
          if (v[i + 1] === '"') {
            s += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        s += v[i++];
      }
      if (i < v.length && v[i] !== ",") throw new Error(`extraneous or missing " in quoted-field`);
      out.push(s);
      i++;
    } else {
      const end = v.indexOf(",", i);
      const stop = end < 0 ? v.length : end;
      out.push(v.slice(i, stop));
      i = stop + 1;
    }
  }
  return out;
}

/**
 * The attestations a build asks for, by type, with their parameters (`mode=max`,
 * `generator=IMAGE`); an SBOM request names BuildKit's default scanner unless it gives one.
 */
export function parseAttests(attrs: Record<string, string>): AttestRequests {
  const raw = new Map<string, string>();
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("attest:")) raw.set(k.slice("attest:".length).toLowerCase(), v);
    else if (k.startsWith("build-arg:BUILDKIT_ATTEST_")) raw.set(k.slice("build-arg:BUILDKIT_ATTEST_".length).toLowerCase(), v);
  }
  const out: AttestRequests = {};
  for (const [k, v] of raw) {
    if (k !== "sbom" && k !== "provenance") throw new KilnError("KILN_FRONTEND", `unknown attestation type ${JSON.stringify(k)}`);
    const params: Record<string, string> = k === "sbom" ? { generator: defaultSBOMGenerator } : {};
    if (v !== "") {
      let fields: string[];
      try {
        fields = csvFields(v);
      } catch (err) {
        throw new KilnError("KILN_FRONTEND", `failed to parse ${k}: ${(err as Error).message}`, { cause: err });
      }
      for (const f of fields) {
        const eq = f.indexOf("=");
        if (eq < 0) params[f] = "";
        else params[f.slice(0, eq)] = f.slice(eq + 1);
      }
    }
    out[k] = params;
  }
  return out;
}

/** What to scan for one platform: the image, plus the build context or stages the Dockerfile opts into. */
export interface SBOMTargets {
  core: State;
  extras: Record<string, State>;
  ignoreCache: boolean;
}

export type SBOMScanner = (name: string, targets: SBOMTargets) => Promise<FrontendAttestation>;

/** The scanner image's reference, normalised and tagged (`latest` when it names none). */
export function scannerReference(generator: string): string {
  if (generator === "") throw new KilnError("KILN_FRONTEND", "sbom scanner cannot be empty");
  try {
    return formatRef(tagNameOnly(parseNormalizedNamed(generator)));
  } catch (err) {
    throw new KilnError("KILN_FRONTEND", `failed to parse sbom scanner ${generator}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Resolves the scanner image once; the scanner it returns runs the image's entrypoint and command
 * with the targets mounted read-only under /run/src and collects what it writes to /run/out.
 */
export async function createSBOMScanner(signal: AbortSignal, bridge: FrontendBridge, scanner: string, buildPlatform: Platform): Promise<SBOMScanner> {
  const resolved = await bridge.resolveImageConfig(signal, scanner, { platform: buildPlatform });
  const cfg = JSON.parse(Buffer.from(resolved.config).toString("utf8")) as Partial<ImageConfig>;
  const args = [...(cfg.config?.Entrypoint ?? []), ...(cfg.config?.Cmd ?? [])];
  if (args.length === 0) throw new KilnError("KILN_FRONTEND", `scanner ${scanner} does not have cmd`);
  // The scanner runs natively whatever the target platforms (the scanned results keep theirs).
  const platform: LLBPlatform = { os: buildPlatform.os, architecture: buildPlatform.architecture, ...(buildPlatform.variant ? { variant: buildPlatform.variant } : {}) };
  return async (name, targets) => {
    const extras = Object.entries(targets.extras);
    const env = [...(cfg.config?.Env ?? []), `BUILDKIT_SCAN_DESTINATION=${outDir}`, `BUILDKIT_SCAN_SOURCE=${srcDir}core/${coreSBOMName}`];
    if (extras.length > 0) env.push(`BUILDKIT_SCAN_SOURCE_EXTRAS=${srcDir}extras`);
    const run = image(scanner).run({
        args,
        env,
        cwd: cfg.config?.WorkingDir || "/",
        customName: `[${name}] generating sbom using ${scanner}`,
        ignoreCache: targets.ignoreCache,
        mounts: [
          { dest: "/tmp", type: "tmpfs" },
          { dest: `${srcDir}core/${coreSBOMName}`, source: targets.core, readonly: true },
          ...extras.map(([k, st]) => ({ dest: `${srcDir}extras/${coreSBOMName}-${k}`, source: st, readonly: true })),
          { dest: outDir, source: State.scratch() },
        ],
      });
    const def = run.getMount(outDir).marshal({ platform });
    return { kind: "bundle", definition: def.toBinary(), path: "", predicateType: predicateSPDX, sbomCore: coreSBOMName };
  };
}

const predicateSPDX = "https://spdx.dev/Document";
