// The HTTP server for real: MCP clients over Streamable HTTP, auth, Host/Origin checks, limits, /health, /metrics, static files.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import WebSocket, { WebSocketServer } from 'ws';
import { z } from 'zod';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { startHttpServer, type HttpServerHandle, type HttpServerOptions } from '../src/server/http.js';
import { Registry } from '../src/server/metrics.js';
import { VERSION } from '../src/server/version.js';
import { Workspace } from '../src/server/workspace.js';
import { VENV_PYTHON } from './fixtures/kernel-helpers.js';

const TOKEN = 'test-token-0123456789';
const root = mkdtempSync(path.join(tmpdir(), 'http-server-test-'));
const workspaceDir = path.join(root, 'ws');
const staticDir = path.join(root, 'site', 'static');
mkdirSync(workspaceDir);
mkdirSync(staticDir, { recursive: true });
writeFileSync(path.join(staticDir, 'index.html'), '<!doctype html><title>monitor</title>');
writeFileSync(path.join(staticDir, 'app.js'), 'console.log("monitor");');
// Secrets next to and above the static folder, which no URL may reach.
writeFileSync(path.join(root, 'site', 'package.json'), '{"secret": "outside-static"}');
writeFileSync(path.join(root, 'site', 'secret.txt'), 'outside-static');
symlinkSync(path.join(root, 'site', 'secret.txt'), path.join(staticDir, 'link.txt'));

const workspace = Workspace.open(loadConfig({ workspace: workspaceDir, stateDir: path.join(workspaceDir, '.mcp-jupyter') }, {}), silentLogger);
const servers: HttpServerHandle[] = [];
let created = 0;

/** A small MCP server per session: `bump` counts calls on this instance, so sessions that shared state would show it. */
function makeMcpServer(): McpServer {
  created += 1;
  const server = new McpServer({ name: 'http-test', version: '0.0.0' });
  let calls = 0;
  server.registerTool('echo', { description: 'Echo the text', inputSchema: { text: z.string() } }, ({ text }) => ({ content: [{ type: 'text', text }] }));
  server.registerTool('bump', { description: 'Count calls on this session' }, () => {
    calls += 1;
    return { content: [{ type: 'text', text: String(calls) }] };
  });
  return server;
}

async function start(extra: Partial<HttpServerOptions> = {}): Promise<HttpServerHandle> {
  const handle = await startHttpServer({
    workspace,
    createServer: makeMcpServer,
    host: '127.0.0.1',
    port: 0,
    token: TOKEN,
    log: silentLogger,
    registry: new Registry(),
    ...extra,
  });
  servers.push(handle);
  return handle;
}

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A request with exactly the path and headers given (fetch would normalise `..` and forbids setting Host). */
function raw(port: number, options: { method?: string; path: string; headers?: Record<string, string>; body?: string }): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path, headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const auth = { Authorization: `Bearer ${TOKEN}` };
const initializeBody = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
});
const mcpHeaders = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' };

async function connect(url: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers: auth } });
  const client = new Client({ name: 'http-test-client', version: '0.0.0' });
  await client.connect(transport);
  return { client, transport };
}

function toolText(result: Awaited<ReturnType<Client['callTool']>>): string {
  const content = result.content as Array<{ type: string; text?: string }>;
  return content.map((part) => part.text ?? '').join('');
}

after(async () => {
  await Promise.all(servers.map((server) => server.close()));
  await workspace.close();
  rmSync(root, { recursive: true, force: true });
});

