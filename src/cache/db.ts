// The metadata database: refs, their layer blobs, and cache keys. SQLite in WAL mode, so a
// crash at any moment leaves either the old or the new state, never half of a record.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import path from "node:path";

export interface RefRecord {
  id: string;
  parent: string | null;
  createdAt: number;
  lastUsedAt: number;
  description: string;
  /** Bytes the snapshot's own changes use on disk, once known. */
  size: number | null;
  /** The compressed layer blob for this ref's diff, once one exists. */
  blobDigest: string | null;
  blobMediaType: string | null;
  blobSize: number | null;
  diffId: string | null;
  /** Extra JSON (annotations, source image, etc.). */
  meta: string | null;
  /** BuildKit's record type: regular, source.local, exec.cachemount, frontend, internal… */
  recordType: string;
  usageCount: number;
  /**
   * A lazy ref: its layer is known only as its blob (digest, media type, diffID), with no
   * snapshot on disk yet; it is extracted the first time something mounts it.
   */
  lazy?: boolean;
}

interface RefRow {
  id: string;
  parent: string | null;
  created_at: number;
  last_used_at: number;
  description: string;
  size: number | null;
  blob_digest: string | null;
  blob_media_type: string | null;
  blob_size: number | null;
  diff_id: string | null;
  meta: string | null;
  record_type: string | null;
  usage_count: number | null;
  lazy: number | null;
}

function toRecord(r: RefRow): RefRecord {
  return {
    id: r.id,
    parent: r.parent,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
    description: r.description,
    size: r.size,
    blobDigest: r.blob_digest,
    blobMediaType: r.blob_media_type,
    blobSize: r.blob_size,
    diffId: r.diff_id,
    meta: r.meta,
    recordType: r.record_type ?? "regular",
    usageCount: r.usage_count ?? 0,
    lazy: r.lazy === 1,
  };
}

/** A live process's claim on refs and snapshots, so recovery and GC in other processes spare them. */
export interface LeaseRecord {
  id: string;
  pid: number;
  start: string;
  createdAt: number;
}

export class MetadataDB {
  private readonly db: Database.Database;

