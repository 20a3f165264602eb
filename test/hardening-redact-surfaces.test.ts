// Secrets are redacted everywhere an HTTP client reads notebook content (resources, /events, its hello), not only tool results.
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import WebSocket from 'ws';
import { serializeNotebook, type Notebook } from '../src/notebook/nbformat.js';
import { redactEventFields } from '../src/server/events.js';
import { redactNotebookInPlace, redactOutput } from '../src/server/redact.js';
import { connectHttpClient, makeWorkspace, startHttpServerProcess, textOfResult } from './helpers/mcp.js';

// Fake secrets shaped like real ones, split so that no scanner mistakes this file for a leak.
const OPENAI_KEY = 'sk-proj-' + 'AbCdEfGhIjKlMnOpQrStUvWxYz0123456789';
const GITHUB_TOKEN = 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8';
const AWS_KEY_ID = 'AKIA' + 'IOSFODNN7EXAMPLE';
const PEM_BODY = 'MIIEowIBAAKCAQEAfakefakefakefakefakefakefake0123456789';
const PEM = ['-----BEGIN RSA PRIVATE KEY-----', PEM_BODY, 'b2theXRoaXNpc25vdGFyZWFsa2V5YXRhbGw=', '-----END RSA PRIVATE KEY-----'].join('\n');
const SECRETS = [OPENAI_KEY, GITHUB_TOKEN, AWS_KEY_ID, PEM_BODY];

/** A cell whose source holds a key and whose outputs show secrets as a stream, HTML, JSON and an error. */
const CELL = [
  `api_key = "${OPENAI_KEY}"`,
  `pem = ${JSON.stringify(PEM)}`,
  'from IPython.display import HTML, JSON, display',
  'print("key:", api_key)',
  'print(pem)',
  `display(HTML("<b>token ${GITHUB_TOKEN.slice(0, 4)}" + "${GITHUB_TOKEN.slice(4)}</b>"))`,
  `display(JSON({"aws": "${AWS_KEY_ID.slice(0, 4)}" + "${AWS_KEY_ID.slice(4)}"}))`,
  'raise ValueError("bad key " + api_key)',
].join('\n');

function assertNoSecret(text: string, where: string): void {
  for (const secret of SECRETS) assert.ok(!text.includes(secret), `${where} shows a secret (${secret.slice(0, 8)}…)`);
}

type LiveEvent = { type: string; execution_id?: string } & Record<string, unknown>;

/** One /events connection keeping every message; `until` waits for a matching one. */
function openEvents(url: string, token: string): { events: LiveEvent[]; opened: Promise<void>; until(match: (event: LiveEvent) => boolean): Promise<LiveEvent>; close(): void } {
  const socket = new WebSocket(`${url.replace('http://', 'ws://')}/events?token=${token}`);
  const events: LiveEvent[] = [];
  let waiters: Array<{ match: (event: LiveEvent) => boolean; resolve: (event: LiveEvent) => void }> = [];
  socket.on('message', (data: Buffer) => {
    const event = JSON.parse(data.toString()) as LiveEvent;
    events.push(event);
    waiters = waiters.filter((waiter) => {
      if (!waiter.match(event)) return true;
      waiter.resolve(event);
      return false;
    });
  });
  return {
    events,
    opened: new Promise((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    }),
    until: (match) => {
      const seen = events.find(match);
      return seen ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ match, resolve }));
    },
    close: () => socket.close(),
  };
}

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function serve(redact: 'on' | 'off'): Promise<{ url: string; token: string; client: Client; workspace: string }> {
  const workspace = makeWorkspace(`mcpj-hardening-redact-surfaces-${redact}-`);
  // The helper passes this process's environment on to the server.
  const previous = process.env['MCP_JUPYTER_REDACT'];
  process.env['MCP_JUPYTER_REDACT'] = redact;
  let server: Awaited<ReturnType<typeof startHttpServerProcess>>;
  try {
    server = await startHttpServerProcess(workspace);
  } finally {
    if (previous === undefined) delete process.env['MCP_JUPYTER_REDACT'];
    else process.env['MCP_JUPYTER_REDACT'] = previous;
  }
  const client = await connectHttpClient(server.url, server.token);
  cleanups.push(async () => {
    await client.close();
    await server.stop();
    rmSync(workspace, { recursive: true, force: true });
  });
  return { url: server.url, token: server.token, client, workspace };
}

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
}