describe('HTTP server', () => {
  let server: HttpServerHandle;
  before(async () => {
    server = await start({ staticDir });
  });

  test('reports the real port and a URL on the bound host', () => {
    assert.ok(server.port > 0);
    assert.equal(server.url, `http://127.0.0.1:${server.port}`);
  });

  test('/health answers without a token', async () => {
    const res = await raw(server.port, { path: '/health' });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /application\/json/);
    const body = JSON.parse(res.body) as Record<string, unknown>;
    assert.equal(body['status'], 'ok');
    assert.equal(body['version'], VERSION);
    assert.equal(body['kernels'], 0);
    assert.equal(typeof body['uptime_s'], 'number');
  });

  test('/mcp without a token is 401 with WWW-Authenticate and says how to pass it', async () => {
    const res = await raw(server.port, { method: 'POST', path: '/mcp', headers: mcpHeaders, body: initializeBody });
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer');
    const body = JSON.parse(res.body) as { error: { message: string } };
    assert.match(body.error.message, /Authorization: Bearer <token>/);
  });

  test('/mcp with a wrong token is 403', async () => {
    const res = await raw(server.port, { method: 'POST', path: '/mcp', headers: { ...mcpHeaders, Authorization: 'Bearer wrong-token' }, body: initializeBody });
    assert.equal(res.status, 403);
    assert.equal(server.sessions(), 0);
  });

  test('a token in the query string is refused for /mcp and /metrics, accepted for the page', async () => {
    const mcp = await raw(server.port, { method: 'POST', path: `/mcp?token=${TOKEN}`, headers: mcpHeaders, body: initializeBody });
    assert.equal(mcp.status, 401);
    assert.match(mcp.body, /query string is accepted only/);
    const metrics = await raw(server.port, { path: `/metrics?token=${TOKEN}` });
    assert.equal(metrics.status, 401);
    const page = await raw(server.port, { path: `/?token=${TOKEN}` });
    assert.equal(page.status, 200);
    const wrong = await raw(server.port, { path: '/?token=nope' });
    assert.equal(wrong.status, 403);
    assert.equal(server.sessions(), 0);
  });

  test('a foreign Host is refused even with the token (DNS rebinding)', async () => {
    const res = await raw(server.port, { path: '/metrics', headers: { ...auth, Host: `evil.example:${server.port}` } });
    assert.equal(res.status, 403);
    assert.match(res.body, /Host not allowed/);
    const otherPort = await raw(server.port, { path: '/metrics', headers: { ...auth, Host: `localhost:${server.port + 1}` } });
    assert.equal(otherPort.status, 403);
    const loopback = await raw(server.port, { path: '/metrics', headers: { ...auth, Host: `localhost:${server.port}` } });
    assert.equal(loopback.status, 200);
  });

  test('a foreign Origin is refused; an allowed one goes through', async () => {
    const foreign = await raw(server.port, { method: 'POST', path: '/mcp', headers: { ...mcpHeaders, ...auth, Origin: 'http://evil.example' }, body: initializeBody });
    assert.equal(foreign.status, 403);
    assert.match(foreign.body, /Origin not allowed/);
    const ok = await raw(server.port, { method: 'POST', path: '/mcp', headers: { ...mcpHeaders, ...auth, Origin: `http://localhost:${server.port}` }, body: initializeBody });
    assert.equal(ok.status, 200);
    const sessionId = ok.headers['mcp-session-id'];
    assert.equal(typeof sessionId, 'string');
    // End that raw session so the session counts below stay exact.
    const del = await raw(server.port, { method: 'DELETE', path: '/mcp', headers: { ...auth, 'mcp-session-id': String(sessionId) } });
    assert.equal(del.status, 200);
    assert.equal(server.sessions(), 0);
  });

  test('an unknown session id is 404 and a missing one 400, both saying to re-initialize', async () => {
    const list = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} });
    const unknown = await raw(server.port, { method: 'POST', path: '/mcp', headers: { ...mcpHeaders, ...auth, 'mcp-session-id': 'no-such-session' }, body: list });
    assert.equal(unknown.status, 404);
    assert.match((JSON.parse(unknown.body) as { error: { message: string } }).error.message, /Re-initialize/);
    const missing = await raw(server.port, { method: 'POST', path: '/mcp', headers: { ...mcpHeaders, ...auth }, body: list });
    assert.equal(missing.status, 400);
    assert.match(missing.body, /Re-initialize/);
    const sse = await raw(server.port, { method: 'GET', path: '/mcp', headers: { ...auth, Accept: 'text/event-stream', 'mcp-session-id': 'no-such-session' } });
    assert.equal(sse.status, 404);
    const badJson = await raw(server.port, { method: 'POST', path: '/mcp', headers: { ...mcpHeaders, ...auth }, body: '{not json' });
    assert.equal(badJson.status, 400);
    assert.equal((JSON.parse(badJson.body) as { error: { code: number } }).error.code, -32700);
  });

  test('a body over 4 MB is refused with 413 before it is all sent', { timeout: 5000 }, async () => {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: server.port, method: 'POST', path: '/mcp', headers: { ...mcpHeaders, ...auth, 'Content-Length': String(5 * 1024 * 1024) } },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        },
      );
      // The server may close the socket while we would still be writing; only the answer matters.
      req.on('error', reject);
      req.write(Buffer.alloc(1024, 32));
    });
    assert.equal(res.status, 413);
    assert.match(res.body, /larger than 4194304 bytes/);
  });

  test('a chunked body that grows past 4 MB is refused with 413', { timeout: 5000 }, async () => {
    const res = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: server.port, method: 'POST', path: '/mcp', headers: { ...mcpHeaders, ...auth } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        // Writing on after the server hung up is expected once it has refused the body.
        if (error.code !== 'EPIPE' && error.code !== 'ECONNRESET') reject(error);
      });
      const chunk = Buffer.alloc(256 * 1024, 32);
      for (let i = 0; i < 20; i += 1) req.write(chunk);
    });
    assert.equal(res, 413);
  });

  test('/metrics is Prometheus text with the workspace gauges, as parsed by prometheus_client', async () => {
    await raw(server.port, { path: '/health' });
    const res = await raw(server.port, { path: '/metrics', headers: auth });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const parsed = spawnSync(
      VENV_PYTHON,
      [
        '-c',
        'import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families as p\n' +
          'print(json.dumps({f.name: {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]} for f in p(sys.stdin.read())}))',
      ],
      { input: res.body, encoding: 'utf8' },
    );
    assert.equal(parsed.status, 0, parsed.stderr);
    const families = JSON.parse(parsed.stdout) as Record<string, { type: string; samples: Array<[string, Record<string, string>, number]> }>;
    const executions = families['mcp_jupyter_executions'];
    assert.equal(executions?.type, 'gauge');
    assert.deepEqual(
      executions.samples.find(([, labels]) => labels['state'] === 'succeeded'),
      ['mcp_jupyter_executions', { state: 'succeeded' }, 0],
    );
    for (const name of ['mcp_jupyter_queue_depth', 'mcp_jupyter_kernels', 'mcp_jupyter_event_clients', 'mcp_jupyter_database_bytes', 'mcp_jupyter_uptime_seconds']) {
      assert.equal(families[name]?.type, 'gauge', `${name} is missing`);
    }
    assert.ok((families['mcp_jupyter_database_bytes']?.samples[0]?.[2] ?? 0) > 0, 'the database has a size');
    const requests = families['mcp_jupyter_http_requests'];
    assert.equal(requests?.type, 'counter');
    assert.ok(requests.samples.some(([name, labels, value]) => name === 'mcp_jupyter_http_requests_total' && labels['path'] === '/health' && labels['code'] === '200' && value >= 1));
    // Scanners hitting random paths all land under one label value.
    assert.ok(requests.samples.every(([, labels]) => ['/', '/mcp', '/events', '/health', '/metrics', 'other'].includes(labels['path'] ?? '')));
    const duration = families['mcp_jupyter_http_request_duration_seconds'];
    assert.equal(duration?.type, 'histogram');
    assert.ok(duration.samples.some(([name, labels]) => name.endsWith('_bucket') && labels['le'] === '+Inf' && labels['path'] === '/health'));
  });

  test('two MCP clients at once: separate sessions and servers, and one leaving does not disturb the other', async () => {
    const before = created;
    const a = await connect(server.url);
    const b = await connect(server.url);
    assert.equal(created - before, 2, 'one McpServer per session');
    assert.ok(a.transport.sessionId && b.transport.sessionId);
    assert.notEqual(a.transport.sessionId, b.transport.sessionId);
    assert.equal(server.sessions(), 2);

    const [toolsA, toolsB] = await Promise.all([a.client.listTools(), b.client.listTools()]);
    assert.deepEqual(toolsA.tools.map((tool) => tool.name).sort(), ['bump', 'echo']);
    assert.deepEqual(toolsB.tools.map((tool) => tool.name).sort(), ['bump', 'echo']);
    assert.equal(toolText(await a.client.callTool({ name: 'echo', arguments: { text: 'from a' } })), 'from a');
    assert.equal(toolText(await a.client.callTool({ name: 'bump', arguments: {} })), '1');
    assert.equal(toolText(await a.client.callTool({ name: 'bump', arguments: {} })), '2');
    assert.equal(toolText(await b.client.callTool({ name: 'bump', arguments: {} })), '1', 'sessions share no state');

    await a.transport.terminateSession();
    await a.client.close();
    assert.equal(server.sessions(), 1);
    assert.equal(toolText(await b.client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
    assert.equal(toolText(await b.client.callTool({ name: 'bump', arguments: {} })), '2');
    await b.transport.terminateSession();
    await b.client.close();
    assert.equal(server.sessions(), 0);
  });

  test('static files: index for /, content types, traversal and escaping symlinks refused', async () => {
    const index = await raw(server.port, { path: '/', headers: auth });
    assert.equal(index.status, 200);
    assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(index.body, /<title>monitor<\/title>/);
    assert.equal(index.headers['referrer-policy'], 'no-referrer');
    const script = await raw(server.port, { path: `/app.js?token=${TOKEN}` });
    assert.equal(script.status, 200);
    assert.equal(script.headers['content-type'], 'text/javascript; charset=utf-8');
    const noToken = await raw(server.port, { path: '/app.js' });
    assert.equal(noToken.status, 401);

    for (const attempt of ['/../package.json', '/%2e%2e/package.json', '/%2E%2E%2Fpackage.json', '/..%2fsecret.txt', '/..%5csecret.txt', '/static/../../secret.txt', '/link.txt']) {
      const res = await raw(server.port, { path: attempt, headers: auth });
      assert.ok(res.status === 403 || res.status === 404, `${attempt} answered ${res.status}`);
      assert.doesNotMatch(res.body, /outside-static/, attempt);
    }
    const missing = await raw(server.port, { path: '/nothing-here.js', headers: auth });
    assert.equal(missing.status, 404);
  });

  test('/events is left to the upgrade hook: plain GET is 426, and without a hook an upgrade is 404', async () => {
    const plain = await raw(server.port, { path: `/events?token=${TOKEN}` });
    assert.equal(plain.status, 426);
    const error = await new Promise<Error>((resolve) => {
      const socket = new WebSocket(`ws://127.0.0.1:${server.port}/events?token=${TOKEN}`);
      socket.on('error', resolve);
    });
    assert.match(error.message, /404/);
  });
});

