// Publishes `notebook.changed` for our own saves and for edits made on disk by someone else, once per change.
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { EngineEvents } from '../engine/events.js';
import type { Logger } from '../log.js';
import { KeyedSerial } from '../util/keyed-serial.js';
import type { EventBus } from './events.js';

export interface NotebookWatchOptions {
  /** The workspace root (symlinks resolved); notebook paths are relative to it. */
  workspaceRoot: string;
  bus: EventBus;
  log: Logger;
  /** Notebooks that get executed are watched from then on. */
  engineEvents?: EngineEvents;
  /** Quiet time after the last file-system event of a file before it is read (editors write in several steps). */
  debounceMs?: number;
  /** Folders watched at most (each costs an inotify watch). */
  maxFolders?: number;
}

/** The store's temp file for a save: `.<notebook>.<pid>.<random>.tmp`. */
const OWN_TEMP = /^\.(.+\.ipynb)\.(\d+)\.[0-9a-f]+\.tmp$/;
/** How long a disk check waits for the `saved` call of a save seen starting. */
const SAVE_WAIT_MS = 5_000;

/** The hash of a file's bytes, or null when there is no file to read. */
async function hashOf(file: string): Promise<string | null> {
  try {
    return createHash('sha256').update(await readFile(file)).digest('hex');
  } catch {
    return null;
  }
}

/** The store's notebook version is the first 16 hex digits of the sha256 of the bytes: the same here. */
function versionOf(hash: string | null): string | null {
  return hash === null ? null : hash.slice(0, 16);
}

export class NotebookWatch {
  private readonly folders = new Map<string, FSWatcher>();
  /** Last known content hash per notebook (null: known to be missing). A change is reported only when it differs. */
  private readonly known = new Map<string, string | null>();
  /** Per notebook, its checks one at a time, so a save and a disk event of the same file are judged in order. */
  private readonly serial = new KeyedSerial();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Saves of this process seen starting on disk (by their temp file) whose `saved` call has not come yet. */
  private readonly savesInFlight = new Map<string, { done: Promise<void>; resolve: () => void }>();
  private readonly debounceMs: number;
  private readonly maxFolders: number;
  private readonly offEngine: (() => void) | null;
  private warnedFull = false;
  private closed = false;

  constructor(private readonly options: NotebookWatchOptions) {
    this.debounceMs = options.debounceMs ?? 100;
    this.maxFolders = options.maxFolders ?? 256;
    this.offEngine = options.engineEvents ? options.engineEvents.on('execution.queued', (event) => this.touch(event.notebookPath)) : null;
  }

  /** Folders being watched, relative to the root (`.` is the root itself). */
  watchedFolders(): string[] {
    return [...this.folders.keys()];
  }

  /** Watches the notebook's folder from now on, remembering what the notebook holds now. */
  touch(relPath: string): void {
    if (this.closed) return;
    this.watchFolder(path.posix.dirname(relPath));
    if (this.known.has(relPath)) return;
    this.enqueue(relPath, async () => {
      if (this.known.has(relPath)) return;
      this.known.set(relPath, await hashOf(this.absolute(relPath)));
    });
  }

  /** The store saved this notebook (called right after the bytes are on disk, before anyone else can save it). */
  saved(relPath: string): void {
    if (this.closed) return;
    this.watchFolder(path.posix.dirname(relPath));
    this.enqueue(relPath, async () => {
      const hash = await hashOf(this.absolute(relPath));
      this.known.set(relPath, hash);
      this.options.bus.publish('notebook.changed', { notebook_path: relPath, source: 'server', version: versionOf(hash) });
    });
    // After the enqueue: a disk check waiting for this save now queues behind its hash.
    const inFlight = this.savesInFlight.get(relPath);
    this.savesInFlight.delete(relPath);
    inFlight?.resolve();
  }

