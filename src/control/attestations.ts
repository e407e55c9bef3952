// A build's attestations, as BuildKit v0.11's solver attaches them: the frontend's SBOM bundles
// (solved and read as in-toto statement files), an SBOM scan of the result when the frontend made
// none, and SLSA v0.2 provenance captured from what the build ran — the definitions the frontend
// solved, the images it resolved, the sources' pins (git commits) and the result's layers.
import { readdir, readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { fromBinary, toJson } from "@bufbuild/protobuf";
import { DefinitionSchema, LocationsSchema, NetMode, MountType, OpSchema, type Definition, type Op as PbOp } from "../api/index.js";
import type { ImmutableRef } from "../cache/index.js";
import { definitionState } from "../llb/index.js";
import { createSBOMScanner, parseAttests, parsePlatformsMetadata, scannerReference, type AttestRequests, type FrontendAttestation, type FrontendBridge, type FrontendResult } from "../frontend/index.js";
import { goTime, predicateTypeSLSA02, refToPURL, goJSON, goRemarshal, sortedKeys, type Attestation, type AttestedImage, type ExportPlatform, type InTotoSubject } from "../exporter/index.js";
import type { ImageConfig } from "../api/oci.js";
import { gitSourceSpec } from "../source/index.js";
import { parseReference } from "../remotes/index.js";
import type { KeyInfo, SolveHooks } from "../solver/index.js";
import type { Worker } from "../worker/index.js";
import { KilnError, digestOf, formatPlatform, normalizePlatform, secureJoin, type Platform } from "../util/index.js";

const buildType = "https://mobyproject.org/buildkit@v1";
const metadataKey = "https://mobyproject.org/buildkit@v1#metadata";
const hermeticKey = "https://mobyproject.org/buildkit@v1#hermetic";

interface ImageSource {
  ref: string;
  platform?: Platform;
  digest: string;
}

/** What one result was made from (BuildKit's provenance.Capture). */
interface Capture {
  frontend: string;
  args: Record<string, string>;
  images: ImageSource[];
  localImages: ImageSource[];
  git: { url: string; commit: string }[];
  http: { url: string; digest: string }[];
  locals: string[];
  secrets: { id: string; optional: boolean }[];
  ssh: { id: string; optional: boolean }[];
  networkAccess: boolean;
  incompleteMaterials: boolean;
}

/** What the build's steps left to know after they ran: a source's pin (a git commit, a download's digest). */
interface Pinned {
  pin(): string | undefined;
}

/** The parts of the engine attestations need, for one build. */
export interface AttestationDeps {
  worker: Worker;
  /** Solves a definition for this build (its result is held until the build ends). */
  solve(signal: AbortSignal, definition: Uint8Array): Promise<ImmutableRef | undefined>;
  /** The frontend bridge of this build (the SBOM scanner's image config). */
  bridge: FrontendBridge;
}

/** One platform's result, to attest. */
export interface AttestedResult {
  id: string;
  platform: Platform;
  definition: Uint8Array | undefined;
  ref: ImmutableRef | undefined;
  frontendAttestations: FrontendAttestation[];
  /** The frontend that made it when the request named none (a gateway client's dockerfile.v0). */
  frontend?: string;
}

/** Redacts a URL's credentials as BuildKit's urlutil.RedactCredentials: `xxxxx` for each. */
export function redactCredentials(s: string): string {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return s;
  }
  if (u.username === "" && u.password === "") return s;
  const user = u.username !== "" ? "xxxxx" : "";
  const pass = u.password !== "" ? "xxxxx" : "";
  return s.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, `$1${user}${pass !== "" ? ":" + pass : ""}@`);
}

/** BuildKit's provenance.FilterArgs: no host-specific options, no attest:*, credentials of contexts masked. */
function filterArgs(attrs: Record<string, string>): Record<string, string> {
  const hostSpecific = new Set(["cgroup-parent", "image-resolve-mode", "platform", "cache-imports"]);
  const contextKey = attrs.contextkey || "context";
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) {
    if (hostSpecific.has(k) || k.startsWith("attest:")) continue;
    out[k] = k === contextKey || k.startsWith("context:") ? redactCredentials(v) : v;
  }
  return out;
}

