// Asset leases in SQLite: which notebook an asset was written for and until when it must be kept.
import type { Db } from './db.js';

export interface LeaseRow {
  /** Workspace-relative, `/`-separated, e.g. `reports/assets/0123456789abcdef.png`. */
  assetPath: string;
  /** Workspace-relative notebook the asset was first written for. */
  notebookPath: string;
  executionId: string | null;
  bytes: number;
  sha256: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  expiresAt: number;
}

interface RawLease {
  asset_path: string;
  notebook_path: string;
  execution_id: string | null;
  bytes: number;
  sha256: string;
  created_at: number;
  expires_at: number;
}

function fromRaw(raw: RawLease): LeaseRow {
  return {
    assetPath: raw.asset_path,
    notebookPath: raw.notebook_path,
    executionId: raw.execution_id,
    bytes: raw.bytes,
    sha256: raw.sha256,
    createdAt: raw.created_at,
    expiresAt: raw.expires_at,
  };
}

/** `LIKE` treats `%` and `_` as wildcards; folder names may contain them. */
function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * Leases only ever grow: renewing never moves an expiry earlier, so a short renewal by one caller cannot
 * undo a longer one by another (assets are never lost to a race between renewals).
 */
export class LeaseTable {
  private readonly getStatement;
  private readonly upsertStatement;
  private readonly extendStatement;
  private readonly extendForNotebookStatement;
  private readonly forNotebookStatement;
  private readonly underPrefixStatement;
  private readonly removeStatement;
  private readonly removeIfExpiredStatement;

  constructor(db: Db) {
    this.getStatement = db.prepare('SELECT * FROM asset_leases WHERE asset_path = ?');
    // A second save of the same content keeps the first owner and creation time and only extends the lease.
    this.upsertStatement = db.prepare(`INSERT INTO asset_leases
      (asset_path, notebook_path, execution_id, bytes, sha256, created_at, expires_at)
      VALUES (@assetPath, @notebookPath, @executionId, @bytes, @sha256, @createdAt, @expiresAt)
      ON CONFLICT (asset_path) DO UPDATE SET
        bytes = excluded.bytes, sha256 = excluded.sha256, expires_at = MAX(expires_at, excluded.expires_at)`);
    this.extendStatement = db.prepare('UPDATE asset_leases SET expires_at = MAX(expires_at, ?) WHERE asset_path = ?');
    this.extendForNotebookStatement = db.prepare('UPDATE asset_leases SET expires_at = MAX(expires_at, ?) WHERE notebook_path = ?');
    this.forNotebookStatement = db.prepare('SELECT * FROM asset_leases WHERE notebook_path = ? ORDER BY asset_path');
    this.underPrefixStatement = db.prepare(`SELECT * FROM asset_leases WHERE asset_path LIKE ? ESCAPE '\\' ORDER BY asset_path`);
    this.removeStatement = db.prepare('DELETE FROM asset_leases WHERE asset_path = ?');
    this.removeIfExpiredStatement = db.prepare('DELETE FROM asset_leases WHERE asset_path = ? AND expires_at <= ?');
  }

  get(assetPath: string): LeaseRow | undefined {
    const raw = this.getStatement.get(assetPath) as RawLease | undefined;
    return raw ? fromRaw(raw) : undefined;
  }

  /** Records a newly written asset, or extends the lease of one already recorded. */
  record(row: LeaseRow): void {
    this.upsertStatement.run(row);
  }

  /** Moves the expiry to `expiresAt` unless it is already later. */
  extend(assetPath: string, expiresAt: number): void {
    this.extendStatement.run(expiresAt, assetPath);
  }

  /** Extends every lease owned by the notebook; answers how many there were. */
  extendForNotebook(notebookPath: string, expiresAt: number): number {
    return this.extendForNotebookStatement.run(expiresAt, notebookPath).changes;
  }

  forNotebook(notebookPath: string): LeaseRow[] {
    return (this.forNotebookStatement.all(notebookPath) as RawLease[]).map(fromRaw);
  }

  /** Leases whose asset path starts with `prefix` (e.g. `reports/assets/`), deeper folders included. */
  underPrefix(prefix: string): LeaseRow[] {
    return (this.underPrefixStatement.all(likePrefix(prefix)) as RawLease[]).map(fromRaw);
  }

  remove(assetPath: string): void {
    this.removeStatement.run(assetPath);
  }

  /**
   * Deletes the lease only if it is still expired at `now`, in one statement, so a renewal that landed after
   * the caller looked is honoured. True when the lease was removed (the caller may then delete the file).
   */
  removeIfExpired(assetPath: string, now: number): boolean {
    return this.removeIfExpiredStatement.run(assetPath, now).changes === 1;
  }
}
