// A notebook's asset folder: content-named files kept under leases, read in bounded slices, deleted only by an explicit prune.
import { KeyedSerial } from '../util/keyed-serial.js';
import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { lstat, mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Db } from '../store/db.js';
import { LeaseTable, type LeaseRow } from '../store/leases.js';
import { writeFileAtomic } from './atomic-write.js';
import { realWorkspaceRoot, resolveWorkspacePath } from './paths.js';

/** A problem with an asset request; the message says what was wrong and what to do. */
export class AssetError extends Error {
  override readonly name = 'AssetError';
}

export const ASSETS_DIR = 'assets';
export const DEFAULT_LEASE_TTL_S = 24 * 60 * 60;
export const DEFAULT_READ_CHARS = 20_000;
const MAX_SEARCH_MATCHES = 200;
const MAX_MATCH_LINE_CHARS = 400;

const IMAGE_MIME: Readonly<Record<string, string>> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
};

export interface AssetStoreOptions {
  workspaceRoot: string;
  db: Db;
  /** Lease length for newly written assets and for renewals on notebook saves (default 24 h). */
  defaultTtlS?: number;
  /** Milliseconds since the epoch; injectable so tests can move past a lease. */
  now?: () => number;
}

export interface AssetInfo {
  /** Workspace-relative. */
  path: string;
  bytes: number;
  referenced: boolean;
  /** Workspace-relative notebooks in the same folder whose file on disk names this asset. */
  referencedBy: string[];
  leaseExpiresAt: string | null;
  createdByServer: boolean;
}

export interface UnreadableNotebook {
  path: string;
  reason: string;
}

export interface AssetInventory {
  /** The workspace-relative notebook the request named. */
  notebookPath: string;
  notebookExists: boolean;
  /** Workspace-relative asset folder, e.g. `reports/assets`. */
  folder: string;
  assets: AssetInfo[];
  /** Notebooks in the folder that could not be read, so references from them are unknown. */
  unreadableNotebooks: UnreadableNotebook[];
}

export interface ReadOptions {
  /** Character offset of a text slice (default 0). */
  offset?: number;
  /** Characters in a text slice (default 20,000). */
  length?: number;
  /** Case-insensitive text to look for; answers the matching lines instead of a slice. */
  search?: string;
  /** Upper bound on the characters of matching lines returned by a search (default 20,000). */
  maxChars?: number;
}

export interface SearchMatch {
  /** 1-based line number. */
  line: number;
  /** Character offset where the line starts: read from there to see its context. */
  offset: number;
  /** The line, cut around the first match when it is long. */
  text: string;
}

export type AssetReadResult =
  | { kind: 'text'; path: string; text: string; offset: number; totalChars: number; nextOffset: number | null }
  | { kind: 'search'; path: string; search: string; totalChars: number; matchCount: number; matches: SearchMatch[]; truncated: boolean }
  | { kind: 'image'; path: string; mimeType: string; data: Buffer; bytes: number };

export interface RenewedLease {
  path: string;
  expiresAt: string;
}

export interface PruneResult {
  dryRun: boolean;
  notebookPath: string;
  folder: string;
  /** What was deleted (or, in a dry run, what would be). */
  deleted: Array<{ path: string; bytes: number }>;
  kept: Array<{ path: string; reason: string }>;
  freedBytes: number;
  unreadableNotebooks: UnreadableNotebook[];
  /** Expired leases whose file was already gone; dropped from the lease table (or would be, in a dry run). */
  forgottenLeases: string[];
}

interface Location {
  notebookRel: string;
  notebookReal: string;
  /** `.` for the workspace root. */
  folderRel: string;
  folderReal: string;
  assetsRel: string;
  assetsReal: string;
}

interface AssetFile {
  name: string;
  bytes: number;
}