function parseDefinition(bytes: Uint8Array): Definition {
  return fromBinary(DefinitionSchema, bytes);
}

/**
 * One build's attestation requests and the record provenance needs: the bridge's solves and
 * image resolves, and every step's op and key (through the solve hooks).
 */
export class BuildAttestations {
  private readonly startedAt = new Date();
  private readonly invocationId = randomBytes(16).toString("hex").slice(0, 25);
  private readonly bridgeDefinitions: Uint8Array[] = [];
  private readonly resolvedImages: ImageSource[] = [];
  private readonly steps = new Map<string, KeyInfo>();

  private constructor(
    private readonly requests: AttestRequests,
    private readonly frontend: string,
    private readonly attrs: Record<string, string>,
    private readonly frontendInputs: boolean,
  ) {}

  /** undefined when the build asks for no attestation. */
  static open(attrs: Record<string, string>, frontend: string | undefined, frontendInputs: boolean): BuildAttestations | undefined {
    const requests = parseAttests(attrs);
    if (!requests.sbom && !requests.provenance) return undefined;
    if (requests.provenance) checkProvenanceAttrs(requests.provenance);
    if (requests.sbom) scannerReference(requests.sbom.generator ?? "");
    return new BuildAttestations(requests, frontend ?? "", attrs, frontendInputs);
  }

  /** Records each step's op and key as the solver forms it. */
  hooks(): SolveHooks {
    return { onKey: (info) => void this.steps.set(info.vertex.digest, info) };
  }

  /** The frontend's bridge, recording what it solves and resolves. */
  wrapBridge(bridge: FrontendBridge): FrontendBridge {
    return {
      ...bridge,
      solve: async (signal, def) => {
        this.bridgeDefinitions.push(def);
        return bridge.solve(signal, def);
      },
      resolveImageConfig: async (signal, ref, opts) => {
        const res = await bridge.resolveImageConfig(signal, ref, opts);
        if (!opts.store) this.resolvedImages.push({ ref, ...(opts.platform ? { platform: opts.platform } : {}), digest: res.digest });
        return res;
      },
    };
  }

  /** Each platform of a multi-platform result takes its statements. */
  async attachToPlatforms(signal: AbortSignal, deps: AttestationDeps, parts: ExportPlatform[], res: FrontendResult): Promise<void> {
    const results: AttestedResult[] = parts.map((p) => ({ id: p.id, platform: p.platform, ref: p.ref, definition: res.refs?.[p.id], frontendAttestations: res.attestations?.[p.id] ?? [], ...(res.frontend ? { frontend: res.frontend } : {}) }));
    for (const [i, r] of results.entries()) parts[i]!.attestations = await this.forResult(signal, deps, r, results);
  }

  /** The statements of a single result (its platform: the frontend's, else its image config's, else the worker's). */
  async forSingle(signal: AbortSignal, deps: AttestationDeps, r: { definition: Uint8Array | undefined; ref: ImmutableRef | undefined; config: Partial<ImageConfig> | undefined; frontendResult: FrontendResult | undefined }): Promise<Attestation[]> {
    const listed = r.frontendResult ? parsePlatformsMetadata(r.frontendResult.metadata)?.[0] : undefined;
    const platform = listed?.platform ?? (r.config?.os && r.config.architecture ? { os: r.config.os, architecture: r.config.architecture, ...(r.config.variant ? { variant: r.config.variant } : {}) } : deps.worker.platform);
    const id = listed?.id ?? formatPlatform(normalizePlatform(platform));
    const res: AttestedResult = { id, platform, ref: r.ref, definition: r.definition, frontendAttestations: r.frontendResult?.attestations?.[id] ?? [], ...(r.frontendResult?.frontend ? { frontend: r.frontendResult.frontend } : {}) };
    return this.forResult(signal, deps, res, [res]);
  }

