// MCP tasks for execute_cell, execute_code and run_all_cells: created at once, answered from the journal, across restarts.
import assert from 'node:assert/strict';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Client as SdkClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as HttpTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CallToolResultSchema,
  CreateTaskResultSchema,
  ElicitRequestSchema,
  ErrorCode,
  McpError,
  RELATED_TASK_META_KEY,
  type CallToolResult,
  type ElicitRequest,
  type Task,
} from '@modelcontextprotocol/sdk/types.js';
import Database from 'better-sqlite3';
import { existsSync, readFileSync, rmSync, watch } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { connectHttpClient, makeWorkspace, startHttpServerProcess, startStdioServer, textOfResult } from './helpers/mcp.js';

const LONG = { timeout: 60_000 };

interface Execution {
  execution_id: string;
  status: string;
  cell_id: string | null;
}

let workspace: string;
let server: Awaited<ReturnType<typeof startHttpServerProcess>>;
let client: Client;
const notebooks: string[] = [];
const extraClients: Client[] = [];

async function ok<T = Record<string, unknown>>(on: Client, name: string, args: Record<string, unknown>): Promise<T & { __result: CallToolResult }> {
  const result = (await on.callTool({ name, arguments: args }, CallToolResultSchema, LONG)) as CallToolResult;
  if (result.isError) throw new Error(`${name} failed: ${textOfResult(result)}`);
  return { ...(result.structuredContent as object), __result: result } as T & { __result: CallToolResult };
}

/** A notebook of its own (so its own kernel), with the kernel already up. */
async function freshNotebook(name: string, cells: Array<{ cell_type: 'code'; source: string }> = []): Promise<{ path: string; cellIds: string[] }> {
  const path = `${name}.ipynb`;
  const created = await ok<{ cells: Array<{ cell_id: string }> }>(client, 'create_notebook', { notebook_path: path, cells });
  notebooks.push(path);
  await ok(client, 'start_kernel', { notebook_path: path });
  return { path, cellIds: created.cells.map((cell) => cell.cell_id) };
}

/** tools/call with a task: the CreateTaskResult, and how long the server took to give it. */
async function callAsTask(on: Client, name: string, args: Record<string, unknown>): Promise<{ task: Task; meta: Record<string, unknown>; ms: number }> {
  const started = performance.now();
  const created = await on.request({ method: 'tools/call', params: { name, arguments: args } }, CreateTaskResultSchema, { ...LONG, task: { ttl: 60_000 } });
  return { task: created.task, meta: (created._meta ?? {}) as Record<string, unknown>, ms: performance.now() - started };
}

function taskResult(on: Client, taskId: string): Promise<CallToolResult> {
  return on.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, LONG) as Promise<CallToolResult>;
}

/** Resolves when `path` exists: the kernel writes it once the code under test is really running (fs events, no polling). */
function whenFileExists(path: string): Promise<void> {
  return new Promise((resolve) => {
    const watcher = watch(dirname(path), () => {
      if (!existsSync(path)) return;
      watcher.close();
      resolve();
    });
    if (existsSync(path)) {
      watcher.close();
      resolve();
    }
  });
}

/** The result without what differs between two runs of the same code (ids, counts, times). */
function comparable(result: CallToolResult): unknown {
  const scrub = (text: string): string =>
    text
      .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<id>')
      .replace(/\[\d+\]/g, '[n]')
      .replace(/in \d+\.\d+s/g, 'in <t>');
  const structured = { ...(result.structuredContent ?? {}) };
  for (const key of ['execution_id', 'execution_count', 'created_at', 'started_at', 'finished_at']) delete structured[key];
  return { content: result.content.map((item) => (item.type === 'text' ? { ...item, text: scrub(item.text) } : item)), isError: result.isError ?? false, structured };
}

function withoutMeta(result: CallToolResult): CallToolResult {
  const { _meta: _ignored, ...rest } = result;
  return rest as CallToolResult;
}

