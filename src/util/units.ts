// Sizes and durations the way BuildKit's config and CLI read and print them: docker/go-units'
// RAMInBytes (binary multiples: "10GB" = 10 GiB), percentages of a disk, Go's time.ParseDuration,
// and tonistiigi/units' "%.2f" byte formatting (decimal: 1234 → "1.23kB").

/** A size as configured: bytes, or a percentage of the filesystem holding the root. */
export interface DiskSpace {
  bytes: number;
  percentage: number;
  /** An upper bound on what a percentage comes to (BuildKit's defaults cap theirs). */
  capBytes?: number;
}

const binaryUnits: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/**
 * docker/go-units RAMInBytes: a number (Go's ParseFloat syntax), an optional space, then an
 * optional suffix b, K, KB, KiB, M, MB, MiB… (any case; every multiple binary, "10GB" = 10 GiB).
 */
export function ramInBytes(text: string): number {
  let sep = -1;
  for (let i = text.length - 1; i >= 0; i--) {
    if ("0123456789. ".includes(text[i]!)) {
      sep = i;
      break;
    }
  }
  if (sep === -1) throw new Error(`invalid size: '${text}'`);
  const num = text[sep] === " " ? text.slice(0, sep) : text.slice(0, sep + 1);
  const sfx = text.slice(sep + 1).toLowerCase();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(num)) throw new Error(`invalid size: '${text}'`);
  let size = Number(num);
  if (size < 0) throw new Error(`invalid size: '${text}'`);
  if (sfx === "") return Math.trunc(size);
  const bad = () => new Error(`invalid suffix: '${sfx}'`);
  if (sfx.length > 3) throw bad();
  if (sfx[0] === "b") {
    if (sfx.length > 1) throw bad();
    return Math.trunc(size);
  }
  const mul = binaryUnits[sfx[0]!];
  if (mul === undefined) throw bad();
  if ((sfx.length === 2 && sfx[1] !== "b") || (sfx.length === 3 && sfx.slice(1) !== "ib")) throw bad();
  size *= mul;
  return Math.trunc(size);
}

/** A TOML value for a disk-space key: an integer (bytes), "10GB", or "90%". */
export function parseDiskSpace(v: unknown): DiskSpace {
  if (typeof v === "number" || typeof v === "bigint") return { bytes: Number(v), percentage: 0 };
  if (typeof v !== "string") throw new Error(`invalid disk space ${JSON.stringify(v)}`);
  const text = v.replace(/^"(.*)"$/, "$1").trim();
  if (text === "") return { bytes: 0, percentage: 0 };
  if (text.endsWith("%")) {
    const digits = text.slice(0, -1);
    if (!/^[+-]?\d+$/.test(digits)) throw new Error(`invalid disk space ${text}`);
    return { bytes: 0, percentage: Number(digits) };
  }
  try {
    return { bytes: ramInBytes(text), percentage: 0 };
  } catch {
    throw new Error(`invalid disk space ${text}`);
  }
}

/** Bytes of a DiskSpace on a filesystem of `total` bytes, rounded up to whole GB as BuildKit does. */
export function diskSpaceBytes(d: DiskSpace, total: number): number {
  if (d.bytes !== 0) return d.bytes;
  if (d.percentage === 0) return 0;
  if (total === 0) return 2e9;
  const avail = Math.floor((total * d.percentage) / 100);
  const bytes = (Math.floor(avail / 2 ** 30) + 1) * 1e9;
  return d.capBytes !== undefined ? Math.min(bytes, d.capBytes) : bytes;
}

const durationUnits: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, "μs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go's time.ParseDuration, in milliseconds: "48h", "1h30m", "1.5s", "-2m". */
export function parseGoDuration(text: string): number {
  let s = text.trim();
  if (s === "0") return 0;
  let sign = 1;
  if (s.startsWith("-") || s.startsWith("+")) {
    if (s[0] === "-") sign = -1;
    s = s.slice(1);
  }
  if (s === "") throw new Error(`time: invalid duration "${text}"`);
  let total = 0;
  const re = /^(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (s.length > 0) {
    const m = re.exec(s);
    if (!m) throw new Error(`time: invalid duration "${text}"`);
    total += parseFloat(m[1]!) * durationUnits[m[2]!]!;
    s = s.slice(m[0].length);
  }
  return sign * total;
}

/** A config duration: a Go duration string, or a number of seconds. */
export function parseConfigDuration(v: unknown): number {
  if (typeof v === "number") return v * 1000;
  if (typeof v !== "string") throw new Error(`invalid duration ${JSON.stringify(v)}`);
  const text = v.replace(/^"(.*)"$/, "$1").trim();
  if (text === "") return 0;
  if (/^-?\d+$/.test(text)) return Number(text) * 1000;
  return parseGoDuration(text);
}

const decimalUnits = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];

/** tonistiigi/units Bytes with "%.2f": whole bytes below 1 kB, else two decimals and a unit. */
export function formatBytes(n: number): string {
  if (Math.abs(n) < 1000) return `${Math.trunc(n)}B`;
  let i = 0;
  let base = 1;
  while (Math.abs(n) >= base * 1000 && i < decimalUnits.length - 1) {
    base *= 1000;
    i++;
  }
  return `${(n / base).toFixed(2)}${decimalUnits[i]}`;
}
