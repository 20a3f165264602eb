// Attacks on the real `serve --http` process (bad auth, rebinding, huge bodies, slow-loris) while a real client keeps working.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import WebSocket from 'ws';
import { connectHttpClient, makeWorkspace, startHttpServerProcess, textOfResult } from './helpers/mcp.js';

/** Node's headersTimeout as http.ts sets it: a request whose headers are not in by then is answered 408. */
const HEADERS_TIMEOUT_MS = 20_000;
const SLOW_HEADER_CLIENTS = 200;
const SLOW_BODY_CLIENTS = 50;
/** http.ts sets requestTimeout to 30 s, checked every second: a slow body is cut well before Node's default 120 s. */
const SLOW_BODY_LIMIT_MS = 40_000;

let workspace: string;
let server: Awaited<ReturnType<typeof startHttpServerProcess>>;
let port: number;
let client: Client;
let worker: Worker;
let baselineMedianMs = 0;
let baselineFds = 0;
const slowSockets: Socket[] = [];
let slowBodies: SlowClient[] = [];
let trickle: NodeJS.Timeout | null = null;

function pidOf(child: ChildProcess): number {
  assert.ok(child.pid !== undefined, 'the server process has a pid');
  return child.pid;
}

function openFds(): number {
  return readdirSync(`/proc/${pidOf(server.child)}/fd`).length;
}

