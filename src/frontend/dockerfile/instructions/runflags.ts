// RUN's structured flags: `--mount` (CSV key=value list), `--device`, and the accepted values
// of `--network` and `--security`.
import { goQuote } from "../gostrings.js";
import { ParseFailure } from "../parser/index.js";
import { parseCSVFields, parseGoBool, parseGoUint, parseRAMInBytes, ValueError } from "./goparse.js";
import { withSuggestion } from "./suggest.js";
import type { Device, Mount, MountType, NetworkMode, SecurityMode, ShareMode } from "./types.js";

/** Expands one word (variables, quotes); throws on a bad expansion. */
export type WordExpander = (word: string) => string;

const mountTypes: readonly MountType[] = ["bind", "cache", "tmpfs", "secret", "ssh"];
const shareModes: readonly ShareMode[] = ["shared", "private", "locked"];
export const networkModes: readonly NetworkMode[] = ["default", "none", "host"];
export const securityModes: readonly SecurityMode[] = ["sandbox", "insecure"];
const mountKeys = [
  "type", "from", "source", "target", "readonly", "id", "sharing", "required", "size", "mode", "uid", "gid",
  "src", "dst", "destination", "ro", "rw", "readwrite", "env",
];

function cut(field: string): { key: string; value: string; ok: boolean } {
  const eq = field.indexOf("=");
  if (eq < 0) return { key: field.toLowerCase(), value: "", ok: false };
  return { key: field.slice(0, eq).toLowerCase(), value: field.slice(eq + 1), ok: true };
}

function csv(spec: string, what: string): string[] {
  try {
    return parseCSVFields(spec);
  } catch (err) {
    throw new ParseFailure(`failed to parse csv ${what}: ${(err as Error).message}`);
  }
}

function boolValue(key: string, value: string): boolean {
  try {
    return parseGoBool(value);
  } catch (err) {
    if (err instanceof ValueError) throw new ParseFailure(`invalid value for ${key}: ${value}`);
    throw err;
  }
}

function uintValue(key: string, value: string, base: 8 | 10): number {
  try {
    return parseGoUint(value, base, 32);
  } catch (err) {
    if (err instanceof ValueError) throw new ParseFailure(`invalid value ${value} for ${key}`);
    throw err;
  }
}

function emptyMount(): Mount {
  return {
    type: "bind",
    from: "",
    source: "",
    target: "",
    readOnly: false,
    sizeLimit: 0,
    cacheId: "",
    cacheSharing: undefined,
    required: false,
    env: undefined,
    mode: undefined,
    uid: undefined,
    gid: undefined,
  };
}

/**
 * Parses one `--mount` value. Every value goes through `expand` first. Without `expand` only the
 * checks BuildKit makes before expansion run (CSV syntax, no variables in `from`), and the result
 * is not meaningful.
 */