/** Creates the notebook, runs its cell with an /events client watching, and returns what each surface showed. */
async function runSecretCell(url: string, token: string, client: Client): Promise<{ tool: string; resource: string; live: string; hello: string }> {
  const created = await call(client, 'create_notebook', { notebook_path: 's.ipynb', cells: [{ cell_type: 'code', source: CELL }] });
  assert.ok(!created.isError, textOfResult(created));
  const stream = openEvents(url, token);
  await stream.opened;
  const ran = await call(client, 'execute_cell', { notebook_path: 's.ipynb', index: 0 });
  const executionId = (ran.structuredContent as { execution_id: string }).execution_id;
  await stream.until((event) => event.type === 'execution.finished' && event.execution_id === executionId);
  stream.close();
  const live = JSON.stringify(stream.events.filter((event) => event.execution_id === executionId));
  // A client that connects later draws the finished execution from its hello.
  const late = openEvents(url, token);
  const hello = await late.until((event) => event.type === 'hello');
  late.close();
  const read = await client.readResource({ uri: 'notebook://s.ipynb' });
  const resource = (read.contents[0] as { text: string }).text;
  return { tool: JSON.stringify(ran), resource, live, hello: JSON.stringify(hello) };
}

test('over HTTP (redaction on by default): resources, live events and the hello carry the same markers as tool results; the file keeps the originals', async () => {
  const { url, token, client, workspace } = await serve('on');
  const shown = await runSecretCell(url, token, client);

  assertNoSecret(shown.tool, 'the execute_cell result');
  assert.match(shown.tool, /key: \[REDACTED openai-api-key\]/);

  assertNoSecret(shown.resource, 'the notebook resource');
  const notebook = JSON.parse(shown.resource) as { cells: Array<{ source: string[]; outputs: Array<Record<string, unknown>> }> };
  const cell = notebook.cells[0]!;
  assert.equal(cell.source.join(''), CELL.replace(OPENAI_KEY, '[REDACTED openai-api-key]').replace(JSON.stringify(PEM), '"[REDACTED private-key]"'));
  const outputs = JSON.stringify(cell.outputs);
  assert.match(outputs, /key: \[REDACTED openai-api-key\]/);
  assert.match(outputs, /\[REDACTED private-key\]/);
  assert.match(outputs, /token \[REDACTED github-token\]/);
  assert.match(outputs, /"aws": ?"\[REDACTED aws-access-key-id\]"/);
  assert.match(outputs, /"evalue": ?"bad key \[REDACTED openai-api-key\]"/);

  assertNoSecret(shown.live, 'the /events stream');
  assert.match(shown.live, /"type":"execution\.queued"[^]*api_key = \\"\[REDACTED openai-api-key\]\\"/, 'the queued code');
  assert.match(shown.live, /"msg_type":"stream"[^]*key: \[REDACTED openai-api-key\]/);
  assert.match(shown.live, /"msg_type":"display_data"[^]*\[REDACTED github-token\]/);
  assert.match(shown.live, /"msg_type":"error"[^]*bad key \[REDACTED openai-api-key\]/);

  assertNoSecret(shown.hello, 'the /events hello');
  assert.match(shown.hello, /"recent":\[[^]*\[REDACTED openai-api-key\][^]*\[REDACTED private-key\]/);

  // What is on disk is the user's notebook, whole.
  const onDisk = readFileSync(join(workspace, 's.ipynb'), 'utf8');
  for (const secret of SECRETS) assert.ok(onDisk.includes(secret), `the notebook file keeps ${secret.slice(0, 8)}…`);
  assert.ok(!onDisk.includes('[REDACTED'), 'the notebook file has no markers');
});

test('with MCP_JUPYTER_REDACT=off the same surfaces show the originals', async () => {
  const { url, token, client } = await serve('off');
  const shown = await runSecretCell(url, token, client);
  for (const [where, text] of Object.entries(shown)) {
    assert.ok(text.includes(OPENAI_KEY), `${where} shows the key`);
    assert.ok(!text.includes('[REDACTED'), `${where} has no markers`);
  }
  assert.ok(shown.resource.includes(PEM_BODY) && shown.live.includes(GITHUB_TOKEN));
});

test('outputs: text, error and JSON data are redacted; images stay byte for byte; the input is not touched', () => {
  const image = Buffer.from(AWS_KEY_ID).toString('base64') + AWS_KEY_ID;
  const content = {
    data: { 'text/plain': `'${GITHUB_TOKEN}'`, 'text/html': [`<p>${GITHUB_TOKEN}</p>\n`], 'application/json': { nested: [AWS_KEY_ID] }, 'image/png': image },
    metadata: { note: GITHUB_TOKEN },
    execution_count: 3,
  };
  const clean = redactOutput(content);
  assert.deepEqual(clean, {
    data: { 'text/plain': "'[REDACTED github-token]'", 'text/html': ['<p>[REDACTED github-token]</p>\n'], 'application/json': { nested: ['[REDACTED aws-access-key-id]'] }, 'image/png': image },
    metadata: { note: GITHUB_TOKEN },
    execution_count: 3,
  });
  assert.equal(content.data['text/plain'], `'${GITHUB_TOKEN}'`, 'the engine’s own object is left as it was');
  assert.deepEqual(redactOutput({ output_type: 'error', ename: 'KeyError', evalue: OPENAI_KEY, traceback: [`line ${OPENAI_KEY}`, 'other'] }), {
    output_type: 'error',
    ename: 'KeyError',
    evalue: '[REDACTED openai-api-key]',
    traceback: ['line [REDACTED openai-api-key]', 'other'],
  });

  // Events: code, messages and output content; ids, paths and states as they are.
  const event = redactEventFields({ notebook_path: 'a.ipynb', execution_id: 'e1', cell_id: null, msg_type: 'stream', content: { name: 'stdout', text: `k=${OPENAI_KEY}` } });
  assert.deepEqual(event, { notebook_path: 'a.ipynb', execution_id: 'e1', cell_id: null, msg_type: 'stream', content: { name: 'stdout', text: 'k=[REDACTED openai-api-key]' } });
  assert.equal(redactEventFields({ code: `t = "${GITHUB_TOKEN}"`, status_text: `ValueError: ${AWS_KEY_ID}`, state: 'failed' }).status_text, 'ValueError: [REDACTED aws-access-key-id]');

  // A notebook: a private key split over source lines goes as a whole; lines and key order stay nbformat's.
  const notebook: Notebook = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {},
    cells: [
      {
        cell_type: 'code',
        id: 'c1',
        metadata: {},
        execution_count: 1,
        source: ['k = """' + PEM.split('\n')[0] + '\n', PEM.split('\n')[1] + '\n', PEM.split('\n')[2] + '\n', PEM.split('\n')[3] + '"""\n', 'print(1)'],
        outputs: [{ output_type: 'stream', name: 'stdout', text: ['1\n'] }],
      },
      { cell_type: 'markdown', id: 'm1', metadata: {}, source: `token: ${GITHUB_TOKEN}` },
    ],
  };
  const redacted = redactNotebookInPlace(JSON.parse(JSON.stringify(notebook)) as Notebook);
  assert.deepEqual(redacted.cells[0]!.source, ['k = """[REDACTED private-key]"""\n', 'print(1)']);
  assert.equal(redacted.cells[1]!.source, 'token: [REDACTED github-token]');
  assertNoSecret(serializeNotebook(redacted), 'the redacted notebook');
});
