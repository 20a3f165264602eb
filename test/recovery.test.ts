// Crash recovery: the server is killed with SIGKILL mid-work; the next one re-attaches and loses nothing.
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { connectHttpClient, makeWorkspace, startHttpServerProcess, textOfResult } from './helpers/mcp.js';

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<CallToolResult & { structuredContent: Record<string, unknown> }> {
  const result = (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
  if (result.isError) throw new Error(`${name}: ${textOfResult(result)}`);
  return result as CallToolResult & { structuredContent: Record<string, unknown> };
}

function kernelPids(workspace: string): number[] {
  const db = new Database(join(workspace, '.mcp-jupyter', 'state.db'), { readonly: true });
  const rows = db.prepare("SELECT details FROM kernels WHERE state = 'live'").pluck().all() as string[];
  db.close();
  return rows.map((details) => (JSON.parse(details) as { pid: number }).pid);
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** Queues a running cell and ten behind it, then kills the server with SIGKILL. */
async function crashWithQueuedWork(workspace: string): Promise<{ running: string; queued: string[]; kernelId: string }> {
  const server = await startHttpServerProcess(workspace);
  const client = await connectHttpClient(server.url, server.token);
  await call(client, 'create_notebook', { notebook_path: 'crash.ipynb' });
  await call(client, 'execute_code', { notebook_path: 'crash.ipynb', code: 'order = []' });
  const kernels = await call(client, 'list_kernels', {});
  const kernelId = ((kernels.structuredContent.kernels as Array<{ kernel_id: string }>)[0] ?? { kernel_id: '' }).kernel_id;
  const running = await call(client, 'execute_code', { notebook_path: 'crash.ipynb', code: "import time\ntime.sleep(3)\norder.append('r')", wait: false });
  const queued: string[] = [];
  for (let i = 0; i < 10; i += 1) {
    const accepted = await call(client, 'execute_code', { notebook_path: 'crash.ipynb', code: `import time\ntime.sleep(0.1)\norder.append(${i})`, wait: false });
    queued.push(String(accepted.structuredContent.execution_id));
  }
  server.child.kill('SIGKILL');
  await new Promise((resolve) => server.child.once('exit', resolve));
  return { running: String(running.structuredContent.execution_id), queued, kernelId };
}

test('SIGKILL with 10 executions queued behind a running one: after restart all run in order, exactly once, on the same kernel', { timeout: 120_000 }, async () => {
  const workspace = makeWorkspace('mcpj-recover-');
  const pids: number[] = [];
  try {
    const before = await crashWithQueuedWork(workspace);
    pids.push(...kernelPids(workspace));
    const server = await startHttpServerProcess(workspace);
    const client = await connectHttpClient(server.url, server.token);
    try {
      for (const id of [before.running, ...before.queued]) {
        const done = await call(client, 'get_execution', { execution_id: id, wait_s: 60 });
        const status = done.structuredContent.status;
        if (id === before.running) {
          // It may end while no server listens: then it is reported as not observed, never as a success.
          assert.ok(status === 'succeeded' || (status === 'lost' && /not observed/.test(String(done.structuredContent.status_text))), `running one: ${String(status)}`);
        } else {
          assert.equal(status, 'succeeded', `queued ${id}: ${textOfResult(done)}`);
        }
      }
      const order = await call(client, 'execute_code', { notebook_path: 'crash.ipynb', code: 'order' });
      assert.match(textOfResult(order), /\['r', 0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]/);
      const kernels = await call(client, 'list_kernels', {});
      assert.equal((kernels.structuredContent.kernels as Array<{ kernel_id: string }>)[0]?.kernel_id, before.kernelId, 'the same kernel, re-attached');
      await call(client, 'shutdown_kernel', { notebook_path: 'crash.ipynb' });
    } finally {
      await client.close();
      await server.stop();
    }
  } finally {
    pids.forEach(killGroup);
    rmSync(workspace, { recursive: true, force: true });
  }
});

test('SIGKILL of the server and its kernel: every execution ends lost with the reason; none runs on a fresh kernel', { timeout: 120_000 }, async () => {
  const workspace = makeWorkspace('mcpj-recover-');
  try {
    const before = await crashWithQueuedWork(workspace);
    kernelPids(workspace).forEach(killGroup);
    const server = await startHttpServerProcess(workspace);
    const client = await connectHttpClient(server.url, server.token);
    try {
      const running = await call(client, 'get_execution', { execution_id: before.running, wait_s: 30 });
      assert.equal(running.structuredContent.status, 'lost');
      assert.match(String(running.structuredContent.status_text), /kernel state was lost/);
      for (const id of before.queued) {
        const done = await call(client, 'get_execution', { execution_id: id, wait_s: 30 });
        assert.equal(done.structuredContent.status, 'lost');
        assert.match(String(done.structuredContent.status_text), /not run: .*kernel state was lost.*run_all_cells/);
      }
      const kernels = await call(client, 'list_kernels', {});
      assert.deepEqual(kernels.structuredContent.kernels, [], 'no kernel was started for the lost work');
    } finally {
      await client.close();
      await server.stop();
    }
  } finally {
    rmSync(workspace, { recursive: true, force: true });
  }
});

test('--resume-on-new-kernel replays pending work on a fresh kernel and says state was reset', { timeout: 120_000 }, async () => {
  const workspace = makeWorkspace('mcpj-recover-');
  const pids: number[] = [];
  try {
    const before = await crashWithQueuedWork(workspace);
    kernelPids(workspace).forEach(killGroup);
    const server = await startHttpServerProcess(workspace, undefined, ['--resume-on-new-kernel']);
    const client = await connectHttpClient(server.url, server.token);
    try {
      const first = await call(client, 'get_execution', { execution_id: before.queued[0], wait_s: 60 });
      // `order` died with the old kernel: the replay runs, honestly, on a kernel without it.
      assert.equal(first.structuredContent.status, 'failed');
      assert.match(textOfResult(first), /kernel state was reset|NameError/);
      pids.push(...kernelPids(workspace));
      await call(client, 'shutdown_kernel', { notebook_path: 'crash.ipynb' });
    } finally {
      await client.close();
      await server.stop();
    }
  } finally {
    pids.forEach(killGroup);
    rmSync(workspace, { recursive: true, force: true });
  }
});