export function parseMount(spec: string, expand?: WordExpander): Mount {
  const m = emptyMount();
  let roAuto = true;
  for (const field of csv(spec, "mounts")) {
    const { key, ok } = cut(field);
    let { value } = cut(field);
    if (!ok) {
      if (expand === undefined) continue;
      switch (key) {
        case "readonly":
        case "ro":
          m.readOnly = true;
          roAuto = false;
          continue;
        case "readwrite":
        case "rw":
          m.readOnly = false;
          roAuto = false;
          continue;
        case "required":
          if (m.type === "secret" || m.type === "ssh") {
            m.required = true;
            continue;
          }
          throw new ParseFailure(`unexpected key '${key}' for mount type '${m.type}'`);
        default:
          throw new ParseFailure(`invalid field '${field}' must be a key=value pair`);
      }
    }
    if (expand !== undefined) {
      value = expand(value);
    } else {
      if (key === "from") {
        const i = value.indexOf("$");
        if (i !== -1 && i !== value.length - 1) {
          throw new ParseFailure(`'${key}' doesn't support variable expansion, define alias stage instead`);
        }
      }
      continue;
    }
    switch (key) {
      case "type": {
        const v = value.toLowerCase() as MountType;
        if (!mountTypes.includes(v)) throw new ParseFailure(withSuggestion(`unsupported mount type ${goQuote(value)}`, value, mountTypes, true));
        m.type = v;
        break;
      }
      case "from":
        m.from = value;
        break;
      case "source":
      case "src":
        m.source = value;
        break;
      case "target":
      case "dst":
      case "destination":
        m.target = value;
        break;
      case "readonly":
      case "ro":
        m.readOnly = boolValue(key, value);
        roAuto = false;
        break;
      case "readwrite":
      case "rw":
        m.readOnly = !boolValue(key, value);
        roAuto = false;
        break;
      case "required":
        if (m.type !== "secret" && m.type !== "ssh") throw new ParseFailure(`unexpected key '${key}' for mount type '${m.type}'`);
        m.required = boolValue(key, value);
        break;
      case "size":
        if (m.type !== "tmpfs") throw new ParseFailure(`unexpected key '${key}' for mount type '${m.type}'`);
        try {
          m.sizeLimit = parseRAMInBytes(value);
        } catch (err) {
          if (err instanceof ValueError) throw new ParseFailure(`invalid value for ${key}: ${value}`);
          throw err;
        }
        break;
      case "id":
        m.cacheId = value;
        break;
      case "sharing": {
        const v = value.toLowerCase() as ShareMode;
        if (!shareModes.includes(v)) throw new ParseFailure(withSuggestion(`unsupported sharing value ${goQuote(value)}`, value, shareModes, true));
        m.cacheSharing = v;
        break;
      }
      case "mode":
        m.mode = uintValue("mode", value, 8);
        break;
      case "uid":
        m.uid = uintValue("uid", value, 10);
        break;
      case "gid":
        m.gid = uintValue("gid", value, 10);
        break;
      case "env":
        m.env = value;
        break;
      default:
        throw new ParseFailure(withSuggestion(`unexpected key '${key}' in '${field}'`, key, mountKeys, true));
    }
  }

  const fileInfoAllowed = m.type === "secret" || m.type === "ssh" || m.type === "cache";
  if (!fileInfoAllowed) {
    if (m.mode !== undefined) throw new ParseFailure(`mode not allowed for ${goQuote(m.type)} type mounts`);
    if (m.uid !== undefined) throw new ParseFailure(`uid not allowed for ${goQuote(m.type)} type mounts`);
    if (m.gid !== undefined) throw new ParseFailure(`gid not allowed for ${goQuote(m.type)} type mounts`);
  }
  // Without an explicit ro/rw, only scratch-like mounts (cache, tmpfs) are writable.
  if (roAuto) m.readOnly = !(m.type === "cache" || m.type === "tmpfs");
  if (m.type === "secret") {
    if (m.from !== "") throw new ParseFailure("secret mount should not have a from");
    if (m.cacheSharing !== undefined) throw new ParseFailure("secret mount should not define sharing");
    if (m.source === "" && m.target === "" && m.cacheId === "") throw new ParseFailure("invalid secret mount. one of source, target required");
    if (m.source !== "" && m.cacheId !== "") throw new ParseFailure("both source and id can't be set");
  }
  if (m.cacheSharing !== undefined && m.type !== "cache") throw new ParseFailure(`invalid cache sharing set for ${m.type} mount`);
  return m;
}

/** Parses one `--device` value: `name[,required[=bool]]` or `name=...,required=...`. */
export function parseDevice(spec: string): Device {
  const d: Device = { name: "", required: false };
  for (const field of csv(spec, "devices")) {
    const { key, value, ok } = cut(field);
    if (!ok) {
      if (key === "required") {
        d.required = true;
        continue;
      }
      if (d.name === "") {
        d.name = field;
        continue;
      }
      throw new ParseFailure(`invalid field '${field}' must be a key=value pair`);
    }
    switch (key) {
      case "name":
        if (d.name !== "") throw new ParseFailure(`device name already set to ${d.name}`);
        d.name = value;
        break;
      case "required":
        d.required = boolValue(key, value);
        break;
      default:
        // CDI names may contain `=`; an unknown key is the name when none was given yet.
        if (d.name === "") {
          d.name = field;
          break;
        }
        throw new ParseFailure(withSuggestion(`unexpected key '${key}' in '${field}'`, key, ["name", "required"], true));
    }
  }
  return d;
}
