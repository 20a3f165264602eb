// A state directory that is full or read-only: clear refusals, nothing committed is damaged, recovery when space returns.
// Simulated, not real: "full" is SQLite's max_page_count capped at the file's current size (SQLITE_FULL, as a full
// disk gives), "read-only" is a read-only connection to the journal (SQLITE_READONLY, as a read-only mount gives).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { loadConfig } from '../src/config.js';
import { Engine, StateStorageError } from '../src/engine/engine.js';
import { LocalKernelProvider } from '../src/kernel/local-provider.js';
import { silentLogger } from '../src/log.js';
import { createMcpServer } from '../src/server/mcp.js';
import { Workspace } from '../src/server/workspace.js';
import { openDatabase, type Db } from '../src/store/db.js';

function capAtCurrentSize(db: Db): void {
  const pages = db.pragma('page_count', { simple: true }) as number;
  db.pragma(`max_page_count = ${pages}`);
}

function uncap(db: Db): void {
  db.pragma('max_page_count = 1073741823');
}

function integrity(db: Db): string {
  return db.pragma('integrity_check', { simple: true }) as string;
}

test('a full journal refuses new work with a clear error, keeps what it had, and takes work again when space returns', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-hardening-full-'));
  const db = openDatabase(join(dir, '.mcp-jupyter', 'state.db'));
  const engine = new Engine({ db, provider: new LocalKernelProvider({ runtimeDir: join(dir, '.mcp-jupyter', 'kernels'), workspace: dir }), workspaceRoot: dir });
  try {
    const [first] = engine.submit([{ notebookPath: 'a.ipynb', code: 'print("kept")', kind: 'code', kernelName: 'python3' }]);
    assert.equal((await engine.wait(first!.id, 60_000)).state, 'succeeded');

    capAtCurrentSize(db);
    const big = `x = """${'y'.repeat(200_000)}"""`;
    assert.throws(
      () => engine.submit([{ notebookPath: 'a.ipynb', code: big, kind: 'code', kernelName: 'python3' }, { notebookPath: 'a.ipynb', code: '1', kind: 'code', kernelName: 'python3' }]),
      (error: unknown) => {
        assert.ok(error instanceof StateStorageError, String(error));
        assert.match(error.message, /^not accepted: the state directory .*\.mcp-jupyter is full \(.*full.*\)\. Free some space there/);
        assert.match(error.message, /Nothing of this request was queued, and earlier executions are unaffected/);
        return true;
      },
    );
    assert.equal(engine.list({ limit: 10 }).length, 1, 'nothing of the refused batch is in the journal');
    assert.equal(engine.get(first!.id).state, 'succeeded');
    assert.equal(integrity(db), 'ok');
    assert.equal(engine.stats.journalWriteErrors, 1);

    uncap(db);
    const [again] = engine.submit([{ notebookPath: 'a.ipynb', code: big + '\nprint(len(x))', kind: 'code', kernelName: 'python3' }]);
    assert.equal((await engine.wait(again!.id, 60_000)).state, 'succeeded');
  } finally {
    await engine.close({ kernels: 'shutdown' });
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('outputs that cannot be journaled: logged and counted, the execution goes on, and the journal catches up later', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-hardening-flush-'));
  const db = openDatabase(join(dir, '.mcp-jupyter', 'state.db'));
  const logged: string[] = [];
  const engine = new Engine({
    db,
    provider: new LocalKernelProvider({ runtimeDir: join(dir, '.mcp-jupyter', 'kernels'), workspace: dir }),
    workspaceRoot: dir,
    log: (level, message, fields) => {
      if (level === 'error') logged.push(`${message} ${JSON.stringify(fields)}`);
    },
  });
  try {
    // The kernel is started (and recorded) while there is room.
    const [warm] = engine.submit([{ notebookPath: 'b.ipynb', code: '0', kind: 'code', kernelName: 'python3' }]);
    await engine.wait(warm!.id, 60_000);
    const [loud] = engine.submit([{ notebookPath: 'b.ipynb', code: 'import time\nfor i in range(40):\n    print(str(i) * 5000, flush=True)\n    time.sleep(0.01)\nprint("end")', kind: 'code', kernelName: 'python3' }]);
    capAtCurrentSize(db);
    const finished = await engine.wait(loud!.id, 60_000);
    assert.equal(finished.state, 'succeeded', 'the execution went on although its outputs could not be written');
    assert.match(JSON.stringify(finished.outputs), /end/);
    assert.ok(engine.stats.journalWriteErrors > 0);
    assert.ok(logged.some((line) => /could not journal outputs/.test(line) && /is full/.test(line)), logged.join('\n'));
    // Answered from memory meanwhile: the journal row is behind, but nobody is told a stale state.
    assert.equal(engine.get(loud!.id).state, 'succeeded');
    assert.notEqual(engine.journal.get(loud!.id)?.state, 'succeeded');

    uncap(db);
    const [next] = engine.submit([{ notebookPath: 'b.ipynb', code: '1', kind: 'code', kernelName: 'python3' }]);
    await engine.wait(next!.id, 60_000);
    const row = engine.journal.get(loud!.id);
    assert.equal(row?.state, 'succeeded', 'the final state reached the journal once it could be written');
    const journaled = engine.journal.outputs(loud!.id) as Array<{ text?: string }>;
    const text = journaled.map((output) => output.text ?? '').join('');
    assert.match(text, /end/);
    assert.equal(text.split('\n').filter(Boolean).length, 41, 'every line, including those whose flush failed, is in the journal');
    assert.equal(integrity(db), 'ok');
  } finally {
    await engine.close({ kernels: 'shutdown' });
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a read-only journal refuses new work and still answers for what it holds', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-hardening-ro-'));
  const file = join(dir, '.mcp-jupyter', 'state.db');
  const writable = openDatabase(file);
  const seeded = new Engine({ db: writable, provider: new LocalKernelProvider({ runtimeDir: join(dir, 'k'), workspace: dir }), workspaceRoot: dir });
  const [row] = seeded.submit([{ notebookPath: 'c.ipynb', code: '1', kind: 'code', kernelName: 'python3' }]);
  await seeded.close({ kernels: 'shutdown' });
  writable.close();

  const readonly = new Database(file, { readonly: true });
  const engine = new Engine({ db: readonly, provider: new LocalKernelProvider({ runtimeDir: join(dir, 'k'), workspace: dir }), workspaceRoot: dir });
  try {
    assert.throws(
      () => engine.submit([{ notebookPath: 'c.ipynb', code: '2', kind: 'code', kernelName: 'python3' }]),
      /^Error: not accepted: the state directory .* is read-only \(.*\)\. Make it writable \(or start the server with another --state-dir\)/,
    );
    assert.equal(engine.get(row!.id).code, '1');
    assert.equal(engine.list({ limit: 10 }).length, 1);
  } finally {
    await engine.close({ kernels: 'shutdown' });
    readonly.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('over MCP: a full state directory is a tool error that says so, and the notebook file is untouched', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-hardening-mcp-full-'));
  const workspace = Workspace.open(loadConfig({ workspace: dir }, {}), silentLogger);
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await createMcpServer(workspace).connect(serverSide);
  const client = new Client({ name: 'hardening-storage', version: '1.0.0' });
  await client.connect(clientSide);
  try {
    const created = (await client.callTool({ name: 'create_notebook', arguments: { notebook_path: 'n.ipynb', cells: [{ cell_type: 'code', source: `s = "${'z'.repeat(100_000)}"` }] } })) as CallToolResult;
    assert.ok(!created.isError);
    const bytes = readFileSync(join(dir, 'n.ipynb'));
    capAtCurrentSize(workspace.db);
    const result = (await client.callTool({ name: 'execute_cell', arguments: { notebook_path: 'n.ipynb', index: 0 } })) as CallToolResult;
    assert.equal(result.isError, true);
    const said = result.content.map((item) => (item.type === 'text' ? item.text : '')).join('');
    assert.match(said, /not accepted: the state directory .* is full .*Free some space there/);
    assert.deepEqual(readFileSync(join(dir, 'n.ipynb')), bytes);
    const status = (await client.callTool({ name: 'server_status', arguments: {} })) as CallToolResult;
    assert.ok(!status.isError, 'the server keeps answering');
    assert.match(status.content.map((item) => (item.type === 'text' ? item.text : '')).join(''), /journal write errors: 1/);
    uncap(workspace.db);
  } finally {
    await client.close();
    await workspace.close({ shutdownKernels: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