describe('HTTP server: lifecycle and hooks', () => {
  test('a port in use is reported with how to pick another', async () => {
    const first = await start();
    await assert.rejects(start({ port: first.port }), { message: `port ${first.port} is in use; pick another with --http HOST:PORT` });
  });

  test('without a static folder / is 404 (after auth)', async () => {
    const server = await start();
    assert.equal((await raw(server.port, { path: '/' })).status, 401);
    assert.equal((await raw(server.port, { path: '/', headers: auth })).status, 404);
  });

  test('extra allowed hosts and origins are accepted', async () => {
    const server = await start({ allowedHosts: ['notebooks.example'], allowedOrigins: ['https://notebooks.example'] });
    const proxied = await raw(server.port, { path: '/metrics', headers: { ...auth, Host: 'notebooks.example', Origin: 'https://notebooks.example' } });
    assert.equal(proxied.status, 200);
    const other = await raw(server.port, { path: '/metrics', headers: { ...auth, Host: 'notebooks.example', Origin: 'https://other.example' } });
    assert.equal(other.status, 403);
  });

  test('the upgrade hook gets /events only after auth, and can run a real WebSocket', async () => {
    const wss = new WebSocketServer({ noServer: true });
    wss.on('connection', (socket) => socket.send('hello'));
    const server = await start({ onUpgrade: (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)) });
    try {
      const message = await new Promise<string>((resolve, reject) => {
        const socket = new WebSocket(`ws://127.0.0.1:${server.port}/events?token=${TOKEN}`);
        socket.on('message', (data: Buffer) => {
          resolve(data.toString('utf8'));
          socket.close();
        });
        socket.on('error', reject);
      });
      assert.equal(message, 'hello');
      for (const [url, status] of [
        [`ws://127.0.0.1:${server.port}/events`, 401],
        [`ws://127.0.0.1:${server.port}/events?token=wrong`, 403],
        [`ws://127.0.0.1:${server.port}/mcp?token=${TOKEN}`, 401],
      ] as const) {
        const error = await new Promise<Error>((resolve) => new WebSocket(url).on('error', resolve));
        assert.match(error.message, new RegExp(`Unexpected server response: ${status}`), url);
      }
      const foreignOrigin = await new Promise<Error>((resolve) =>
        new WebSocket(`ws://127.0.0.1:${server.port}/events?token=${TOKEN}`, { origin: 'http://evil.example' }).on('error', resolve),
      );
      assert.match(foreignOrigin.message, /403/);
    } finally {
      for (const client of wss.clients) client.terminate();
      wss.close();
    }
  });

  test('closing the server ends its sessions and open SSE streams', async () => {
    const server = await start();
    const { client } = await connect(server.url);
    assert.equal(toolText(await client.callTool({ name: 'echo', arguments: { text: 'up' } })), 'up');
    assert.equal(server.sessions(), 1);
    // The client keeps a GET SSE stream open; close() must not wait for it.
    await server.close();
    assert.equal(server.sessions(), 0);
    await assert.rejects(client.callTool({ name: 'echo', arguments: { text: 'down' } }));
    await client.close();
    await assert.rejects(raw(server.port, { path: '/health' }), { code: 'ECONNREFUSED' });
  });

  test('/health is 503 with the reason when the workspace database cannot be queried', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'http-health-test-'));
    const broken = Workspace.open(loadConfig({ workspace: dir, stateDir: path.join(dir, '.mcp-jupyter') }, {}), silentLogger);
    try {
      const server = await start({ workspace: broken });
      broken.db.close();
      const res = await raw(server.port, { path: '/health' });
      assert.equal(res.status, 503);
      const body = JSON.parse(res.body) as Record<string, string>;
      assert.equal(body['status'], 'unavailable');
      assert.match(body['reason'] ?? '', /database/);
      assert.equal((await raw(server.port, { path: '/metrics', headers: auth })).status, 503);
    } finally {
      await broken.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