/** Resident and peak resident memory of the server process, in bytes. */
function memory(): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pidOf(server.child)}/status`, 'utf8');
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/** The real agent: one SDK client running small executions back to back, each checked and timed. */
class Worker {
  readonly calls: Array<{ at: number; ms: number }> = [];
  readonly failures: string[] = [];
  private running = true;
  private waiters: Array<{ count: number; wake: () => void }> = [];
  private readonly done: Promise<void>;

  constructor(private readonly agent: Client) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    let n = 0;
    while (this.running) {
      n += 1;
      const started = performance.now();
      try {
        const result = (await this.agent.callTool({ name: 'execute_code', arguments: { notebook_path: 'work.ipynb', code: `counter += 1\ncounter` } }, undefined, {
          timeout: 30_000,
        })) as CallToolResult;
        const text = textOfResult(result);
        if (result.isError || !new RegExp(`^${n}$`, 'm').test(text)) this.failures.push(`call ${n}: ${text.slice(0, 300)}`);
      } catch (error) {
        this.failures.push(`call ${n}: ${(error as Error).message}`);
      }
      this.calls.push({ at: performance.now(), ms: performance.now() - started });
      this.waiters = this.waiters.filter((waiter) => {
        if (this.calls.length < waiter.count) return true;
        waiter.wake();
        return false;
      });
      // Paced like an agent that thinks between calls, so the machine's other tests are not starved.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Resolves once `count` more calls have finished. */
  more(count: number): Promise<void> {
    const target = this.calls.length + count;
    return new Promise((wake) => this.waiters.push({ count: target, wake }));
  }

  latenciesBetween(from: number, to: number): number[] {
    return this.calls.filter((call) => call.at >= from && call.at <= to).map((call) => call.ms);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request on its own connection, with any headers (including a forged Host). */
function send(method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const INITIALIZE = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'attacker', version: '1' } } });

/** What an /mcp refusal must look like: the status, a JSON-RPC error whose message matches `says`. */
function assertRpcRefusal(answer: Answer, status: number, says: RegExp, what: string): void {
  assert.equal(answer.status, status, `${what}: ${answer.body}`);
  const parsed = JSON.parse(answer.body) as { error?: { message?: string } };
  assert.match(parsed.error?.message ?? '', says, what);
}

/** A raw TCP client that sends `head` at once and then `rest` one byte a second, as a slow-loris attacker does. */
interface SlowClient {
  socket: Socket;
  openedAt: number;
  /** When the server closed it, and what it answered first. */
  closed: Promise<{ at: number; answer: string }>;
}

function openSlow(head: string, rest: string): SlowClient {
  const socket = connect(port, '127.0.0.1');
  slowSockets.push(socket);
  let answer = '';
  let sent = 0;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (answer += chunk));
  socket.on('error', () => undefined);
  socket.on('connect', () => {
    socket.write(head);
    (socket as Socket & { dribble?: () => void }).dribble = () => {
      if (sent < rest.length && !socket.destroyed) socket.write(rest[sent++]!);
    };
  });
  const closed = new Promise<{ at: number; answer: string }>((resolve) => socket.once('close', () => resolve({ at: performance.now(), answer })));
  return { socket, openedAt: performance.now(), closed };
}

/**
 * Sends `head`, then up to `bodyBytes` of body (as 64 KB chunks, chunked encoding when the head says so) only as fast
 * as the server reads it, and reports the server's answer and whether it closed the connection.
 */
function rawExchange(head: string, bodyBytes: number): Promise<{ status: number; answer: string; ms: number; sent: number; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = connect(port, '127.0.0.1');
    const chunked = /transfer-encoding: chunked/i.test(head);
    const payload = Buffer.alloc(64 * 1024, 0x20);
    const frame = chunked ? Buffer.concat([Buffer.from(`${payload.length.toString(16)}\r\n`), payload, Buffer.from('\r\n')]) : payload;
    let answer = '';
    let sent = 0;
    let ended = false;
    socket.setEncoding('utf8');
    socket.on('error', () => undefined);
    socket.on('end', () => (ended = true));
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('close', () =>
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0), answer, ms: performance.now() - started, sent, closedByServer: ended || answer !== '' }),
    );
    const pump = (): void => {
      // Writing stops while the socket is backed up: once the server stops reading, nothing more goes out.
      while (!socket.destroyed && answer === '' && sent < bodyBytes) {
        sent += payload.length;
        if (!socket.write(frame)) {
          socket.once('drain', pump);
          return;
        }
      }
    };
    socket.on('connect', () => {
      socket.write(head);
      pump();
    });
  });
}

/** Resolves with the value of `promise`, or with `fallback` once `ms` have passed. */
function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(fallback), ms);
    void promise.then((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

before(async () => {
  workspace = makeWorkspace('mcpj-hardening-http-attacks-');
  server = await startHttpServerProcess(workspace);
  port = Number(new URL(server.url).port);
  client = await connectHttpClient(server.url, server.token);
  const created = (await client.callTool({ name: 'create_notebook', arguments: { notebook_path: 'work.ipynb' } })) as CallToolResult;
  assert.ok(!created.isError, textOfResult(created));
  const started = (await client.callTool({ name: 'execute_code', arguments: { notebook_path: 'work.ipynb', code: 'counter = 0' } }, undefined, { timeout: 120_000 })) as CallToolResult;
  assert.ok(!started.isError, textOfResult(started));
  worker = new Worker(client);
});

after(async () => {
  if (trickle) clearInterval(trickle);
  for (const socket of slowSockets) socket.destroy();
  await worker?.stop();
  await client?.close();
  await server?.stop();
  rmSync(workspace, { recursive: true, force: true });
});

test('baseline: the agent works and its latency is measured', async () => {
  await worker.more(10);
  const from = performance.now();
  await worker.more(30);
  baselineMedianMs = median(worker.latenciesBetween(from, performance.now()));
  baselineFds = openFds();
  assert.deepEqual(worker.failures, []);
  assert.ok(baselineMedianMs > 0 && baselineMedianMs < 1_000, `baseline median ${baselineMedianMs} ms`);
});

test('bad credentials, a foreign Origin or Host are refused with what to do, never a 5xx, while the agent works', async () => {
  const bearer = { Authorization: `Bearer ${server.token}` };
  const json = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' };
  const host = { Host: `127.0.0.1:${port}` };
  const from = performance.now();
  const callsBefore = worker.calls.length;
  // Each attack twenty times at once: refusals are cheap and do not pile up.
  for (let round = 0; round < 20; round += 1) {
    const [missing, wrong, inQuery, inCookie, otherHeader, basic, origin, nullOrigin, rebinding, rebindingBare] = await Promise.all([
      send('POST', '/mcp', { ...json, ...host }, INITIALIZE),
      send('POST', '/mcp', { ...json, ...host, Authorization: 'Bearer not-the-token' }, INITIALIZE),
      send('POST', `/mcp?token=${server.token}`, { ...json, ...host }, INITIALIZE),
      send('POST', '/mcp', { ...json, ...host, Cookie: `token=${server.token}` }, INITIALIZE),
      send('POST', '/mcp', { ...json, ...host, 'X-Api-Key': server.token, 'X-Auth-Token': server.token }, INITIALIZE),
      send('POST', '/mcp', { ...json, ...host, Authorization: `Basic ${Buffer.from(`user:${server.token}`).toString('base64')}` }, INITIALIZE),
      send('POST', '/mcp', { ...json, ...host, ...bearer, Origin: 'http://evil.example' }, INITIALIZE),
      send('POST', '/mcp', { ...json, ...host, ...bearer, Origin: 'null' }, INITIALIZE),
      // DNS rebinding: the attacker's name resolves to 127.0.0.1, so the browser sends its own Host (even with a stolen token).
      send('POST', '/mcp', { ...json, ...bearer, Host: `evil.example:${port}` }, INITIALIZE),
      send('GET', '/metrics', { ...bearer, Host: 'evil.example' }),
    ]);
    assertRpcRefusal(missing, 401, /needs its access token\. Send the header 'Authorization: Bearer <token>'/, 'no token');
    assert.equal(missing.headers['www-authenticate'], 'Bearer');
    assertRpcRefusal(wrong, 403, /token is wrong\. Use the token printed when the server started/, 'wrong token');
    assertRpcRefusal(inQuery, 401, /query string is accepted only for the monitor page and \/events, not for POST \/mcp\. Send the header/, 'token in the query');
    assertRpcRefusal(inCookie, 401, /needs its access token\. Send the header 'Authorization: Bearer <token>'/, 'token in a cookie');
    assertRpcRefusal(otherHeader, 401, /needs its access token/, 'token in another header');
    assertRpcRefusal(basic, 401, /not a bearer token\. Send the header 'Authorization: Bearer <token>'/, 'basic auth');
    assertRpcRefusal(origin, 403, /Origin not allowed: 'http:\/\/evil\.example'\. Only pages served from this server/, 'foreign Origin');
    assertRpcRefusal(nullOrigin, 403, /Origin not allowed: 'null'/, 'null Origin');
    assertRpcRefusal(rebinding, 403, new RegExp(`Host not allowed: 'evil\\.example:${port}'\\. Address the server by one of .*127\\.0\\.0\\.1:${port}`), 'foreign Host');
    assert.equal(rebindingBare.status, 403);
    assert.match(rebindingBare.body, /Host not allowed: 'evil\.example'/);
    for (const answer of [missing, wrong, inQuery, inCookie, otherHeader, basic, origin, nullOrigin, rebinding, rebindingBare]) {
      assert.ok(answer.status < 500, `never a server error: ${answer.status} ${answer.body}`);
      assert.equal(answer.headers['mcp-session-id'], undefined, 'no session was opened');
    }
  }

  // The live stream: a page on another origin (cross-site WebSocket hijacking) or one without the token is refused.
  const refusedUpgrade = (headers: Record<string, string>, query: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/events${query}`, { headers });
      socket.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      socket.on('open', () => reject(new Error('the WebSocket was accepted')));
      socket.on('error', () => undefined);
    });
  const crossSite = await refusedUpgrade({ Origin: 'http://evil.example' }, `?token=${server.token}`);
  assert.equal(crossSite.status, 403);
  assert.match(crossSite.body, /Origin not allowed/);
  const anonymous = await refusedUpgrade({}, '');
  assert.equal(anonymous.status, 401);
  assert.match(anonymous.body, /\?token=<token>/);
  const rebound = await refusedUpgrade({ Host: 'evil.example' }, `?token=${server.token}`);
  assert.equal(rebound.status, 403);

  assert.deepEqual(worker.failures, []);
  assert.ok(worker.calls.length > callsBefore, 'the agent kept working');
  const during = worker.latenciesBetween(from, performance.now());
  assert.ok(during.every((ms) => ms < 2_000), `agent latencies during the refusals: ${during.map(Math.round).join(', ')}`);
});

