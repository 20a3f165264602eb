// The notebook watcher with a real store and real files: own saves once, outside edits once, and the store still hears of them.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { silentLogger } from '../src/log.js';
import { NotebookStore } from '../src/notebook/notebooks.js';
import { EventBus, type LiveEvent } from '../src/server/events.js';
import { Registry } from '../src/server/metrics.js';
import { NotebookWatch } from '../src/server/notebook-watch.js';

const dirs: string[] = [];
const watches: NotebookWatch[] = [];

after(() => {
  for (const watch of watches) watch.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

type Changed = Extract<LiveEvent, { type: 'notebook.changed' }>;

/** A store whose `saved` notification reaches the watcher `savedDelayMs` late, as after a slow folder fsync. */
function setup(savedDelayMs: number): { root: string; store: NotebookStore; watch: NotebookWatch; changes: Changed[]; next(): Promise<Changed> } {
  const root = mkdtempSync(path.join(tmpdir(), 'events-watch-'));
  dirs.push(root);
  const bus = new EventBus({ registry: new Registry() });
  const watch = new NotebookWatch({ workspaceRoot: root, bus, log: silentLogger, debounceMs: 50 });
  watches.push(watch);
  const store = new NotebookStore({
    workspaceRoot: root,
    onSaved: (rel) => {
      if (savedDelayMs === 0) watch.saved(rel);
      else setTimeout(() => watch.saved(rel), savedDelayMs);
    },
  });
  const changes: Changed[] = [];
  let waiting: ((event: Changed) => void) | null = null;
  bus.listen((event) => {
    if (event.type !== 'notebook.changed') return;
    changes.push(event);
    waiting?.(event);
    waiting = null;
  });
  return {
    root,
    store,
    watch,
    changes,
    // The watcher itself never keeps the process alive; the guard timer does while a test waits.
    next: () =>
      new Promise((resolve, reject) => {
        const guard = setTimeout(() => reject(new Error('no notebook.changed within 10 s')), 10_000);
        waiting = (event) => {
          clearTimeout(guard);
          resolve(event);
        };
      }),
  };
}

const settle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('our own save is reported once, as the server, even when the store reports it after the file-system event', async () => {
  const { store, changes } = setup(400);
  await store.create('a.ipynb');
  // The folder is watched from the first save on; the next saves are seen on disk as well.
  await settle(500);
  changes.length = 0;
  await store.insertCell('a.ipynb', { cellType: 'code', source: 'x = 1' });
  await store.insertCell('a.ipynb', { cellType: 'code', source: 'y = 2' });
  await settle(1000);
  assert.deepEqual(
    changes.map((c) => c.source),
    ['server', 'server'],
  );
});

test('an outside edit is reported once with its version, and the next store read still says the file changed on disk', async () => {
  const { root, store, next, changes } = setup(0);
  await store.create('b.ipynb', { cells: [{ cellType: 'code', source: 'print(1)' }] });
  await settle(200);
  changes.length = 0;
  const file = path.join(root, 'b.ipynb');
  const notebook = JSON.parse(readFileSync(file, 'utf8')) as { cells: Array<{ source: string }> };
  notebook.cells[0]!.source = 'print(2)';
  const arrived = next();
  writeFileSync(file, JSON.stringify(notebook));
  const change = await arrived;
  assert.equal(change.notebook_path, 'b.ipynb');
  assert.equal(change.source, 'disk');
  const read = await store.read('b.ipynb');
  assert.equal(change.version, read.version);
  assert.equal(read.externalChange, true, 'watching must not take the news of the outside edit away from the store');
  await settle(300);
  assert.equal(changes.length, 1);
});

test('folders are watched once the server touches one of their notebooks, not before', async () => {
  const { root, watch, next, changes } = setup(0);
  mkdirSync(path.join(root, 'other'));
  const file = path.join(root, 'other', 'd.ipynb');
  writeFileSync(file, readFileSync(path.join(process.cwd(), 'examples', 'quickstart.ipynb')));
  writeFileSync(file, readFileSync(file, 'utf8') + '\n');
  await settle(300);
  assert.deepEqual(changes, [], 'nobody asked about this folder yet');
  assert.deepEqual(watch.watchedFolders(), []);

  watch.touch('other/d.ipynb');
  assert.deepEqual(watch.watchedFolders(), ['other']);
  await settle(100);
  const arrived = next();
  writeFileSync(file, readFileSync(file, 'utf8') + '\n');
  const change = await arrived;
  assert.equal(change.notebook_path, 'other/d.ipynb');
  assert.equal(change.source, 'disk');
});
