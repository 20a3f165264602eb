// Malformed and hostile tool calls: each gets a tool error that says what was wrong and what to do; nothing breaks.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startStdioServer, textOfResult, type ServerFixture } from './helpers/mcp.js';

let fx: ServerFixture;
let cellId = '';

before(async () => {
  fx = await startStdioServer();
  const created = await fx.ok<{ cells: Array<{ cell_id: string }> }>('create_notebook', { notebook_path: 'good.ipynb', cells: [{ cell_type: 'code', source: 'x = 1' }, { cell_type: 'markdown', source: '# notes' }] });
  cellId = created.cells[0]!.cell_id;
  writeFileSync(join(fx.workspace, 'corrupt.ipynb'), '{"cells": [ not json');
  writeFileSync(join(fx.workspace, 'v3.ipynb'), JSON.stringify({ nbformat: 3, nbformat_minor: 0, metadata: {}, worksheets: [] }));
  mkdirSync(join(fx.workspace, 'folder.ipynb'));
  const outside = join(fx.workspace, '..', `outside-${process.pid}`);
  mkdirSync(outside, { recursive: true });
  writeFileSync(join(outside, 'secret.ipynb'), '{}');
  symlinkSync(outside, join(fx.workspace, 'escape'));
});

after(async () => {
  await fx.close();
});