  /** The statements to attach to one platform's image. */
  async forResult(signal: AbortSignal, deps: AttestationDeps, res: AttestedResult, all: AttestedResult[]): Promise<Attestation[]> {
    let fromFrontend = res.frontendAttestations;
    if (this.requests.sbom && !fromFrontend.some((a) => a.predicateType === "https://spdx.dev/Document") && res.definition) {
      // The frontend made no SBOM: scan the result itself (BuildKit's SBOMProcessor).
      const scanner = await createSBOMScanner(signal, deps.bridge, scannerReference(this.requests.sbom.generator ?? ""), deps.worker.platform);
      const noCache = this.attrs["no-cache"] === "";
      fromFrontend = [...fromFrontend, await scanner(res.id, { core: definitionState(parseDefinition(res.definition)), extras: {}, ignoreCache: noCache })];
    }
    const out: Attestation[] = [];
    const core: { att: Attestation; core: boolean }[] = [];
    for (const fa of fromFrontend) {
      for (const att of await this.unbundle(signal, deps, fa)) core.push({ att, core: fa.sbomCore !== undefined && att.path.split(".")[0] === fa.sbomCore });
    }
    out.push(...core.filter((c) => c.core).map((c) => c.att), ...core.filter((c) => !c.core).map((c) => c.att));
    if (this.requests.provenance) out.push(this.provenance(signal, deps, res, all, this.requests.provenance));
    return out;
  }

  /** A frontend attestation's statements: every file of a bundle directory, or one predicate file. */
  private async unbundle(signal: AbortSignal, deps: AttestationDeps, fa: FrontendAttestation): Promise<Attestation[]> {
    const ref = await deps.solve(signal, fa.definition);
    if (fa.kind === "in-toto") {
      if (fa.predicateType?.startsWith("https://slsa.dev/provenance/")) throw new KilnError("KILN_FRONTEND", "frontend may not set provenance attestations");
      const data = await readRefFile(signal, ref, fa.path);
      return [{ predicateType: fa.predicateType ?? "", path: fa.path, predicate: () => Promise.resolve(data) }];
    }
    if (!ref) return [];
    await using mnt = await ref.mount(signal);
    const dir = await secureJoin(mnt.path, fa.path || "/");
    const names = (await readdir(dir)).sort();
    const out: Attestation[] = [];
    for (const name of names) {
      const text = await readFile(await secureJoin(dir, name), "utf8");
      let stmt: { predicateType?: string; subject?: { name?: string; digest?: Record<string, string> }[]; predicate?: unknown };
      try {
        stmt = JSON.parse(text) as typeof stmt;
      } catch (err) {
        throw new KilnError("KILN_FRONTEND", `cannot decode in-toto statement ${name}: ${(err as Error).message}`, { cause: err });
      }
      const type = stmt.predicateType ?? "";
      if (fa.predicateType && type !== fa.predicateType) throw new KilnError("KILN_FRONTEND", `bundle entry ${type} does not match required predicate type ${fa.predicateType}`);
      if (type.startsWith("https://slsa.dev/provenance/")) throw new KilnError("KILN_FRONTEND", "frontend may not bundle provenance attestations");
      // Go decodes the predicate into a map and marshals it again: keys come out sorted.
      const predicate = Buffer.from(goRemarshal(JSON.stringify(stmt.predicate ?? null)));
      const subjects: InTotoSubject[] = (stmt.subject ?? []).map((s) => ({ name: s.name || "_", digest: s.digest ?? {} }));
      const path = fa.path ? `${fa.path.replace(/\/+$/, "")}/${name}` : name;
      // The scan of the image itself learns which layer brought each file (BuildKit's supplementSBOM).
      const core = type === predicateSPDX && fa.sbomCore !== undefined && name.split(".")[0] === fa.sbomCore;
      const upperDir = (id: string) => deps.worker.mgr.snapshotter.upperDir(id);
      out.push({
        predicateType: type,
        path,
        predicate: async (image) => (core && image ? Buffer.from(await supplementSPDX(signal, predicate, image, upperDir)) : predicate),
        ...(subjects.length > 0 ? { subjects } : {}),
      });
    }
    return out;
  }

