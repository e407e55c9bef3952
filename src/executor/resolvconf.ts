// The container's /etc/resolv.conf: the host's file with BuildKit's overrides and its "legacy
// network" transform (util/resolvconf + executor/oci/resolvconf.go).
import { readFile } from "node:fs/promises";
import { KilnError } from "../util/index.js";
import type { NetworkMode } from "./types.js";
import { goNetipString, isLoopback, parseIP } from "./ip.js";

export interface DNSConfig {
  nameservers?: string[];
  search?: string[];
  options?: string[];
}

const DEFAULT_PATH = "/etc/resolv.conf";
/** What systemd-resolved writes with the real upstream servers, when /etc/resolv.conf only names its stub. */
const RESOLVED_PATH = "/run/systemd/resolve/resolv.conf";
const FALLBACK_NAMESERVERS = ["8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844"];

interface ResolvConf {
  nameservers: string[];
  nameserverLoopback: boolean[];
  search: string[];
  options: string[];
  other: string[];
}

export function parseResolvConf(text: string): ResolvConf {
  const rc: ResolvConf = { nameservers: [], nameserverLoopback: [], search: [], options: [], other: [] };
  for (const raw of text.split("\n")) {
    // bufio.ScanLines drops a trailing CR.
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line === "" || line[0] === "#" || line[0] === ";") continue;
    const fields = line.split(/[ \t\r\v\f]+/).filter((f) => f !== "");
    if (fields.length === 0) continue;
    const rest = fields.slice(1);
    switch (fields[0]) {
      case "nameserver": {
        const ip = rest[0] === undefined ? undefined : parseIP(rest[0]);
        // Unparseable addresses are dropped, as Go's netip refuses them.
        if (ip) {
          rc.nameservers.push(goNetipString(ip));
          rc.nameserverLoopback.push(isLoopback(ip));
        }
        break;
      }
      case "domain":
      case "search":
        if (rest.length > 0) rc.search = rest;
        break;
      case "options":
        rc.options.push(...rest);
        break;
      default:
        rc.other.push(line);
    }
  }
  return rc;
}

async function readOptional(p: string): Promise<string | undefined> {
  try {
    return await readFile(p, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Builds the file from the host's resolv.conf text(s); pure so it can be tested without touching /etc. */
export function buildResolvConf(host: string | undefined, network: NetworkMode, dns?: DNSConfig): string {
  const rc = parseResolvConf(host ?? "");
  let nsOverride = false;
  if (dns?.nameservers && dns.nameservers.length > 0) {
    nsOverride = true;
    rc.nameservers = [];
    rc.nameserverLoopback = [];
    for (const n of dns.nameservers) {
      const ip = parseIP(n);
      if (!ip) throw new KilnError("KILN_DNS", `bad nameserver address ${JSON.stringify(n)}`);
      rc.nameservers.push(goNetipString(ip));
      rc.nameserverLoopback.push(isLoopback(ip));
    }
  }
  if (dns?.search && dns.search.length > 0) rc.search = dns.search.filter((s) => s !== ".");
  if (dns?.options && dns.options.length > 0) rc.options = [...dns.options];

  // Host networking can reach a loopback resolver; every other mode gets its own netns where it
  // cannot. Explicitly configured servers are trusted as given.
  if ((network !== "host" || rc.nameservers.length === 0) && !nsOverride) {
    rc.nameservers = rc.nameservers.filter((_, i) => !rc.nameserverLoopback[i]);
    if (rc.nameservers.length === 0) rc.nameservers = [...FALLBACK_NAMESERVERS];
  }

  let out = "";
  for (const n of rc.nameservers) out += `nameserver ${n}\n`;
  if (rc.search.length > 0) out += `search ${rc.search.join(" ")}\n`;
  if (rc.options.length > 0) out += `options ${rc.options.join(" ")}\n`;
  for (const o of rc.other) out += `${o}\n`;
  return out;
}

/** Reads the host's resolver configuration and renders the container's. */
export async function resolvConfContent(network: NetworkMode, dns?: DNSConfig): Promise<string> {
  let source = DEFAULT_PATH;
  if (network !== "host") {
    const main = await readOptional(DEFAULT_PATH);
    const rc = parseResolvConf(main ?? "");
    if (rc.nameservers.length === 1 && rc.nameservers[0] === "127.0.0.53") source = RESOLVED_PATH;
    else return buildResolvConf(main, network, dns);
  }
  return buildResolvConf(await readOptional(source), network, dns);
}
