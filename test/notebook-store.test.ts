// Checks NotebookStore on real files: edits validated by Python nbformat, external edits merged, concurrency, atomic saves.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { watch } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { joinText, parseNotebook, type CodeCell, type Output } from '../src/notebook/nbformat.js';
import {
  CellNotFoundError,
  InvalidEditError,
  NotebookExistsError,
  NotebookFormatError,
  NotebookIoError,
  NotebookNotFoundError,
  NotebookStore,
} from '../src/notebook/notebooks.js';
import { PathError } from '../src/notebook/paths.js';

import { PythonOracle } from './helpers/python-oracle.js';


let python: PythonOracle;
let root: string;
let counter = 0;

before(async () => {
  root = await realpath(await mkdtemp(path.join(os.tmpdir(), 'nb-store-')));
  python = new PythonOracle(() => root);
});
after(async () => {
  await python.close();
  await rm(root, { recursive: true, force: true });
});

/** A fresh notebook name for each test, so tests do not share files. */
function fresh(prefix: string): string {
  return `${prefix}-${++counter}.ipynb`;
}

const abs = (rel: string) => path.join(root, rel);

interface Verdict {
  name: string;
  valid: boolean;
  error: string | null;
  /** nbformat.write of what nbformat read equals the file: we wrote exactly what nbformat would. */
  canonical: boolean;
}

/** Validates snapshots with Python nbformat in one call. */
async function validate(snapshots: [string, string][]): Promise<Verdict[]> {
  const script = `
out = []
for name, t in json.loads(data):
    nb = nbformat.reads(t, 4)
    try:
        nbformat.validate(nb)
        valid, error = True, None
    except Exception as e:
        valid, error = False, str(e)[:800]
    buf = io.StringIO()
    nbformat.write(nb, buf)
    out.append({"name": name, "valid": valid, "error": error, "canonical": buf.getvalue() == t})
result = json.dumps(out)`;
  return JSON.parse(await python.run(script, JSON.stringify(snapshots))) as Verdict[];
}

function sources(text: string): string[] {
  return parseNotebook(text, 'x').notebook.cells.map((c) => joinText(c.source));
}

