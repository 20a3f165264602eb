// Notebook files that change under the agent: a person's save between agent edits, and a cell moved while it runs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PROJECT_ROOT, startStdioServer, textOfResult, type ServerFixture } from './helpers/mcp.js';

const PYTHON = join(PROJECT_ROOT, '.venv', 'bin', 'python');

interface DiskCell {
  id: string;
  cell_type: string;
  source: string | string[];
  execution_count?: number | null;
  outputs?: Array<{ output_type: string; text?: string | string[] }>;
  metadata: Record<string, unknown>;
}

let fx: ServerFixture;
const kernels: string[] = [];

before(async () => {
  fx = await startStdioServer();
});

after(async () => {
  for (const path of kernels) await fx.call('shutdown_kernel', { notebook_path: path });
  await fx.close();
});

function joined(text: string | string[] | undefined): string {
  return Array.isArray(text) ? text.join('') : (text ?? '');
}

function cellsOnDisk(path: string): DiskCell[] {
  return (JSON.parse(readFileSync(join(fx.workspace, path), 'utf8')) as { cells: DiskCell[] }).cells;
}

/** What a person's editor does: read the notebook with nbformat, change it, save it — in another process. */
function personEdits(path: string, python: string): void {
  const program = `import sys, nbformat\npath = sys.argv[1]\nnb = nbformat.read(path, as_version=4)\n${python}\nnbformat.write(nb, path)\n`;
  execFileSync(PYTHON, ['-c', program, join(fx.workspace, path)]);
}

function validateWithNbformat(path: string): void {
  execFileSync(PYTHON, ['-c', 'import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))', join(fx.workspace, path)]);
}

test("a person's save between the agent's edits is kept; editing a cell deleted on disk fails and changes nothing", { timeout: 30_000 }, async () => {
  const path = 'shared.ipynb';
  const created = await fx.ok<{ cells: Array<{ cell_id: string }> }>('create_notebook', {
    notebook_path: path,
    cells: [
      { cell_type: 'code', source: 'a = 0' },
      { cell_type: 'code', source: 'b = 0' },
      { cell_type: 'code', source: 'c = 0' },
    ],
  });
  const [idA, idB, idC] = created.cells.map((cell) => cell.cell_id) as [string, string, string];

  await fx.ok('edit_cell', { notebook_path: path, cell_id: idA, source: 'a = 1' });
  personEdits(path, `next(c for c in nb.cells if c.id == ${JSON.stringify(idB)}).source = 'b = "from the person"'`);
  // external_change is not asserted: the server's file watcher may re-read the file before this edit does.
  await fx.ok('edit_cell', { notebook_path: path, cell_id: idA, source: 'a = 2' });

  const merged = cellsOnDisk(path);
  assert.deepEqual(
    merged.map((cell) => [cell.id, joined(cell.source)]),
    [
      [idA, 'a = 2'],
      [idB, 'b = "from the person"'],
      [idC, 'c = 0'],
    ],
    "both the agent's and the person's edits are in the file",
  );
  validateWithNbformat(path);

  personEdits(path, `nb.cells = [c for c in nb.cells if c.id != ${JSON.stringify(idC)}]`);
  const before = readFileSync(join(fx.workspace, path));
  const refused = await fx.call('edit_cell', { notebook_path: path, cell_id: idC, source: 'c = 1' });
  assert.equal(refused.isError, true);
  assert.match(textOfResult(refused), new RegExp(`cell '${idC}' is no longer in ${path}.*read_notebook`), 'the error says the cell is gone and how to recover');
  assert.deepEqual(readFileSync(join(fx.workspace, path)), before, 'the file is unchanged');
});

test('a cell moved while it runs gets its outputs by id, not at its old index', { timeout: 60_000 }, async () => {
  const path = 'moving.ipynb';
  kernels.push(path);
  const created = await fx.ok<{ cells: Array<{ cell_id: string }> }>('create_notebook', {
    notebook_path: path,
    cells: [
      { cell_type: 'code', source: 'print("first")' },
      { cell_type: 'code', source: 'print("second")' },
      { cell_type: 'code', source: 'import time\ntime.sleep(2)\nprint("slow cell done")' },
    ],
  });
  const [idFirst, idSecond, idSlow] = created.cells.map((cell) => cell.cell_id) as [string, string, string];
  await fx.ok('start_kernel', { notebook_path: path });

  const started = await fx.ok<{ execution_id: string; status: string }>('execute_cell', { notebook_path: path, cell_id: idSlow, wait: false });
  assert.ok(['pending', 'running'].includes(started.status));
  await fx.ok('move_cell', { notebook_path: path, cell_id: idSlow, to_index: 0 });
  const inserted = await fx.ok<{ cell_id: string }>('insert_cell', { notebook_path: path, index: 0, cell_type: 'code', source: 'x = "inserted above"' });
  const note = await fx.ok<{ cell_id: string }>('insert_cell', { notebook_path: path, index: 0, cell_type: 'markdown', source: '# A heading added meanwhile' });
  const stillRunning = await fx.ok<{ status: string }>('get_execution', { execution_id: started.execution_id });
  assert.equal(stillRunning.status, 'running', 'the edits happened while the cell ran');

  const done = await fx.ok<{ status: string }>('get_execution', { execution_id: started.execution_id, wait_s: 20 });
  assert.equal(done.status, 'succeeded');

  const cells = cellsOnDisk(path);
  assert.deepEqual(
    cells.map((cell) => cell.id),
    [note.cell_id, inserted.cell_id, idSlow, idFirst, idSecond],
  );
  const slow = cells.find((cell) => cell.id === idSlow)!;
  assert.equal(joined(slow.outputs?.[0]?.text), 'slow cell done\n');
  assert.equal(slow.execution_count, 1);
  assert.equal((slow.metadata.mcp_jupyter as { execution_id?: string } | undefined)?.execution_id, started.execution_id);
  for (const other of cells.filter((cell) => cell.id !== idSlow)) {
    assert.ok(!other.outputs?.length, `cell ${other.id} (now where the slow cell was, or anywhere else) got no outputs`);
  }
  validateWithNbformat(path);
});