  close(): void {
    this.closed = true;
    this.offEngine?.();
    for (const watcher of this.folders.values()) watcher.close();
    this.folders.clear();
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const inFlight of this.savesInFlight.values()) inFlight.resolve();
    this.savesInFlight.clear();
  }

  private absolute(relPath: string): string {
    return path.join(this.options.workspaceRoot, ...relPath.split('/'));
  }

  private watchFolder(folder: string): void {
    if (this.folders.has(folder)) return;
    if (this.folders.size >= this.maxFolders) {
      if (!this.warnedFull) this.options.log('warn', 'not watching more notebook folders for changes on disk', { limit: this.maxFolders, folder });
      this.warnedFull = true;
      return;
    }
    let watcher: FSWatcher;
    try {
      // Not persistent: watching must never be what keeps the process alive.
      watcher = watch(path.join(this.options.workspaceRoot, ...folder.split('/')), { persistent: false }, (_kind, filename) => this.fileEvent(folder, filename));
    } catch (error) {
      this.options.log('debug', 'cannot watch a notebook folder', { folder, error: (error as Error).message });
      return;
    }
    watcher.on('error', (error) => {
      // The folder was removed or became unreadable; a later touch watches it again.
      this.options.log('debug', 'stopped watching a notebook folder', { folder, error: error.message });
      watcher.close();
      if (this.folders.get(folder) === watcher) this.folders.delete(folder);
    });
    this.folders.set(folder, watcher);
  }

  private fileEvent(folder: string, filename: string | Buffer | null): void {
    if (this.closed) return;
    const name = filename === null ? null : filename.toString();
    if (name === null) {
      // The platform did not say which file: look again at every notebook known in that folder.
      for (const relPath of this.known.keys()) if (path.posix.dirname(relPath) === folder) this.debounce(relPath);
      return;
    }
    const own = OWN_TEMP.exec(name);
    if (own?.[1] !== undefined && Number(own[2]) === process.pid) {
      this.saveStarting(folder === '.' ? own[1] : `${folder}/${own[1]}`);
      return;
    }
    // Hidden names are temp files (ours and other programs') and editors' swap files.
    if (!name.endsWith('.ipynb') || name.startsWith('.') || name.includes('/')) return;
    this.debounce(folder === '.' ? name : `${folder}/${name}`);
  }

  /**
   * The store writes `.name.ipynb.<pid>.<random>.tmp` and renames it over the notebook; the rename's event can be
   * handled before the store calls `saved` (it first syncs the folder). Seeing our own temp file, a disk check of
   * that notebook waits for the `saved` call, so our save is not taken for someone else's.
   */
  private saveStarting(relPath: string): void {
    if (this.savesInFlight.has(relPath)) return;
    let resolve!: () => void;
    const done = new Promise<void>((settle) => (resolve = settle));
    // A save that failed never calls `saved`: the check then goes ahead after a while.
    const fallback = setTimeout(() => {
      if (this.savesInFlight.get(relPath)?.done === done) this.savesInFlight.delete(relPath);
      resolve();
    }, SAVE_WAIT_MS);
    fallback.unref();
    this.savesInFlight.set(relPath, {
      done,
      resolve: () => {
        clearTimeout(fallback);
        resolve();
      },
    });
  }

  private debounce(relPath: string): void {
    const pending = this.timers.get(relPath);
    if (pending) clearTimeout(pending);
    const timer = setTimeout(() => {
      this.timers.delete(relPath);
      void this.checkDisk(relPath);
    }, this.debounceMs);
    timer.unref();
    this.timers.set(relPath, timer);
  }

  private async checkDisk(relPath: string): Promise<void> {
    // Not a read through the store: that would take the news of an outside edit away from the next tool call.
    const inFlight = this.savesInFlight.get(relPath);
    if (inFlight) await inFlight.done;
    if (this.closed) return;
    this.enqueue(relPath, async () => {
      const hash = await hashOf(this.absolute(relPath));
      const before = this.known.get(relPath);
      if (hash === before) return;
      this.known.set(relPath, hash);
      // A file that came and went before we ever saw it is no change to anyone.
      if (hash === null && before === undefined) return;
      this.options.bus.publish('notebook.changed', {
        notebook_path: relPath,
        source: 'disk',
        version: versionOf(hash),
        ...(hash === null ? { deleted: true as const } : {}),
      });
    });
  }

  private enqueue(relPath: string, task: () => Promise<void>): void {
    this.serial.run(relPath, task).catch((error: Error) => this.options.log('warn', 'notebook change check failed', { notebook: relPath, error: error.message }));
  }
}