test('every cell operation leaves a notebook that nbformat validates and would write identically', async () => {
  const store = new NotebookStore({ workspaceRoot: root });
  const p = fresh('ops');
  const snapshots: [string, string][] = [];
  const snap = async (name: string) => snapshots.push([name, await readFile(abs(p), 'utf8')]);

  const created = await store.create(p, { kernelName: 'python3', cells: [{ cellType: 'markdown', source: '# Title' }, { cellType: 'code', source: 'x = 1' }] });
  assert.equal(created.notebook.cells.length, 2);
  await snap('create');
  const [mdId, codeId] = created.notebook.cells.map((c) => c.id) as [string, string];

  const ins = await store.insertCell(p, { afterCellId: mdId, cellType: 'code', source: 'import math\nmath.pi' });
  assert.equal(ins.index, 1);
  assert.equal(ins.saved, true);
  await snap('insert after id');
  const ins2 = await store.insertCell(p, { index: 0, cellType: 'raw', source: 'raw text' });
  assert.equal(ins2.index, 0);
  const appended = await store.insertCell(p, { cellType: 'markdown', source: 'the end' });
  assert.equal(appended.index, 4);
  await snap('insert at index / append');
  assert.deepEqual(sources(snapshots.at(-1)![1]), ['raw text', '# Title', 'import math\nmath.pi', 'x = 1', 'the end']);

  const outputs = [
    { output_type: 'stream', name: 'stdout', text: 'line 1\nline 2\n' },
    // `transient` arrives on display_data messages but is not part of a saved notebook.
    { output_type: 'display_data', data: { 'text/plain': '<Figure>', 'image/png': 'iVBORw0KGgo=\n' }, metadata: { 'image/png': { width: 640 } }, transient: { display_id: 'd1' } },
    { output_type: 'execute_result', execution_count: 7, data: { 'text/plain': '3.14159\n', 'text/html': '<b>pi</b>\n<i>!</i>' }, metadata: {} },
    { output_type: 'error', ename: 'ZeroDivisionError', evalue: 'division by zero', traceback: ['\x1b[0;31mZeroDivisionError\x1b[0m', 'x'] },
  ] as unknown as Output[];
  const set = await store.setCellOutputs(p, ins.cellId, outputs, 7, { executionId: 'exec-1', finishedAt: '2025-01-02T03:04:05.000Z', sourceSha256: 'ab'.repeat(32) });
  assert.equal(set.index, 2);
  await snap('setCellOutputs');
  const withOutputs = parseNotebook(snapshots.at(-1)![1], p).notebook.cells[2] as CodeCell;
  assert.equal(withOutputs.execution_count, 7);
  assert.equal(withOutputs.outputs.length, 4);
  assert.deepEqual(withOutputs.metadata['mcp_jupyter'], { execution_id: 'exec-1', finished_at: '2025-01-02T03:04:05.000Z', source_sha256: 'ab'.repeat(32) });
  assert.ok(!snapshots.at(-1)![1].includes('transient'));

  const edited = await store.editCell(p, { cellId: codeId }, { source: 'x = 2\nprint(x)' });
  assert.equal(joinText(edited.cell.source), 'x = 2\nprint(x)');
  await snap('edit source');
  const toMd = await store.editCell(p, { index: 2 }, { cellType: 'markdown' });
  assert.equal(toMd.cell.cell_type, 'markdown');
  assert.equal('outputs' in toMd.cell, false);
  await snap('code -> markdown');
  const toCode = await store.editCell(p, { index: 2 }, { cellType: 'code', source: 'y = 3' });
  assert.deepEqual((toCode.cell as CodeCell).outputs, []);
  await snap('markdown -> code');

  const moved = await store.moveCell(p, { cellId: appended.cellId }, 0);
  assert.deepEqual([moved.fromIndex, moved.index], [4, 0]);
  await snap('move');
  await store.setCellOutputs(p, codeId, [{ output_type: 'stream', name: 'stdout', text: '2\n' }], 1, { executionId: 'e2', finishedAt: 'now', sourceSha256: 'cd'.repeat(32) });
  const cleared = await store.clearOutputs(p);
  assert.deepEqual(cleared.clearedCellIds, [codeId]);
  await snap('clear all');
  const del = await store.deleteCell(p, { cellId: ins2.cellId });
  assert.equal(del.index, 1);
  await snap('delete');
  assert.deepEqual(sources(snapshots.at(-1)![1]), ['the end', '# Title', 'y = 3', 'x = 2\nprint(x)']);

  for (const v of await validate(snapshots)) {
    assert.ok(v.valid, `${v.name}: nbformat.validate failed: ${v.error}`);
    assert.ok(v.canonical, `${v.name}: nbformat would write the file differently`);
  }
});

test('create refuses to overwrite, makes parent folders, and the existing file is untouched', async () => {
  const store = new NotebookStore({ workspaceRoot: root });
  const p = `deep/er/${fresh('new')}`;
  await store.create(p);
  const before = await readFile(abs(p), 'utf8');
  await assert.rejects(store.create(p, { cells: [{ cellType: 'code', source: 'boom' }] }), (e: unknown) => {
    assert.ok(e instanceof NotebookExistsError);
    assert.match(e.message, /already exists and was left as it is/);
    return true;
  });
  assert.equal(await readFile(abs(p), 'utf8'), before);
  const other = new NotebookStore({ workspaceRoot: root }); // no cache: the file system decides
  await assert.rejects(other.create(p), NotebookExistsError);
  assert.deepEqual((await readdir(path.dirname(abs(p)))).filter((n) => n.endsWith('.tmp')), []);
});

test('bad cell references say how to recover', async () => {
  const store = new NotebookStore({ workspaceRoot: root });
  const p = fresh('refs');
  await store.create(p, { cells: [{ cellType: 'code', source: 'a' }, { cellType: 'code', source: 'b' }] });
  await assert.rejects(store.editCell(p, { cellId: 'nope' }, { source: 'x' }), (e: unknown) => {
    assert.ok(e instanceof CellNotFoundError);
    assert.equal(e.message, `cell 'nope' is no longer in ${p} (it was deleted or the file changed on disk); read_notebook to see the current cells and their ids`);
    return true;
  });
  await assert.rejects(store.deleteCell(p, { index: 5 }), /index 5 is out of range: .* has 2 cell\(s\), so valid indexes are 0–1/);
  await assert.rejects(store.moveCell(p, { index: 0 }, 2), /to_index 2 is out of range: .* use 0–1/);
  await assert.rejects(store.insertCell(p, { index: 3, cellType: 'code', source: '' }), /use 0–2 \(2 appends\)/);
  await assert.rejects(store.editCell(p, { index: 0 }, {}), InvalidEditError);
  await assert.rejects(store.read('missing.ipynb'), NotebookNotFoundError);
  await assert.rejects(store.read('../escape.ipynb'), PathError);
});

