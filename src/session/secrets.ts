// Build secrets the client provides (`--secret id=ID,src=PATH|env=VAR`), read only when a step
// mounts them, as buildctl's secretsprovider does; their values never leave this object except
// into the mount that asked for them.
import { readFile, stat } from "node:fs/promises";
import { KilnError } from "../util/index.js";

export interface SecretStore {
  /** The secret's bytes; undefined when the client has no secret of that id. */
  get(signal: AbortSignal, id: string): Promise<Uint8Array | undefined>;
}

export interface SecretSource {
  id: string;
  /** A file to read (`src=`/`source=`). */
  file?: string;
  /** An environment variable to read (`env=`). */
  env?: string;
}

/** BuildKit's limit on one secret. */
const maxSecretSize = 500 * 1024;

/** Parses one `--secret` value: `id=ID[,type=file|env][,src=PATH|,env=VAR]` (buildctl's CSV form). */
export function parseSecretSpec(spec: string): SecretSource {
  const out: SecretSource = { id: "" };
  let type = "";
  for (const field of spec.split(",")) {
    const eq = field.indexOf("=");
    if (eq < 0) throw new KilnError("KILN_FLAGS", `invalid field '${field}' must be a key=value pair`);
    const key = field.slice(0, eq).toLowerCase();
    const value = field.slice(eq + 1);
    switch (key) {
      case "type":
        if (value !== "file" && value !== "env") throw new KilnError("KILN_FLAGS", `unsupported secret type ${JSON.stringify(value)}`);
        type = value;
        break;
      case "id":
        out.id = value;
        break;
      case "source":
      case "src":
        out.file = value;
        break;
      case "env":
        out.env = value;
        break;
      default:
        throw new KilnError("KILN_FLAGS", `unexpected key '${key}' in '${field}'`);
    }
  }
  if (type === "env" && !out.env) {
    out.env = out.file;
    delete out.file;
  }
  return out;
}

/** Secrets from files and environment variables of this process. */
export class ClientSecretStore implements SecretStore {
  private constructor(private readonly sources: ReadonlyMap<string, SecretSource>) {}

  /** Checks every source up front (missing files, sizes), as buildctl does before the build starts. */
  static async create(sources: SecretSource[]): Promise<ClientSecretStore> {
    const m = new Map<string, SecretSource>();
    for (const s0 of sources) {
      const s = { ...s0 };
      if (!s.id) throw new KilnError("KILN_FLAGS", "secret missing ID");
      if (!s.env && !s.file) {
        // Without a source the id names an environment variable if there is one, else a file.
        if (process.env[s.id] !== undefined) s.env = s.id;
        else s.file = s.id;
      }
      if (s.file) {
        let size: number;
        try {
          size = (await stat(s.file)).size;
        } catch (err) {
          throw new KilnError("KILN_FLAGS", `failed to stat ${s.file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file or directory" : (err as Error).message}`, { cause: err });
        }
        if (size > maxSecretSize) throw new KilnError("KILN_FLAGS", `secret ${s.id} too big. max size 500KB`);
      }
      m.set(s.id, s);
    }
    return new ClientSecretStore(m);
  }

  async get(signal: AbortSignal, id: string): Promise<Uint8Array | undefined> {
    const s = this.sources.get(id);
    if (!s) return undefined;
    if (s.env) return Buffer.from(process.env[s.env] ?? "");
    return readFile(s.file!, { signal });
  }
}