test('a 50 MB body is refused with 413 at once, without the server holding it in memory', async (t) => {
  const fifty = 50 * 1024 * 1024;
  const before = memory();

  // Declared up front: answered from the Content-Length alone, before any of the body is sent.
  const declared = await rawExchange(
    `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${server.token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: ${fifty}\r\n\r\n`,
    0,
  );
  assert.equal(declared.status, 413, declared.answer);
  assert.match(declared.answer, /larger than 4194304 bytes\. Send less at once/);
  assert.ok(declared.ms < 2_000, `answered in ${Math.round(declared.ms)} ms`);
  assert.ok(declared.closedByServer, 'the server closed the connection instead of reading the 50 MB');

  // Chunked, so the size is only known as it arrives: the server stops reading past the limit and refuses.
  const chunked = await rawExchange(
    `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${server.token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n`,
    fifty,
  );
  t.diagnostic(`chunked: ${chunked.sent} bytes went out before the server answered ${chunked.status}`);
  assert.ok(chunked.closedByServer, 'the server closed the connection');
  assert.ok(chunked.sent < fifty, `the server stopped taking the body (${chunked.sent} bytes went out)`);
  assert.ok(chunked.ms < 5_000, `refused in ${Math.round(chunked.ms)} ms`);
  // The client stops writing as soon as the server stops reading, so the answer is not lost to a reset.
  assert.equal(chunked.status, 413, chunked.answer);
  assert.match(chunked.answer, /larger than 4194304 bytes/);

  // A real SDK client that sends too much is refused quickly, and its session goes on working. It reads the 413 and
  // its message when the refusal arrives after its upload; when the server closes the connection mid-upload, fetch
  // reports the closed socket instead.
  const big = await connectHttpClient(server.url, server.token);
  try {
    const started = performance.now();
    const refusal = await big.callTool({ name: 'execute_code', arguments: { notebook_path: 'work.ipynb', code: `# ${'x'.repeat(fifty)}` } }).then(
      () => assert.fail('a 50 MB call was accepted'),
      (error: unknown) => error,
    );
    const cause = (refusal as { cause?: { code?: string; message?: string } }).cause;
    t.diagnostic(`SDK client: ${(refusal as Error).message.slice(0, 160)}${cause ? ` (cause: ${cause.code ?? ''} ${cause.message ?? ''})` : ''}`);
    assert.ok(
      (refusal instanceof StreamableHTTPError && refusal.code === 413 && /larger than 4194304 bytes/.test(refusal.message)) ||
        (refusal instanceof TypeError && /fetch failed/.test(refusal.message)),
      String(refusal),
    );
    assert.ok(performance.now() - started < 5_000, `refused in ${Math.round(performance.now() - started)} ms`);
    const small = (await big.callTool({ name: 'list_notebooks', arguments: {} })) as CallToolResult;
    assert.match(textOfResult(small), /work\.ipynb/);
  } finally {
    await big.close();
  }

  const afterwards = memory();
  t.diagnostic(`server RSS ${Math.round(before.rss / 2 ** 20)} → ${Math.round(afterwards.rss / 2 ** 20)} MB, peak ${Math.round(before.peak / 2 ** 20)} → ${Math.round(afterwards.peak / 2 ** 20)} MB`);
  // At most the 4 MB limit (and buffers) was held, not the 50 MB sent three times.
  assert.ok(afterwards.peak - before.peak < 24 * 2 ** 20, `peak RSS grew by ${Math.round((afterwards.peak - before.peak) / 2 ** 20)} MB`);
  assert.deepEqual(worker.failures, []);
  assert.ok(server.child.exitCode === null, 'the server is alive');
});

