// Opens the SQLite journal (WAL), applies pragmas and runs schema migrations in order.
import Database from 'better-sqlite3';
import { mkdirSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { MIGRATIONS } from './migrations.js';

export type Db = Database.Database;

export class StateDirError extends Error {}

/**
 * Opens (creating if needed) the journal at `file`. WAL keeps readers off the writer's back and lets several
 * processes share one file; `synchronous=NORMAL` in WAL mode still never corrupts the database on a crash
 * of the process — only an OS crash can lose the last transactions, which is the trade every Jupyter-like tool makes.
 */
export function openDatabase(file: string, options: { durableCommits?: boolean } = {}): Db {
  try {
    mkdirSync(dirname(file), { recursive: true });
  } catch (error) {
    throw new StateDirError(`cannot create the state directory ${dirname(file)}: ${(error as Error).message}. Choose a writable one with --state-dir.`);
  }
  let db: Db;
  try {
    db = new Database(file);
    db.pragma('journal_mode = WAL');
  } catch (error) {
    throw new StateDirError(`cannot open the state database ${file}: ${(error as Error).message}. ${whatToDo(dirname(file))}`);
  }
  db.pragma(`synchronous = ${options.durableCommits ? 'FULL' : 'NORMAL'}`);
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  try {
    migrate(db);
  } catch (error) {
    db.close();
    if (error instanceof StateDirError) throw error;
    throw new StateDirError(`cannot prepare the state database ${file}: ${(error as Error).message}. ${whatToDo(dirname(file))}`);
  }
  return db;
}

/**
 * SQLite reports a full disk met while opening (the WAL index cannot be sized) as a mere "disk I/O error": the
 * file system says which it is.
 */
function whatToDo(stateDir: string): string {
  try {
    if (statfsSync(stateDir).bavail === 0) return `The disk holding the state directory ${stateDir} is full: free some space there (or pass another --state-dir) and start again.`;
  } catch {
    // No answer from the file system: fall back to the general advice.
  }
  return 'Check that the state directory is writable (or pass --state-dir).';
}

function migrate(db: Db): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
  const applied = new Set(db.prepare('SELECT version FROM schema_migrations').pluck().all() as number[]);
  const newest = Math.max(0, ...applied);
  const known = MIGRATIONS.length;
  if (newest > known) {
    throw new StateDirError(`the state database was written by a newer mcp-server-jupyter (schema ${newest}, this one knows ${known}). Upgrade, or use another --state-dir.`);
  }
  MIGRATIONS.forEach((sql, index) => {
    const version = index + 1;
    if (applied.has(version)) return;
    db.transaction(() => {
      db.exec(sql);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(version, Date.now());
    }).immediate();
  });
}
