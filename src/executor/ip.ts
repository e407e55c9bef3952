// IP address text as Go prints it: net.IP.String() (extra hosts) and netip.Addr.String() (resolv.conf).
import { isIP } from "node:net";

interface ParsedIP {
  /** 4 bytes for IPv4, 16 for IPv6. */
  bytes: number[];
  zone: string;
}

export function parseIP(text: string): ParsedIP | undefined {
  const pct = text.indexOf("%");
  const addr = pct >= 0 ? text.slice(0, pct) : text;
  const zone = pct >= 0 ? text.slice(pct + 1) : "";
  const kind = isIP(addr);
  if (kind === 4 && zone === "") return { bytes: addr.split(".").map(Number), zone };
  if (kind !== 6 || (pct >= 0 && zone === "")) return undefined;
  let tail: number[] = [];
  let body = addr;
  const lastColon = addr.lastIndexOf(":");
  if (addr.slice(lastColon + 1).includes(".")) {
    tail = addr.slice(lastColon + 1).split(".").map(Number);
    body = addr.slice(0, lastColon + 1) + "0:0";
  }
  const [head = "", rest] = body.split("::");
  const hs = head === "" ? [] : head.split(":");
  const rs = rest === undefined || rest === "" ? [] : rest.split(":");
  const groups = [...hs, ...Array<string>(8 - hs.length - rs.length).fill("0"), ...rs].map((g) => parseInt(g, 16));
  const bytes = groups.flatMap((g) => [g >> 8, g & 0xff]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return { bytes, zone };
}

function isV4Mapped(b: number[]): boolean {
  return b.length === 16 && b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
}

function v6Text(b: number[]): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!);
  // RFC 5952: collapse the longest run (first on ties) of two or more zero groups.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** Go's net.IP.String(): IPv4-mapped IPv6 prints as plain IPv4. */
export function goNetIPString(p: ParsedIP): string {
  if (p.bytes.length === 4) return p.bytes.join(".");
  if (isV4Mapped(p.bytes)) return p.bytes.slice(12).join(".");
  return v6Text(p.bytes);
}

/** Go's netip.Addr.String(): IPv4-mapped keeps its "::ffff:" prefix; zones are kept. */
export function goNetipString(p: ParsedIP): string {
  const zone = p.zone ? `%${p.zone}` : "";
  if (p.bytes.length === 4) return p.bytes.join(".");
  if (isV4Mapped(p.bytes)) return `::ffff:${p.bytes.slice(12).join(".")}${zone}`;
  return v6Text(p.bytes) + zone;
}

/** netip.Addr.IsLoopback: 127/8 (also when IPv4-mapped) and ::1. */
export function isLoopback(p: ParsedIP): boolean {
  if (p.bytes.length === 4) return p.bytes[0] === 127;
  if (isV4Mapped(p.bytes)) return p.bytes[12] === 127;
  return p.bytes.slice(0, 15).every((x) => x === 0) && p.bytes[15] === 1;
}