  /** The SLSA v0.2 provenance statement for one platform; made when the image is written. */
  private provenance(signal: AbortSignal, deps: AttestationDeps, res: AttestedResult, all: AttestedResult[], params: Record<string, string>): Attestation {
    const mode = provenanceMode(params);
    const reproducible = params.reproducible !== undefined && parseBoolStrict("reproducible", params.reproducible);
    const capture = this.capture(res, all);
    return {
      predicateType: predicateTypeSLSA02,
      path: params.filename ?? "provenance.json",
      inlineOnly: params["inline-only"] === "true",
      predicate: async (image) => Buffer.from(await this.predicate(signal, deps, res, capture, mode, reproducible, params["builder-id"] ?? "", image)),
    };
  }

  /** What one platform's result was made from: its definition, the frontend's other solves, the images it resolved. */
  private capture(res: AttestedResult, all: AttestedResult[]): Capture {
    const frontend = this.frontend || res.frontend || "";
    const c: Capture = { frontend, args: frontend ? filterArgs(this.attrs) : {}, images: [], localImages: [], git: [], http: [], locals: [], secrets: [], ssh: [], networkAccess: false, incompleteMaterials: this.frontendInputs };
    // Other platforms' results are theirs; the frontend's helper solves (the Dockerfile, .dockerignore) are everyone's.
    const others = new Set(all.filter((r) => r !== res && r.definition).map((r) => digestOf(r.definition!)));
    const defs = [...(res.definition ? [res.definition] : []), ...this.bridgeDefinitions.filter((d) => !others.has(digestOf(d)))];
    for (const bytes of defs) {
      for (const dt of parseDefinition(bytes).def) this.captureOp(c, digestOf(dt), fromBinary(OpSchema, dt));
    }
    for (const img of filterImagePlatforms(this.resolvedImages, res, all)) addImage(c.images, img);
    optimizeImageSources(c);
    const byString = <T>(f: (x: T) => string) => (a: T, b: T) => (f(a) < f(b) ? -1 : f(a) > f(b) ? 1 : 0);
    c.images.sort(byString((i) => i.ref));
    c.localImages.sort(byString((i) => i.ref));
    c.locals.sort();
    c.git.sort(byString((g) => g.url));
    c.http.sort(byString((h) => h.url));
    c.secrets.sort(byString((s) => s.id));
    c.ssh.sort(byString((s) => s.id));
    return c;
  }

  private captureOp(c: Capture, digest: string, op: PbOp): void {
    const o = op.op;
    const addSecret = (list: { id: string; optional: boolean }[], id: string, optional: boolean) => {
      const found = list.find((s) => s.id === id);
      if (found) found.optional &&= optional;
      else list.push({ id, optional });
    };
    if (o.case === "source") {
      const id = o.value.identifier;
      const attrs = o.value.attrs;
      const pin = (this.steps.get(digest)?.vertex.op as Partial<Pinned> | undefined)?.pin?.();
      const platform = op.platform ? { os: op.platform.OS, architecture: op.platform.Architecture, ...(op.platform.Variant ? { variant: op.platform.Variant } : {}) } : undefined;
      if (id.startsWith("docker-image://")) {
        const ref = id.slice("docker-image://".length);
        const digestPart = ref.includes("@") ? ref.slice(ref.indexOf("@") + 1) : pin;
        if (digestPart) addImage(c.images, { ref, ...(platform ? { platform } : {}), digest: digestPart });
      } else if (id.startsWith("oci-layout://")) {
        const ref = id.slice("oci-layout://".length);
        const digestPart = ref.includes("@") ? ref.slice(ref.indexOf("@") + 1) : pin;
        if (digestPart) addImage(c.localImages, { ref, ...(platform ? { platform } : {}), digest: digestPart });
      } else if (id.startsWith("local://")) {
        const name = id.slice("local://".length);
        if (!c.locals.includes(name)) c.locals.push(name);
      } else if (id.startsWith("git://")) {
        const spec = gitSourceSpec(id, attrs);
        const url = redactCredentials(spec.remote + (spec.ref ? `#${spec.ref}` : ""));
        const commit = pin ?? (/^[0-9a-f]{40}$/.test(spec.ref) ? spec.ref : "");
        if (!c.git.some((g) => g.url === url)) c.git.push({ url, commit });
        if (attrs["git.authtokensecret"]) addSecret(c.secrets, attrs["git.authtokensecret"], true);
        if (attrs["git.authheadersecret"]) addSecret(c.secrets, attrs["git.authheadersecret"], true);
        if (attrs["git.mountsshsock"]) addSecret(c.ssh, attrs["git.mountsshsock"], true);
      } else if (id.startsWith("http://") || id.startsWith("https://")) {
        const url = redactCredentials(id);
        const d = attrs["http.checksum"] ?? pin;
        if (d && !c.http.some((h) => h.url === url)) c.http.push({ url, digest: d });
      }
    } else if (o.case === "exec") {
      for (const m of o.value.mounts) {
        if (m.mountType === MountType.SECRET) addSecret(c.secrets, m.secretOpt?.ID ?? "", m.secretOpt?.optional ?? false);
        if (m.mountType === MountType.SSH) addSecret(c.ssh, m.SSHOpt?.ID || "default", m.SSHOpt?.optional ?? false);
      }
      for (const se of o.value.secretenv) addSecret(c.secrets, se.ID, se.optional);
      if (o.value.network !== NetMode.NONE) c.networkAccess = true;
    } else if (o.case === "build") {
      c.incompleteMaterials = true;
    }
  }

