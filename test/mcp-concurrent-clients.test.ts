// Several MCP sessions of one HTTP server at once: two agents on two notebooks, a third watching both.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectHttpClient, makeWorkspace, startHttpServerProcess, textOfResult } from './helpers/mcp.js';

interface Execution {
  execution_id: string;
  status: string;
  notebook_path: string;
  started_at: string | null;
  finished_at: string | null;
}

async function ok<T>(client: Client, name: string, args: Record<string, unknown> = {}): Promise<T & { __result: CallToolResult }> {
  const result = (await client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 })) as CallToolResult;
  if (result.isError) throw new Error(`${name} failed: ${textOfResult(result)}`);
  return { ...(result.structuredContent as T), __result: result };
}

/** One agent's session: its own notebook and kernel, then a slow cell that outlives the call's timeout. */
async function startSlowWork(client: Client, path: string, label: string): Promise<Execution> {
  await ok(client, 'create_notebook', { notebook_path: path });
  await ok(client, 'start_kernel', { notebook_path: path });
  return ok<Execution>(client, 'execute_code', { notebook_path: path, code: `import time\ntime.sleep(3)\nprint('${label} finished')`, timeout_s: 1 });
}

test('two HTTP sessions work on two notebooks at once while a third watches both', { timeout: 60_000 }, async () => {
  const workspace = makeWorkspace('mcpj-multi-');
  const server = await startHttpServerProcess(workspace);
  const clients: Client[] = [];
  try {
    for (let i = 0; i < 3; i++) clients.push(await connectHttpClient(server.url, server.token));
    const [alice, bob, watcher] = clients as [Client, Client, Client];

    const [aliceRun, bobRun] = await Promise.all([startSlowWork(alice, 'alice.ipynb', 'alice'), startSlowWork(bob, 'bob/work.ipynb', 'bob')]);
    assert.equal(aliceRun.status, 'running');
    assert.equal(bobRun.status, 'running');

    const seen = async (): Promise<Map<string, Execution>> => {
      const byId = new Map<string, Execution>();
      for (const path of ['alice.ipynb', 'bob/work.ipynb']) {
        const listed = await ok<{ executions: Execution[] }>(watcher, 'list_executions', { notebook_path: path });
        assert.ok(listed.executions.every((execution) => execution.notebook_path === path), 'list_executions keeps to the notebook asked for');
        for (const execution of listed.executions) byId.set(execution.execution_id, execution);
      }
      return byId;
    };
    const whileRunning = await seen();
    assert.equal(whileRunning.get(aliceRun.execution_id)?.status, 'running', "the watcher sees alice's work running");
    assert.equal(whileRunning.get(bobRun.execution_id)?.status, 'running', "the watcher sees bob's work running at the same time");

    const [aliceDone, bobDone] = await Promise.all([
      ok<Execution>(alice, 'get_execution', { execution_id: aliceRun.execution_id, wait_s: 15 }),
      ok<Execution>(bob, 'get_execution', { execution_id: bobRun.execution_id, wait_s: 15 }),
    ]);
    assert.equal(aliceDone.status, 'succeeded');
    assert.equal(bobDone.status, 'succeeded');
    assert.match(textOfResult(aliceDone.__result), /alice finished/);
    assert.match(textOfResult(bobDone.__result), /bob finished/);
    // Each ran on its own kernel, side by side rather than one after the other.
    const time = (iso: string | null): number => Date.parse(iso ?? '');
    assert.ok(time(aliceDone.started_at) < time(bobDone.finished_at) && time(bobDone.started_at) < time(aliceDone.finished_at), 'the two executions overlapped in time');

    const afterwards = await seen();
    assert.equal(afterwards.get(aliceRun.execution_id)?.status, 'succeeded');
    assert.equal(afterwards.get(bobRun.execution_id)?.status, 'succeeded');
    const everything = await ok<{ executions: Execution[] }>(watcher, 'list_executions', {});
    assert.deepEqual(new Set(everything.executions.map((execution) => execution.notebook_path)), new Set(['alice.ipynb', 'bob/work.ipynb']));

    // A session may also look at (and here, shut down) another session's kernel: the workspace is shared.
    await ok(watcher, 'shutdown_kernel', { notebook_path: 'alice.ipynb' });
    await ok(watcher, 'shutdown_kernel', { notebook_path: 'bob/work.ipynb' });
  } finally {
    for (const client of clients) await client.close();
    await server.stop();
    rmSync(workspace, { recursive: true, force: true });
  }
});