async function expectMcpError(promise: Promise<unknown>, code: number, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof McpError, `an MCP error, not ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.match(error.message, pattern);
    return true;
  });
}

before(async () => {
  workspace = makeWorkspace('mcpj-tasks-');
  server = await startHttpServerProcess(workspace);
  client = await connectHttpClient(server.url, server.token);
});

after(async () => {
  // Kernels are shut down explicitly: a server stopping with busy kernels leaves them running for the next start.
  for (const path of notebooks) await client.callTool({ name: 'shutdown_kernel', arguments: { notebook_path: path } }, CallToolResultSchema, LONG);
  for (const extra of extraClients) await extra.close();
  await client.close();
  await server.stop();
  rmSync(workspace, { recursive: true, force: true });
});

test('the server declares tasks for tools/call, and exactly the three execution tools take them (optional)', LONG, async () => {
  const capabilities = client.getServerCapabilities();
  assert.deepEqual(capabilities?.tasks, { list: {}, cancel: {}, requests: { tools: { call: {} } } });
  const version = (client.transport as StreamableHTTPClientTransport).protocolVersion;
  console.log(`negotiated MCP protocol ${version}`);
  assert.equal(version, '2025-11-25', 'tasks need protocol 2025-11-25');
  const { tools } = await client.listTools();
  const taskable = tools.filter((tool) => tool.execution?.taskSupport === 'optional' || tool.execution?.taskSupport === 'required').map((tool) => tool.name);
  assert.deepEqual(taskable.sort(), ['execute_cell', 'execute_code', 'run_all_cells']);
  for (const tool of tools.filter((candidate) => taskable.includes(candidate.name))) assert.equal(tool.execution?.taskSupport, 'optional', tool.name);
});

test('a task-augmented execute_code answers at once; tasks/get shows working then completed; tasks/result is what a normal call gives', LONG, async () => {
  const { path } = await freshNotebook('basic');
  const code = "import time\ntime.sleep(1.5)\nprint('the answer is', 6 * 7)";
  const created = await callAsTask(client, 'execute_code', { notebook_path: path, code });
  console.log(`task created in ${created.ms.toFixed(0)} ms`);
  assert.ok(created.ms < 1000, `the task came back before the 1.5 s of work, after ${created.ms.toFixed(0)} ms`);
  assert.equal(created.task.status, 'working');
  assert.equal(created.task.ttl, null, 'kept as long as the journal');
  assert.ok(created.task.pollInterval && created.task.pollInterval > 0);
  assert.match(String(created.meta['io.modelcontextprotocol/model-immediate-response']), /execute_code runs as task/);
  const taskId = created.task.taskId;

  const during = await client.experimental.tasks.getTask(taskId);
  assert.equal(during.status, 'working');
  assert.match(during.statusMessage ?? '', /running|pending/);

  const result = await taskResult(client, taskId);
  assert.deepEqual(result._meta?.[RELATED_TASK_META_KEY], { taskId }, 'tasks/result names its task');
  assert.match(textOfResult(result), /the answer is 42/);
  assert.equal((result.structuredContent as unknown as Execution).status, 'succeeded');

  const done = await client.experimental.tasks.getTask(taskId);
  assert.equal(done.status, 'completed');
  assert.match(done.statusMessage ?? '', /succeeded/);
  assert.ok(Date.parse(done.lastUpdatedAt) >= Date.parse(done.createdAt) + 1000, 'lastUpdatedAt moved with the work');

  // The task id is the execution id: the execution tools answer for it, with exactly the task's result.
  const fetched = await ok<Execution>(client, 'get_execution', { execution_id: taskId });
  assert.deepEqual(withoutMeta(result), withoutMeta(fetched.__result));
  // And it reads like a normal, waiting call of the same code.
  const normal = await ok<Execution>(client, 'execute_code', { notebook_path: path, code });
  assert.notEqual(normal.execution_id, taskId);
  assert.deepEqual(comparable(result), comparable(normal.__result));
});

test('a cell that raises makes a completed task whose result says failed, as a normal call does', LONG, async () => {
  const { path, cellIds } = await freshNotebook('raises', [{ cell_type: 'code', source: '1 / 0' }]);
  const created = await callAsTask(client, 'execute_cell', { notebook_path: path, cell_id: cellIds[0] });
  const result = await taskResult(client, created.task.taskId);
  assert.notEqual(result.isError, true, 'the tool call worked; the code failed');
  assert.equal((result.structuredContent as unknown as Execution).status, 'failed');
  assert.match(textOfResult(result), /ZeroDivisionError/);
  const task = await client.experimental.tasks.getTask(created.task.taskId);
  assert.equal(task.status, 'completed');
  assert.match(task.statusMessage ?? '', /failed.*ZeroDivisionError/);
  // execute_cell wrote the outputs into the notebook by the time the result came.
  const saved = JSON.parse(readFileSync(join(workspace, path), 'utf8')) as { cells: Array<{ outputs: Array<{ ename?: string }> }> };
  assert.equal(saved.cells[0]?.outputs[0]?.ename, 'ZeroDivisionError');
});

test('tasks/cancel stops a `while True: pass` task; the task stays cancelled and the kernel stays usable', LONG, async () => {
  const { path } = await freshNotebook('cancel');
  const marker = join(workspace, 'loop-started');
  const running = whenFileExists(marker);
  const created = await callAsTask(client, 'execute_code', { notebook_path: path, code: `open(${JSON.stringify(marker)}, 'w').close()\nwhile True: pass` });
  await running;
  const cancelled = await client.experimental.tasks.cancelTask(created.task.taskId);
  assert.equal(cancelled.status, 'cancelled');
  assert.equal((await client.experimental.tasks.getTask(created.task.taskId)).status, 'cancelled');

  const stopped = await ok<Execution>(client, 'get_execution', { execution_id: created.task.taskId, wait_s: 20 });
  assert.ok(['interrupted', 'cancelled'].includes(stopped.status), `the loop was interrupted, status ${stopped.status}`);
  assert.match(textOfResult(stopped.__result), /KeyboardInterrupt/);
  const result = await taskResult(client, created.task.taskId);
  assert.match(textOfResult(result), /KeyboardInterrupt|interrupted|cancelled/);

  await expectMcpError(client.experimental.tasks.cancelTask(created.task.taskId), ErrorCode.InvalidParams, /terminal status 'cancelled'/);
  const next = await ok<Execution>(client, 'execute_code', { notebook_path: path, code: 'print(6 * 7)' });
  assert.equal(next.status, 'succeeded');
  assert.match(textOfResult(next.__result), /42/);
});

test('run_all_cells as a task (the SDK client stream): one result for the batch, outputs in the notebook', LONG, async () => {
  const { path } = await freshNotebook('batch', [
    { cell_type: 'code', source: 'x = 20' },
    { cell_type: 'code', source: 'print(x + 22)' },
    { cell_type: 'code', source: 'y = x * 2\ny' },
  ]);
  const seen: string[] = [];
  let result: CallToolResult | undefined;
  let taskId = '';
  for await (const message of client.experimental.tasks.callToolStream({ name: 'run_all_cells', arguments: { notebook_path: path } }, CallToolResultSchema, { ...LONG, task: { ttl: 60_000 } })) {
    seen.push(message.type);
    if (message.type === 'taskCreated') taskId = message.task.taskId;
    if (message.type === 'result') result = message.result as CallToolResult;
    if (message.type === 'error') throw message.error;
  }
  assert.equal(seen[0], 'taskCreated');
  assert.equal(seen[seen.length - 1], 'result');
  assert.ok(result);
  assert.match(textOfResult(result), /^ran 3 cells of batch\.ipynb/);
  const structured = result.structuredContent as { execution_ids: string[]; executions: Execution[] };
  assert.equal(structured.execution_ids.length, 3);
  assert.deepEqual(structured.executions.map((execution) => execution.status), ['succeeded', 'succeeded', 'succeeded']);
  assert.ok(!structured.execution_ids.includes(taskId), 'a batch task is named by its batch, not by one of its cells');
  const task = await client.experimental.tasks.getTask(taskId);
  assert.equal(task.status, 'completed');
  assert.match(task.statusMessage ?? '', /all 3 cells succeeded/);
  const saved = JSON.parse(readFileSync(join(workspace, path), 'utf8')) as { cells: Array<{ outputs: Array<{ text?: string | string[] }> }> };
  assert.match(([] as string[]).concat(saved.cells[1]?.outputs[0]?.text ?? []).join(''), /42/);
});

test('a batch that stops at a failing cell completes (the failure is its result); tasks/list shows task-backed work only', LONG, async () => {
  const { path } = await freshNotebook('batch-fails', [
    { cell_type: 'code', source: 'a = 1' },
    { cell_type: 'code', source: 'raise ValueError("bad row")' },
    { cell_type: 'code', source: 'print("never")' },
  ]);
  const created = await callAsTask(client, 'run_all_cells', { notebook_path: path });
  const result = await taskResult(client, created.task.taskId);
  const statuses = (result.structuredContent as { executions: Execution[] }).executions.map((execution) => execution.status);
  assert.deepEqual(statuses, ['succeeded', 'failed', 'cancelled']);
  const task = await client.experimental.tasks.getTask(created.task.taskId);
  assert.equal(task.status, 'completed');
  assert.match(task.statusMessage ?? '', /1 of 3 cells succeeded; cell .*: failed.*ValueError: bad row/);

  const normal = await ok<Execution>(client, 'execute_code', { notebook_path: path, code: 'a' });
  const { tasks } = await client.experimental.tasks.listTasks();
  assert.equal(tasks[0]?.taskId, created.task.taskId, 'newest first');
  assert.ok(!tasks.some((listed) => listed.taskId === normal.execution_id), 'a normal call is not a task');
  await expectMcpError(client.experimental.tasks.getTask(normal.execution_id), ErrorCode.InvalidParams, /no task .* tasks\/list/);
});

test('a task is refused with a JSON-RPC error for another tool or bad input; nothing is queued', LONG, async () => {
  const count = async (): Promise<number> => (await ok<{ executions: unknown[] }>(client, 'list_executions', { limit: 1000 })).executions.length;
  const before = await count();
  const tasksBefore = (await client.experimental.tasks.listTasks()).tasks.length;
  await expectMcpError(callAsTask(client, 'list_notebooks', {}), ErrorCode.MethodNotFound, /cannot run as a task/);
  await expectMcpError(callAsTask(client, 'execute_code', { notebook_path: 'missing.ipynb', code: '1' }), ErrorCode.InvalidParams, /missing\.ipynb/);
  await expectMcpError(callAsTask(client, 'execute_code', { notebook_path: 'basic.ipynb', code: '1', colour: 'red' }), ErrorCode.InvalidParams, /unknown parameter 'colour'/);
  assert.equal(await count(), before, 'no execution was accepted');
  assert.equal((await client.experimental.tasks.listTasks()).tasks.length, tasksBefore, 'no task was made');
});

test("input(): a client that takes elicitation sees input_required and answers through tasks/result; others see working and send_input", LONG, async () => {
  const { path } = await freshNotebook('input');
  const asked: ElicitRequest['params'][] = [];
  const eliciting = new SdkClient({ name: 'eliciting-client', version: '1.0.0' }, { capabilities: { elicitation: { form: {} } } });
  eliciting.setRequestHandler(ElicitRequestSchema, async (request) => {
    asked.push(request.params);
    return { action: 'accept', content: { value: 'Ada' } };
  });
  await eliciting.connect(new HttpTransport(new URL(`${server.url}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${server.token}` } } }));
  extraClients.push(eliciting);

  const created = await callAsTask(eliciting, 'execute_code', { notebook_path: path, code: "name = input('Name? ')\nprint('Hello, ' + name + '!')" });
  const taskId = created.task.taskId;
  // get_execution with wait_s returns as soon as the code asks for input.
  const waiting = await ok<Execution>(client, 'get_execution', { execution_id: taskId, wait_s: 30 });
  assert.equal(waiting.status, 'awaiting_input');
  const plain = await client.experimental.tasks.getTask(taskId);
  assert.equal(plain.status, 'working', 'this client cannot be asked');
  assert.match(plain.statusMessage ?? '', /input\("Name\? "\).*send_input/);
  const forEliciting = await eliciting.experimental.tasks.getTask(taskId);
  assert.equal(forEliciting.status, 'input_required');

  const result = await taskResult(eliciting, taskId);
  assert.match(textOfResult(result), /Hello, Ada!/);
  assert.equal(asked.length, 1);
  assert.match(asked[0]?.message ?? '', /input\("Name\? "\)/);
  assert.deepEqual(asked[0]?._meta?.[RELATED_TASK_META_KEY], { taskId }, 'the question names its task');
  assert.equal((await eliciting.experimental.tasks.getTask(taskId)).status, 'completed');
});

function kernelPids(dir: string): number[] {
  const db = new Database(join(dir, '.mcp-jupyter', 'state.db'), { readonly: true });
  const rows = db.prepare("SELECT details FROM kernels WHERE state = 'live'").pluck().all() as string[];
  db.close();
  return rows.map((details) => (JSON.parse(details) as { pid: number }).pid);
}

test('tasks created before a SIGKILL of the server answer tasks/get and tasks/result after the restart, in a new session', { timeout: 90_000 }, async () => {
  const dir = makeWorkspace('mcpj-tasks-crash-');
  const pids: number[] = [];
  try {
    const first = await startHttpServerProcess(dir);
    const before = await connectHttpClient(first.url, first.token);
    await ok(before, 'create_notebook', { notebook_path: 'crash.ipynb' });
    await ok(before, 'start_kernel', { notebook_path: 'crash.ipynb' });
    const finished = await callAsTask(before, 'execute_code', { notebook_path: 'crash.ipynb', code: "print('finished before the crash')" });
    await taskResult(before, finished.task.taskId);
    const slow = await callAsTask(before, 'execute_code', { notebook_path: 'crash.ipynb', code: "import time\ntime.sleep(6)\nprint('survived the crash')" });
    pids.push(...kernelPids(dir));
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));

    const second = await startHttpServerProcess(dir);
    const after = await connectHttpClient(second.url, second.token);
    try {
      const done = await after.experimental.tasks.getTask(finished.task.taskId);
      assert.equal(done.status, 'completed');
      assert.match(textOfResult(await taskResult(after, finished.task.taskId)), /finished before the crash/);

      const resumed = await after.experimental.tasks.getTask(slow.task.taskId);
      assert.ok(['working', 'completed'].includes(resumed.status), resumed.status);
      const result = await taskResult(after, slow.task.taskId);
      const status = (result.structuredContent as unknown as Execution).status;
      console.log(`the execution running at the crash ended ${status}`);
      // Re-attached, it finishes; had it ended while no server listened, it is reported as not observed, never lost silently.
      assert.ok(status === 'succeeded' || (status === 'lost' && /not observed/.test(textOfResult(result))), `${status}: ${textOfResult(result)}`);
      if (status === 'succeeded') assert.match(textOfResult(result), /survived the crash/);
      assert.equal((await after.experimental.tasks.getTask(slow.task.taskId)).status, 'completed');

      const listed = (await after.experimental.tasks.listTasks()).tasks.map((task) => task.taskId);
      assert.deepEqual(listed, [slow.task.taskId, finished.task.taskId]);
      await ok(after, 'shutdown_kernel', { notebook_path: 'crash.ipynb' });
    } finally {
      await before.close().catch(() => undefined);
      await after.close();
      await second.stop();
    }
  } finally {
    for (const pid of pids) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

test('over stdio too: a task-augmented execute_code and its result', LONG, async () => {
  const fx = await startStdioServer();
  try {
    await fx.ok('create_notebook', { notebook_path: 'stdio.ipynb' });
    const created = await callAsTask(fx.client, 'execute_code', { notebook_path: 'stdio.ipynb', code: "print('over stdio')" });
    assert.equal(created.task.status, 'working');
    assert.match(textOfResult(await taskResult(fx.client, created.task.taskId)), /over stdio/);
    assert.equal((await fx.client.experimental.tasks.getTask(created.task.taskId)).status, 'completed');
    await fx.ok('shutdown_kernel', { notebook_path: 'stdio.ipynb' });
  } finally {
    await fx.close();
  }
});