  /** The predicate's JSON in BuildKit's field order. */
  private async predicate(signal: AbortSignal, deps: AttestationDeps, res: AttestedResult, c: Capture, mode: "min" | "max", reproducible: boolean, builderId: string, image: AttestedImage | undefined): Promise<string> {
    const args = { ...c.args };
    const configSource: Record<string, unknown> = {};
    const contextKey = args.contextkey || "context";
    const ctx = args[contextKey];
    if (ctx) {
      const git = c.git.find((g) => g.url === ctx);
      const http = c.http.find((h) => h.url === ctx);
      configSource.uri = redactCredentials(ctx);
      if (git) configSource.digest = { sha1: git.commit };
      else if (http) configSource.digest = digestSet(http.digest);
      delete args[contextKey];
    }
    if (args.filename) {
      configSource.entryPoint = args.filename;
      delete args.filename;
    }
    const vcs: Record<string, string> = {};
    for (const k of Object.keys(args)) {
      if (!k.startsWith("vcs:")) continue;
      const v = k === "vcs:source" ? redactCredentials(args[k]!) : args[k]!;
      delete args[k];
      if (v !== "") vcs[k.slice("vcs:".length)] = v;
    }
    let completeParameters = c.frontend !== "";
    let secrets = c.secrets;
    let ssh = c.ssh;
    let finalArgs = args;
    if (mode === "min") {
      finalArgs = {};
      for (const [k, v] of Object.entries(args)) {
        if (k.startsWith("build-arg:") || k.startsWith("label:")) completeParameters = false;
        else finalArgs[k] = v;
      }
      secrets = [];
      ssh = [];
    }
    const incomplete = c.incompleteMaterials || c.locals.length > 0;
    const parameters: Record<string, unknown> = {};
    if (c.frontend) parameters.frontend = c.frontend;
    if (Object.keys(finalArgs).length > 0) parameters.args = sortedKeys(finalArgs);
    if (secrets.length > 0) parameters.secrets = secrets.map((s) => ({ id: s.id, ...(s.optional ? { optional: true } : {}) }));
    if (ssh.length > 0) parameters.ssh = ssh.map((s) => ({ id: s.id, ...(s.optional ? { optional: true } : {}) }));
    if (c.locals.length > 0) parameters.locals = c.locals.map((name) => ({ name }));
    const materials = [
      ...c.images.map((i) => ({ uri: refToPURL(i.ref, i.platform), digest: digestSet(i.digest) })),
      ...c.git.map((g) => ({ uri: g.url, digest: { sha1: g.commit } })),
      ...c.http.map((h) => ({ uri: h.url, digest: digestSet(h.digest) })),
      ...c.localImages.map((i) => ({ uri: i.ref, digest: digestSet(i.digest) })),
    ];
    const bkMetadata: Record<string, unknown> = {};
    if (Object.keys(vcs).length > 0) bkMetadata.vcs = sortedKeys(vcs);
    let buildConfig: Record<string, unknown> | undefined;
    if (mode === "max" && res.definition) {
      const def = parseDefinition(res.definition);
      const steps = buildSteps(def);
      buildConfig = { llbDefinition: steps.steps, digestMapping: digestMapping(steps.index) };
      const infos = def.Source?.infos ?? [];
      if (infos.length > 0) {
        const locations: Record<string, unknown> = {};
        for (const [d, l] of Object.entries(def.Source?.locations ?? {})) {
          const i = steps.index.get(d);
          if (i !== undefined) locations[`step${i}`] = toJson(LocationsSchema, l, { useProtoFieldName: true });
        }
        bkMetadata.source = {
          locations: sortedKeys(locations),
          infos: infos.map((si) => {
            const s = si.definition ? buildSteps(si.definition) : { steps: [], index: new Map<string, number>() };
            const info: Record<string, unknown> = {};
            if (si.filename) info.filename = si.filename;
            if (si.data.length > 0) info.data = Buffer.from(si.data).toString("base64");
            if (s.steps.length > 0) {
              info.llbDefinition = s.steps;
              info.digestMapping = digestMapping(s.index);
            }
            return info;
          }),
        };
      }
      const layers = image ? await this.stepLayers(signal, deps, image, steps.index) : {};
      if (Object.keys(layers).length > 0) bkMetadata.layers = sortedKeys(layers);
    }
    const metadata: Record<string, unknown> = {
      buildInvocationID: this.invocationId,
      buildStartedOn: goTime(this.startedAt.getTime()),
      buildFinishedOn: goTime(Date.now()),
      completeness: { parameters: completeParameters, environment: true, materials: !incomplete },
      reproducible,
      [metadataKey]: bkMetadata,
    };
    if (!incomplete && !c.networkAccess) metadata[hermeticKey] = true;
    const host = normalizePlatform(deps.worker.platform);
    const predicate: Record<string, unknown> = {
      builder: { id: builderId },
      buildType,
      ...(materials.length > 0 ? { materials } : {}),
      invocation: { configSource, parameters, environment: { platform: formatPlatform(host) } },
      ...(buildConfig ? { buildConfig } : {}),
      metadata,
    };
    return goJSON(predicate);
  }

