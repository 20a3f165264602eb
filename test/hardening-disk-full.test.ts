// A really full disk (a tiny tmpfs filled to ENOSPC) under the state directory or the workspace of a real `serve`.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectHttpClient, startHttpServerProcess, textOfResult } from './helpers/mcp.js';
import { mountTmpfs } from './helpers/tmpfs.js';

type Result = CallToolResult & { structuredContent: Record<string, unknown> };

interface Served {
  client: Client;
  child: ChildProcess;
  /** Everything the server wrote to stderr (its log). */
  log(): string;
  call(name: string, args: Record<string, unknown>): Promise<Result>;
  ok(name: string, args: Record<string, unknown>): Promise<Result>;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

async function serve(workspace: string, stateDir: string): Promise<Served> {
  const server = await startHttpServerProcess(workspace, 'disk-full-token-0123456789', ['--state-dir', stateDir]);
  let log = '';
  server.child.stderr?.on('data', (chunk: Buffer) => {
    log += chunk.toString();
  });
  const client = await connectHttpClient(server.url, server.token);
  const call = async (name: string, args: Record<string, unknown>) => (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as Result;
  return {
    client,
    child: server.child,
    log: () => log,
    call,
    async ok(name, args) {
      const result = await call(name, args);
      if (result.isError) throw new Error(`${name}: ${textOfResult(result)}`);
      return result;
    },
    async stop() {
      await client.close().catch(() => undefined);
      await server.stop();
    },
    async kill() {
      if (server.child.exitCode !== null) return;
      const exited = new Promise((done) => server.child.once('exit', done));
      server.child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Kernel process groups recorded in the journal (read-only), so that a test can kill what a crashed server left. */
function kernelPids(stateDir: string): number[] {
  const db = new Database(join(stateDir, 'state.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT details FROM kernels').pluck().all() as string[]).map((details) => (JSON.parse(details) as { pid: number }).pid);
  } finally {
    db.close();
  }
}

function killGroups(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

function journal<T>(stateDir: string, read: (db: Database.Database) => T): T {
  const db = new Database(join(stateDir, 'state.db'), { readonly: true, fileMustExist: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

function integrity(stateDir: string): string {
  return journal(stateDir, (db) => db.pragma('integrity_check', { simple: true }) as string);
}

function journaledState(stateDir: string, id: string): string | undefined {
  return journal(stateDir, (db) => db.prepare('SELECT state FROM execution_queue WHERE id = ?').pluck().get(id) as string | undefined);
}

/** Leftovers of an atomic write (`.name.ipynb.<random>.tmp`) in a folder. */
function strayTemps(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.endsWith('.tmp'));
}

/** Every asset a notebook on disk names in its outputs' metadata, with whether the file is there. */
function assetReferences(workspace: string, notebook: string): Array<{ asset: string; exists: boolean }> {
  const nb = JSON.parse(readFileSync(join(workspace, notebook), 'utf8')) as { cells: Array<{ outputs?: Array<{ metadata?: { mcp_jupyter?: { asset?: string } } }> }> };
  return nb.cells.flatMap((cell) =>
    (cell.outputs ?? []).flatMap((output) => {
      const asset = output.metadata?.mcp_jupyter?.asset;
      return asset ? [{ asset, exists: existsSync(join(workspace, asset)) }] : [];
    }),
  );
}

const IMAGE_AND_LONG_TEXT = [
  'import struct, zlib',
  'from IPython.display import Image, display',
  'def png(w, h):',
  "    raw = b''.join(b'\\x00' + bytes((x * 7 + y * 13) % 256 for x in range(w * 3)) for y in range(h))",
  "    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)",
  "    return b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')",
  'display(Image(data=png(96, 96)))',
  "print('long line of output\\n' * 2000, end='')",
].join('\n');

test('state directory full: new work is refused with a clear error, committed work still answers, and work resumes when space returns', { timeout: 120_000 }, async (t) => {
  const fs = mountTmpfs(t, '2m');
  if (!fs) return;
  const workspace = mkdtempSync(join(tmpdir(), 'mcpj-diskfull-ws-'));
  const pids: number[] = [];
  let server: Served | null = null;
  try {
    server = await serve(workspace, fs.dir);
    await server.ok('create_notebook', { notebook_path: 'n.ipynb', cells: [{ cell_type: 'code', source: 'print("cell ran")' }] });
    const committed = await server.ok('execute_code', { notebook_path: 'n.ipynb', code: 'kept = 42\nprint("kept", kept)' });
    const committedId = String(committed.structuredContent.execution_id);
    pids.push(...kernelPids(fs.dir));
    // A running execution and one queued behind it, both accepted while there was room.
    const slow = await server.ok('execute_code', { notebook_path: 'n.ipynb', code: `import time\ntime.sleep(1.5)\nprint("y" * 30000)`, wait: false });
    const queued = await server.ok('execute_code', { notebook_path: 'n.ipynb', code: 'print("queued ran", kept)', wait: false });
    const slowId = String(slow.structuredContent.execution_id);
    const queuedId = String(queued.structuredContent.execution_id);

    fs.fill();
    assert.equal(fs.available(), 0, 'the state directory has no free byte left');

    for (const [tool, args] of [
      ['execute_code', { notebook_path: 'n.ipynb', code: 'print("new")' }],
      ['execute_cell', { notebook_path: 'n.ipynb', index: 0 }],
    ] as const) {
      const refused = await server.call(tool, args);
      assert.equal(refused.isError, true, `${tool} is refused`);
      const said = textOfResult(refused);
      assert.match(said, new RegExp(`not accepted: the state directory ${fs.dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is full \\(.*\\)\\. Free some space there`), said);
      assert.match(said, /Nothing of this request was queued, and earlier executions are unaffected/);
    }

    // The running one finishes in memory; the caller is told its result is not journaled yet, and what that means.
    const slowDone = await server.ok('get_execution', { execution_id: slowId, wait_s: 30 });
    assert.equal(slowDone.structuredContent.status, 'succeeded');
    const slowText = textOfResult(slowDone);
    assert.match(slowText, /this result is not in the journal yet because the state directory .* is full/);
    // Its long output could not be kept as an asset (the lease goes into the full journal first): said so, nothing half-written.
    assert.match(slowText, /could not be saved as an asset \(cannot store the asset assets\/\w+\.txt: its lease could not be recorded in the state database/);
    assert.deepEqual(slowDone.structuredContent.assets, []);
    assert.equal(existsSync(join(workspace, 'assets')) ? readdirSync(join(workspace, 'assets')).length : 0, 0, 'no asset file without its lease');

    // The queued one could not be journaled as started, so it was not sent: pending, as the journal has it.
    const held = await server.ok('get_execution', { execution_id: queuedId });
    assert.equal(held.structuredContent.status, 'pending');
    assert.match(textOfResult(held), /not started yet: the start of this notebook's next execution could not be recorded in the journal because the state directory .* is full/);
    assert.equal(journaledState(fs.dir, queuedId), 'pending');
    const notCancelled = await server.call('cancel_execution', { execution_id: queuedId });
    assert.equal(notCancelled.isError, true, 'a cancellation the journal cannot hold is refused, not faked');
    assert.match(textOfResult(notCancelled), /not cancelled: the state directory .* is full .* is still pending/);

    // What was committed before still answers, and the database is intact.
    const old = await server.ok('get_execution', { execution_id: committedId });
    assert.equal(old.structuredContent.status, 'succeeded');
    assert.match(textOfResult(old), /kept 42/);
    const listed = await server.ok('list_executions', { notebook_path: 'n.ipynb' });
    const states = new Map((listed.structuredContent.executions as Array<{ execution_id: string; status: string }>).map((row) => [row.execution_id, row.status]));
    assert.equal(states.get(committedId), 'succeeded');
    assert.equal(states.get(slowId), 'succeeded', 'the list agrees with get_execution');
    assert.equal(states.get(queuedId), 'pending');
    assert.equal(integrity(fs.dir), 'ok');
    const status = await server.ok('server_status', {});
    assert.match(textOfResult(status), /journal write errors: [1-9]/);

    fs.free();
    // No new request: the held-back start and the unjournaled result are retried by themselves.
    const resumed = await server.ok('get_execution', { execution_id: queuedId, wait_s: 30 });
    assert.equal(resumed.structuredContent.status, 'succeeded', textOfResult(resumed));
    assert.match(textOfResult(resumed), /queued ran 42/);
    assert.equal(journaledState(fs.dir, slowId), 'succeeded');
    assert.equal(journaledState(fs.dir, queuedId), 'succeeded');
    const slowLater = await server.ok('get_execution', { execution_id: slowId });
    assert.doesNotMatch(textOfResult(slowLater), /not in the journal yet/);
    // New work on the same kernel (its variables kept): the server never restarted.
    const again = await server.ok('execute_code', { notebook_path: 'n.ipynb', code: 'print(kept * 2)' });
    assert.equal(again.structuredContent.status, 'succeeded');
    assert.match(textOfResult(again), /84/);
    assert.equal(integrity(fs.dir), 'ok');
    await server.ok('shutdown_kernel', { notebook_path: 'n.ipynb' });
  } finally {
    await server?.stop();
    killGroups(pids);
    fs.unmount();
    rmSync(workspace, { recursive: true, force: true });
  }
});

test('workspace full: saves fail with a clear error, the notebook stays byte-identical, and owed outputs land with the next save', { timeout: 120_000 }, async (t) => {
  const fs = mountTmpfs(t, '2m');
  if (!fs) return;
  const workspace = join(fs.dir, 'ws');
  mkdirSync(workspace);
  const stateDir = mkdtempSync(join(tmpdir(), 'mcpj-diskfull-state-'));
  const pids: number[] = [];
  let server: Served | null = null;
  try {
    server = await serve(workspace, stateDir);
    await server.ok('create_notebook', {
      notebook_path: 'n.ipynb',
      cells: [{ cell_type: 'code', source: 'runs = globals().get("runs", 0) + 1\nprint("run", runs)' }],
    });
    await server.ok('execute_cell', { notebook_path: 'n.ipynb', index: 0 });
    pids.push(...kernelPids(stateDir));
    const before = readFileSync(join(workspace, 'n.ipynb'));
    assert.match(before.toString(), /run 1/);

    fs.fill();
    assert.equal(fs.available(), 0);

    const inserted = await server.call('insert_cell', { notebook_path: 'n.ipynb', cell_type: 'markdown', source: '# more' });
    assert.equal(inserted.isError, true);
    assert.match(textOfResult(inserted), /could not save n\.ipynb: the disk holding it is full \(ENOSPC\), so the file on disk was left as it was \(its previous version\)\. Free some space there and try again\./);
    const edited = await server.call('edit_cell', { notebook_path: 'n.ipynb', index: 0, source: 'print("edited")' });
    assert.equal(edited.isError, true);
    assert.match(textOfResult(edited), /the disk holding it is full \(ENOSPC\)/);
    // The run itself is journaled elsewhere and succeeds; only writing its outputs into the notebook fails.
    const second = await server.ok('execute_cell', { notebook_path: 'n.ipynb', index: 0 });
    assert.equal(second.structuredContent.status, 'succeeded');
    assert.match(textOfResult(second), /run 2/);
    assert.match(textOfResult(second), /note: the outputs could not be written into n\.ipynb when it finished \(.*full.*\); they go in with the notebook's next save/, 'the agent is told the notebook did not get them');
    assert.deepEqual(readFileSync(join(workspace, 'n.ipynb')), before, 'the notebook on disk is still the previous version, byte for byte');
    assert.deepEqual(strayTemps(workspace), [], 'no temporary file is left behind');
    const read = await server.ok('read_notebook', { notebook_path: 'n.ipynb', include_outputs: true });
    assert.match(textOfResult(read), /run 1/);

    fs.free();
    await server.ok('insert_cell', { notebook_path: 'n.ipynb', cell_type: 'markdown', source: '# more' });
    const after = JSON.parse(readFileSync(join(workspace, 'n.ipynb'), 'utf8')) as {
      cells: Array<{ cell_type: string; outputs?: Array<{ text?: string[] | string }>; metadata: { mcp_jupyter?: { execution_id?: string } } }>;
    };
    assert.deepEqual(after.cells.map((cell) => cell.cell_type), ['code', 'markdown'], 'the save after space returned worked');
    const first = after.cells[0]!;
    assert.match(JSON.stringify(first.outputs), /run 2/, 'the outputs of the run whose save failed landed with the next save');
    assert.equal(first.metadata.mcp_jupyter?.execution_id, second.structuredContent.execution_id);
    assert.deepEqual(strayTemps(workspace), []);
    await server.ok('edit_cell', { notebook_path: 'n.ipynb', index: 0, source: 'print("edited")' });
    assert.match(readFileSync(join(workspace, 'n.ipynb'), 'utf8'), /edited/);
    await server.ok('shutdown_kernel', { notebook_path: 'n.ipynb' });
  } finally {
    await server?.stop();
    killGroups(pids);
    fs.unmount();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('assets on a full disk: the result says the plot and the long text could not be kept; no notebook names a missing asset', { timeout: 120_000 }, async (t) => {
  const fs = mountTmpfs(t, '2m');
  if (!fs) return;
  const workspace = join(fs.dir, 'ws');
  mkdirSync(workspace);
  const stateDir = mkdtempSync(join(tmpdir(), 'mcpj-diskfull-state-'));
  const pids: number[] = [];
  let server: Served | null = null;
  try {
    server = await serve(workspace, stateDir);
    await server.ok('create_notebook', { notebook_path: 'plots.ipynb', cells: [{ cell_type: 'code', source: IMAGE_AND_LONG_TEXT }] });
    await server.ok('start_kernel', { notebook_path: 'plots.ipynb' });
    pids.push(...kernelPids(stateDir));

    fs.fill();
    const full = await server.ok('execute_cell', { notebook_path: 'plots.ipynb', index: 0 });
    assert.equal(full.structuredContent.status, 'succeeded');
    const said = textOfResult(full);
    assert.match(said, /the full-size image could not be saved as an asset \(cannot write the asset assets\/\w+\.png: the disk holding assets is full \(ENOSPC\)/);
    assert.match(said, /The complete text could not be saved as an asset \(cannot write the asset assets\/\w+\.txt: the disk holding assets is full/);
    assert.ok(full.content.some((item) => item.type === 'image'), 'the plot itself is still shown');
    assert.deepEqual(full.structuredContent.assets, [], 'no asset path is handed out for a file that was not written');
    assert.deepEqual(assetReferences(workspace, 'plots.ipynb'), []);
    const listed = await server.ok('list_assets', { notebook_path: 'plots.ipynb' });
    for (const asset of listed.structuredContent.assets as Array<{ path: string }>) assert.ok(existsSync(join(workspace, asset.path)), asset.path);
    if (existsSync(join(workspace, 'assets'))) assert.deepEqual(strayTemps(join(workspace, 'assets')), []);

    fs.free();
    // The owed outputs land with the next save: without asset references, since none was written.
    await server.ok('insert_cell', { notebook_path: 'plots.ipynb', cell_type: 'markdown', source: 'notes' });
    assert.match(readFileSync(join(workspace, 'plots.ipynb'), 'utf8'), /image\/png/);
    assert.deepEqual(assetReferences(workspace, 'plots.ipynb'), []);
    // With room, the same run keeps its plot as an asset that the notebook names and that exists.
    const roomy = await server.ok('execute_cell', { notebook_path: 'plots.ipynb', index: 0 });
    assert.equal((roomy.structuredContent.assets as string[]).length, 2, textOfResult(roomy));
    const references = assetReferences(workspace, 'plots.ipynb');
    assert.equal(references.length, 1);
    assert.ok(references.every((reference) => reference.exists), JSON.stringify(references));
    await server.ok('shutdown_kernel', { notebook_path: 'plots.ipynb' });
  } finally {
    await server?.stop();
    killGroups(pids);
    fs.unmount();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('SIGKILL while the state directory is full: after space returns and a restart, the journal and what callers were told agree', { timeout: 120_000 }, async (t) => {
  const fs = mountTmpfs(t, '2m');
  if (!fs) return;
  const workspace = mkdtempSync(join(tmpdir(), 'mcpj-diskfull-ws-'));
  const pids: number[] = [];
  let server: Served | null = null;
  try {
    server = await serve(workspace, fs.dir);
    await server.ok('create_notebook', { notebook_path: 'c.ipynb' });
    await server.ok('execute_code', { notebook_path: 'c.ipynb', code: 'import time' });
    pids.push(...kernelPids(fs.dir));
    const running = await server.ok('execute_code', { notebook_path: 'c.ipynb', code: 'time.sleep(1.5)\nprint("first done")', wait: false });
    // Leaves a mark in the workspace each time it really runs.
    const queued = await server.ok('execute_code', { notebook_path: 'c.ipynb', code: 'open("ran.txt", "a").write("ran\\n")', wait: false });
    const runningId = String(running.structuredContent.execution_id);
    const queuedId = String(queued.structuredContent.execution_id);

    fs.fill();
    const first = await server.ok('get_execution', { execution_id: runningId, wait_s: 30 });
    assert.equal(first.structuredContent.status, 'succeeded');
    assert.match(textOfResult(first), /not in the journal yet .* a server restarted before then could not tell how it ended and would report it lost/);
    const told = await server.ok('get_execution', { execution_id: queuedId, wait_s: 1 });
    assert.equal(told.structuredContent.status, 'pending', textOfResult(told));
    assert.equal(existsSync(join(workspace, 'ran.txt')), false, 'nothing was sent to the kernel');

    await server.kill();
    assert.equal(journaledState(fs.dir, queuedId), told.structuredContent.status, 'the journal holds what the caller was told');
    assert.equal(integrity(fs.dir), 'ok');

    fs.free();
    server = await serve(workspace, fs.dir);
    const resumed = await server.ok('get_execution', { execution_id: queuedId, wait_s: 30 });
    assert.equal(resumed.structuredContent.status, 'succeeded', textOfResult(resumed));
    assert.equal(readFileSync(join(workspace, 'ran.txt'), 'utf8'), 'ran\n', 'it ran exactly once');
    // Its end was never journaled: the restarted server says it cannot know, as the caller was warned.
    const firstAfter = await server.ok('get_execution', { execution_id: runningId, wait_s: 30 });
    assert.equal(firstAfter.structuredContent.status, 'lost');
    assert.match(String(firstAfter.structuredContent.status_text), /not observed/);
    await server.ok('shutdown_kernel', { notebook_path: 'c.ipynb' });
  } finally {
    await server?.stop();
    killGroups(pids);
    fs.unmount();
    rmSync(workspace, { recursive: true, force: true });
  }
});

test('a server started on a full state directory says so and exits; started again once there is room, it answers for what it had', { timeout: 120_000 }, async (t) => {
  const fs = mountTmpfs(t, '2m');
  if (!fs) return;
  const workspace = mkdtempSync(join(tmpdir(), 'mcpj-diskfull-ws-'));
  const pids: number[] = [];
  let server: Served | null = null;
  try {
    server = await serve(workspace, fs.dir);
    await server.ok('create_notebook', { notebook_path: 's.ipynb' });
    const done = await server.ok('execute_code', { notebook_path: 's.ipynb', code: 'print("before the restart")' });
    pids.push(...kernelPids(fs.dir));
    await server.ok('shutdown_kernel', { notebook_path: 's.ipynb' });
    await server.stop();
    server = null;

    fs.fill();
    await assert.rejects(
      serve(workspace, fs.dir),
      (error: Error) => {
        assert.match(error.message, /cannot open the state database .*state\.db: .*The disk holding the state directory .* is full: free some space there \(or pass another --state-dir\) and start again\./);
        return true;
      },
    );

    fs.free();
    server = await serve(workspace, fs.dir);
    const old = await server.ok('get_execution', { execution_id: String(done.structuredContent.execution_id) });
    assert.equal(old.structuredContent.status, 'succeeded');
    assert.match(textOfResult(old), /before the restart/);
    assert.equal(integrity(fs.dir), 'ok');
  } finally {
    await server?.stop();
    killGroups(pids);
    fs.unmount();
    rmSync(workspace, { recursive: true, force: true });
  }
});