interface NotebookScan {
  readable: Array<{ path: string; text: string }>;
  unreadable: UnreadableNotebook[];
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function errno(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function normalizeExt(ext: string): string {
  const clean = ext.startsWith('.') ? ext.slice(1) : ext;
  if (!/^[A-Za-z0-9]{1,10}$/.test(clean)) {
    throw new AssetError(`'${ext}' is not a usable asset file extension: use letters and digits only, e.g. 'png' or 'txt'`);
  }
  return clean.toLowerCase();
}

/** A file name appears in a notebook as written, or JSON-escaped when it holds characters JSON escapes. */
function mentions(text: string, name: string): boolean {
  return text.includes(name) || text.includes(JSON.stringify(name).slice(1, -1));
}

function isUnderAssets(relative: string): boolean {
  return path.posix.basename(path.posix.dirname(relative)) === ASSETS_DIR;
}

/**
 * The metadata that makes a notebook on disk reference an asset, for an output's `metadata`: prune keeps any
 * asset a notebook names, so an output carrying this keeps its originals alive for as long as it is saved.
 */
export function assetReference(assetPath: string): { mcp_jupyter: { asset: string } } {
  const normalized = assetPath.split(path.sep).join('/');
  if (!isUnderAssets(normalized)) {
    throw new AssetError(`${assetPath} is not an asset path: assets live directly in a notebook folder's ${ASSETS_DIR}/ folder`);
  }
  return { mcp_jupyter: { asset: `${ASSETS_DIR}/${path.posix.basename(normalized)}` } };
}

async function listAssetFiles(assetsReal: string): Promise<AssetFile[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(assetsReal, { withFileTypes: true });
  } catch (error) {
    if (errno(error) === 'ENOENT' || errno(error) === 'ENOTDIR') return [];
    throw new AssetError(`cannot list ${assetsReal} (${errno(error) ?? String(error)}); check its permissions`);
  }
  const files: AssetFile[] = [];
  for (const entry of entries) {
    // Dot files are in-flight atomic writes (or hidden files nobody asked about).
    if (!entry.isFile() || entry.name.startsWith('.')) continue;
    try {
      files.push({ name: entry.name, bytes: (await lstat(path.join(assetsReal, entry.name))).size });
    } catch (error) {
      if (errno(error) !== 'ENOENT') throw error;
    }
  }
  return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Every notebook directly in the folder, read from disk now; anything that is not a readable notebook is reported. */
async function scanNotebooks(folderReal: string, folderRel: string): Promise<NotebookScan> {
  const scan: NotebookScan = { readable: [], unreadable: [] };
  let entries: Dirent[];
  try {
    entries = await readdir(folderReal, { withFileTypes: true });
  } catch (error) {
    if (errno(error) === 'ENOENT') return scan;
    scan.unreadable.push({ path: folderRel, reason: `the folder cannot be listed (${errno(error) ?? String(error)})` });
    return scan;
  }
  for (const entry of entries) {
    if (!entry.name.endsWith('.ipynb') || entry.isDirectory()) continue;
    const rel = folderRel === '.' ? entry.name : `${folderRel}/${entry.name}`;
    let text: string;
    try {
      text = utf8.decode(await readFile(path.join(folderReal, entry.name)));
    } catch (error) {
      if (errno(error) === 'EISDIR') continue;
      const reason = error instanceof TypeError ? 'it is not valid UTF-8' : `it cannot be read (${errno(error) ?? String(error)})`;
      scan.unreadable.push({ path: rel, reason });
      continue;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      scan.unreadable.push({ path: rel, reason: `it is not valid JSON (${(error as Error).message})` });
      continue;
    }
    if (typeof parsed !== 'object' || parsed === null || !Array.isArray((parsed as { cells?: unknown }).cells)) {
      scan.unreadable.push({ path: rel, reason: 'it is not a notebook (no "cells" list)' });
      continue;
    }
    scan.readable.push({ path: rel, text });
  }
  scan.readable.sort((a, b) => (a.path < b.path ? -1 : 1));
  return scan;
}

/** Keeps a slice boundary off the middle of a surrogate pair. */
function snapBoundary(text: string, index: number): number {
  if (index <= 0 || index >= text.length) return index;
  const before = text.charCodeAt(index - 1);
  return before >= 0xd800 && before <= 0xdbff ? index - 1 : index;
}

function cutAround(line: string, at: number, needleLength: number): string {
  if (line.length <= MAX_MATCH_LINE_CHARS) return line;
  const start = Math.max(0, Math.min(at - Math.floor((MAX_MATCH_LINE_CHARS - needleLength) / 2), line.length - MAX_MATCH_LINE_CHARS));
  const end = start + MAX_MATCH_LINE_CHARS;
  return `${start > 0 ? '…' : ''}${line.slice(snapBoundary(line, start), snapBoundary(line, end))}${end < line.length ? '…' : ''}`;
}

function checkCount(name: string, value: number | undefined, min: number): void {
  if (value !== undefined && (!Number.isInteger(value) || value < min)) {
    throw new AssetError(`${name} must be a whole number of at least ${min}, got ${value}`);
  }
}

export class AssetStore {
  readonly workspaceRoot: string;
  private readonly leases: LeaseTable;
  private readonly defaultTtlMs: number;
  private readonly now: () => number;
  /** Operations on one key (file or folder) run one at a time. */
  private readonly serial = new KeyedSerial();

  constructor(options: AssetStoreOptions) {
    const ttl = options.defaultTtlS ?? DEFAULT_LEASE_TTL_S;
    if (!Number.isFinite(ttl) || ttl <= 0) throw new AssetError(`the default asset lease must be a positive number of seconds, got ${ttl}`);
    this.workspaceRoot = path.resolve(options.workspaceRoot);
    this.leases = new LeaseTable(options.db);
    this.defaultTtlMs = ttl * 1000;
    this.now = options.now ?? Date.now;
  }

  /**
   * Stores `data` as `<notebook folder>/assets/<first 16 hex of sha256>.<ext>` and answers its workspace-relative
   * path. The same content again writes nothing and only renews the lease.
   */
  async save(notebookPath: string, data: Buffer | string, ext: string, executionId?: string): Promise<string> {
    const extension = normalizeExt(ext);
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const hash = sha256(bytes);
    const where = await this.locate(notebookPath);
    return this.exclusive(where.assetsRel, async () => {
      try {
        await mkdir(where.assetsReal, { recursive: true });
      } catch (error) {
        throw new AssetError(`cannot create the asset folder ${where.assetsRel} (${errno(error) ?? String(error)}); a file may be in the way or the folder is not writable`);
      }
      // 16 hex characters name the file; should another file already hold that name, the full hash does.
      for (const width of [16, 64]) {
        const name = `${hash.slice(0, width)}.${extension}`;
        const rel = `${where.assetsRel}/${name}`;
        const file = path.join(where.assetsReal, name);
        const existing = await this.compare(file, bytes.length, hash);
        if (existing === 'different') continue;
        const now = this.now();
        if (existing === 'same') {
          // A file nobody leased (the user's own, or one kept from a lost state database) stays unleased: never ours to delete.
          // The file is there: a lease that cannot be extended now (state directory full) only shortens its protection.
          try {
            this.leases.extend(rel, now + this.defaultTtlMs);
          } catch {
            // Prune still keeps it while a notebook references it.
          }
          return rel;
        }
        // The lease goes in first: a crash in between leaves a lease without a file (harmless), never an unleased file we wrote.
        const hadLease = this.leases.get(rel) !== undefined;
        try {
          this.leases.record({ assetPath: rel, notebookPath: where.notebookRel, executionId: executionId ?? null, bytes: bytes.length, sha256: hash, createdAt: now, expiresAt: now + this.defaultTtlMs });
        } catch (error) {
          throw new AssetError(
            `cannot store the asset ${rel}: its lease could not be recorded in the state database (${error instanceof Error ? error.message : String(error)}), so the file was not written. Free some space in the state directory (or make it writable) and run again.`,
          );
        }
        try {
          await writeFileAtomic(file, bytes);
        } catch (error) {
          try {
            if (!hadLease) this.leases.remove(rel);
          } catch {
            // A lease without its file is harmless: prune forgets it once it expires.
          }
          const code = errno(error);
          throw new AssetError(
            code === 'ENOSPC' || code === 'EDQUOT'
              ? `cannot write the asset ${rel}: the disk holding ${where.assetsRel} is full (${code}); nothing was written there. Free some space and run again.`
              : `cannot write the asset ${rel} (${code ?? String(error)}); check that ${where.assetsRel} is writable and the disk has room`,
          );
        }
        return rel;
      }
      throw new AssetError(`cannot store the asset: ${where.assetsRel} already holds other files under both names for this content; move them away`);
    });
  }

  /** Every file in the notebook folder's assets/, with whether a notebook there references it and its lease. */
  async inventory(notebookPath: string): Promise<AssetInventory> {
    const where = await this.locate(notebookPath);
    const [files, scan, notebookExists] = await Promise.all([
      listAssetFiles(where.assetsReal),
      scanNotebooks(where.folderReal, where.folderRel),
      stat(where.notebookReal).then(
        (st) => st.isFile(),
        () => false,
      ),
    ]);
    const assets = files.map((file): AssetInfo => {
      const rel = `${where.assetsRel}/${file.name}`;
      const lease = this.leases.get(rel);
      const referencedBy = scan.readable.filter((nb) => mentions(nb.text, file.name)).map((nb) => nb.path);
      return {
        path: rel,
        bytes: file.bytes,
        referenced: referencedBy.length > 0,
        referencedBy,
        leaseExpiresAt: lease ? iso(lease.expiresAt) : null,
        createdByServer: lease !== undefined,
      };
    });
    return { notebookPath: where.notebookRel, notebookExists, folder: where.assetsRel, assets, unreadableNotebooks: scan.unreadable };
  }

  async list(notebookPath: string): Promise<AssetInfo[]> {
    return (await this.inventory(notebookPath)).assets;
  }

  /** A slice or a search of a text asset, or an image's bytes. Only files directly inside an `assets/` folder are served. */
  async read(assetPath: string, options: ReadOptions = {}): Promise<AssetReadResult> {
    checkCount('offset', options.offset, 0);
    checkCount('length', options.length, 1);
    const resolved = await resolveWorkspacePath(this.workspaceRoot, assetPath, { notebook: false });
    if (!isUnderAssets(resolved.relative) || path.basename(path.dirname(resolved.real)) !== ASSETS_DIR) {
      throw new AssetError(
        `${assetPath} is not an asset: only files directly inside an ${ASSETS_DIR}/ folder can be read (e.g. "${ASSETS_DIR}/0123456789abcdef.png"); list_assets shows a notebook's assets`,
      );
    }
    let data: Buffer;
    try {
      data = await readFile(resolved.real);
    } catch (error) {
      if (errno(error) === 'ENOENT') throw new AssetError(`${resolved.relative} does not exist; list_assets shows the assets of a notebook`);
      if (errno(error) === 'EISDIR') throw new AssetError(`${resolved.relative} is a folder, not an asset; list_assets shows the assets of a notebook`);
      throw new AssetError(`cannot read ${resolved.relative} (${errno(error) ?? String(error)}); check its permissions`);
    }
    const ext = path.extname(resolved.real).slice(1).toLowerCase();
    const mimeType = IMAGE_MIME[ext];
    if (mimeType !== undefined) {
      if (options.search !== undefined) throw new AssetError(`${resolved.relative} is an image; search works on text assets only`);
      return { kind: 'image', path: resolved.relative, mimeType, data, bytes: data.length };
    }
    let text: string;
    try {
      text = utf8.decode(data);
    } catch {
      throw new AssetError(`${resolved.relative} is binary (${data.length} bytes), neither text nor an image read_asset can show (png, jpg, gif, webp)`);
    }
    if (options.search !== undefined) return this.search(resolved.relative, text, options.search, options.maxChars ?? DEFAULT_READ_CHARS);
    const offset = options.offset ?? 0;
    if (offset > text.length) {
      throw new AssetError(`offset ${offset} is past the end of ${resolved.relative}, which has ${text.length} characters; use an offset below that`);
    }
    const start = snapBoundary(text, offset);
    let end = Math.min(text.length, start + (options.length ?? DEFAULT_READ_CHARS));
    end = snapBoundary(text, end);
    if (end === start && start < text.length) end = Math.min(text.length, start + 2);
    return { kind: 'text', path: resolved.relative, text: text.slice(start, end), offset: start, totalChars: text.length, nextOffset: end < text.length ? end : null };
  }

  /**
   * Renews (to now + ttl, never shortening) the leases of the assets the notebook wrote and of the leased assets in
   * its folder that the notebook on disk references.
   */
  async renew(notebookPath: string, ttlS: number = DEFAULT_LEASE_TTL_S): Promise<RenewedLease[]> {
    if (!Number.isFinite(ttlS) || ttlS <= 0) throw new AssetError(`ttl_s must be a positive number of seconds, got ${ttlS}`);
    const where = await this.locate(notebookPath);
    const expiresAt = this.now() + ttlS * 1000;
    const targets = new Map<string, LeaseRow>(this.leases.forNotebook(where.notebookRel).map((row) => [row.assetPath, row]));
    let text: string | null = null;
    try {
      text = utf8.decode(await readFile(where.notebookReal));
    } catch {
      // No readable notebook file: only the leases it owns are renewed.
    }
    if (text !== null) {
      for (const row of this.leases.underPrefix(`${where.assetsRel}/`)) {
        const name = row.assetPath.slice(where.assetsRel.length + 1);
        if (!name.includes('/') && mentions(text, name)) targets.set(row.assetPath, row);
      }
    }
    const renewed: RenewedLease[] = [];
    for (const assetPath of [...targets.keys()].sort()) {
      this.leases.extend(assetPath, expiresAt);
      const row = this.leases.get(assetPath);
      if (row) renewed.push({ path: assetPath, expiresAt: iso(row.expiresAt) });
    }
    return renewed;
  }

  /**
   * Renews the leases of every asset written for the notebook by the default TTL; called when the server saves
   * it. `notebookPath` is workspace-relative, as `NotebookStore.resolve` gives it. Answers how many were renewed.
   */
  renewForNotebook(notebookPath: string): number {
    return this.leases.extendForNotebook(notebookPath, this.now() + this.defaultTtlMs);
  }

  /**
   * Deletes the files in the notebook folder's assets/ that this server wrote, whose lease has run out and that
   * no notebook in that folder names on disk now. Anything uncertain is kept, with the reason.
   */
  async prune(notebookPath: string, options: { dryRun?: boolean } = {}): Promise<PruneResult> {
    const dryRun = options.dryRun ?? false;
    const where = await this.locate(notebookPath);
    return this.exclusive(where.assetsRel, async () => {
      const now = this.now();
      const [files, scan] = await Promise.all([listAssetFiles(where.assetsReal), scanNotebooks(where.folderReal, where.folderRel)]);
      const result: PruneResult = {
        dryRun,
        notebookPath: where.notebookRel,
        folder: where.assetsRel,
        deleted: [],
        kept: [],
        freedBytes: 0,
        unreadableNotebooks: scan.unreadable,
        forgottenLeases: [],
      };
      const uncertain =
        scan.unreadable.length > 0
          ? `cannot tell whether a notebook still uses it: ${scan.unreadable.map((nb) => `${nb.path} (${nb.reason})`).join(', ')}; fix or move that notebook, then prune again`
          : null;
      const candidates: Array<{ rel: string; file: AssetFile; lease: LeaseRow }> = [];
      for (const file of files) {
        const rel = `${where.assetsRel}/${file.name}`;
        const lease = this.leases.get(rel);
        if (!lease) {
          result.kept.push({ path: rel, reason: 'not created by this server (it has no lease), so prune never deletes it' });
          continue;
        }
        const reasons: string[] = [];
        if (lease.expiresAt > now) reasons.push(`lease holds until ${iso(lease.expiresAt)}`);
        const referencedBy = scan.readable.filter((nb) => mentions(nb.text, file.name)).map((nb) => nb.path);
        if (referencedBy.length > 0) reasons.push(`referenced by ${referencedBy.join(', ')}`);
        if (uncertain) reasons.push(uncertain);
        if (reasons.length > 0) result.kept.push({ path: rel, reason: reasons.join('; ') });
        else candidates.push({ rel, file, lease });
      }
      for (const { rel, file, lease } of candidates) {
        const full = path.join(where.assetsReal, file.name);
        // Someone may have put other bytes under this name since: then it is no longer the file this server wrote.
        if (file.bytes !== lease.bytes || (await this.compare(full, lease.bytes, lease.sha256)) !== 'same') {
          result.kept.push({ path: rel, reason: 'changed on disk since this server wrote it, so it is no longer its to delete' });
          continue;
        }
        if (dryRun) {
          result.deleted.push({ path: rel, bytes: file.bytes });
          continue;
        }
        if (!this.leases.removeIfExpired(rel, now)) {
          result.kept.push({ path: rel, reason: 'its lease was renewed while pruning' });
          continue;
        }
        try {
          await unlink(full);
        } catch (error) {
          if (errno(error) !== 'ENOENT') {
            this.leases.record(lease);
            result.kept.push({ path: rel, reason: `could not be deleted (${errno(error) ?? String(error)}); check the folder's permissions` });
            continue;
          }
        }
        result.deleted.push({ path: rel, bytes: file.bytes });
      }
      result.freedBytes = result.deleted.reduce((sum, d) => sum + d.bytes, 0);
      const present = new Set(files.map((file) => file.name));
      for (const row of this.leases.underPrefix(`${where.assetsRel}/`)) {
        const name = row.assetPath.slice(where.assetsRel.length + 1);
        if (name.includes('/') || present.has(name) || row.expiresAt > now) continue;
        if (!dryRun) this.leases.remove(row.assetPath);
        result.forgottenLeases.push(row.assetPath);
      }
      return result;
    });
  }

  private async locate(notebookPath: string): Promise<Location> {
    const notebook = await resolveWorkspacePath(this.workspaceRoot, notebookPath, { notebook: true });
    const folderRel = path.posix.dirname(notebook.relative);
    const folderReal = folderRel === '.' ? await realWorkspaceRoot(this.workspaceRoot) : (await resolveWorkspacePath(this.workspaceRoot, folderRel, { notebook: false })).real;
    const assetsRel = folderRel === '.' ? ASSETS_DIR : `${folderRel}/${ASSETS_DIR}`;
    const assets = await resolveWorkspacePath(this.workspaceRoot, assetsRel, { notebook: false });
    return { notebookRel: notebook.relative, notebookReal: notebook.real, folderRel, folderReal, assetsRel, assetsReal: assets.real };
  }

  /** Whether `file` holds exactly the bytes with this hash, other bytes (or is no plain file), or is missing. */
  private async compare(file: string, size: number, hash: string): Promise<'same' | 'different' | 'missing'> {
    try {
      const st = await lstat(file);
      if (!st.isFile() || st.size !== size) return 'different';
      return sha256(await readFile(file)) === hash ? 'same' : 'different';
    } catch (error) {
      if (errno(error) === 'ENOENT') return 'missing';
      throw error;
    }
  }

  private exclusive<T>(key: string, work: () => Promise<T>): Promise<T> {
    return this.serial.run(key, work);
  }

  private search(rel: string, text: string, needle: string, maxChars: number): AssetReadResult {
    if (needle === '') throw new AssetError('search must not be empty: give the text to look for');
    const lowerNeedle = needle.toLowerCase();
    const matches: SearchMatch[] = [];
    let matchCount = 0;
    let used = 0;
    let truncated = false;
    let lineStart = 0;
    let lineNumber = 0;
    while (lineStart <= text.length) {
      const newline = text.indexOf('\n', lineStart);
      const lineEnd = newline === -1 ? text.length : newline;
      lineNumber += 1;
      const line = text.slice(lineStart, lineEnd).replace(/\r$/, '');
      const at = line.toLowerCase().indexOf(lowerNeedle);
      if (at !== -1) {
        matchCount += 1;
        const shown = cutAround(line, at, needle.length);
        if (!truncated && matches.length < MAX_SEARCH_MATCHES && used + shown.length + 16 <= maxChars) {
          matches.push({ line: lineNumber, offset: lineStart, text: shown });
          used += shown.length + 16;
        } else {
          truncated = true;
        }
      }
      if (newline === -1) break;
      lineStart = newline + 1;
    }
    return { kind: 'search', path: rel, search: needle, totalChars: text.length, matchCount, matches, truncated };
  }
}