  /**
   * `layers` of max mode: for each step whose result is part of the exported image, the image's
   * layer descriptors of that result (BuildKit lists the results whose blobs exist).
   */
  private async stepLayers(signal: AbortSignal, deps: AttestationDeps, image: AttestedImage, index: Map<string, number>): Promise<Record<string, unknown[][]>> {
    const { store } = deps.worker;
    const byRecord = new Map(image.layers.map((l) => [l.recordId, l.descriptor]));
    const out: Record<string, unknown[][]> = {};
    for (const [digest, i] of index) {
      const info = this.steps.get(digest);
      if (!info) continue;
      const results = await store.load(signal, info.key, info.vertex.op.outputs).catch(() => undefined);
      if (!results) continue;
      try {
        for (const [output, r] of results.entries()) {
          const chain = (r as ImmutableRef).chain?.();
          if (!chain || chain.length === 0) continue;
          const descs = chain.map((rec) => byRecord.get(rec.id));
          if (descs.every((d) => d !== undefined)) out[`step${i}:${output}`] = [descs];
        }
      } finally {
        await Promise.allSettled(results.map((r) => r.release()));
      }
    }
    return out;
  }
}

const predicateSPDX = "https://spdx.dev/Document";

/**
 * An SPDX document with each file that has no comment yet annotated `layerID: <digest>` (the
 * topmost layer that has the file) and buildkit among its creators; anything that isn't an SPDX
 * document stays as it is.
 */