  constructor(file: string) {
    // Opening happens once at start-up, before any build runs, so a sync mkdir is fine here.
    mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("busy_timeout = 10000");
    this.db.pragma("foreign_keys = ON");
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS refs (
        id TEXT PRIMARY KEY,
        parent TEXT REFERENCES refs(id),
        created_at INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        size INTEGER,
        blob_digest TEXT,
        blob_media_type TEXT,
        blob_size INTEGER,
        diff_id TEXT,
        meta TEXT
      );
      CREATE INDEX IF NOT EXISTS refs_parent ON refs(parent);
      CREATE INDEX IF NOT EXISTS refs_blob ON refs(blob_digest);
      CREATE TABLE IF NOT EXISTS cache_keys (
        key TEXT NOT NULL,
        output INTEGER NOT NULL,
        ref TEXT NOT NULL REFERENCES refs(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (key, output)
      );
      CREATE INDEX IF NOT EXISTS cache_keys_ref ON cache_keys(ref);
      CREATE TABLE IF NOT EXISTS leases (
        id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        start TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS lease_resources (
        lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (lease, kind, id)
      );
      CREATE INDEX IF NOT EXISTS lease_resources_id ON lease_resources(kind, id);
      -- Bytes a process is about to commit, counted against the cap until its ref row exists.
      CREATE TABLE IF NOT EXISTS reservations (
        id TEXT PRIMARY KEY,
        lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
        bytes INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS kv (
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (bucket, key)
      );
    `);
    this.migrate();
  }

  private migrate(): void {
    const cols = new Set((this.db.prepare("PRAGMA table_info(refs)").all() as { name: string }[]).map((c) => c.name));
    if (!cols.has("record_type")) this.db.exec("ALTER TABLE refs ADD COLUMN record_type TEXT");
    if (!cols.has("usage_count")) this.db.exec("ALTER TABLE refs ADD COLUMN usage_count INTEGER");
    if (!cols.has("lazy")) this.db.exec("ALTER TABLE refs ADD COLUMN lazy INTEGER");
  }

  getRef(id: string): RefRecord | undefined {
    const row = this.db.prepare("SELECT * FROM refs WHERE id = ?").get(id) as RefRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  allRefs(): RefRecord[] {
    return (this.db.prepare("SELECT * FROM refs").all() as RefRow[]).map(toRecord);
  }

  insertRef(rec: RefRecord): void {
    this.db
      .prepare(
        `INSERT INTO refs (id, parent, created_at, last_used_at, description, size, blob_digest, blob_media_type, blob_size, diff_id, meta, record_type, usage_count, lazy)
         VALUES (@id, @parent, @createdAt, @lastUsedAt, @description, @size, @blobDigest, @blobMediaType, @blobSize, @diffId, @meta, @recordType, @usageCount, @lazy)`,
      )
      .run({ ...rec, lazy: rec.lazy ? 1 : 0 });
  }

  updateRef(id: string, fields: Partial<Omit<RefRecord, "id">>): void {
    const cols: Record<string, string> = {
      parent: "parent",
      createdAt: "created_at",
      lastUsedAt: "last_used_at",
      description: "description",
      size: "size",
      blobDigest: "blob_digest",
      blobMediaType: "blob_media_type",
      blobSize: "blob_size",
      diffId: "diff_id",
      meta: "meta",
      recordType: "record_type",
      usageCount: "usage_count",
      lazy: "lazy",
    };
    const keys = Object.keys(fields).filter((k) => k in cols);
    if (keys.length === 0) return;
    const sql = `UPDATE refs SET ${keys.map((k) => `${cols[k]} = @${k}`).join(", ")} WHERE id = @id`;
    this.db.prepare(sql).run({ ...fields, ...(fields.lazy !== undefined ? { lazy: fields.lazy ? 1 : 0 } : {}), id });
  }

  deleteRef(id: string): void {
    this.db.prepare("DELETE FROM refs WHERE id = ?").run(id);
  }

  childrenOf(id: string): string[] {
    return (this.db.prepare("SELECT id FROM refs WHERE parent = ?").all(id) as { id: string }[]).map((r) => r.id);
  }

  /** A ref with this layer blob on this parent; an extracted one before a lazy one. */
  findByBlob(blobDigest: string, parent: string | null): RefRecord | undefined {
    const row = (parent === null
      ? this.db.prepare("SELECT * FROM refs WHERE blob_digest = ? AND parent IS NULL ORDER BY COALESCE(lazy, 0) LIMIT 1").get(blobDigest)
      : this.db.prepare("SELECT * FROM refs WHERE blob_digest = ? AND parent = ? ORDER BY COALESCE(lazy, 0) LIMIT 1").get(blobDigest, parent)) as RefRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  lookupCache(key: string, outputs: number): string[] | undefined {
    const rows = this.db.prepare("SELECT output, ref FROM cache_keys WHERE key = ?").all(key) as { output: number; ref: string }[];
    const byOutput = new Map(rows.map((r) => [r.output, r.ref]));
    const refs: string[] = [];
    for (let i = 0; i < outputs; i++) {
      const ref = byOutput.get(i);
      if (ref === undefined) return undefined;
      refs.push(ref);
    }
    return refs;
  }

  saveCache(key: string, refs: string[]): void {
    const now = Date.now();
    const stmt = this.db.prepare("INSERT OR REPLACE INTO cache_keys (key, output, ref, created_at) VALUES (?, ?, ?, ?)");
    this.db.transaction(() => refs.forEach((ref, i) => stmt.run(key, i, ref, now)))();
  }

  touchRefs(ids: string[]): void {
    const now = Date.now();
    const stmt = this.db.prepare("UPDATE refs SET last_used_at = ?, usage_count = COALESCE(usage_count, 0) + 1 WHERE id = ?");
    this.db.transaction(() => ids.forEach((id) => stmt.run(now, id)))();
  }

  /** Deletes every key of a bucket that starts with `prefix`. */
  deleteKVPrefix(bucket: string, prefix: string): void {
    this.db.prepare("DELETE FROM kv WHERE bucket = ? AND substr(key, 1, ?) = ?").run(bucket, prefix.length, prefix);
  }

  deleteKV(bucket: string, key: string): void {
    this.db.prepare("DELETE FROM kv WHERE bucket = ? AND key = ?").run(bucket, key);
  }

  // Leases.

  insertLease(l: LeaseRecord): void {
    this.db.prepare("INSERT INTO leases (id, pid, start, created_at) VALUES (@id, @pid, @start, @createdAt)").run(l);
  }

  allLeases(): LeaseRecord[] {
    return (this.db.prepare("SELECT id, pid, start, created_at AS createdAt FROM leases").all() as LeaseRecord[]).map((l) => ({ ...l }));
  }

  /** Drops a lease (its resources and reservations go with it). */
  deleteLease(id: string): void {
    this.db.prepare("DELETE FROM leases WHERE id = ?").run(id);
  }

  /**
   * Drops the lease of a process that died: what it held is free, and whatever it left half-made
   * on disk needs the next start's full recovery scan, so the root is marked unclean.
   */
  reapLease(id: string): void {
    this.transaction(() => {
      if (this.db.prepare("DELETE FROM leases WHERE id = ?").run(id).changes > 0) this.markUnclean();
    });
  }

  /** Recovery's bookkeeping: a counter bumped whenever a crash is noticed, and whether the last full scan saw the latest one. */
  markUnclean(): void {
    const epoch = Number(this.getKV("recovery", "epoch") ?? "0") + 1;
    this.setKV("recovery", "epoch", String(epoch));
    this.setKV("recovery", "clean", "0");
  }

  recoveryEpoch(): number {
    return Number(this.getKV("recovery", "epoch") ?? "0");
  }

  /** Marks the root clean unless a crash was noticed since the scan started (at `epoch`). */
  markClean(epoch: number): void {
    this.transaction(() => {
      if (this.recoveryEpoch() === epoch) this.setKV("recovery", "clean", "1");
    });
  }

  isClean(): boolean {
    return this.getKV("recovery", "clean") === "1";
  }

  addLeaseResource(lease: string, kind: string, id: string): void {
    this.db.prepare("INSERT OR IGNORE INTO lease_resources (lease, kind, id) VALUES (?, ?, ?)").run(lease, kind, id);
  }

  removeLeaseResource(lease: string, kind: string, id: string): void {
    this.db.prepare("DELETE FROM lease_resources WHERE lease = ? AND kind = ? AND id = ?").run(lease, kind, id);
  }

  /** Resource ids of a kind held by the given leases. */
  leasedIds(kind: string, leases: string[]): Set<string> {
    if (leases.length === 0) return new Set();
    const rows = this.db.prepare(`SELECT id FROM lease_resources WHERE kind = ? AND lease IN (${leases.map(() => "?").join(",")})`).all(kind, ...leases) as { id: string }[];
    return new Set(rows.map((r) => r.id));
  }

  /** Whether a ref (or its snapshot) is held by a lease other than the given dead ones. */
  isLeased(id: string, deadLeases: string[]): boolean {
    const row = this.db
      .prepare(`SELECT 1 FROM lease_resources WHERE kind IN ('ref', 'snapshot') AND id = ? ${deadLeases.length ? `AND lease NOT IN (${deadLeases.map(() => "?").join(",")})` : ""} LIMIT 1`)
      .get(id, ...deadLeases);
    return row !== undefined;
  }

  /**
   * Claims the extraction of lazy ref `id` for `lease`: "done" when it is extracted already (or
   * gone), "busy" (and by whom) while another lease extracts it. One write transaction, so two processes
   * sharing the root never unpack into the same snapshot.
   */
  claimExtraction(id: string, lease: string): { state: "claimed" } | { state: "done" } | { state: "busy"; holder: LeaseRecord } {
    return this.transaction(() => {
      const row = this.db.prepare("SELECT lazy FROM refs WHERE id = ?").get(id) as { lazy: number | null } | undefined;
      if (!row || row.lazy !== 1) return { state: "done" as const };
      const holder = this.db
        .prepare("SELECT l.id, l.pid, l.start, l.created_at AS createdAt FROM lease_resources r JOIN leases l ON l.id = r.lease WHERE r.kind = 'extract' AND r.id = ? AND r.lease != ? LIMIT 1")
        .get(id, lease) as LeaseRecord | undefined;
      if (holder) return { state: "busy" as const, holder: { ...holder } };
      this.addLeaseResource(lease, "extract", id);
      return { state: "claimed" as const };
    });
  }

  /** Records that lazy ref `id` now has its snapshot, of `size` bytes (its reservation becomes the row's size). */
  markExtracted(id: string, size: number): void {
    this.transaction(() => {
      this.db.prepare("UPDATE refs SET lazy = 0, size = ? WHERE id = ?").run(size, id);
      this.releaseReservation(id);
    });
  }

  /** Whether any ref still uses this layer blob. */
  blobInUse(digest: string): boolean {
    return this.db.prepare("SELECT 1 FROM refs WHERE blob_digest = ? LIMIT 1").get(digest) !== undefined;
  }

  // Space accounting.

  /**
   * Bytes counted against the cap: committed snapshots, their layer blobs (each once), cache
   * mounts (as last measured) and every live reservation. Cheap: one query, no disk walk.
   */
  accountedBytes(): number {
    const row = this.db
      .prepare(
        `SELECT
           (SELECT COALESCE(SUM(size), 0) FROM refs) +
           (SELECT COALESCE(SUM(s), 0) FROM (SELECT MAX(blob_size) AS s FROM refs WHERE blob_digest IS NOT NULL GROUP BY blob_digest)) +
           (SELECT COALESCE(SUM(CAST(value AS INTEGER)), 0) FROM kv WHERE bucket = 'cachemount.size') +
           (SELECT COALESCE(SUM(bytes), 0) FROM reservations) AS total`,
      )
      .get() as { total: number };
    return row.total;
  }

  /** Bytes reserved by every process for commits in progress. */
  reservedBytes(): number {
    return (this.db.prepare("SELECT COALESCE(SUM(bytes), 0) AS n FROM reservations").get() as { n: number }).n;
  }

  /**
   * Reserves `bytes` for the commit of ref `id` when `fits(accountedBytes)` says so (or always,
   * with `force`). One write transaction, so concurrent processes can't both take the last room.
   */
  tryReserve(id: string, lease: string, bytes: number, fits: (accounted: number) => boolean, force = false): boolean {
    return this.transaction(() => {
      if (!force && !fits(this.accountedBytes())) return false;
      this.db.prepare("INSERT OR REPLACE INTO reservations (id, lease, bytes) VALUES (?, ?, ?)").run(id, lease, bytes);
      return true;
    });
  }

  releaseReservation(id: string): void {
    this.db.prepare("DELETE FROM reservations WHERE id = ?").run(id);
  }

  /** Records a committed ref and drops its reservation, atomically (its bytes are counted once). */
  commitRef(rec: RefRecord): void {
    this.transaction(() => {
      this.insertRef(rec);
      this.releaseReservation(rec.id);
    });
  }

  /** Folds the write-ahead log into the database file (so its size on disk is the data's). */
  checkpoint(): void {
    this.db.pragma("wal_checkpoint(TRUNCATE)");
  }

  /** Runs `fn` in one transaction (all or nothing). */
  transaction<T>(fn: () => T): T {
    // IMMEDIATE: take the write lock up front, so a read-then-write can't race another process.
    return this.db.transaction(fn).immediate();
  }

  /** Bytes the database files take on disk (the WAL included). */
  get files(): string[] {
    const f = this.db.name;
    return [f, `${f}-wal`, `${f}-shm`];
  }

  getKV(bucket: string, key: string): string | undefined {
    const row = this.db.prepare("SELECT value FROM kv WHERE bucket = ? AND key = ?").get(bucket, key) as { value: string } | undefined;
    return row?.value;
  }

  setKV(bucket: string, key: string, value: string): void {
    this.db.prepare("INSERT OR REPLACE INTO kv (bucket, key, value) VALUES (?, ?, ?)").run(bucket, key, value);
  }

  close(): void {
    this.db.close();
  }
}
