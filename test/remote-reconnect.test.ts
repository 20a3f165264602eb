// Remote kernels across failures: a cut kernel WebSocket reconnects and loses nothing; a SIGKILLed server re-attaches.
import assert from 'node:assert/strict';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Engine } from '../src/engine/engine.js';
import { RemoteKernelProvider } from '../src/kernel/remote-provider.js';
import type { RemoteKernelSession } from '../src/kernel/remote-session.js';
import { openDatabase } from '../src/store/db.js';
import { textOf } from './helpers/engine.js';
import { startJupyterServer, startTcpProxy, type JupyterServerFixture } from './helpers/jupyter-server.js';
import { connectHttpClient, makeWorkspace, startHttpServerProcess, textOfResult } from './helpers/mcp.js';

let jupyter: JupyterServerFixture;

before(async () => {
  jupyter = await startJupyterServer();
});

after(async () => {
  await jupyter?.stop();
});

const LINES = 60;
const PRINTING_CELL = `import time\nfor i in range(${LINES}):\n    print(i, flush=True)\n    time.sleep(0.05)`;

test('the kernel WebSocket cut in the middle of a printing cell: after the reconnect every line arrives once, in order', { timeout: 60_000 }, async () => {
  const proxy = await startTcpProxy(jupyter.port);
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-remote-cut-'));
  const db = openDatabase(join(dir, '.mcp-jupyter', 'state.db'));
  const provider = new RemoteKernelProvider({ url: `http://127.0.0.1:${proxy.port}/`, token: jupyter.token, workspaceRoot: dir });
  const engine = new Engine({ db, provider, workspaceRoot: dir });
  try {
    const [warm] = engine.submit([{ notebookPath: 'cut.ipynb', code: 'x = 1', kind: 'code', kernelName: 'python3' }]);
    assert.equal((await engine.wait(warm!.id, 60_000)).state, 'succeeded');
    const session = engine.existingKernel('cut.ipynb')?.session as RemoteKernelSession;

    const [accepted] = engine.submit([{ notebookPath: 'cut.ipynb', code: PRINTING_CELL, kind: 'code', kernelName: 'python3' }]);
    let printed = '';
    let textAtCut = '';
    await new Promise<void>((resolve) => {
      const off = engine.events.on('execution.output', (event) => {
        if (event.executionId !== accepted!.id) return;
        printed += String(event.content['text'] ?? '');
        if (!printed.includes('\n9\n')) return;
        off();
        textAtCut = printed;
        assert.ok(proxy.open > 0, 'the kernel WebSocket goes through the proxy');
        proxy.cut();
        resolve();
      });
    });
    const done = await engine.wait(accepted!.id, 30_000);
    assert.equal(done.state, 'succeeded', done.statusText ?? '');
    assert.ok(!textAtCut.includes(`\n${LINES - 1}\n`), 'the cut came while the cell was still printing');
    assert.ok(session.reconnects >= 1, 'the WebSocket was re-established');

    const text = textOf(done);
    const numbers = text.split('\n').filter((line) => /^\d+$/.test(line)).map(Number);
    const gapNoted = /did not arrive/.test(text);
    // A message in flight at the instant of the cut can be lost (the protocol has no acknowledgements); then the
    // output must say so. Nothing may ever be duplicated or reordered.
    assert.deepEqual(numbers, [...numbers].sort((a, b) => a - b), 'in order');
    assert.equal(new Set(numbers).size, numbers.length, `no line twice: ${text}`);
    if (!gapNoted) assert.deepEqual(numbers, Array.from({ length: LINES }, (_, i) => i), `every line once:\n${text}`);

    // The kernel and its state are the same.
    const [check] = engine.submit([{ notebookPath: 'cut.ipynb', code: 'x, i', kind: 'code', kernelName: 'python3' }]);
    const checked = await engine.wait(check!.id, 30_000);
    assert.match(textOf(checked), new RegExp(`\\(1, ${LINES - 1}\\)`));
  } finally {
    await engine.close({ kernels: 'shutdown' });
    db.close();
    await proxy.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a server that stays unreachable: the kernel is reported dead after the last reconnect attempt, with the reason', { timeout: 60_000 }, async () => {
  const proxy = await startTcpProxy(jupyter.port);
  const provider = new RemoteKernelProvider({
    url: `http://127.0.0.1:${proxy.port}/`,
    token: jupyter.token,
    reconnectAttempts: 3,
    reconnectBaseDelayMs: 50,
    reconnectMaxDelayMs: 200,
  });
  const session = await provider.start({ kernelName: 'python3', cwd: tmpdir(), id: 'unreachable-test' });
  try {
    const died = new Promise<string>((resolve) => session.onDeath(resolve));
    const started = Date.now();
    await proxy.close();
    const reason = await died;
    assert.match(reason, /lost the kernel WebSocket: could not re-open the kernel WebSocket ws:\/\/127\.0\.0\.1:\d+\/api\/kernels\/[\w-]+\/channels after 3 attempts/);
    assert.match(reason, /ECONNREFUSED/);
    assert.ok(Date.now() - started < 5_000, `gave up after ${Date.now() - started} ms`);
    assert.equal(session.status, 'dead');
    await assert.rejects(session.send(session.createMessage('shell', 'kernel_info_request', {})), /is dead/);
  } finally {
    // The kernel itself still runs on the server: remove it there directly.
    await fetch(`${jupyter.url}api/kernels/${session.remoteId}`, { method: 'DELETE', headers: { Authorization: `token ${jupyter.token}` } });
  }
});

test('a kernel deleted on the server, or one the server restarted after it died, is reported dead with the reason', { timeout: 60_000 }, async () => {
  const provider = new RemoteKernelProvider({ url: jupyter.url, token: jupyter.token, livenessIntervalMs: 500 });
  const deleted = await provider.start({ kernelName: 'python3', cwd: tmpdir(), id: 'deleted-elsewhere' });
  const deletedDeath = new Promise<string>((resolve) => deleted.onDeath(resolve));
  await fetch(`${jupyter.url}api/kernels/${deleted.remoteId}`, { method: 'DELETE', headers: { Authorization: `token ${jupyter.token}` } });
  assert.match(await deletedDeath, /no longer has kernel [\w-]+ \(HTTP 404\): it was shut down, culled, or the server restarted/);
  await deleted.shutdown();

  const crashed = await provider.start({ kernelName: 'python3', cwd: tmpdir(), id: 'crashed' });
  try {
    const reply = new Promise<number>((resolve) => {
      crashed.onMessage((message) => {
        if (message.header.msg_type === 'execute_result') resolve(Number((message.content['data'] as Record<string, unknown>)['text/plain']));
      });
    });
    await crashed.send(crashed.createMessage('shell', 'execute_request', { code: 'import os; os.getpid()', silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true }));
    const crashedDeath = new Promise<string>((resolve) => crashed.onDeath(resolve));
    process.kill(await reply, 'SIGKILL');
    // The server restarts a kernel that died on its own; every variable is gone, which is a death to us.
    assert.match(await crashedDeath, /died and the Jupyter server at .* restarted it: kernel state was lost/);
    assert.equal(crashed.status, 'dead');
  } finally {
    await crashed.shutdown();
  }
});

test('a person restarts the remote kernel elsewhere while a cell runs: that cell is lost, the kernel is not deleted, the next cell reuses it and says state was reset', { timeout: 90_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-remote-restarted-'));
  const db = openDatabase(join(dir, '.mcp-jupyter', 'state.db'));
  // After the restart the server's iopub link to the new process may miss its first messages; the liveness probe
  // (a control request while a cell runs) is then what hears of the new process.
  const provider = new RemoteKernelProvider({ url: jupyter.url, token: jupyter.token, workspaceRoot: dir, livenessIntervalMs: 1_000 });
  const engine = new Engine({ db, provider, workspaceRoot: dir });
  const auth = { Authorization: `token ${jupyter.token}` };
  const kernelsOnServer = async (): Promise<string[]> =>
    ((await (await fetch(`${jupyter.url}api/kernels`, { headers: auth })).json()) as Array<{ id: string }>).map((kernel) => kernel.id);
  const before = await kernelsOnServer();
  try {
    const [warm] = engine.submit([{ notebookPath: 'shared.ipynb', code: 'x = 1', kind: 'code', kernelName: 'python3' }]);
    assert.equal((await engine.wait(warm!.id, 60_000)).state, 'succeeded');
    const remoteId = (engine.existingKernel('shared.ipynb')?.session as RemoteKernelSession).remoteId;

    const started = new Promise<void>((resolve) => {
      const off = engine.events.on('execution.started', () => {
        off();
        resolve();
      });
    });
    const [long] = engine.submit([{ notebookPath: 'shared.ipynb', code: 'import time\ntime.sleep(60)', kind: 'code', kernelName: 'python3' }]);
    await started;
    // What JupyterLab's "Restart Kernel" does.
    const restarted = await fetch(`${jupyter.url}api/kernels/${remoteId}/restart`, { method: 'POST', headers: auth });
    assert.equal(restarted.status, 200);

    const lost = await engine.wait(long!.id, 30_000);
    assert.equal(lost.state, 'lost', lost.statusText ?? '');
    assert.match(lost.statusText ?? '', /kernel state was lost/);

    const [next] = engine.submit([{ notebookPath: 'shared.ipynb', code: "'x' in globals()", kind: 'code', kernelName: 'python3' }]);
    const fresh = await engine.wait(next!.id, 60_000);
    assert.equal(fresh.state, 'succeeded', fresh.statusText ?? '');
    assert.match(textOf(fresh), /False/, 'the restarted kernel has none of the old variables');
    assert.match(fresh.outputsNote ?? '', /new kernel: kernel state was reset/);
    const session = engine.existingKernel('shared.ipynb')?.session as RemoteKernelSession;
    assert.equal(session.remoteId, remoteId, 'the kernel the person restarted is reused, not deleted and replaced');
    assert.deepEqual((await kernelsOnServer()).filter((id) => !before.includes(id)), [remoteId], 'no second kernel on the server');

    const [after] = engine.submit([{ notebookPath: 'shared.ipynb', code: '40 + 2', kind: 'code', kernelName: 'python3' }]);
    const plain = await engine.wait(after!.id, 30_000);
    assert.match(textOf(plain), /42/);
    assert.equal(plain.outputsNote, null, 'only the first execution on the new kernel carries the note');
  } finally {
    await engine.close({ kernels: 'shutdown' });
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<CallToolResult & { structuredContent: Record<string, unknown> }> {
  const result = (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
  if (result.isError) throw new Error(`${name}: ${textOfResult(result)}`);
  return result as CallToolResult & { structuredContent: Record<string, unknown> };
}

test('our server SIGKILLed while a remote cell runs: the next one re-attaches to the same kernel and catches the end of that cell', { timeout: 120_000 }, async () => {
  const workspace = makeWorkspace('mcpj-remote-crash-');
  const remote = ['--jupyter-url', jupyter.url, '--jupyter-token', jupyter.token];
  try {
    const first = await startHttpServerProcess(workspace, 'test-token-0123456789', remote);
    const client = await connectHttpClient(first.url, first.token);
    await call(client, 'create_notebook', { notebook_path: 'crash.ipynb' });
    await call(client, 'execute_code', { notebook_path: 'crash.ipynb', code: 'base = 41' });
    const kernelsBefore = await call(client, 'list_kernels', {});
    const kernelId = (kernelsBefore.structuredContent.kernels as Array<{ kernel_id: string }>)[0]?.kernel_id;
    assert.ok(kernelId);
    const running = await call(client, 'execute_code', {
      notebook_path: 'crash.ipynb',
      code: "import time\nprint('start', flush=True)\ntime.sleep(3)\nprint('end', flush=True)\nbase + 1",
      timeout_s: 1,
    });
    assert.equal(running.structuredContent.status, 'running');
    assert.match(textOfResult(running), /start/);
    const executionId = String(running.structuredContent.execution_id);
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));

    const second = await startHttpServerProcess(workspace, 'test-token-0123456789', remote);
    const client2 = await connectHttpClient(second.url, second.token);
    try {
      const done = await call(client2, 'get_execution', { execution_id: executionId, wait_s: 30 });
      const text = textOfResult(done);
      // The Jupyter server buffered what the kernel said while no client was connected, and replayed it to us.
      assert.equal(done.structuredContent.status, 'succeeded', text);
      assert.equal(text.match(/\bstart\b/g)?.length, 1, text);
      assert.equal(text.match(/\bend\b/g)?.length, 1, text);
      assert.match(text, /\b42\b/);
      assert.match(text, /replayed what the kernel printed meanwhile/, 'the note tells the truth: nothing is missing');
      assert.doesNotMatch(text, /missing/);

      const kernels = await call(client2, 'list_kernels', {});
      const entry = (kernels.structuredContent.kernels as Array<{ kernel_id: string; location: string }>)[0];
      assert.equal(entry?.kernel_id, kernelId, 'the same kernel, re-attached');
      assert.equal(entry?.location, jupyter.url);
      const state = await call(client2, 'execute_code', { notebook_path: 'crash.ipynb', code: 'base' });
      assert.match(textOfResult(state), /\b41\b/, 'kernel state kept');
      await call(client2, 'shutdown_kernel', { notebook_path: 'crash.ipynb' });
    } finally {
      await client2.close();
      await second.stop();
    }
  } finally {
    rmSync(workspace, { recursive: true, force: true });
  }
});

test('switching a workspace from local to remote kernels: the local kernel is re-attached and finishes its cell; after shutdown the notebook runs remotely', { timeout: 120_000 }, async () => {
  const workspace = makeWorkspace('mcpj-switch-');
  try {
    const local = await startHttpServerProcess(workspace);
    const client = await connectHttpClient(local.url, local.token);
    await call(client, 'create_notebook', { notebook_path: 'moving.ipynb' });
    await call(client, 'execute_code', { notebook_path: 'moving.ipynb', code: 'a = 5' });
    const running = await call(client, 'execute_code', { notebook_path: 'moving.ipynb', code: 'import time\ntime.sleep(3)\na + 1', timeout_s: 0.5 });
    assert.equal(running.structuredContent.status, 'running');
    local.child.kill('SIGKILL');
    await new Promise((resolve) => local.child.once('exit', resolve));

    const remote = await startHttpServerProcess(workspace, 'test-token-0123456789', ['--jupyter-url', jupyter.url, '--jupyter-token', jupyter.token]);
    const client2 = await connectHttpClient(remote.url, remote.token);
    try {
      const done = await call(client2, 'get_execution', { execution_id: String(running.structuredContent.execution_id), wait_s: 30 });
      assert.equal(done.structuredContent.status, 'succeeded', textOfResult(done));
      assert.match(textOfResult(done), /\b6\b/);
      const before = (await call(client2, 'list_kernels', {})).structuredContent.kernels as Array<{ location: string }>;
      assert.deepEqual(before.map((kernel) => kernel.location), ['local'], 'the local kernel keeps running its notebook');
      assert.match(textOfResult(await call(client2, 'execute_code', { notebook_path: 'moving.ipynb', code: 'a' })), /\b5\b/, 'with its state');

      await call(client2, 'shutdown_kernel', { notebook_path: 'moving.ipynb' });
      const fresh = await call(client2, 'execute_code', { notebook_path: 'moving.ipynb', code: "'a' in globals()" });
      assert.match(textOfResult(fresh), /False/);
      const after = (await call(client2, 'list_kernels', {})).structuredContent.kernels as Array<{ location: string }>;
      assert.deepEqual(after.map((kernel) => kernel.location), [jupyter.url], 'the next kernel starts on the Jupyter server');
      await call(client2, 'shutdown_kernel', { notebook_path: 'moving.ipynb' });
    } finally {
      await client2.close();
      await remote.stop();
    }
  } finally {
    rmSync(workspace, { recursive: true, force: true });
  }
});