test('an nbformat 4.4 notebook gets ids in memory; they are used by edits and saved with the first one', async () => {
  const store = new NotebookStore({ workspaceRoot: root });
  const p = fresh('v44');
  await python.run(
    `
from nbformat.v4 import new_notebook, new_code_cell
nb = new_notebook(cells=[new_code_cell("a = 1"), new_code_cell("b = 2")])
d = json.loads(nbformat.writes(nb))
d["nbformat_minor"] = 4
for c in d["cells"]: del c["id"]
open(root + "/" + data, "w").write(json.dumps(d, indent=1, sort_keys=True) + "\\n")`,
    p,
  );
  const original = await readFile(abs(p), 'utf8');
  const r = await store.read(p);
  assert.equal(r.upgraded, true);
  assert.equal(await readFile(abs(p), 'utf8'), original, 'reading must not write');
  const [a, b] = r.notebook.cells.map((c) => c.id) as [string, string];
  assert.equal((await store.read(p)).notebook.cells[0]!.id, a, 'ids stay stable while the file is unchanged');
  const res = await store.editCell(p, { cellId: b }, { source: 'b = 3' });
  assert.equal(res.saved, true);
  const saved = await readFile(abs(p), 'utf8');
  const nb = parseNotebook(saved, p);
  assert.equal(nb.upgraded, false);
  assert.equal(nb.notebook.nbformat_minor, 5);
  assert.deepEqual(nb.notebook.cells.map((c) => c.id), [a, b]);
  const [v] = await validate([['v44', saved]]);
  assert.ok(v!.valid && v!.canonical, v!.error ?? 'not canonical');
});

test('an edit after someone saved the file elsewhere applies to their version and keeps their change', async () => {
  const store = new NotebookStore({ workspaceRoot: root });
  const p = fresh('external');
  const { notebook, version } = await store.create(p, { cells: [{ cellType: 'code', source: 'A = 1' }, { cellType: 'code', source: 'B = 1' }] });
  const [a, b] = notebook.cells.map((c) => c.id) as [string, string];
  // JupyterLab (here: Python nbformat) changes cell B on disk.
  await python.run(
    `
nb = nbformat.read(root + "/" + data, 4)
nb.cells[1].source = "B = 'changed in JupyterLab'"
nbformat.write(nb, root + "/" + data)`,
    p,
  );
  const res = await store.editCell(p, { cellId: a }, { source: 'A = 2' });
  assert.equal(res.externalChange, true);
  assert.notEqual(res.version, version);
  const onDisk = parseNotebook(await readFile(abs(p), 'utf8'), p).notebook;
  assert.deepEqual(
    onDisk.cells.map((c) => [c.id, joinText(c.source)]),
    [
      [a, 'A = 2'],
      [b, "B = 'changed in JupyterLab'"],
    ],
  );
  // A read right after our own save is not an external change.
  assert.equal((await store.read(p)).externalChange, false);
});

test('an edit of a cell deleted on disk fails with CellNotFoundError and writes nothing', async () => {
  const store = new NotebookStore({ workspaceRoot: root });
  const p = fresh('deleted');
  const { notebook } = await store.create(p, { cells: [{ cellType: 'code', source: 'keep' }, { cellType: 'code', source: 'doomed' }] });
  const doomed = notebook.cells[1]!.id;
  await python.run(
    `
nb = nbformat.read(root + "/" + data, 4)
del nb.cells[1]
nbformat.write(nb, root + "/" + data)`,
    p,
  );
  const before = await readFile(abs(p));
  const mtime = (await stat(abs(p))).mtimeMs;
  await assert.rejects(store.editCell(p, { cellId: doomed }, { source: 'x' }), CellNotFoundError);
  await assert.rejects(
    store.setCellOutputs(p, doomed, [{ output_type: 'stream', name: 'stdout', text: 'late' }], 3, { executionId: 'e', finishedAt: 't', sourceSha256: 's' }),
    /cell '.*' is no longer in/,
  );
  assert.deepEqual(await readFile(abs(p)), before);
  assert.equal((await stat(abs(p))).mtimeMs, mtime);
});

