// What the chaos test reads back after the last server stopped: the journal, the notebooks, their assets, the runs log.
import Database from 'better-sqlite3';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { PythonOracle } from './python-oracle.js';

export interface JournalRow {
  seq: number;
  id: string;
  notebook_path: string;
  kind: string;
  state: string;
  msg_id: string | null;
  finished_at: number | null;
  status_text: string | null;
  outputs_note: string | null;
}

export interface LeaseEntry {
  asset_path: string;
  created_at: number;
}

export interface JournalSnapshot {
  integrity: string;
  rows: JournalRow[];
  /** Ids with more than one row. */
  duplicateIds: string[];
  leases: LeaseEntry[];
  /** Asset paths mentioned in stored outputs, status texts and notes, with the execution that mentions each. */
  assetMentions: Array<{ asset: string; executionId: string }>;
  /** Pids of every kernel the journal ever recorded (for clean-up). */
  kernelPids: number[];
}

const ASSET_MENTION = /assets\/[0-9a-f]{16,64}\.[a-z0-9]{1,10}/g;

/** Opens the state database read-only (the server must have stopped) and reads all the checks need. */
export function readJournal(workspace: string): JournalSnapshot {
  const db = new Database(path.join(workspace, '.mcp-jupyter', 'state.db'), { readonly: true, fileMustExist: true });
  try {
    const integrity = String(db.pragma('integrity_check', { simple: true }));
    const rows = db.prepare('SELECT seq, id, notebook_path, kind, state, msg_id, finished_at, status_text, outputs_note FROM execution_queue ORDER BY seq').all() as JournalRow[];
    const duplicateIds = db.prepare('SELECT id FROM execution_queue GROUP BY id HAVING COUNT(*) > 1').pluck().all() as string[];
    const leases = db.prepare('SELECT asset_path, created_at FROM asset_leases ORDER BY asset_path').all() as LeaseEntry[];
    const assetMentions: Array<{ asset: string; executionId: string }> = [];
    const scan = (text: string | null, executionId: string): void => {
      for (const match of (text ?? '').matchAll(ASSET_MENTION)) assetMentions.push({ asset: match[0], executionId });
    };
    for (const { execution_id, output } of db.prepare('SELECT execution_id, output FROM execution_outputs').iterate() as IterableIterator<{ execution_id: string; output: string }>) {
      scan(output, execution_id);
    }
    for (const row of rows) {
      scan(row.status_text, row.id);
      scan(row.outputs_note, row.id);
    }
    const kernelPids = (db.prepare('SELECT details FROM kernels').pluck().all() as string[])
      .map((details) => (JSON.parse(details) as { pid?: unknown }).pid)
      .filter((pid): pid is number => typeof pid === 'number');
    return { integrity, rows, duplicateIds, leases, assetMentions, kernelPids };
  } finally {
    db.close();
  }
}

/** Pids of the kernels the journal lists as live right now (read while the server runs: WAL lets a reader in). */
export function liveKernels(workspace: string): Array<{ notebook: string; pid: number }> {
  const file = path.join(workspace, '.mcp-jupyter', 'state.db');
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare("SELECT notebook_path, details FROM kernels WHERE state = 'live'").all() as Array<{ notebook_path: string; details: string }>;
    return rows.flatMap((row) => {
      const pid = (JSON.parse(row.details) as { pid?: unknown }).pid;
      return typeof pid === 'number' ? [{ notebook: row.notebook_path, pid }] : [];
    });
  } finally {
    db.close();
  }
}

/** Every notebook of the workspace, relative to it (the state directory left out). */
export function notebookFiles(workspace: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name === '.mcp-jupyter') continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ipynb')) found.push(path.relative(workspace, full));
    }
  };
  walk(workspace);
  return found.sort();
}

/** Each notebook that Python's nbformat cannot read or validate, with why (the oracle's root is the workspace). */
export async function invalidNotebooks(oracle: PythonOracle, notebooks: string[]): Promise<string[]> {
  const script = `
bad = []
for rel in json.loads(data):
    try:
        nb = nbformat.read(root + '/' + rel, as_version=4)
        nbformat.validate(nb)
    except Exception as error:
        bad.append(f'{rel}: {type(error).__name__}: {error}'[:600])
result = json.dumps(bad)
`;
  return JSON.parse(await oracle.run(script, JSON.stringify(notebooks))) as string[];
}

/** Asset paths (workspace-relative) a notebook on disk names: output metadata, and any mention in its text. */
export function notebookAssetReferences(workspace: string, notebook: string): string[] {
  const text = readFileSync(path.join(workspace, notebook), 'utf8');
  const folder = path.posix.dirname(notebook.split(path.sep).join('/'));
  const inFolder = (relative: string): string => (folder === '.' ? relative : `${folder}/${relative}`);
  const found = new Set<string>();
  const parsed = JSON.parse(text) as { cells?: Array<{ outputs?: Array<{ metadata?: { mcp_jupyter?: { asset?: unknown } } }> }> };
  for (const cell of parsed.cells ?? []) {
    for (const output of cell.outputs ?? []) {
      const asset = output.metadata?.mcp_jupyter?.asset;
      if (typeof asset === 'string') found.add(inFolder(asset));
    }
  }
  for (const match of text.matchAll(ASSET_MENTION)) found.add(inFolder(match[0]));
  return [...found];
}

/** The runs log the cells append to: one line per run, `<kernel request msg_id> <tag>`. */
export function readRunsLog(file: string): Array<{ msgId: string; tag: string }> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [msgId = '', tag = ''] = line.split(' ');
      return { msgId, tag };
    });
}

/**
 * Every asset named by a notebook on disk, the journal, a lease or a tool result that is not on disk. A lease without
 * its file is harmless only when a server was killed within `writeWindowMs` after recording it: the lease is written
 * first, then the file, so that a crash never leaves an unleased file behind.
 */
export function missingAssets(
  workspace: string,
  notebooks: string[],
  journal: JournalSnapshot,
  fromToolResults: Iterable<string>,
  serverKills: number[],
  writeWindowMs: number,
): string[] {
  const missing: string[] = [];
  const absent = (asset: string): boolean => !existsSync(path.join(workspace, asset));
  for (const notebook of notebooks) {
    for (const asset of notebookAssetReferences(workspace, notebook)) if (absent(asset)) missing.push(`${asset} (named by ${notebook})`);
  }
  for (const { asset, executionId } of journal.assetMentions) if (absent(asset)) missing.push(`${asset} (named in the journal by execution ${executionId})`);
  for (const asset of fromToolResults) if (absent(asset)) missing.push(`${asset} (named by a tool result)`);
  for (const lease of journal.leases) {
    if (!absent(lease.asset_path)) continue;
    const diedWriting = serverKills.some((killedAt) => killedAt >= lease.created_at && killedAt - lease.created_at <= writeWindowMs);
    if (!diedWriting) missing.push(`${lease.asset_path} (leased at ${new Date(lease.created_at).toISOString()}; no server was killed while it was written)`);
  }
  return missing;
}
