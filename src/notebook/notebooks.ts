// Opens workspace notebooks, applies edits one writer at a time per file, saves atomically and notices edits made on disk by others.
import { KeyedSerial } from '../util/keyed-serial.js';
import { createHash, randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import {
  changeCellType,
  cloneJson,
  InvalidEditError,
  kernelspecOf,
  newCell,
  newNotebook,
  NotebookFormatError,
  outputToDiskForm,
  parseNotebook,
  serializeNotebook,
  setCellSource,
  type Cell,
  type CellType,
  type JsonObject,
  type Notebook,
  type Output,
} from './nbformat.js';
import { realWorkspaceRoot, resolveNotebookPath, resolveWorkspacePath, type ResolvedPath } from './paths.js';

export { InvalidEditError, NotebookFormatError };

/** A cell named by its nbformat id (preferred) or by its 0-based position. */
export type CellRef = { cellId: string } | { index: number };

export class NotebookNotFoundError extends Error {
  override readonly name = 'NotebookNotFoundError';
  constructor(readonly path: string) {
    super(`${path} does not exist in the workspace; list_notebooks shows the notebooks there, create_notebook makes a new one`);
  }
}

export class NotebookExistsError extends Error {
  override readonly name = 'NotebookExistsError';
  constructor(readonly path: string) {
    super(`${path} already exists and was left as it is; choose another name, or change it with insert_cell / edit_cell`);
  }
}

export class CellNotFoundError extends Error {
  override readonly name = 'CellNotFoundError';
  constructor(
    readonly path: string,
    readonly ref: CellRef,
    cellCount: number,
  ) {
    super(
      'cellId' in ref
        ? `cell '${ref.cellId}' is no longer in ${path} (it was deleted or the file changed on disk); read_notebook to see the current cells and their ids`
        : cellCount === 0
          ? `index ${ref.index} is out of range: ${path} has no cells; insert_cell adds one`
          : `index ${ref.index} is out of range: ${path} has ${cellCount} cell(s), so valid indexes are 0–${cellCount - 1}; read_notebook to see the current cells`,
    );
  }
}

/** The file could not be read or written as a notebook for a reason other than its contents. */
export class NotebookIoError extends Error {
  override readonly name = 'NotebookIoError';
  /** The system error code when writing the file failed (e.g. ENOSPC); the file on disk is then the previous version. */
  writeError: string | undefined;
}

export interface ReadResult {
  /** A private copy: changing it changes nothing on disk (use update for that). */
  notebook: Notebook;
  /** Changes whenever the bytes on disk change. */
  version: string;
  /** The path relative to the workspace root. */
  path: string;
  /** True when cell ids were added in memory: they reach the disk with the next edit. */
  upgraded: boolean;
  upgrades: string[];
  /** The file had changed on disk since this store last read or wrote it. */
  externalChange: boolean;
}

export interface UpdateInfo {
  /** The file had been changed on disk by someone else since we last read or wrote it; the edit applied to that newer version. */
  externalChange: boolean;
  /** False when the edit left the bytes as they were, so nothing was written. */
  saved: boolean;
  version: string;
  path: string;
}

export interface UpdateResult<R> extends UpdateInfo {
  result: R;
}

export interface ExecutionProvenance {
  executionId: string;
  /** ISO 8601 time at which the execution finished. */
  finishedAt: string;
  /** sha256 (hex) of the source that ran. */
  sourceSha256: string;
}

export interface NotebookListing {
  path: string;
  cells?: number;
  kernel?: string;
  /** Why the notebook could not be read (it is listed anyway). */
  error?: string;
}

export interface NotebookStoreOptions {
  workspaceRoot: string;
  /** Called after every save with the notebook's workspace-relative path (the server renews asset leases then). */
  onSaved?: (relativePath: string) => void;
  /** The server's state directory, never searched for notebooks (default `.mcp-jupyter` in the root). */
  stateDir?: string;
}

interface Entry {
  notebook: Notebook;
  /** sha256 of the bytes on disk that `notebook` came from (or that we wrote). */
  hash: string;
  mtimeMs: number;
  size: number;
  ino: number;
  mode: number;
  upgraded: boolean;
  upgrades: string[];
}

/** Outputs of a finished execution that could not be saved into the notebook yet; they go in with its next save. */
interface OwedOutputs {
  outputs: Output[];
  executionCount: number | null;
  provenance: ExecutionProvenance;
}

const SKIP_DIRS = new Set(['node_modules', '__pycache__']);
const SAVE_ATTEMPTS = 3;
/** Parsed notebooks kept in memory; beyond this the least recently used are dropped (and re-read when needed). */
const CACHE_LIMIT = 64;

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function versionOf(hash: string): string {
  return hash.slice(0, 16);
}

function sameStat(e: Entry, st: Stats): boolean {
  return e.mtimeMs === st.mtimeMs && e.size === st.size && e.ino === st.ino;
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Finds a cell by id or index, with errors that tell an agent how to recover. */
export function locateCell(nb: Notebook, ref: CellRef, relPath: string): { cell: Cell; index: number } {
  const hasId = 'cellId' in ref && ref.cellId !== undefined;
  const hasIndex = 'index' in ref && ref.index !== undefined;
  if (hasId === hasIndex) throw new InvalidEditError('name the cell with either cell_id or index (exactly one of them)');
  if (hasId) {
    const { cellId } = ref as { cellId: string };
    const index = nb.cells.findIndex((c) => c.id === cellId);
    const cell = nb.cells[index];
    if (!cell) throw new CellNotFoundError(relPath, { cellId }, nb.cells.length);
    return { cell, index };
  }
  const { index } = ref as { index: number };
  const cell = Number.isInteger(index) ? nb.cells[index] : undefined;
  if (!cell) throw new CellNotFoundError(relPath, { index }, nb.cells.length);
  return { cell, index };
}

/** Puts an execution's outputs into a code cell, with the provenance that says which execution made them. */
function putOutputs(cell: Cell & { cell_type: 'code' }, owed: OwedOutputs): void {
  cell.outputs = owed.outputs.map((o) => outputToDiskForm(cleanOutput(o)));
  cell.execution_count = owed.executionCount;
  const record: JsonObject = {
    execution_id: owed.provenance.executionId,
    finished_at: owed.provenance.finishedAt,
    source_sha256: owed.provenance.sourceSha256,
  };
  cell.metadata['mcp_jupyter'] = record;
}

/** Keeps only the fields nbformat allows on an output, so what the kernel layer hands over always validates. */
function cleanOutput(o: Output): Output {
  switch (o.output_type) {
    case 'stream':
      return { name: o.name, output_type: 'stream', text: cloneJson(o.text) };
    case 'display_data':
      return { data: cloneJson(o.data), metadata: cloneJson(o.metadata ?? {}), output_type: 'display_data' };
    case 'execute_result':
      return {
        data: cloneJson(o.data),
        execution_count: o.execution_count ?? null,
        metadata: cloneJson(o.metadata ?? {}),
        output_type: 'execute_result',
      };
    case 'error':
      return { ename: o.ename, evalue: o.evalue, output_type: 'error', traceback: [...o.traceback] };
  }
}

async function fsyncDir(dir: string): Promise<void> {
  // Makes the rename itself durable; some platforms cannot fsync a directory, which only costs durability there.
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (!['EISDIR', 'EINVAL', 'EPERM', 'EACCES', 'ENOTSUP'].includes(errno(e) ?? '')) throw e;
  }
}

interface Written {
  mtimeMs: number;
  size: number;
  ino: number;
  mode: number;
}

/**
 * Writes `text` to `target` so that a reader (or a crash) sees either the old file or the new one, never a
 * mix: a temp file in the same directory is written and fsynced, then renamed over the target (or, with
 * `exclusive`, hard-linked so an existing file is never replaced).
 */
async function atomicWrite(target: string, text: string, mode: number | undefined, exclusive: boolean): Promise<Written> {
  const dir = path.dirname(target);
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode ?? 0o666);
  let st: Stats;
  try {
    await fh.writeFile(text, 'utf8');
    if (mode !== undefined) await fh.chmod(mode & 0o7777); // open's mode is filtered by the umask
    await fh.sync();
    st = await fh.stat(); // same inode and mtime the target will have after the rename
    await fh.close();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  try {
    if (exclusive) {
      try {
        await link(tmp, target);
      } finally {
        await unlink(tmp).catch(() => undefined);
      }
    } else {
      await rename(tmp, target);
    }
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fsyncDir(dir);
  return { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino, mode: st.mode };
}

export class NotebookStore {
  readonly workspaceRoot: string;
  private readonly stateDir: string;
  private readonly cache = new Map<string, Entry>();
  /** Operations on one key (file or folder) run one at a time. */
  private readonly serial = new KeyedSerial();
  /**
   * Per file (real path), per cell id: outputs whose save failed (disk full, read-only). The next save of that
   * notebook puts them in first, so they land once the disk has room instead of being lost to one failed write.
   */
  private readonly owed = new Map<string, Map<string, OwedOutputs>>();

  private readonly onSaved: ((relativePath: string) => void) | undefined;

  constructor(opts: NotebookStoreOptions) {
    this.onSaved = opts.onSaved;
    this.workspaceRoot = path.resolve(opts.workspaceRoot);
    this.stateDir = path.resolve(this.workspaceRoot, opts.stateDir ?? '.mcp-jupyter');
  }

  /** Resolves a user's notebook path inside the workspace (throws PathError when it leaves it). */
  resolve(userPath: string): Promise<ResolvedPath> {
    return resolveNotebookPath(this.workspaceRoot, userPath);
  }

  /** The parsed notebook and its version; served from cache while the file on disk is unchanged. */
  async read(userPath: string): Promise<ReadResult> {
    const res = await this.resolve(userPath);
    return this.exclusive(res.real, async () => {
      const { entry, externalChange } = await this.load(res, false);
      return {
        notebook: cloneJson(entry.notebook),
        version: versionOf(entry.hash),
        path: res.relative,
        upgraded: entry.upgraded,
        upgrades: [...entry.upgrades],
        externalChange,
      };
    });
  }

  /**
   * Applies `mutate` to the current notebook and saves the result. Runs after every earlier operation on
   * the same file; re-reads the file first when someone else changed it, so the mutation always sees the
   * newest cells (it should address cells by id). If the mutation throws, nothing is written. The
   * notebook handed to `mutate` becomes the cached copy, so `result` must not hold references into it.
   */
  async update<R>(userPath: string, mutate: (nb: Notebook, relPath: string) => R): Promise<UpdateResult<R>> {
    return this.edit(userPath, mutate);
  }

  /** `update`; with `owe`, outputs whose save failed are kept (inside the file's turn) for its next save. */
  private async edit<R>(userPath: string, mutate: (nb: Notebook, relPath: string) => R, owe?: { cellId: string; outputs: OwedOutputs }): Promise<UpdateResult<R>> {
    const res = await this.resolve(userPath);
    return this.exclusive(res.real, async () => {
      let externalChange = false;
      for (let attempt = 1; ; attempt++) {
        const loaded = await this.load(res, true);
        externalChange ||= loaded.externalChange;
        const entry = loaded.entry;
        const work = cloneJson(entry.notebook);
        // An upgraded notebook already differs from the disk in memory (new ids); that alone is no reason to write.
        const before = entry.upgraded ? serializeNotebook(work) : undefined;
        // Outputs owed by an earlier failed save go in first, so that this edit (newer) has the last word.
        const owed = this.owed.get(res.real);
        for (const [cellId, outputs] of owed ?? []) {
          const cell = work.cells.find((c) => c.id === cellId);
          if (cell?.cell_type === 'code') putOutputs(cell, outputs);
        }
        const result = mutate(work, res.relative);
        const text = serializeNotebook(work);
        const hash = sha256(text);
        if (text === before || hash === entry.hash) {
          // Owed outputs that change nothing are already on disk.
          if (owed) this.owed.delete(res.real);
          return { result, externalChange, saved: false, version: versionOf(entry.hash), path: res.relative };
        }
        // Someone may have saved while we worked: then start over from their version rather than overwrite it.
        if (await this.changedOnDisk(res.real, entry)) {
          externalChange = true;
          if (attempt < SAVE_ATTEMPTS) continue;
          throw new NotebookIoError(
            `${res.relative} kept changing on disk while this edit was being saved, so it was not saved; try the edit again`,
          );
        }
        const written = await this.write(res, text, entry.mode, false).catch((e: unknown) => {
          if (!(e instanceof NotebookIoError) || e.writeError === undefined) throw e;
          const earlier = owed?.size ?? 0;
          if (owe) {
            const forFile = owed ?? new Map<string, OwedOutputs>();
            forFile.set(owe.cellId, owe.outputs);
            this.owed.set(res.real, forFile);
            e.message += ` The outputs of execution ${owe.outputs.provenance.executionId} are kept (get_execution shows them) and go into the notebook with its next save.`;
          } else if (earlier > 0) {
            e.message += ` The outputs of ${earlier} earlier execution(s) that could not be saved either are kept and go in with the next save.`;
          }
          throw e;
        });
        if (owed) this.owed.delete(res.real);
        this.remember(res.real, { notebook: work, hash, ...written, upgraded: false, upgrades: [] });
        return { result, externalChange, saved: true, version: versionOf(hash), path: res.relative };
      }
    });
  }

  /** Creates a new notebook (and its parent folders); never replaces an existing file. */
  async create(
    userPath: string,
    opts: { kernelName?: string; displayName?: string; language?: string; cells?: { cellType: CellType; source: string }[] } = {},
  ): Promise<ReadResult> {
    const res = await this.resolve(userPath);
    return this.exclusive(res.real, async () => {
      const nb = newNotebook(opts);
      for (const c of opts.cells ?? []) nb.cells.push(newCell(c.cellType, c.source, nb));
      const text = serializeNotebook(nb);
      try {
        await mkdir(path.dirname(res.real), { recursive: true });
      } catch (e) {
        throw new NotebookIoError(`cannot create the folder for ${res.relative} (${errno(e) ?? String(e)}); a file may be in the way of a folder name`);
      }
      const written = await this.write(res, text, undefined, true);
      const hash = sha256(text);
      this.remember(res.real, { notebook: nb, hash, ...written, upgraded: false, upgrades: [] });
      return { notebook: cloneJson(nb), version: versionOf(hash), path: res.relative, upgraded: false, upgrades: [], externalChange: false };
    });
  }

  /** Inserts a cell at `index`, after `afterCellId`, or (neither) at the end. */
  async insertCell(
    userPath: string,
    opts: { index?: number; afterCellId?: string; cellType: CellType; source: string },
  ): Promise<UpdateInfo & { cellId: string; index: number }> {
    const r = await this.update(userPath, (nb, rel) => {
      let at = nb.cells.length;
      if (opts.index !== undefined && opts.afterCellId !== undefined) {
        throw new InvalidEditError('give either index or after_cell_id for the new cell, not both');
      }
      if (opts.afterCellId !== undefined) {
        at = locateCell(nb, { cellId: opts.afterCellId }, rel).index + 1;
      } else if (opts.index !== undefined) {
        if (!Number.isInteger(opts.index) || opts.index < 0 || opts.index > nb.cells.length) {
          throw new InvalidEditError(
            `index ${opts.index} is out of range for a new cell: ${rel} has ${nb.cells.length} cell(s), so use 0–${nb.cells.length} (${nb.cells.length} appends)`,
          );
        }
        at = opts.index;
      }
      const cell = newCell(opts.cellType, opts.source, nb);
      nb.cells.splice(at, 0, cell);
      return { cellId: cell.id, index: at };
    });
    return { ...info(r), ...r.result };
  }

  /** Changes a cell's source and/or type (code → other drops outputs; other → code adds empty ones). */
  async editCell(
    userPath: string,
    ref: CellRef,
    change: { source?: string; cellType?: CellType },
  ): Promise<UpdateInfo & { cell: Cell; index: number }> {
    if (change.source === undefined && change.cellType === undefined) {
      throw new InvalidEditError('nothing to change: give a new source and/or cell_type');
    }
    const r = await this.update(userPath, (nb, rel) => {
      const { cell, index } = locateCell(nb, ref, rel);
      if (change.cellType !== undefined) changeCellType(cell, change.cellType);
      if (change.source !== undefined) setCellSource(cell, change.source);
      return { cell: cloneJson(cell), index };
    });
    return { ...info(r), ...r.result };
  }

  async deleteCell(userPath: string, ref: CellRef): Promise<UpdateInfo & { cellId: string; index: number }> {
    const r = await this.update(userPath, (nb, rel) => {
      const { cell, index } = locateCell(nb, ref, rel);
      nb.cells.splice(index, 1);
      return { cellId: cell.id, index };
    });
    return { ...info(r), ...r.result };
  }

  /** Moves a cell so that it ends up at `toIndex` (0 … cell count − 1). */
  async moveCell(userPath: string, ref: CellRef, toIndex: number): Promise<UpdateInfo & { cellId: string; fromIndex: number; index: number }> {
    const r = await this.update(userPath, (nb, rel) => {
      const { cell, index } = locateCell(nb, ref, rel);
      if (!Number.isInteger(toIndex) || toIndex < 0 || toIndex >= nb.cells.length) {
        throw new InvalidEditError(
          `to_index ${toIndex} is out of range: ${rel} has ${nb.cells.length} cell(s), so use 0–${nb.cells.length - 1}`,
        );
      }
      nb.cells.splice(index, 1);
      nb.cells.splice(toIndex, 0, cell);
      return { cellId: cell.id, fromIndex: index, index: toIndex };
    });
    return { ...info(r), ...r.result };
  }

  /** Clears outputs and execution counts of one cell, or of every cell when `ref` is omitted. */
  async clearOutputs(userPath: string, ref?: CellRef): Promise<UpdateInfo & { clearedCellIds: string[] }> {
    const r = await this.update(userPath, (nb, rel) => {
      const cells = ref ? [locateCell(nb, ref, rel).cell] : nb.cells;
      const cleared: string[] = [];
      for (const cell of cells) {
        if (cell.cell_type !== 'code') continue;
        if (cell.outputs.length === 0 && cell.execution_count === null && cell.metadata['mcp_jupyter'] === undefined) continue;
        cell.outputs = [];
        cell.execution_count = null;
        // The provenance described the outputs just removed.
        delete cell.metadata['mcp_jupyter'];
        cleared.push(cell.id);
      }
      return { clearedCellIds: cleared };
    });
    return { ...info(r), ...r.result };
  }

  /**
   * Writes an execution's outputs into the cell with this id (never by position: cells may have moved
   * meanwhile) and records which execution produced them in `metadata.mcp_jupyter`.
   */
  async setCellOutputs(
    userPath: string,
    cellId: string,
    outputs: readonly Output[],
    executionCount: number | null,
    provenance: ExecutionProvenance,
  ): Promise<UpdateInfo & { index: number }> {
    const owed: OwedOutputs = { outputs: [...outputs], executionCount, provenance };
    const r = await this.edit(
      userPath,
      (nb, rel) => {
        const { cell, index } = locateCell(nb, { cellId }, rel);
        if (cell.cell_type !== 'code') {
          throw new InvalidEditError(
            `cell '${cellId}' in ${rel} is now a ${cell.cell_type} cell, so the outputs of execution ${provenance.executionId} were not written into it`,
          );
        }
        putOutputs(cell, owed);
        return { index };
      },
      { cellId, outputs: owed },
    );
    return { ...info(r), ...r.result };
  }

  /** Notebooks under the root (or `directory`), with cell counts; unreadable ones carry `error` instead. */
  async listNotebooks(directory?: string): Promise<NotebookListing[]> {
    const root = await realWorkspaceRoot(this.workspaceRoot);
    let start = root;
    if (directory !== undefined && directory !== '' && directory !== '.') {
      const res = await resolveWorkspacePath(this.workspaceRoot, directory, { notebook: false });
      const st = await stat(res.real).catch((e: unknown) => {
        throw errno(e) === 'ENOENT'
          ? new NotebookIoError(`the directory ${res.relative} does not exist in the workspace`)
          : new NotebookIoError(`cannot read the directory ${res.relative} (${errno(e) ?? String(e)})`);
      });
      if (!st.isDirectory()) throw new NotebookIoError(`${res.relative} is not a directory; give a folder inside the workspace`);
      start = res.real;
    }
    const stateDir = path.resolve(root, path.relative(this.workspaceRoot, this.stateDir));
    const found: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const d of entries) {
        // Hidden entries cover .git, .ipynb_checkpoints, .mcp-jupyter and our own temp files.
        if (d.name.startsWith('.') || SKIP_DIRS.has(d.name)) continue;
        const full = path.join(dir, d.name);
        if (full === stateDir || full === this.stateDir) continue;
        // Symlinked directories are not followed (they may loop or lead out); symlinked notebooks are checked on read.
        if (d.isDirectory()) await walk(full);
        else if ((d.isFile() || d.isSymbolicLink()) && d.name.endsWith('.ipynb')) found.push(path.relative(root, full).split(path.sep).join('/'));
      }
    };
    await walk(start);
    found.sort();
    const listings: NotebookListing[] = [];
    for (const rel of found) {
      try {
        const notebook = await this.peek(rel);
        const listing: NotebookListing = { path: rel, cells: notebook.cells.length };
        const kernel = kernelspecOf(notebook)?.name;
        if (kernel !== undefined) listing.kernel = kernel;
        listings.push(listing);
      } catch (e) {
        listings.push({ path: rel, error: e instanceof Error ? e.message : String(e) });
      }
    }
    return listings;
  }

  // -------------------------------------------------------------------------------------------

  /**
   * The notebook for a listing: from the cache when it is current, otherwise parsed without being cached,
   * so listing a large workspace does not keep every notebook in memory.
   */
  private async peek(rel: string): Promise<Notebook> {
    const res = await this.resolve(rel);
    const cached = this.cache.get(res.real);
    const st = await stat(res.real).catch((e: unknown) => {
      throw this.openError(e, res);
    });
    if (cached && sameStat(cached, st)) return cached.notebook;
    if (!st.isFile()) throw new NotebookIoError(`${res.relative} is not a regular file`);
    const bytes = await readFile(res.real).catch((e: unknown) => {
      throw this.openError(e, res);
    });
    return parseNotebook(this.decode(bytes, res), res.relative).notebook;
  }

  private remember(key: string, entry: Entry): void {
    this.cache.delete(key);
    this.cache.set(key, entry);
    if (this.cache.size <= CACHE_LIMIT) return;
    // Oldest first; an idle, non-upgraded entry goes first because upgraded ones hold ids not yet on disk.
    let victim: string | undefined;
    for (const [k, e] of this.cache) {
      if (k === key || this.serial.busy(k)) continue;
      if (!e.upgraded) {
        victim = k;
        break;
      }
      victim ??= k;
    }
    if (victim !== undefined) this.cache.delete(victim);
  }

  private decode(bytes: Buffer, res: ResolvedPath): string {
    try {
      return utf8.decode(bytes);
    } catch {
      throw new NotebookFormatError(
        `${res.relative} is not a valid Jupyter notebook: it is not UTF-8 text. The file was not changed; save it as UTF-8 and try again.`,
        res.relative,
      );
    }
  }

  private exclusive<T>(key: string, work: () => Promise<T>): Promise<T> {
    return this.serial.run(key, work);
  }

  /**
   * The current notebook for this file. With `verify`, the bytes are always hashed (an edit must not miss a
   * save that left mtime and size alone); otherwise unchanged mtime, size and inode mean unchanged content.
   */
  private async load(res: ResolvedPath, verify: boolean): Promise<{ entry: Entry; externalChange: boolean }> {
    const cached = this.cache.get(res.real);
    if (cached) this.remember(res.real, cached); // most recently used
    let fh;
    try {
      fh = await open(res.real, 'r');
    } catch (e) {
      throw this.openError(e, res);
    }
    try {
      const st = await fh.stat();
      if (st.isDirectory()) throw new NotebookIoError(`${res.relative} is a directory, not a notebook file; give the path of an .ipynb file`);
      if (!st.isFile()) throw new NotebookIoError(`${res.relative} is not a regular file; give the path of an .ipynb file`);
      if (cached && !verify && sameStat(cached, st)) return { entry: cached, externalChange: false };
      const bytes = await fh.readFile().catch((e: unknown) => {
        throw this.openError(e, res);
      });
      const hash = sha256(bytes);
      if (cached && cached.hash === hash) {
        Object.assign(cached, { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino, mode: st.mode });
        return { entry: cached, externalChange: false };
      }
      const parsed = parseNotebook(this.decode(bytes, res), res.relative);
      const entry: Entry = {
        notebook: parsed.notebook,
        hash,
        mtimeMs: st.mtimeMs,
        size: st.size,
        ino: st.ino,
        mode: st.mode,
        upgraded: parsed.upgraded,
        upgrades: parsed.upgrades,
      };
      this.remember(res.real, entry);
      return { entry, externalChange: cached !== undefined };
    } finally {
      await fh.close();
    }
  }

  private async changedOnDisk(real: string, entry: Entry): Promise<boolean> {
    let fh;
    try {
      fh = await open(real, 'r');
    } catch {
      return true; // gone or replaced by something we cannot read: let the next load explain
    }
    try {
      const st = await fh.stat();
      if (sameStat(entry, st)) return false;
      return sha256(await fh.readFile()) !== entry.hash;
    } finally {
      await fh.close();
    }
  }

  private async write(res: ResolvedPath, text: string, mode: number | undefined, exclusive: boolean): Promise<Written> {
    const written = await this.writeFile(res, text, mode, exclusive);
    try {
      this.onSaved?.(res.relative);
    } catch {
      // The file is saved. What the hook does afterwards (renewing asset leases in a full state directory) must not
      // make the save look failed: the caller would be told a lie and this store would forget the new version.
    }
    return written;
  }

  private async writeFile(res: ResolvedPath, text: string, mode: number | undefined, exclusive: boolean): Promise<Written> {
    try {
      return await atomicWrite(res.real, text, mode, exclusive);
    } catch (e) {
      const code = errno(e);
      if (exclusive && code === 'EEXIST') throw new NotebookExistsError(res.relative);
      const kept = exclusive ? 'nothing was created' : 'the file on disk was left as it was (its previous version)';
      const error = new NotebookIoError(
        code === 'ENOSPC' || code === 'EDQUOT'
          ? `could not save ${res.relative}: the disk holding it is full (${code}), so ${kept}. Free some space there and try again.`
          : code === 'EROFS'
            ? `could not save ${res.relative}: it is on a read-only file system (EROFS), so ${kept}. Make it writable and try again.`
            : code === 'EACCES' || code === 'EPERM'
              ? `could not save ${res.relative}: permission denied (${code}) writing in its folder, so ${kept}. Check the folder's permissions.`
              : `could not save ${res.relative} (${code ?? String(e)}); ${kept}`,
      );
      error.writeError = code ?? 'unknown';
      throw error;
    }
  }

  private openError(e: unknown, res: ResolvedPath): Error {
    switch (errno(e)) {
      case 'ENOENT':
        return new NotebookNotFoundError(res.relative);
      case 'EISDIR':
        return new NotebookIoError(`${res.relative} is a directory, not a notebook file; give the path of an .ipynb file`);
      case 'ENOTDIR':
        return new NotebookIoError(`${res.relative} cannot exist: part of its folder path is a file, not a folder`);
      case 'EACCES':
      case 'EPERM':
        return new NotebookIoError(`${res.relative} cannot be read: permission denied; check the file's permissions`);
      default:
        return e instanceof Error ? e : new Error(String(e));
    }
  }
}

function info<R>(r: UpdateResult<R>): UpdateInfo {
  return { externalChange: r.externalChange, saved: r.saved, version: r.version, path: r.path };
}