test('outputs land in the cell with the id even after the cell moved', async () => {
  const store = new NotebookStore({ workspaceRoot: root });
  const p = fresh('moved');
  const { notebook } = await store.create(p, { cells: [{ cellType: 'code', source: 'first' }, { cellType: 'code', source: 'second' }] });
  const second = notebook.cells[1]!.id;
  await store.moveCell(p, { cellId: second }, 0);
  await store.insertCell(p, { index: 0, cellType: 'markdown', source: 'intro' });
  const r = await store.setCellOutputs(p, second, [{ output_type: 'stream', name: 'stdout', text: 'from second\n' }], 1, {
    executionId: 'e',
    finishedAt: 't',
    sourceSha256: 's',
  });
  assert.equal(r.index, 1);
  const cell = (await store.read(p)).notebook.cells[1] as CodeCell;
  assert.equal(joinText(cell.source), 'second');
  assert.equal(joinText((cell.outputs[0] as { text: string[] }).text), 'from second\n');
});

test('20 concurrent updates to one notebook all land', async () => {
  const store = new NotebookStore({ workspaceRoot: root });
  const p = fresh('concurrent');
  const { notebook } = await store.create(p, { cells: [{ cellType: 'code', source: 'seed' }] });
  const seed = notebook.cells[0]!.id;
  const results = await Promise.all([
    ...Array.from({ length: 20 }, (_, i) => store.insertCell(p, { cellType: 'code', source: `x${i} = ${i}` })),
    store.editCell(p, { cellId: seed }, { source: 'seed edited' }),
  ]);
  assert.equal(new Set(results.map((r) => r.version)).size, results.length, 'each update saved a new version');
  const cells = parseNotebook(await readFile(abs(p), 'utf8'), p).notebook.cells;
  assert.equal(cells.length, 21);
  assert.equal(joinText(cells[0]!.source), 'seed edited');
  assert.deepEqual(new Set(cells.slice(1).map((c) => joinText(c.source))), new Set(Array.from({ length: 20 }, (_, i) => `x${i} = ${i}`)));
});

test('an edit that changes nothing writes nothing; saves keep the file mode', async () => {
  const store = new NotebookStore({ workspaceRoot: root });
  const p = fresh('mode');
  const { notebook } = await store.create(p, { cells: [{ cellType: 'code', source: 'same' }] });
  await chmod(abs(p), 0o640);
  const st = await stat(abs(p));
  const noop = await store.editCell(p, { cellId: notebook.cells[0]!.id }, { source: 'same' });
  assert.equal(noop.saved, false);
  const st2 = await stat(abs(p));
  assert.equal(st2.ino, st.ino);
  assert.equal(st2.mtimeMs, st.mtimeMs);
  const clearedNothing = await store.clearOutputs(p);
  assert.equal(clearedNothing.saved, false);
  await store.editCell(p, { index: 0 }, { source: 'different' });
  const st3 = await stat(abs(p));
  assert.notEqual(st3.ino, st.ino, 'saved through a new file renamed into place');
  assert.equal(st3.mode & 0o777, 0o640);
});