async function supplementSPDX(signal: AbortSignal, predicate: Uint8Array, image: AttestedImage, upperDir: (recordId: string) => string): Promise<string> {
  const text = Buffer.from(predicate).toString("utf8");
  let doc: { spdxVersion?: unknown; files?: unknown; creationInfo?: { creators?: unknown } };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    return text;
  }
  if (!doc || typeof doc !== "object" || typeof doc.spdxVersion !== "string") return text;
  const owner = new Map<string, string>();
  let pending = image.layers.length;
  const layerOf = async (file: string): Promise<string | undefined> => {
    const known = owner.get(file);
    if (known !== undefined) return known;
    // Walk layers from the top down, once each, remembering every path the first time it is seen.
    while (pending > 0) {
      const layer = image.layers[--pending]!;
      for (const p of await layerPaths(signal, upperDir(layer.recordId))) if (!owner.has(p)) owner.set(p, layer.descriptor.digest);
      if (owner.has(file)) return owner.get(file);
    }
    return undefined;
  };
  if (Array.isArray(doc.files)) {
    for (const f of doc.files as { fileName?: unknown; comment?: unknown }[]) {
      if (!f || typeof f !== "object" || typeof f.fileName !== "string" || (typeof f.comment === "string" && f.comment !== "")) continue;
      const layer = await layerOf(posixAbs(f.fileName));
      if (layer) f.comment = `layerID: ${layer}`;
    }
  }
  const info = doc.creationInfo && typeof doc.creationInfo === "object" ? doc.creationInfo : (doc.creationInfo = {});
  info.creators = [...(Array.isArray(info.creators) ? (info.creators as unknown[]) : []), "Tool: buildkit-v0.11.6"];
  return goJSON(doc);
}

function posixAbs(p: string): string {
  const parts: string[] = [];
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") parts.pop();
    else parts.push(seg);
  }
  return "/" + parts.join("/");
}

/** The paths a layer adds or changes (its overlay upper directory), whiteouts left out. */
async function layerPaths(signal: AbortSignal, dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir + rel, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (signal.aborted) return;
      // overlayfs marks deletions with character devices; files only a deletion touches aren't the layer's.
      if (e.isCharacterDevice() || e.name.startsWith(".wh.")) continue;
      const p = `${rel}/${e.name}`;
      out.push(p);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk("");
  return out;
}

function digestSet(d: string): Record<string, string> {
  const colon = d.indexOf(":");
  return colon < 0 ? { sha256: d } : { [d.slice(0, colon)]: d.slice(colon + 1) };
}

function digestMapping(index: Map<string, number>): Record<string, string> {
  const m: Record<string, string> = {};
  for (const [d, i] of index) m[d] = `step${i}`;
  return sortedKeys(m);
}

/** An op as Go's encoding/json writes pb.Op: the oneof under `Op`, then platform and constraints. */
function opJSON(op: PbOp): Record<string, unknown> {
  const full = int64Numbers(toJson(OpSchema, op, { useProtoFieldName: true, enumAsInteger: true })) as Record<string, unknown>;
  const out: Record<string, unknown> = { Op: op.op.case ? { [op.op.case]: full[op.op.case] ?? {} } : null };
  if (op.platform) out.platform = { Architecture: op.platform.Architecture, OS: op.platform.OS, ...(op.platform.Variant ? { Variant: op.platform.Variant } : {}) };
  if (op.constraints) out.constraints = full.constraints ?? {};
  return out;
}

/** Fields of pb.Op that are 64-bit integers: proto JSON writes them as strings, Go as numbers. */
const int64Fields = new Set(["input", "output", "secondaryInput", "timestamp", "index", "shmSize", "size", "soft", "hard"]);

function int64Numbers(v: unknown, key = ""): unknown {
  if (Array.isArray(v)) return v.map((x) => int64Numbers(x, key));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, int64Numbers(x, k)]));
  if (typeof v === "string" && int64Fields.has(key) && /^-?\d+$/.test(v)) return Number(v);
  return v;
}

