// HTTP MCP sessions with no request in flight and no open SSE stream expire after MCP_JUPYTER_SESSION_IDLE_S (real server process, real SDK clients).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CLI, makeWorkspace } from './helpers/mcp.js';

const TOKEN = 'expiry-token-0123456789';
const IDLE_S = 1;
const AUTH = { Authorization: `Bearer ${TOKEN}` };

interface LogLine {
  msg: string;
  session?: string;
  time: string;
}

/** `serve --http` with a short idle time and info logs, whose log lines can be awaited. */
class ServerProcess {
  url = '';
  private readonly waiters: Array<{ match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }> = [];
  readonly lines: LogLine[] = [];
  stderr = '';

  constructor(readonly child: ChildProcess) {
    let pending = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
      pending += chunk.toString();
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      for (const text of parts) {
        if (!text.startsWith('{')) continue;
        const line = JSON.parse(text) as LogLine;
        this.lines.push(line);
        for (const waiter of [...this.waiters]) {
          if (!waiter.match(line)) continue;
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    });
  }

  /** Resolves with the first log line (from now on) that matches. */
  next(match: (line: LogLine) => boolean): Promise<LogLine> {
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  expired(session: string): Promise<LogLine> {
    return this.next((line) => line.msg === 'MCP session expired' && line.session === session);
  }

  async sessionsGauge(): Promise<number> {
    const res = await fetch(`${this.url}/metrics`, { headers: AUTH });
    assert.equal(res.status, 200);
    const match = /^mcp_jupyter_mcp_sessions (\d+)$/m.exec(await res.text());
    assert.ok(match, '/metrics shows mcp_jupyter_mcp_sessions');
    return Number(match[1]);
  }
}

function spawnServer(workspace: string, idle: string): ChildProcess {
  return spawn(process.execPath, [CLI, 'serve', '--workspace', workspace, '--http', '127.0.0.1:0', '--token', TOKEN], {
    env: { ...process.env, MCP_JUPYTER_LOG_LEVEL: 'info', MCP_JUPYTER_SESSION_IDLE_S: idle },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

function transportFor(url: string, sessionId?: string): StreamableHTTPClientTransport {
  return new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers: AUTH }, ...(sessionId ? { sessionId } : {}) });
}

async function connect(url: string): Promise<{ client: Client; session: string }> {
  const client = new Client({ name: 'expiry-test', version: '1.0.0' });
  const transport = transportFor(url);
  await client.connect(transport);
  assert.ok(transport.sessionId, 'the server handed out a session id');
  return { client, session: transport.sessionId };
}

async function serverStatusWorks(client: Client): Promise<void> {
  const result = await client.callTool({ name: 'server_status', arguments: {} });
  assert.notEqual(result.isError, true);
  assert.match(JSON.stringify(result.structuredContent), /"version"/);
}

/** Initializes over plain HTTP and opens no GET stream: the session has nothing open once the answer is read. */
async function rawSession(url: string): Promise<string> {
  const headers = { ...AUTH, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' };
  const init = await fetch(`${url}/mcp`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
  });
  assert.equal(init.status, 200);
  const session = init.headers.get('mcp-session-id');
  assert.ok(session);
  await init.text();
  const initialized = await fetch(`${url}/mcp`, { method: 'POST', headers: { ...headers, 'mcp-session-id': session }, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  assert.equal(initialized.status, 202);
  await initialized.text();
  return session;
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('HTTP session expiry', { timeout: 60_000 }, () => {
  const workspace = makeWorkspace('mcpj-expiry-');
  let server: ServerProcess;
  const clients: Client[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    server = new ServerProcess(spawnServer(workspace, String(IDLE_S)));
    server.url = await new Promise<string>((resolve, reject) => {
      server.child.stderr!.on('data', () => {
        const match = /listening on (http:\/\/[^/\s]+)\/mcp/.exec(server.stderr);
        if (match?.[1]) resolve(match[1]);
      });
      server.child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${server.stderr}`)));
    });
  });

  after(async () => {
    for (const client of clients) await client.close().catch(() => undefined);
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (server.child.exitCode === null) {
      const exited = new Promise((resolve) => server.child.once('exit', resolve));
      server.child.kill('SIGTERM');
      await exited;
    }
    rmSync(workspace, { recursive: true, force: true });
  });

  test('a client that closes without DELETE has its session removed once it has been idle for the timeout', async () => {
    const { client, session } = await connect(server.url);
    await serverStatusWorks(client);
    const before = await server.sessionsGauge();
    assert.ok(before >= 1);
    const expired = server.expired(session);
    // Client.close() aborts the SSE stream but sends no DELETE: the server is never told the session ended.
    const closedAt = Date.now();
    await client.close();
    const line = await expired;
    const idleFor = Date.parse(line.time) - closedAt;
    assert.ok(idleFor >= IDLE_S * 1000 - 50, `expired after ${idleFor} ms, before the ${IDLE_S} s idle time`);
    assert.equal(await server.sessionsGauge(), before - 1);
    const again = await fetch(`${server.url}/mcp`, {
      method: 'POST',
      headers: { ...AUTH, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'mcp-session-id': session },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    assert.equal(again.status, 404);
    assert.match(((await again.json()) as { error: { message: string } }).error.message, /^Session not found/);
  });

  test('a client process killed mid-session has its session removed', async () => {
    const sdk = (path: string): string => import.meta.resolve(`@modelcontextprotocol/sdk/${path}`);
    const script = `
      import { Client } from ${JSON.stringify(sdk('client/index.js'))};
      import { StreamableHTTPClientTransport } from ${JSON.stringify(sdk('client/streamableHttp.js'))};
      const transport = new StreamableHTTPClientTransport(new URL(process.argv[1] + '/mcp'), { requestInit: { headers: { Authorization: 'Bearer ' + process.argv[2] } } });
      const client = new Client({ name: 'doomed', version: '1.0.0' });
      await client.connect(transport);
      await client.callTool({ name: 'server_status', arguments: {} });
      process.stdout.write(transport.sessionId + '\\n');
      setInterval(() => undefined, 1 << 30);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, server.url, TOKEN], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    const session = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      child.once('exit', (code) => reject(new Error(`the client process exited with ${code} before connecting`)));
    });
    const before = await server.sessionsGauge();
    const expired = server.expired(session);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    await expired;
    assert.equal(await server.sessionsGauge(), before - 1);
  });

  test('a client holding its SSE stream open is never expired, while an idle one next to it is', async () => {
    const holder = await connect(server.url);
    clients.push(holder.client);
    const idle = await rawSession(server.url);
    await server.expired(idle);
    // Several idle periods more: the holder's GET stream keeps its session.
    await delay(IDLE_S * 2500);
    assert.equal(
      server.lines.some((line) => line.msg === 'MCP session expired' && line.session === holder.session),
      false,
      'the session with an open SSE stream was expired',
    );
    assert.equal(await server.sessionsGauge(), 1);
    await serverStatusWorks(holder.client);
  });

  test('the server arms TCP keep-alive on an open SSE stream, so a client that vanished without closing is found out', async () => {
    // A quiet SSE stream sees no traffic: only keep-alive probes can tell that its peer is gone. Linux shows the
    // armed keep-alive timer as timer type 02 on the server's side of the connection in /proc/net/tcp.
    const port = Number(new URL(server.url).port);
    const sse = await fetch(`${server.url}/mcp`, { headers: { ...AUTH, Accept: 'text/event-stream', 'mcp-session-id': await rawSession(server.url) } });
    assert.equal(sse.status, 200);
    const reader = sse.body!.getReader();
    try {
      const hex = port.toString(16).toUpperCase().padStart(4, '0');
      const serverSide = (): string[][] =>
        readFileSync('/proc/net/tcp', 'utf8')
          .split('\n')
          .map((line) => line.trim().split(/\s+/))
          // local address on the server's port, state 01 (established)
          .filter((fields) => fields[1]?.endsWith(`:${hex}`) && fields[3] === '01');
      // While bytes the server wrote wait for the client's (delayed) ACK, the pending timer shown is the retransmit
      // one (01); once all is acknowledged, the keep-alive timer (02) is the one armed. A server without keep-alive
      // shows 00 then.
      let seen: string[][] = [];
      for (let attempt = 0; attempt < 30; attempt += 1) {
        seen = serverSide();
        if (seen.length > 0 && seen.every((fields) => fields[5]?.startsWith('02:'))) break;
        await delay(100);
      }
      assert.ok(seen.length > 0, `no established connection on the server's port ${port}`);
      for (const fields of seen) assert.equal(fields[5]?.split(':')[0], '02', `connection ${fields[2]} has no keep-alive timer: ${fields.join(' ')}`);
    } finally {
      await reader.cancel();
    }
  });

  test("an expired session's next call is refused with 404 'session not found', and the client can re-initialize", async () => {
    const session = await rawSession(server.url);
    await server.expired(session);
    // An SDK client that still holds the old session id (it skips initialize when given one).
    const stale = new Client({ name: 'stale', version: '1.0.0' });
    clients.push(stale);
    await stale.connect(transportFor(server.url, session));
    await assert.rejects(stale.callTool({ name: 'server_status', arguments: {} }), (error: Error & { code?: unknown }) => {
      // The SDK's StreamableHTTPError carries the HTTP status as its code.
      assert.equal(error.code, 404);
      assert.match(error.message, /Session not found/);
      assert.match(error.message, /expired after 1 s/);
      assert.match(error.message, /Re-initialize/);
      return true;
    });
    const fresh = await connect(server.url);
    clients.push(fresh.client);
    assert.notEqual(fresh.session, session);
    await serverStatusWorks(fresh.client);
  });
});

test('an invalid MCP_JUPYTER_SESSION_IDLE_S stops the server at start with a message that names it', async () => {
  const workspace = makeWorkspace('mcpj-expiry-bad-');
  try {
    const child = spawnServer(workspace, 'soon');
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.notEqual(code, 0);
    assert.match(stderr, /MCP_JUPYTER_SESSION_IDLE_S must be a positive number of seconds/);
    assert.match(stderr, /'soon'/);
  } finally {
    rmSync(workspace, { recursive: true, force: true });
  }
});
