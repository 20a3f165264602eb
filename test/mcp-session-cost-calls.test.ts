// The per-call shortcuts keep their answers: execute_code reaches a live kernel without a disk look-up only for its exact key.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { createMcpServer } from '../src/server/mcp.js';
import { Workspace } from '../src/server/workspace.js';

let dir: string;
let outside: string;
let workspace: Workspace;
let client: Client;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mcpj-session-cost-calls-'));
  outside = mkdtempSync(join(tmpdir(), 'mcpj-session-cost-outside-'));
  workspace = Workspace.open(loadConfig({ workspace: dir }, {}), silentLogger);
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await createMcpServer(workspace).connect(serverSide);
  client = new Client({ name: 'session-cost-calls-test', version: '1.0.0' });
  await client.connect(clientSide);
});

after(async () => {
  await client.close();
  await workspace.close({ shutdownKernels: true });
  rmSync(dir, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

async function call(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 })) as CallToolResult;
}

function text(result: CallToolResult): string {
  return result.content.map((item) => (item.type === 'text' ? item.text : '')).join('\n');
}

test('execute_code reaches the same live kernel by every spelling of the path, and still refuses paths that leave the workspace', async () => {
  assert.ok(!(await call('create_notebook', { notebook_path: 'a.ipynb' })).isError);
  const first = await call('execute_code', { notebook_path: 'a.ipynb', code: 'x = 41' });
  assert.equal((first.structuredContent as { status?: string }).status, 'succeeded', text(first));

  for (const spelling of ['a.ipynb', './a.ipynb', join(dir, 'a.ipynb')]) {
    const result = await call('execute_code', { notebook_path: spelling, code: 'x += 1; x' });
    assert.equal((result.structuredContent as { status?: string }).status, 'succeeded', `${spelling}: ${text(result)}`);
    assert.equal((result.structuredContent as { notebook_path?: string }).notebook_path, 'a.ipynb', `${spelling} names the same notebook`);
  }
  const shared = await call('execute_code', { notebook_path: 'a.ipynb', code: 'x' });
  assert.match(text(shared), /\b44\b/, 'all four calls ran on one kernel');

  // A live kernel does not open a way out of the workspace.
  symlinkSync(outside, join(dir, 'out'));
  for (const escape of ['../a.ipynb', join(outside, 'a.ipynb'), 'out/a.ipynb']) {
    const refused = await call('execute_code', { notebook_path: escape, code: '1' });
    assert.equal(refused.isError, true, `${escape} was accepted: ${text(refused)}`);
    assert.match(text(refused), /outside the workspace|leaves the workspace|points outside/);
  }
});

test('get_execution of a finished execution answers at once with its outputs, and an unknown id says so', async () => {
  const ran = await call('execute_code', { notebook_path: 'a.ipynb', code: 'print("done")' });
  const id = String((ran.structuredContent as { execution_id?: string }).execution_id);
  const started = Date.now();
  const got = await call('get_execution', { execution_id: id, wait_s: 30 });
  assert.ok(Date.now() - started < 5_000, 'a finished execution is not waited for');
  assert.equal((got.structuredContent as { status?: string }).status, 'succeeded');
  assert.match(text(got), /done/);
  const unknown = await call('get_execution', { execution_id: 'no-such-execution', wait_s: 30 });
  assert.equal(unknown.isError, true);
  assert.match(text(unknown), /no-such-execution/);
});