// [tool, arguments, a pattern the error text must match]
const BAD_CALLS: Array<[string, Record<string, unknown>, RegExp]> = [
  ['read_notebook', {}, /notebook_path is required/],
  ['read_notebook', { notebook_path: 42 }, /notebook_path must be a string/],
  ['read_notebook', { notebook_path: '' }, /must not be empty/],
  ['read_notebook', { notebook_path: 'missing.ipynb' }, /does not exist|not found|no such/i],
  ['read_notebook', { notebook_path: '../etc/passwd.ipynb' }, /outside|leaves|workspace/i],
  ['read_notebook', { notebook_path: '/etc/hosts.ipynb' }, /outside|leaves|workspace/i],
  ['read_notebook', { notebook_path: 'escape/secret.ipynb' }, /outside|leaves|symlink|workspace/i],
  ['read_notebook', { notebook_path: 'a/../../b.ipynb' }, /outside|leaves|workspace/i],
  ['read_notebook', { notebook_path: 'notes.txt' }, /\.ipynb/],
  ['read_notebook', { notebook_path: 'folder.ipynb' }, /directory/i],
  ['read_notebook', { notebook_path: 'corrupt.ipynb' }, /JSON|line|column/i],
  ['read_notebook', { notebook_path: 'v3.ipynb' }, /nbformat 3|nbconvert/i],
  ['read_notebook', { notebook_path: 'good.ipynb', bogus: true }, /unknown parameter|Unrecognized key|bogus/i],
  ['read_notebook', { notebook_path: 'good.ipynb', start_index: 10 }, /start_index|past the last cell/],
  ['read_notebook', { notebook_path: 'good.ipynb', start_index: -1 }, /0 or more/],
  ['read_cell', { notebook_path: 'good.ipynb' }, /cell_id .*or index/],
  ['read_cell', { notebook_path: 'good.ipynb', cell_id: 'nope' }, /nope|read_notebook/],
  ['read_cell', { notebook_path: 'good.ipynb', index: 99 }, /99|range/],
  ['read_cell', { notebook_path: 'good.ipynb', index: 1.5 }, /whole number/],
  ['read_cell', { notebook_path: 'good.ipynb', cell_id: 'a', index: 0 }, /not both/],
  ['insert_cell', { notebook_path: 'good.ipynb', cell_type: 'python', source: 'x' }, /'code', 'markdown' or 'raw'/],
  ['insert_cell', { notebook_path: 'good.ipynb', cell_type: 'code' }, /source is required/],
  ['insert_cell', { notebook_path: 'good.ipynb', cell_type: 'code', source: 'x', index: 50 }, /out of range/],
  ['insert_cell', { notebook_path: 'good.ipynb', cell_type: 'code', source: 'x', after_cell_id: 'ghost' }, /ghost/],
  ['edit_cell', { notebook_path: 'good.ipynb', index: 0 }, /nothing to change/],
  ['move_cell', { notebook_path: 'good.ipynb', index: 0, to_index: 7 }, /to_index 7 is out of range/],
  ['delete_cell', { notebook_path: 'good.ipynb', cell_id: 'ghost' }, /ghost/],
  ['create_notebook', { notebook_path: 'good.ipynb' }, /exists|overwrite/i],
  ['create_notebook', { notebook_path: 'new.ipynb', kernel_name: 'no-such-kernel' }, /no kernelspec named 'no-such-kernel'.*python3/s],
  ['create_notebook', { notebook_path: 'new2.ipynb', cells: [{ cell_type: 'code' }] }, /source is required/],
  ['execute_cell', { notebook_path: 'good.ipynb', index: 1 }, /markdown cell; only code cells run/],
  ['execute_cell', { notebook_path: 'good.ipynb', cell_id: cellIdPlaceholder(), timeout_s: -5 }, /0 or more seconds/],
  ['execute_code', { notebook_path: 'good.ipynb' }, /code is required/],
  ['get_execution', { execution_id: 'does-not-exist' }, /no execution with id 'does-not-exist'.*list_executions/],
  ['get_execution', {}, /execution_id is required/],
  ['cancel_execution', { execution_id: 'nope' }, /no execution with id/],
  ['send_input', { execution_id: 'nope', value: 'x' }, /no execution with id/],
  ['list_executions', { status: 'done' }, /status must be one of/],
  ['inspect_variable', { notebook_path: 'good.ipynb', name: 'x' }, /no running kernel/],
  ['interrupt_kernel', { notebook_path: 'good.ipynb' }, /no running kernel/],
  ['restart_kernel', { notebook_path: 'good.ipynb' }, /no running kernel/],
  ['start_kernel', { notebook_path: 'good.ipynb', kernel_name: 'nope' }, /no kernelspec named 'nope'/],
  ['read_asset', { asset_path: '../../etc/passwd' }, /outside|assets|workspace/i],
  ['sync_notebook', { notebook_path: 'good.ipynb', strategy: 'fastest' }, /strategy must be 'smart', 'incremental' or 'full'/],
  ['list_notebooks', { directory: '../..' }, /outside|leaves|workspace/i],
  ['run_cell', { notebook_path: 'good.ipynb' }, /unknown tool 'run_cell': this server's tools are .*execute_cell/],
  ['execute_code', { notebook_path: ['a.ipynb'], code: 1 }, /notebook_path must be a string[^]*code must be a string/],
];

function cellIdPlaceholder(): string {
  return 'placeholder';
}

test(`${BAD_CALLS.length} bad calls each get a clear tool error, and the server keeps serving`, async () => {
  assert.ok(BAD_CALLS.length >= 30);
  const before = readFileSync(join(fx.workspace, 'good.ipynb'), 'utf8');
  const corruptBefore = readFileSync(join(fx.workspace, 'corrupt.ipynb'), 'utf8');
  const failures: string[] = [];
  for (const [tool, args, pattern] of BAD_CALLS) {
    const result = await fx.call(tool, args);
    const text = textOfResult(result);
    if (!result.isError) failures.push(`${tool} ${JSON.stringify(args)}: not an error: ${text.slice(0, 200)}`);
    else if (!pattern.test(text)) failures.push(`${tool} ${JSON.stringify(args)}: ${JSON.stringify(text.slice(0, 300))} does not match ${pattern}`);
  }
  assert.deepEqual(failures, []);
  // Nothing stored was changed by any of them.
  assert.equal(readFileSync(join(fx.workspace, 'good.ipynb'), 'utf8'), before);
  assert.equal(readFileSync(join(fx.workspace, 'corrupt.ipynb'), 'utf8'), corruptBefore);
  // And a good call still works.
  const run = await fx.ok<{ status: string }>('execute_cell', { notebook_path: 'good.ipynb', cell_id: cellId });
  assert.equal(run.status, 'succeeded');
});

test('inspect_variable never evaluates anything but a name', async () => {
  await fx.ok('execute_code', { notebook_path: 'good.ipynb', code: 'flag = []' });
  for (const name of ['flag.append(1)', '__import__("os")', 'x; y', 'a b', 'import']) {
    const result = await fx.call('inspect_variable', { notebook_path: 'good.ipynb', name });
    assert.equal(result.isError, true, name);
    assert.match(textOfResult(result), /is not a variable name/);
  }
  const flag = await fx.ok('execute_code', { notebook_path: 'good.ipynb', code: 'flag' });
  assert.match(flag.__text + textOfResult(flag.__result), /\[\]/);
});
