// Two hundred /events clients on one busy notebook: every one receives every event, in order, with nothing missing.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { startHttpServer, type ServerFixture } from './helpers/mcp.js';

const CLIENTS = 200;
const CELLS = 5;
const LINES = 80;

type Event = { type: string; seq: number; execution_id?: string; msg_type?: string; content?: { name?: string; text?: string }; state?: string } & Record<string, unknown>;

interface Client {
  ws: WebSocket;
  events: Event[];
  holes: string[];
}

let fx: ServerFixture;
const clients: Client[] = [];

before(async () => {
  fx = await startHttpServer();
  const cells = Array.from({ length: CELLS }, (_, k) => ({
    cell_type: 'code',
    source: `for i in range(${LINES}):\n    print(f"cell ${k} line {i}", flush=True)`,
  }));
  await fx.ok('create_notebook', { notebook_path: 'busy.ipynb', cells });
});

after(async () => {
  for (const client of clients) client.ws.terminate();
  await fx.close();
});

test(`${CLIENTS} clients each receive every event of a busy notebook in order, with complete executions`, async () => {
  const url = `${fx.url!.replace('http://', 'ws://')}/events?token=${fx.token!}`;
  let finishedEverywhere = 0;
  let allDone!: () => void;
  const done = new Promise<void>((resolve) => (allDone = resolve));
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      const client: Client = { ws: new WebSocket(url), events: [], holes: [] };
      clients.push(client);
      let finished = 0;
      client.ws.on('message', (data: Buffer) => {
        const event = JSON.parse(data.toString()) as Event;
        const expected = client.events.length + 1;
        if (event.seq !== expected) client.holes.push(`seq ${event.seq} where ${expected} was due`);
        client.events.push(event);
        if (event.type === 'execution.finished' && ++finished === CELLS && ++finishedEverywhere === CLIENTS) allDone();
      });
      await new Promise<void>((resolve, reject) => {
        client.ws.once('message', () => resolve());
        client.ws.once('error', reject);
      });
    }),
  );
  const status = await fx.ok<{ event_clients: number }>('server_status');
  assert.equal(status.event_clients, CLIENTS);

  const run = await fx.ok<{ execution_ids: string[] }>('run_all_cells', { notebook_path: 'busy.ipynb', wait: false });
  const ids = run.execution_ids;
  assert.equal(ids.length, CELLS);
  await done;

  const reference = clients[0]!.events.map(({ seq: _seq, time: _time, ...rest }) => JSON.stringify(rest));
  for (const [n, client] of clients.entries()) {
    assert.deepEqual(client.holes, [], `client ${n} has holes in seq`);
    assert.equal(client.events.filter((e) => e.type === 'gap').length, 0, `client ${n} was told it missed events`);
    assert.deepEqual(
      client.events.map(({ seq: _seq, time: _time, ...rest }) => JSON.stringify(rest)),
      reference,
      `client ${n} did not receive the same events in the same order`,
    );
  }

  // The shared sequence itself is complete: per execution queued → started → every line → finished, in run order.
  const events = clients[0]!.events;
  for (const [k, id] of ids.entries()) {
    const mine = events.filter((e) => e.execution_id === id);
    assert.equal(mine[0]?.type, 'execution.queued');
    assert.equal(mine.filter((e) => e.type === 'execution.started').length, 1);
    assert.equal(mine.at(-1)?.type, 'execution.finished');
    assert.equal(mine.at(-1)?.state, 'succeeded');
    const text = mine
      .filter((e) => e.type === 'execution.output' && e.msg_type === 'stream')
      .map((e) => e.content?.text ?? '')
      .join('');
    assert.equal(text, Array.from({ length: LINES }, (_, i) => `cell ${k} line ${i}\n`).join(''), `execution ${k} output is incomplete or out of order`);
  }
  const starts = events.filter((e) => e.type === 'execution.started').map((e) => e.execution_id);
  assert.deepEqual(starts, ids, 'executions start in queue order');
});
