// Byte order of UTF-8 strings without encoding them: listings compare every path with its
// neighbours, and a Buffer per comparison cost more than the rest of a 5,000-entry listing.
// Below U+D800, UTF-16 code units sort as code points, hence as UTF-8 bytes; a difference at a
// surrogate or beyond falls back to the bytes themselves.

const surrogates = 0xd800;

/** Compares as Go compares the strings' bytes (the sign only is meaningful). */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= surrogates || y >= surrogates) return Buffer.compare(Buffer.from(a), Buffer.from(b));
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

const slash = 0x2f;

/** fsutil's ComparePath: byte order in which `/` sorts before everything. */
export function comparePath(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= surrogates || y >= surrogates) return comparePathBytes(Buffer.from(a), Buffer.from(b));
    return (y !== slash && x < y) || x === slash ? -1 : 1;
  }
  return a.length - b.length;
}

function comparePathBytes(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] === b[i]) continue;
    if ((b[i] !== slash && a[i]! < b[i]!) || a[i] === slash) return -1;
    return 1;
  }
  return a.length - b.length;
}