test(`slow-loris: ${SLOW_HEADER_CLIENTS} clients dribbling headers are cut by headersTimeout; the agent never slows down`, async (t) => {
  const opened = performance.now();
  const headerClients = Array.from({ length: SLOW_HEADER_CLIENTS }, () =>
    // Headers that never end: one byte a second of a request line and an endless header.
    openSlow('', `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: ${'a'.repeat(200)}`),
  );
  // Authenticated requests whose headers are complete and whose body comes one byte a second.
  slowBodies = Array.from({ length: SLOW_BODY_CLIENTS }, () =>
    openSlow(
      `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${server.token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n`,
      `{"jsonrpc":"2.0","id":1,"method":"ping","pad":"${'b'.repeat(900)}"}`,
    ),
  );
  trickle = setInterval(() => {
    for (const slow of [...headerClients, ...slowBodies]) (slow.socket as Socket & { dribble?: () => void }).dribble?.();
  }, 1_000);
  await Promise.all([...headerClients, ...slowBodies].map((slow) => new Promise((resolve) => (slow.socket.connecting ? slow.socket.once('connect', resolve) : resolve(undefined)))));
  // By the time the agent has made 50 more calls the server has long accepted every slow socket.
  await worker.more(50);
  const fdsUnderAttack = openFds();
  assert.ok(fdsUnderAttack >= baselineFds + SLOW_HEADER_CLIENTS + SLOW_BODY_CLIENTS - 5, `the server holds the slow sockets: ${baselineFds} → ${fdsUnderAttack} fds`);

  // Node enforces the timeout on a 30 s sweep, so a socket may live up to headersTimeout + 30 s (see the report).
  const results = await within(Promise.all(headerClients.map((slow) => slow.closed)), HEADERS_TIMEOUT_MS + 10_000, null);
  const attackEnded = performance.now();
  assert.ok(results !== null, `the slow-header clients were not all closed within ${HEADERS_TIMEOUT_MS + 10_000} ms`);
  const lifetimes = results.map((result) => result.at - opened);
  t.diagnostic(`slow-header sockets closed after ${Math.round(Math.min(...lifetimes))}–${Math.round(Math.max(...lifetimes))} ms`);
  for (const result of results) {
    assert.ok(result.at - opened >= HEADERS_TIMEOUT_MS - 1_000, `closed by headersTimeout, not before (${Math.round(result.at - opened)} ms)`);
    assert.match(result.answer, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  }

  const during = worker.latenciesBetween(opened, attackEnded);
  const attackMedian = median(during);
  t.diagnostic(`agent: baseline median ${baselineMedianMs.toFixed(1)} ms; under attack ${during.length} calls, median ${attackMedian.toFixed(1)} ms, max ${Math.max(...during).toFixed(1)} ms`);
  assert.ok(during.length >= 100, `the agent kept working throughout (${during.length} calls)`);
  assert.ok(attackMedian < 10 * baselineMedianMs, `median ${attackMedian.toFixed(1)} ms under attack vs ${baselineMedianMs.toFixed(1)} ms baseline`);
  assert.ok(Math.max(...during) < 2_000, `slowest call under attack ${Math.max(...during).toFixed(0)} ms`);
  assert.deepEqual(worker.failures, []);

  // The server let go of every slow-header socket (the slow bodies still open are all that is left over).
  const bodiesOpen = slowBodies.filter((slow) => !slow.socket.destroyed).length;
  const fdsAfter = openFds();
  t.diagnostic(`server fds: baseline ${baselineFds}, under attack ${fdsUnderAttack}, after ${fdsAfter} (${bodiesOpen} slow bodies open)`);
  assert.ok(fdsAfter <= baselineFds + bodiesOpen + 5 && fdsAfter >= baselineFds + bodiesOpen - 5, `fds: baseline ${baselineFds}, after ${fdsAfter} (${bodiesOpen} slow bodies open)`);
  assert.ok(server.child.exitCode === null, 'the server is alive');
  const health = await send('GET', '/health', { Host: `127.0.0.1:${port}` });
  assert.equal(health.status, 200);
});

test(
  `a body dribbled one byte a second is cut within ${SLOW_BODY_LIMIT_MS / 1000} s`,
  { timeout: 60_000 },
  async (t) => {
    assert.ok(slowBodies.length > 0, 'the slow bodies were opened by the slow-loris test');
    const opened = Math.min(...slowBodies.map((slow) => slow.openedAt));
    const results = await within(Promise.all(slowBodies.map((slow) => slow.closed)), Math.max(0, opened + SLOW_BODY_LIMIT_MS - performance.now()), null);
    const still = slowBodies.filter((slow) => !slow.socket.destroyed).length;
    t.diagnostic(`${still} of ${slowBodies.length} slow bodies still open ${Math.round((performance.now() - opened) / 1000)} s after they started`);
    assert.ok(results !== null, `${still} slow bodies were still open after ${SLOW_BODY_LIMIT_MS} ms`);
    for (const result of results) assert.match(result.answer, /^HTTP\/1\.1 (408|413|400) /);
    assert.ok(openFds() <= baselineFds + 5, 'every slow socket was let go');
    assert.deepEqual(worker.failures, []);
  },
);
