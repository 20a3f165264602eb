// Big things through MCP: a 200,000-character output under the 20,000-character budget, and a 10-million-row frame.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startStdioServer, textOfResult, type ServerFixture } from './helpers/mcp.js';

const BUDGET = 20_000;

let fx: ServerFixture;
const kernels: string[] = [];
let loudCell: { path: string; cellId: string } | undefined;

before(async () => {
  fx = await startStdioServer();
});

after(async () => {
  for (const path of kernels) await fx.call('shutdown_kernel', { notebook_path: path });
  await fx.close();
});

function textChars(result: CallToolResult): number {
  return result.content.reduce((sum, item) => sum + (item.type === 'text' ? item.text.length : 0), 0);
}

function notebookCells(path: string): Array<{ id: string; execution_count: number | null; outputs: Array<{ text?: string | string[] }> }> {
  return (JSON.parse(readFileSync(join(fx.workspace, path), 'utf8')) as { cells: Array<{ id: string; execution_count: number | null; outputs: Array<{ text?: string | string[] }> }> }).cells;
}

test('a 200,000-character output stays under the budget, names its asset, and is whole in the notebook', { timeout: 60_000 }, async () => {
  const path = 'loud.ipynb';
  kernels.push(path);
  // 4,000 numbered lines of 50 characters (with the newline): 200,000 characters.
  const created = await fx.ok<{ cells: Array<{ cell_id: string }> }>('create_notebook', {
    notebook_path: path,
    cells: [{ cell_type: 'code', source: 'for i in range(4000):\n    print(f"line {i:05d} " + "x" * 38)' }],
  });
  const cellId = created.cells[0]!.cell_id;
  const ran = await fx.ok<{ status: string; assets: string[]; outputs_truncated: boolean }>('execute_cell', { notebook_path: path, cell_id: cellId });
  assert.equal(ran.status, 'succeeded');
  const text = textOfResult(ran.__result);
  console.log(`200,000 characters of output came back as ${textChars(ran.__result)} characters of text`);
  assert.ok(textChars(ran.__result) <= BUDGET, `the result carries ${textChars(ran.__result)} characters of text, over the ${BUDGET} budget`);
  assert.equal(ran.outputs_truncated, true);
  assert.match(text, /line 00000/, 'the head is shown');
  assert.match(text, /line 03999/, 'the tail is shown');
  const cut = /\[… ([\d,]+) characters cut here/.exec(text);
  assert.ok(cut, 'the result says how much was cut');
  assert.ok(Number(cut[1]!.replace(/,/g, '')) >= 180_000);
  const asset = ran.assets[0];
  assert.ok(asset, 'the whole text was saved as an asset');
  assert.ok(text.includes(asset), 'the result names the asset');

  const found = await fx.ok<{ matches: Array<{ line: number; text: string }> }>('read_asset', { asset_path: asset, search: 'line 03990' });
  assert.equal(found.matches.length, 1);
  assert.equal(found.matches[0]!.line, 3991);
  assert.equal(found.matches[0]!.text, `line 03990 ${'x'.repeat(38)}`);

  loudCell = { path, cellId };

  const onDisk = notebookCells(path)[0]!.outputs.map((output) => (Array.isArray(output.text) ? output.text.join('') : (output.text ?? ''))).join('');
  assert.equal(onDisk.length, 200_000, 'the notebook file holds the whole output (it is under the engine budget)');
  assert.ok(onDisk.endsWith(`line 03999 ${'x'.repeat(38)}\n`));
});

// read_cell renders the outputs with the whole budget and puts its own header before them (src/server/tools/notebooks.ts).
test('read_cell of a cell with a huge output stays under the budget', async () => {
  assert.ok(loudCell, 'runs after the test above');
  const cellRead = await fx.ok('read_cell', { notebook_path: loudCell.path, cell_id: loudCell.cellId });
  assert.ok(textChars(cellRead.__result) <= BUDGET, `read_cell carries ${textChars(cellRead.__result)} characters of text`);
});

test('a 10-million-row frame is listed and inspected quickly, without touching execution counts or the file', { timeout: 90_000 }, async () => {
  const path = 'big.ipynb';
  kernels.push(path);
  const created = await fx.ok<{ cells: Array<{ cell_id: string }> }>('create_notebook', {
    notebook_path: path,
    cells: [
      {
        cell_type: 'code',
        source: "import numpy as np, pandas as pd\nn = 10_000_000\nbig = pd.DataFrame({'id': np.arange(n), 'value': np.arange(n) * 0.5, 'even': np.arange(n) % 2 == 0})\nprint(big.shape)",
      },
    ],
  });
  const built = await fx.ok<{ status: string; execution_count: number }>('execute_cell', { notebook_path: path, cell_id: created.cells[0]!.cell_id, timeout_s: 60 });
  assert.equal(built.status, 'succeeded');
  const fileBefore = readFileSync(join(fx.workspace, path));

  let started = performance.now();
  const listed = await fx.ok<{ variables: Array<{ name: string; type: string; summary: string }> }>('list_variables', { notebook_path: path });
  const listMs = performance.now() - started;
  started = performance.now();
  const inspected = await fx.ok<{ shape: number[]; columns: string[]; dtypes: Record<string, string>; head: string }>('inspect_variable', { notebook_path: path, name: 'big' });
  const inspectMs = performance.now() - started;
  console.log(`10M-row frame: list_variables ${listMs.toFixed(0)} ms, inspect_variable ${inspectMs.toFixed(0)} ms`);
  assert.ok(listMs < 3000, `list_variables took ${listMs.toFixed(0)} ms`);
  assert.ok(inspectMs < 3000, `inspect_variable took ${inspectMs.toFixed(0)} ms`);

  const entry = listed.variables.find((variable) => variable.name === 'big');
  assert.equal(entry?.type, 'DataFrame');
  assert.equal(entry?.summary, 'shape 10000000x3');
  assert.deepEqual(
    listed.variables.map((variable) => variable.name).sort(),
    ['big', 'n'],
    'only user variables: no modules, no interpreter internals',
  );
  assert.deepEqual(inspected.shape, [10_000_000, 3]);
  assert.deepEqual(inspected.columns, ['id', 'value', 'even']);
  assert.deepEqual(inspected.dtypes, { id: 'int64', value: 'float64', even: 'bool' });
  assert.match(inspected.head, /id\s+value\s+even/);

  const next = await fx.ok<{ status: string; execution_count: number }>('execute_code', { notebook_path: path, code: 'len(big)' });
  assert.equal(next.status, 'succeeded');
  assert.equal(next.execution_count, built.execution_count + 1, 'inspection did not bump the execution count');
  assert.deepEqual(readFileSync(join(fx.workspace, path)), fileBefore, 'inspection and execute_code left the notebook file alone');
});