test('corrupt, v3 and non-notebook files are never modified by any operation', async () => {
  const store = new NotebookStore({ workspaceRoot: root });
  const garbage = fresh('garbage');
  const v3 = fresh('v3');
  await writeFile(abs(garbage), '{"cells": [ {"cell_type": "code", ');
  await writeFile(abs(v3), JSON.stringify({ nbformat: 3, nbformat_minor: 0, metadata: {}, worksheets: [{ cells: [] }] }));
  for (const p of [garbage, v3]) {
    const before = await readFile(abs(p));
    const mtime = (await stat(abs(p))).mtimeMs;
    const ops: (() => Promise<unknown>)[] = [
      () => store.read(p),
      () => store.insertCell(p, { cellType: 'code', source: 'x' }),
      () => store.editCell(p, { index: 0 }, { source: 'x' }),
      () => store.deleteCell(p, { index: 0 }),
      () => store.moveCell(p, { index: 0 }, 0),
      () => store.clearOutputs(p),
      () => store.setCellOutputs(p, 'abc', [], null, { executionId: 'e', finishedAt: 't', sourceSha256: 's' }),
      () => store.create(p),
    ];
    for (const op of ops) await assert.rejects(op(), (e: unknown) => e instanceof NotebookFormatError || e instanceof NotebookExistsError);
    assert.deepEqual(await readFile(abs(p)), before);
    assert.equal((await stat(abs(p))).mtimeMs, mtime);
  }
  await assert.rejects(store.read(garbage), /is not valid JSON: unexpected end of file .* at line 1, column 35/);
  await assert.rejects(store.read(v3), /jupyter nbconvert --to notebook --nbformat 4/);
  await mkdir(abs('folder.ipynb'));
  await assert.rejects(store.read('folder.ipynb'), (e: unknown) => e instanceof NotebookIoError && /folder\.ipynb is a directory/.test(e.message));
  await writeFile(abs('latin1.ipynb'), Buffer.from([0x7b, 0xe9, 0x7d]));
  await assert.rejects(store.read('latin1.ipynb'), /not UTF-8 text/);
});

test('reads are cached until the file changes on disk', async () => {
  const store = new NotebookStore({ workspaceRoot: root });
  const p = fresh('cache');
  await store.create(p, { cells: [{ cellType: 'code', source: 'one' }] });
  const r1 = await store.read(p);
  const r2 = await store.read(p);
  assert.equal(r1.version, r2.version);
  r2.notebook.cells.length = 0; // callers get copies: this must not leak into the store
  assert.equal((await store.read(p)).notebook.cells.length, 1);
  await python.run(
    `
nb = nbformat.read(root + "/" + data, 4)
nb.cells[0].source = "two"
nbformat.write(nb, root + "/" + data)`,
    p,
  );
  const r3 = await store.read(p);
  assert.equal(r3.externalChange, true);
  assert.notEqual(r3.version, r1.version);
  assert.equal(joinText(r3.notebook.cells[0]!.source), 'two');
});

test('ids given to an old notebook stay stable while many other notebooks are opened', async () => {
  const ws = await realpath(await mkdtemp(path.join(os.tmpdir(), 'nb-lru-')));
  try {
    const store = new NotebookStore({ workspaceRoot: ws });
    const old = { nbformat: 4, nbformat_minor: 4, metadata: {}, cells: [{ cell_type: 'code', source: 'a', metadata: {}, outputs: [], execution_count: null }] };
    await writeFile(path.join(ws, 'old.ipynb'), JSON.stringify(old));
    const id = (await store.read('old.ipynb')).notebook.cells[0]!.id;
    for (let i = 0; i < 100; i++) await store.create(`n${i}.ipynb`, { cells: [{ cellType: 'code', source: String(i) }] });
    assert.equal((await store.listNotebooks()).length, 101);
    const again = await store.read('old.ipynb');
    assert.equal(again.notebook.cells[0]!.id, id);
    await store.editCell('old.ipynb', { cellId: id }, { source: 'b' });
    assert.equal(parseNotebook(await readFile(path.join(ws, 'old.ipynb'), 'utf8'), 'old.ipynb').notebook.cells[0]!.id, id);
  } finally {
    await rm(ws, { recursive: true, force: true });
  }
});

