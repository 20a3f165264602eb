// How execution calls wait over MCP: timeout → running, progress notifications, cancellation, input(), run_all_cells.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CallToolResultSchema, type CallToolResult, type Progress } from '@modelcontextprotocol/sdk/types.js';
import { startStdioServer, textOfResult, type ServerFixture } from './helpers/mcp.js';

interface Execution {
  execution_id: string;
  status: string;
  execution_count: number | null;
  status_text: string | null;
  cell_id: string | null;
  awaiting_input: { prompt: string; password: boolean } | null;
}

let fx: ServerFixture;
const notebooks: string[] = [];

/** A notebook of its own for each test (so each has its own kernel), with the kernel already up. */
async function freshNotebook(name: string, cells: Array<{ cell_type: 'code' | 'markdown'; source: string }> = []): Promise<{ path: string; cellIds: string[] }> {
  const path = `${name}.ipynb`;
  const created = await fx.ok<{ cells: Array<{ cell_id: string }> }>('create_notebook', { notebook_path: path, cells });
  notebooks.push(path);
  await fx.ok('start_kernel', { notebook_path: path });
  return { path, cellIds: created.cells.map((cell) => cell.cell_id) };
}

function elapsedSince(started: number): number {
  return performance.now() - started;
}

before(async () => {
  fx = await startStdioServer();
});

after(async () => {
  // Kernels are shut down explicitly: a server stopping with busy kernels leaves them running for the next start.
  for (const path of notebooks) await fx.call('shutdown_kernel', { notebook_path: path });
  await fx.close();
});

test('a call that waits past timeout_s answers running; the work goes on and get_execution picks it up', { timeout: 60_000 }, async () => {
  const { path } = await freshNotebook('timeout');
  const started = performance.now();
  const first = await fx.ok<Execution>('execute_code', { notebook_path: path, code: "import time\ntime.sleep(5)\nprint('slept well')", timeout_s: 1 });
  const answeredAfter = elapsedSince(started);
  console.log(`timeout_s 1 answered after ${answeredAfter.toFixed(0)} ms`);
  assert.equal(first.status, 'running');
  assert.ok(first.execution_id);
  assert.ok(answeredAfter >= 900 && answeredAfter < 2500, `answered after about a second, not ${answeredAfter.toFixed(0)} ms`);
  assert.match(first.__text, /still running.*get_execution/s, 'the text tells the agent how to pick it up');

  const later = await fx.ok<Execution>('get_execution', { execution_id: first.execution_id, wait_s: 10 });
  assert.equal(later.status, 'succeeded', 'the sleep was not killed by the call timeout');
  assert.match(textOfResult(later.__result), /slept well/);
});

test('a call with a progress token gets progress notifications as the cell prints', { timeout: 60_000 }, async () => {
  const { path, cellIds } = await freshNotebook('progress', [
    { cell_type: 'code', source: "import time\nfor step in range(3):\n    print('step', step, flush=True)\n    time.sleep(0.4)" },
  ]);
  const seen: Progress[] = [];
  const outcome = (await fx.client.callTool({ name: 'execute_cell', arguments: { notebook_path: path, cell_id: cellIds[0] } }, CallToolResultSchema, {
    onprogress: (progress) => seen.push(progress),
    timeout: 60_000,
  })) as CallToolResult;
  assert.equal((outcome.structuredContent as unknown as Execution).status, 'succeeded');
  console.log(`progress notifications: ${seen.map((entry) => `${entry.progress} ${entry.message ?? ''}`).join(' | ')}`);
  assert.ok(seen.length >= 2, `at least two progress notifications, got ${seen.length}`);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.progress > seen[i - 1]!.progress, 'progress increases');
  assert.ok(seen.filter((entry) => /output/.test(entry.message ?? '')).length >= 3, 'each print is announced');
});

test('an MCP cancellation of a waiting call interrupts its execution, and the kernel stays usable', { timeout: 60_000 }, async () => {
  const { path } = await freshNotebook('cancel');
  const abort = new AbortController();
  let onStarted: () => void = () => undefined;
  const started = new Promise<void>((resolve) => {
    onStarted = resolve;
  });
  const call = fx.client.callTool({ name: 'execute_code', arguments: { notebook_path: path, code: 'while True: pass', timeout_s: 60 } }, CallToolResultSchema, {
    signal: abort.signal,
    timeout: 60_000,
    // The server reports the execution's progress; once it runs, the loop is in the kernel.
    onprogress: (progress) => {
      if (/started|running/.test(progress.message ?? '')) onStarted();
    },
  });
  await started;
  const cancelledAt = performance.now();
  abort.abort('the user pressed stop');
  await assert.rejects(call, (error: unknown) => String(error).includes('the user pressed stop'));

  const listed = await fx.ok<{ executions: Array<{ execution_id: string; code_first_line: string }> }>('list_executions', { notebook_path: path, limit: 1 });
  const id = listed.executions[0]?.execution_id;
  assert.ok(id, 'the execution is in the journal');
  assert.equal(listed.executions[0]?.code_first_line, 'while True: pass');
  const ended = await fx.ok<Execution>('get_execution', { execution_id: id, wait_s: 10 });
  console.log(`cancelled execution ended ${ended.status} after ${elapsedSince(cancelledAt).toFixed(0)} ms`);
  assert.ok(['cancelled', 'interrupted'].includes(ended.status), `the loop was stopped, status ${ended.status}`);
  // The loop got a KeyboardInterrupt, or (about 1 in 10 under CPU load: the signal came just before the code ran)
  // ipykernel's request handling took it and sent no reply. Either way the kernel was interrupted.
  assert.match(textOfResult(ended.__result), /KeyboardInterrupt|went idle without replying/, 'the kernel was interrupted, not just the call forgotten');

  const next = await fx.ok<Execution>('execute_code', { notebook_path: path, code: 'print(6 * 7)', timeout_s: 20 });
  assert.equal(next.status, 'succeeded');
  assert.match(textOfResult(next.__result), /42/);
});

