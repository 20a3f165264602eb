// /events against the real server: hello snapshot, the full event sequence of a cell, notebook changes, filters, auth.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { startHttpServer, type ServerFixture } from './helpers/mcp.js';

type Event = { type: string; seq: number; time: string; notebook_path?: string; execution_id?: string } & Record<string, unknown>;

/** One /events connection that keeps every message and lets a test wait for the one it expects. */
class Stream {
  readonly events: Event[] = [];
  private waiters: Array<() => void> = [];
  readonly ws: WebSocket;
  readonly opened: Promise<void>;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.ws.on('message', (data: Buffer) => {
      this.events.push(JSON.parse(data.toString()) as Event);
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  /** The first event (from `from` on) that matches; waits for it to arrive. */
  async next(match: (event: Event) => boolean, what: string, from = 0, timeoutMs = 60_000): Promise<Event> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.slice(from).find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms; got: ${this.events.map((e) => e.type).join(', ')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  seqIsContiguous(): void {
    this.events.forEach((event, i) => assert.equal(event.seq, i + 1, `seq ${event.seq} at position ${i} (${event.type})`));
  }
}

let fx: ServerFixture;
const streams: Stream[] = [];
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function open(query = ''): Stream {
  const stream = new Stream(`${fx.url!.replace('http://', 'ws://')}/events?token=${fx.token!}${query}`);
  streams.push(stream);
  return stream;
}

function version(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 16);
}

before(async () => {
  fx = await startHttpServer();
  await fx.ok('create_notebook', { notebook_path: 'a.ipynb', cells: [{ cell_type: 'code', source: 'print("hi")\n1 + 1' }] });
  await fx.ok('create_notebook', { notebook_path: 'b.ipynb' });
});

after(async () => {
  for (const stream of streams) stream.ws.terminate();
  await fx.close();
});

test('a cell run arrives as queued, started, outputs as the kernel sent them, finished; its save as one notebook.changed', async () => {
  const stream = open();
  await stream.opened;
  const hello = await stream.next((e) => e.type === 'hello', 'hello');
  assert.equal(hello.seq, 1);
  assert.deepEqual(hello.notebooks, []);
  assert.equal(hello.notebook, null);

  const result = await fx.ok<{ execution_id: string }>('execute_cell', { notebook_path: 'a.ipynb', index: 0 });
  const id = result.execution_id;
  const changed = await stream.next((e) => e.type === 'notebook.changed' && e.notebook_path === 'a.ipynb', 'notebook.changed after the outputs were saved');
  const mine = stream.events.filter((e) => e.execution_id === id);
  assert.deepEqual(
    mine.map((e) => (e.type === 'execution.output' ? `output:${String(e.msg_type)}` : e.type)),
    ['execution.queued', 'execution.started', 'output:stream', 'output:execute_result', 'execution.finished'],
  );
  const [queued, started, stream0, result0, finished] = mine;
  assert.equal(queued!.code, 'print("hi")\n1 + 1');
  assert.equal(typeof queued!.cell_id, 'string');
  assert.equal(typeof started!.kernel_id, 'string');
  assert.deepEqual(stream0!.content, { name: 'stdout', text: 'hi\n' });
  assert.equal((result0!.content as { data: Record<string, string> }).data['text/plain'], '2');
  assert.equal(finished!.state, 'succeeded');
  assert.equal(finished!.execution_count, 1);
  assert.equal(typeof finished!.duration_ms, 'number');
  assert.ok(Number.isFinite(Date.parse(finished!.time)));
  const statuses = stream.events.filter((e) => e.type === 'kernel.status').map((e) => e.status);
  assert.ok(statuses.includes('started') && statuses.includes('busy') && statuses.includes('idle'), `kernel statuses: ${statuses.join(', ')}`);
  assert.ok(stream.events.filter((e) => e.type === 'kernel.status').every((e) => e.kernel_name === 'python3'));

  assert.equal(changed.source, 'server');
  const file = path.join(fx.workspace, 'a.ipynb');
  assert.equal(changed.version, version(file));
  const read = await fx.ok<{ version: string }>('read_notebook', { notebook_path: 'a.ipynb' });
  assert.equal(changed.version, read.version, 'the event names the version read_notebook reports');
  // Our own save also shows up as a file-system event; it must not be reported a second time.
  await delay(600);
  // Only a.ipynb's: the fixture's own saves of other notebooks may still be announced as the stream opens.
  const changes = stream.events.filter((e) => e.type === 'notebook.changed' && e.notebook_path === 'a.ipynb');
  assert.equal(changes.length, 1, `one save, one notebook.changed: ${JSON.stringify(changes)}`);
  stream.seqIsContiguous();
});

test('an edit made on disk by someone else is reported once, with the new version; a deletion says so', async () => {
  const stream = open();
  await stream.next((e) => e.type === 'hello', 'hello');
  const file = path.join(fx.workspace, 'a.ipynb');
  const notebook = JSON.parse(readFileSync(file, 'utf8')) as { cells: unknown[] };
  notebook.cells.push({ cell_type: 'markdown', id: 'added-outside', metadata: {}, source: 'edited in another editor' });
  writeFileSync(file, JSON.stringify(notebook, null, 1));
  const changed = await stream.next((e) => e.type === 'notebook.changed', 'notebook.changed for the edit on disk');
  assert.equal(changed.notebook_path, 'a.ipynb');
  assert.equal(changed.source, 'disk');
  assert.equal(changed.version, version(file));
  await delay(600);
  assert.equal(stream.events.filter((e) => e.type === 'notebook.changed').length, 1);

  // b.ipynb shares the watched folder: its deletion is noticed too.
  rmSync(path.join(fx.workspace, 'b.ipynb'));
  const deleted = await stream.next((e) => e.type === 'notebook.changed' && e.notebook_path === 'b.ipynb', 'notebook.changed for the deletion');
  assert.equal(deleted.deleted, true);
  assert.equal(deleted.version, null);
  await fx.ok('create_notebook', { notebook_path: 'b.ipynb' });
});

test('a client that joins mid-run gets the running cell with its output so far and the queue, then the events after it', async () => {
  const watcher = open();
  await watcher.next((e) => e.type === 'hello', 'hello');
  const first = await fx.ok<{ execution_id: string }>('execute_code', {
    notebook_path: 'a.ipynb',
    code: 'import time\nprint("first line", flush=True)\ntime.sleep(2)\nprint("second line")',
    wait: false,
  });
  const second = await fx.ok<{ execution_id: string }>('execute_code', { notebook_path: 'a.ipynb', code: 'print("queued one")', wait: false });
  await watcher.next((e) => e.type === 'execution.output' && e.execution_id === first.execution_id, 'the first output');

  const late = open();
  const hello = await late.next((e) => e.type === 'hello', 'hello');
  const kernels = hello.kernels as Array<{ notebook_path: string; status: string }>;
  assert.equal(kernels.find((k) => k.notebook_path === 'a.ipynb')?.status, 'busy');
  const notebooks = hello.notebooks as Array<{ notebook_path: string; running: { execution_id: string; outputs: Array<{ text?: string }> } | null; queued: Array<{ execution_id: string; code: string; position: number }> }>;
  const a = notebooks.find((n) => n.notebook_path === 'a.ipynb');
  assert.equal(a?.running?.execution_id, first.execution_id);
  assert.equal(a.running.outputs.map((o) => o.text ?? '').join(''), 'first line\n');
  assert.deepEqual(
    a.queued.map((q) => [q.execution_id, q.code, q.position]),
    [[second.execution_id, 'print("queued one")', 1]],
  );
  const recent = hello.recent as Array<{ execution_id: string; state: string; outputs?: unknown[] }>;
  assert.ok(recent.length >= 1 && recent.every((r) => r.state !== 'running' && r.state !== 'pending'));

  // It continues exactly where the snapshot left off: the rest of the first run, then the queued one.
  await late.next((e) => e.type === 'execution.finished' && e.execution_id === second.execution_id, 'the queued run to finish');
  const after = late.events.slice(1).filter((e) => e.execution_id !== undefined);
  assert.ok(!after.some((e) => e.type === 'execution.queued'), 'nothing from before the snapshot is repeated');
  assert.deepEqual(
    after.map((e) => `${e.execution_id === first.execution_id ? 'first' : 'second'} ${e.type}`),
    ['first execution.output', 'first execution.finished', 'second execution.started', 'second execution.output', 'second execution.finished'],
  );
  assert.equal((after[0]!.content as { text: string }).text, 'second line\n');
  late.seqIsContiguous();
});

test('?notebook= filters the stream to one notebook; a path outside the workspace is refused', async () => {
  const onlyB = open('&notebook=b.ipynb');
  const all = open();
  const hello = await onlyB.next((e) => e.type === 'hello', 'hello');
  assert.equal(hello.notebook, 'b.ipynb');
  await all.next((e) => e.type === 'hello', 'hello');
  const inA = await fx.ok<{ execution_id: string }>('execute_code', { notebook_path: 'a.ipynb', code: 'print("in a")' });
  const inB = await fx.ok<{ execution_id: string }>('execute_code', { notebook_path: 'b.ipynb', code: 'print("in b")' });
  await onlyB.next((e) => e.type === 'execution.finished' && e.execution_id === inB.execution_id, 'b to finish');
  await all.next((e) => e.type === 'execution.finished' && e.execution_id === inB.execution_id, 'b to finish');
  assert.ok(all.events.some((e) => e.execution_id === inA.execution_id));
  assert.ok(onlyB.events.slice(1).every((e) => e.notebook_path === 'b.ipynb'), 'only b.ipynb events on the filtered stream');
  assert.ok(onlyB.events.some((e) => e.type === 'kernel.status'), 'b.ipynb kernel statuses come through');
  onlyB.seqIsContiguous();

  const refused = new WebSocket(`${fx.url!.replace('http://', 'ws://')}/events?token=${fx.token!}&notebook=../outside.ipynb`);
  const status = await new Promise<number>((resolve) => {
    refused.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    refused.once('open', () => resolve(101));
  });
  refused.on('error', () => undefined);
  refused.terminate();
  assert.equal(status, 400);
});

test('the token is required; connected clients are counted in server_status and /metrics', async () => {
  const attempt = async (query: string): Promise<number> => {
    const ws = new WebSocket(`${fx.url!.replace('http://', 'ws://')}/events${query}`);
    const code = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => resolve(101));
      ws.once('error', () => resolve(-1));
    });
    ws.on('error', () => undefined);
    ws.terminate();
    return code;
  };
  assert.equal(await attempt(''), 401);
  assert.equal(await attempt('?token=wrong'), 403);

  for (const stream of streams.splice(0)) stream.ws.terminate();
  const three = [open(), open(), open()];
  await Promise.all(three.map((s) => s.next((e) => e.type === 'hello', 'hello')));
  const status = await fx.ok<{ event_clients: number }>('server_status');
  assert.equal(status.event_clients, 3);
  const metrics = await (await fetch(`${fx.url!}/metrics`, { headers: { Authorization: `Bearer ${fx.token!}` } })).text();
  assert.match(metrics, /^mcp_jupyter_event_clients 3$/m);
  assert.match(metrics, /^mcp_jupyter_event_dropped_total 0$/m);
});