/** BuildKit's toBuildSteps: ops depth-first from the terminal op, inputs as `stepN:OUTPUT`. */
function buildSteps(def: Definition): { steps: Record<string, unknown>[]; index: Map<string, number> } {
  const ops = new Map<string, PbOp>();
  let last = "";
  for (const dt of def.def) {
    const op = fromBinary(OpSchema, dt);
    if (op.op.case === "source") {
      const attrs = { ...op.op.value.attrs };
      delete attrs["local.session"];
      delete attrs["local.unique"];
      op.op.value.attrs = attrs;
    }
    last = digestOf(dt);
    ops.set(last, op);
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const walk = (d: string) => {
    if (seen.has(d)) return;
    const op = ops.get(d);
    if (!op) throw new KilnError("KILN_LLB", `failed to find input ${d}`);
    seen.add(d);
    for (const i of op.inputs) walk(i.digest);
    order.push(d);
  };
  if (last) walk(last);
  const index = new Map(order.map((d, i) => [d, i]));
  const steps = order.map((d, i) => {
    const op = ops.get(d)!;
    const step: Record<string, unknown> = { id: `step${i}`, op: opJSON(op) };
    if (op.inputs.length > 0) step.inputs = op.inputs.map((inp) => `step${index.get(inp.digest)}:${inp.index}`);
    return step;
  });
  return { steps, index };
}

function addImage(list: ImageSource[], img: ImageSource): void {
  const same = (a?: Platform, b?: Platform) => a === b || (a !== undefined && b !== undefined && a.os === b.os && a.architecture === b.architecture && (a.variant ?? "") === (b.variant ?? ""));
  if (list.some((v) => v.ref === img.ref && same(v.platform, img.platform))) return;
  list.push(img);
}

/** BuildKit's OptimizeImageSources: a by-digest reference goes when the same name:tag is there by tag. */
function optimizeImageSources(c: Capture): void {
  const nameTag = (ref: string) => {
    try {
      const r = parseReference(ref);
      return { key: `${r.domain}/${r.path}:${r.tag ?? "latest"}`, canonical: r.digest !== undefined };
    } catch {
      return { key: ref, canonical: false };
    }
  };
  const tagged = new Set(c.images.map((i) => nameTag(i.ref)).filter((n) => !n.canonical).map((n) => n.key));
  c.images = c.images.filter((i) => {
    const n = nameTag(i.ref);
    return !(n.canonical && tagged.has(n.key));
  });
}

/** Images resolved for every platform of a multi-platform result count only for their own platform. */
function filterImagePlatforms(imgs: ImageSource[], res: AttestedResult, all: AttestedResult[]): ImageSource[] {
  if (all.length <= 1) return imgs;
  const matches = (p: Platform | undefined, q: Platform) => p !== undefined && p.os === q.os && p.architecture === q.architecture;
  const everywhere = new Set(imgs.filter((i) => all.every((r) => imgs.some((j) => j.ref === i.ref && matches(j.platform, r.platform)))).map((i) => i.ref));
  return imgs.filter((i) => !everywhere.has(i.ref) || !i.platform || matches(i.platform, res.platform));
}

function provenanceMode(params: Record<string, string>): "min" | "max" {
  const m = params.mode ?? "max";
  if (m === "full" || m === "max") return "max";
  if (m === "min") return "min";
  throw new KilnError("KILN_FRONTEND", `invalid mode ${JSON.stringify(m)}`);
}

function parseBoolStrict(name: string, v: string): boolean {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(v)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(v)) return false;
  throw new KilnError("KILN_FRONTEND", `failed to parse ${name} flag ${JSON.stringify(v)}`);
}

/** Bad provenance parameters fail before the build starts. */
function checkProvenanceAttrs(params: Record<string, string>): void {
  provenanceMode(params);
  if (params.reproducible !== undefined) parseBoolStrict("reproducible", params.reproducible);
}

async function readRefFile(signal: AbortSignal, ref: ImmutableRef | undefined, p: string): Promise<Uint8Array> {
  if (!ref) throw new KilnError("KILN_FRONTEND", `cannot read in-toto attestation ${p}: empty result`);
  await using mnt = await ref.mount(signal);
  try {
    return await readFile(await secureJoin(mnt.path, p));
  } catch (err) {
    throw new KilnError("KILN_FRONTEND", `cannot read in-toto attestation ${p}: ${(err as Error).message}`, { cause: err });
  }
}