test('listNotebooks finds notebooks with cell counts, skips hidden and tool folders, reports broken ones', async () => {
  const ws = await realpath(await mkdtemp(path.join(os.tmpdir(), 'nb-list-')));
  try {
    const store = new NotebookStore({ workspaceRoot: ws });
    await store.create('a.ipynb', { cells: [{ cellType: 'code', source: '1' }, { cellType: 'code', source: '2' }] });
    await store.create('sub/b.ipynb', { kernelName: 'ir', language: 'R' });
    for (const hidden of ['.git/x.ipynb', 'node_modules/pkg/y.ipynb', '.ipynb_checkpoints/a-checkpoint.ipynb', '.mcp-jupyter/z.ipynb', '.hidden/h.ipynb']) {
      await mkdir(path.dirname(path.join(ws, hidden)), { recursive: true });
      await writeFile(path.join(ws, hidden), '{}');
    }
    await writeFile(path.join(ws, 'sub', 'broken.ipynb'), 'not json');
    await writeFile(path.join(ws, 'notes.txt'), 'not a notebook');
    const outside = await mkdtemp(path.join(os.tmpdir(), 'nb-list-out-'));
    await writeFile(path.join(outside, 'o.ipynb'), '{}');
    await symlink(path.join(outside, 'o.ipynb'), path.join(ws, 'link-out.ipynb'));
    try {
      const all = await store.listNotebooks();
      assert.deepEqual(
        all.map((n) => [n.path, n.cells, n.kernel, n.error === undefined ? undefined : n.error.slice(0, 40)]),
        [
          ['a.ipynb', 2, 'python3', undefined],
          ['link-out.ipynb', undefined, undefined, 'link-out.ipynb goes through a symlink th'],
          ['sub/b.ipynb', 0, 'ir', undefined],
          ['sub/broken.ipynb', undefined, undefined, 'sub/broken.ipynb is not valid JSON: unex'],
        ],
      );
      assert.deepEqual((await store.listNotebooks('sub')).map((n) => n.path), ['sub/b.ipynb', 'sub/broken.ipynb']);
      await assert.rejects(store.listNotebooks('nope'), /the directory nope does not exist/);
      await assert.rejects(store.listNotebooks('../'), PathError);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  } finally {
    await rm(ws, { recursive: true, force: true });
  }
});

test('a writer killed with SIGKILL mid-save never leaves a partial notebook behind', async () => {
  const ws = await realpath(await mkdtemp(path.join(os.tmpdir(), 'nb-kill-')));
  const p = 'big.ipynb';
  const target = path.join(ws, p);
  try {
    await new NotebookStore({ workspaceRoot: ws }).create(p, { cells: [{ cellType: 'code', source: 'start' }] });
    const moduleUrl = pathToFileURL(path.resolve(import.meta.dirname, '../src/notebook/notebooks.js')).href;
    // The child rewrites a ~4 MB cell as fast as it can and reports each completed save.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
import { NotebookStore } from ${JSON.stringify(moduleUrl)};
const store = new NotebookStore({ workspaceRoot: process.env.NB_ROOT });
const line = 'value = "' + 'x'.repeat(70) + '"\\n';
for (let i = 0; ; i++) {
  await store.editCell('big.ipynb', { index: 0 }, { source: '# version ' + i + '\\n' + line.repeat(50000 + i) });
  process.stdout.write(i + '\\n');
}`,
      ],
      { env: { ...process.env, NB_ROOT: ws }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

    const problems: string[] = [];
    let observations = 0;
    let checking = false;
    let again = false;
    // Every change event and every reported save triggers a full read of the target, which must always parse.
    const check = async (): Promise<void> => {
      if (checking) {
        again = true;
        return;
      }
      checking = true;
      do {
        again = false;
        const text = await readFile(target, 'utf8');
        observations++;
        try {
          parseNotebook(text, p);
        } catch (e) {
          problems.push(`${text.length} bytes: ${(e as Error).message.slice(0, 120)}`);
        }
      } while (again);
      checking = false;
    };
    const watcher = watch(ws, () => void check());
    let saves = 0;
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', () => {
        saves++;
        void check();
        if (saves === 8) {
          child.kill('SIGKILL'); // most likely in the middle of writing save number 9
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        if (signal !== 'SIGKILL') reject(new Error(`writer exited early (${code}): ${stderr}`));
      });
    });
    await exited;
    watcher.close();
    await check();
    assert.deepEqual(problems, []);
    assert.ok(observations >= 8, `observed the file ${observations} times`);
    const final = parseNotebook(await readFile(target, 'utf8'), p).notebook;
    assert.match(joinText(final.cells[0]!.source), /^# version (7|8)\n/);
    // A temp file of the killed save may remain; it is hidden and never listed as a notebook.
    assert.deepEqual((await new NotebookStore({ workspaceRoot: ws }).listNotebooks()).map((n) => n.path), ['big.ipynb']);
  } finally {
    await rm(ws, { recursive: true, force: true });
  }
});