test('input() answers awaiting_input at once; send_input completes the execution', { timeout: 60_000 }, async () => {
  const { path } = await freshNotebook('input');
  const started = performance.now();
  const asked = await fx.ok<Execution>('execute_code', { notebook_path: path, code: "name = input('Name? ')\nprint('Hello, ' + name + '!')", timeout_s: 30 });
  const askedAfter = elapsedSince(started);
  console.log(`awaiting_input answered after ${askedAfter.toFixed(0)} ms (timeout_s was 30)`);
  assert.equal(asked.status, 'awaiting_input');
  assert.ok(askedAfter < 10_000, 'answered when the prompt came, not at the timeout');
  assert.equal(asked.awaiting_input?.prompt, 'Name? ');
  assert.match(asked.__text, /send_input/);

  // An agent picking the execution up later hears about the prompt at once too, however long it offers to wait.
  const pickedUpAt = performance.now();
  const pickedUp = await fx.ok<Execution>('get_execution', { execution_id: asked.execution_id, wait_s: 20 });
  assert.equal(pickedUp.status, 'awaiting_input');
  assert.ok(elapsedSince(pickedUpAt) < 5_000, `get_execution answered after ${elapsedSince(pickedUpAt).toFixed(0)} ms, not at wait_s`);

  const answered = await fx.ok<Execution>('send_input', { execution_id: asked.execution_id, value: 'Ada' });
  assert.equal(answered.status, 'succeeded');
  assert.match(textOfResult(answered.__result), /Hello, Ada!/);
});

test('run_all_cells stops at the failing cell and cancels the rest with a reason, or runs on with stop_on_error false', { timeout: 60_000 }, async () => {
  const { path, cellIds } = await freshNotebook('run-all', [
    { cell_type: 'code', source: 'a = 1\nprint("one")' },
    { cell_type: 'markdown', source: '# not code: skipped' },
    { cell_type: 'code', source: 'b = a + 1\nprint("two")' },
    { cell_type: 'code', source: 'raise ValueError("cell three is broken")' },
    { cell_type: 'code', source: 'c = b + 1\nprint("four")' },
    { cell_type: 'code', source: 'print("five", c)' },
  ]);
  const codeIds = [cellIds[0], cellIds[2], cellIds[3], cellIds[4], cellIds[5]];

  const stopped = await fx.ok<{ execution_ids: string[]; executions: Execution[] }>('run_all_cells', { notebook_path: path, wait: true });
  assert.equal(stopped.execution_ids.length, 5);
  assert.deepEqual(stopped.executions.map((execution) => execution.cell_id), codeIds);
  assert.deepEqual(stopped.executions.map((execution) => execution.status), ['succeeded', 'succeeded', 'failed', 'cancelled', 'cancelled']);
  for (const skipped of stopped.executions.slice(3)) assert.match(skipped.status_text ?? '', /not run: an earlier cell .* did not succeed/);
  assert.match(stopped.__text, /ValueError|failed/);

  const onDisk = (): Array<{ id: string; outputs?: Array<{ text?: string; ename?: string }> }> =>
    (JSON.parse(readFileSync(join(fx.workspace, path), 'utf8')) as { cells: Array<{ id: string; outputs?: Array<{ text?: string; ename?: string }> }> }).cells;
  assert.equal(onDisk()[3]?.outputs?.[0]?.ename, 'ValueError', 'the failure is written into the cell');
  assert.deepEqual(onDisk()[4]?.outputs, [], 'a cancelled cell that never ran has no outputs written');

  const ranOn = await fx.ok<{ executions: Execution[] }>('run_all_cells', { notebook_path: path, wait: true, stop_on_error: false });
  assert.deepEqual(ranOn.executions.map((execution) => execution.status), ['succeeded', 'succeeded', 'failed', 'succeeded', 'succeeded']);
  assert.equal([...(onDisk()[5]?.outputs?.[0]?.text ?? '')].join(''), 'five 3\n');
});
