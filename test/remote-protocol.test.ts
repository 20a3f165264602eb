// The kernel WebSocket protocols: both wire formats (with binary buffers) against real servers, prefixes, and gap reports.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import { createMessage } from '../src/kernel/protocol.js';
import { RemoteKernelProvider } from '../src/kernel/remote-provider.js';
import type { RemoteKernelSession } from '../src/kernel/remote-session.js';
import type { JupyterMessage } from '../src/kernel/types.js';
import { ChannelClosedError, WsChannel, decodeLegacy, decodeV1, encodeLegacy, encodeV1, type WsChannelOptions } from '../src/kernel/ws-channel.js';
import { startJupyterServer, type JupyterServerFixture } from './helpers/jupyter-server.js';

let modern: JupyterServerFixture;
/** Speaks only the legacy JSON protocol, under a JupyterHub-like prefix. */
let legacy: JupyterServerFixture;
/** https/wss with a certificate of its own private CA (self-signed). */
let secure: JupyterServerFixture;
let certDir: string;

before(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'mcpj-remote-tls-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem'),
  ], { stdio: 'ignore' });
  [modern, legacy, secure] = await Promise.all([
    startJupyterServer(),
    startJupyterServer({ baseUrl: '/user/alice/', args: ['--ZMQChannelsWebsocketConnection.kernel_ws_protocol='] }),
    startJupyterServer({ tls: { certFile: join(certDir, 'cert.pem'), keyFile: join(certDir, 'key.pem') } }),
  ]);
});

after(async () => {
  await Promise.all([modern?.stop(), legacy?.stop(), secure?.stop()]);
  rmSync(certDir, { recursive: true, force: true });
});

function sample(buffers: Buffer[] = []): JupyterMessage {
  return createMessage('shell', 'comm_msg', { comm_id: 'c1', data: { text: 'ünïcode ✓' } }, { session: 's1', buffers, metadata: { m: 1 } });
}

test('v1 and legacy frames encode and decode to the same message, with and without binary buffers', () => {
  for (const buffers of [[], [Buffer.from('abc'), Buffer.from([0, 1, 2, 255]), Buffer.alloc(0)]]) {
    const message = sample(buffers);
    const v1 = decodeV1(encodeV1(message));
    assert.ok(v1.ok);
    assert.deepEqual(v1.message, message);
    const frame = encodeLegacy(message);
    assert.equal(typeof frame === 'string', buffers.length === 0, 'legacy uses a text frame unless there are buffers');
    const legacyDecoded = decodeLegacy(typeof frame === 'string' ? Buffer.from(frame) : frame, typeof frame !== 'string');
    assert.ok(legacyDecoded.ok);
    assert.deepEqual(legacyDecoded.message, message);
  }
  const frame = encodeV1(sample());
  assert.equal(decodeV1(frame.subarray(0, 20)).ok, false, 'a truncated frame is refused, not misread');
  const wrongCount = Buffer.from(frame);
  wrongCount.writeBigUInt64LE(99n, 0);
  assert.equal(decodeV1(wrongCount).ok, false);
  assert.equal(decodeLegacy(Buffer.from('{"channel":"nowhere","header":{}}'), false).ok, false);
});

/** Runs code; resolves with its reply status and result text once both the reply and the `idle` have come. */
async function runCode(session: RemoteKernelSession, code: string): Promise<{ status: unknown; result: string | null }> {
  const request = session.createMessage('shell', 'execute_request', { code, silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true });
  let status: unknown;
  let result: string | null = null;
  let idle = false;
  const done = new Promise<void>((resolve) => {
    const off = session.onMessage((message) => {
      if (message.parent_header.msg_id !== request.header.msg_id) return;
      if (message.header.msg_type === 'execute_reply') status = message.content['status'];
      if (message.header.msg_type === 'execute_result') result = String((message.content['data'] as Record<string, unknown>)['text/plain']);
      if (message.header.msg_type === 'status' && message.content['execution_state'] === 'idle') idle = true;
      if (status !== undefined && idle) {
        off();
        resolve();
      }
    });
  });
  await session.send(request);
  await done;
  return { status, result };
}

/**
 * Runs code, then round-trips two binary buffers through a comm that echoes them reversed: our encoder on the way
 * in, the server's on the way out.
 */
async function exerciseKernel(session: RemoteKernelSession): Promise<void> {
  assert.deepEqual(await runCode(session, '6 * 7'), { status: 'ok', result: '42' });
  const register = [
    'def _echo(comm, open_msg):',
    '    @comm.on_msg',
    '    def _reply(msg):',
    "        comm.send({'got': len(msg['buffers'])}, buffers=[bytes(b)[::-1] for b in msg['buffers']])",
    "get_ipython().kernel.comm_manager.register_target('echo', _echo)",
  ].join('\n');
  assert.equal((await runCode(session, register)).status, 'ok');
  const commId = randomUUID();
  await session.send(session.createMessage('shell', 'comm_open', { comm_id: commId, target_name: 'echo', data: {} }));
  const outgoing = createMessage('shell', 'comm_msg', { comm_id: commId, data: {} }, { session: session.wsSession, buffers: [Buffer.from('abc'), Buffer.from([0, 1, 2, 255])] });
  const echoed = new Promise<JupyterMessage>((resolve) => {
    session.onMessage((message) => {
      if (message.header.msg_type === 'comm_msg' && message.parent_header.msg_id === outgoing.header.msg_id) resolve(message);
    });
  });
  await session.send(outgoing);
  const echo = await echoed;
  assert.deepEqual((echo.content['data'] as Record<string, unknown>)['got'], 2);
  assert.deepEqual(echo.buffers.map((buffer) => [...buffer]), [[...Buffer.from('cba')], [255, 2, 1, 0]]);
}

test('v1 protocol on Jupyter Server 2: code runs and binary buffers cross both ways', { timeout: 60_000 }, async () => {
  const provider = new RemoteKernelProvider({ url: modern.url, token: modern.token });
  const session = await provider.start({ kernelName: 'python3', cwd: tmpdir(), id: 'v1-test' });
  try {
    assert.equal(session.wireProtocol, 'v1');
    await exerciseKernel(session);
  } finally {
    await session.shutdown();
  }
});

test('a legacy-only server under a /user/alice/ prefix: v1 is offered, legacy is used, buffers still cross, restart works', { timeout: 60_000 }, async () => {
  assert.match(legacy.url, /\/user\/alice\/$/);
  // The token inside the URL, as Jupyter prints it, and the `lab` page after the prefix: both are understood.
  const provider = new RemoteKernelProvider({ url: `${legacy.url}lab?token=${legacy.token}` });
  assert.equal(provider.url, legacy.url, 'the path prefix is kept, the page and the token are not');
  const check = await provider.check();
  assert.deepEqual(check.kernelspecs, ['python3']);
  const session = await provider.start({ kernelName: 'python3', cwd: tmpdir(), id: 'legacy-test' });
  try {
    assert.equal(session.wireProtocol, 'legacy');
    await exerciseKernel(session);
    await session.restart();
    assert.equal(session.instance, 1);
    assert.deepEqual(await runCode(session, "'_echo' in globals()"), { status: 'ok', result: 'False' }, 'a fresh kernel process');
    assert.equal(session.status, 'idle');
  } finally {
    await session.shutdown();
  }
  const withoutPrefix = new RemoteKernelProvider({ url: `http://127.0.0.1:${legacy.port}/`, token: legacy.token });
  await assert.rejects(withoutPrefix.check(), /not the base URL of a Jupyter Server API/);
});

test('https/wss with a private CA: refused with a hint without --jupyter-ca, working with it', { timeout: 60_000 }, async () => {
  assert.match(secure.url, /^https:/);
  const untrusted = new RemoteKernelProvider({ url: secure.url, token: secure.token });
  await assert.rejects(untrusted.check(), /TLS error talking to https:\/\/127\.0\.0\.1:\d+\/ .*pass its certificate with --jupyter-ca FILE/);
  const provider = new RemoteKernelProvider({ url: secure.url, token: secure.token, caFile: join(certDir, 'cert.pem') });
  assert.deepEqual((await provider.check()).kernelspecs, ['python3']);
  const session = await provider.start({ kernelName: 'python3', cwd: tmpdir(), id: 'tls-test' });
  try {
    assert.deepEqual(await runCode(session, '6 * 7'), { status: 'ok', result: '42' });
  } finally {
    await session.shutdown();
  }
  assert.throws(() => new RemoteKernelProvider({ url: secure.url, caFile: join(certDir, 'key.pem') }), /holds no PEM certificate/);
});

test('every request keeps the path prefix and carries the token and the extra headers', { timeout: 20_000 }, async () => {
  const { createServer } = await import('node:http');
  const seen: Array<{ url: string; authorization: string | undefined; team: string | undefined }> = [];
  const server = createServer((request, response) => {
    seen.push({ url: request.url ?? '', authorization: request.headers['authorization'], team: request.headers['x-team'] as string | undefined });
    response.setHeader('Content-Type', 'application/json');
    if (request.url === '/user/bob/api') response.end('{"version": "9.9"}');
    else if (request.url === '/user/bob/api/kernelspecs') response.end('{"default": "py", "kernelspecs": {"py": {"name": "py", "spec": {"display_name": "Py", "language": "python", "argv": []}}}}');
    else response.writeHead(404).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as { port: number }).port;
    const provider = new RemoteKernelProvider({ url: `http://127.0.0.1:${port}/user/bob`, token: 'T0', headers: { 'X-Team': 'a' } });
    assert.equal(provider.url, `http://127.0.0.1:${port}/user/bob/`);
    assert.deepEqual(await provider.check(), { version: '9.9', kernelspecs: ['py'], defaultKernelspec: 'py' });
    assert.deepEqual(seen, [
      { url: '/user/bob/api', authorization: 'token T0', team: 'a' },
      { url: '/user/bob/api/kernelspecs', authorization: 'token T0', team: 'a' },
    ]);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

// Gaps: a fake kernel WebSocket (the real wire format, over a real socket) that drops a connection and skips messages
// on demand, which a real server does only by chance.

interface FakeServer {
  url: string;
  sessions: string[];
  close(): Promise<void>;
}

type Script = (connection: number, socket: ServerSocket, request: JupyterMessage | null) => void;

async function fakeKernelServer(script: Script): Promise<FakeServer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (protocols) => (protocols.has('v1.kernel.websocket.jupyter.org') ? 'v1.kernel.websocket.jupyter.org' : false) });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const sessions: string[] = [];
  wss.on('connection', (socket, request) => {
    sessions.push(new URL(request.url ?? '/', 'http://x').searchParams.get('session_id') ?? '');
    const connection = sessions.length;
    script(connection, socket, null);
    socket.on('message', (data) => {
      const decoded = decodeV1(data as Buffer);
      if (decoded.ok) script(connection, socket, decoded.message);
    });
  });
  const address = wss.address();
  if (!address || typeof address === 'string') throw new Error('no TCP address');
  return {
    url: `ws://127.0.0.1:${address.port}/api/kernels/k/channels?session_id=S1`,
    sessions,
    close: () => new Promise<void>((resolve) => wss.close(() => resolve())),
  };
}

/** A message the fake kernel sends: its msg ids count like ipykernel's. */
function kernelMessage(n: number, channel: 'iopub' | 'shell', msgType: string, content: Record<string, unknown>, parent: JupyterMessage): Buffer {
  const message = createMessage(channel, msgType, content, { session: 'kernelsession', parent: parent.header });
  message.header.msg_id = `kernelsession_4242_${n}`;
  return encodeV1(message);
}

function channelOptions(url: string, received: JupyterMessage[]): WsChannelOptions {
  return {
    url,
    sessionId: 'S1',
    headers: {},
    protocol: 'auto',
    reconnectAttempts: 3,
    reconnectBaseDelayMs: 20,
    reconnectMaxDelayMs: 100,
    handshakeTimeoutMs: 5_000,
    pingIntervalMs: 60_000,
    onMessage: (message) => received.push(message),
  };
}

function summary(received: JupyterMessage[]): string[] {
  return received.map((message) => {
    const content = message.content;
    if (message.header.msg_type === 'stream') return `stream:${String(content['text']).trim()}`;
    if (message.header.msg_type === 'status') return `status:${String(content['execution_state'])}`;
    if (message.header.msg_type === 'execute_reply') return `reply:${String(content['status'])}${content['ename'] ? `:${String(content['ename'])}` : ''}`;
    return message.header.msg_type;
  });
}

/** The connection drops after message 2; on the reconnect the server sends `resume` (numbers and what they are). */
async function dropAndResume(resume: Array<[number, 'iopub' | 'shell', string, Record<string, unknown>]>, settle: (received: JupyterMessage[]) => boolean): Promise<{ received: JupyterMessage[]; sessions: string[] }> {
  let request: JupyterMessage | null = null;
  const server = await fakeKernelServer((connection, socket, incoming) => {
    if (connection === 1 && incoming) {
      request = incoming;
      socket.send(kernelMessage(1, 'iopub', 'status', { execution_state: 'busy' }, incoming));
      socket.send(kernelMessage(2, 'iopub', 'stream', { name: 'stdout', text: 'a\n' }, incoming), () => socket.terminate());
    }
    if (connection === 2 && !incoming && request) {
      for (const [n, channel, type, content] of resume) socket.send(kernelMessage(n, channel, type, content, request));
    }
  });
  const received: JupyterMessage[] = [];
  let finished: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    finished = resolve;
  });
  const options = channelOptions(server.url, received);
  const channel = new WsChannel({
    ...options,
    onMessage: (message) => {
      options.onMessage(message);
      if (settle(received)) finished();
    },
  });
  await channel.connect();
  await channel.send(createMessage('shell', 'execute_request', { code: 'x' }, { session: 'S1' }));
  await done;
  await channel.close();
  await server.close();
  return { received, sessions: server.sessions };
}

const idleSeen = (received: JupyterMessage[]): boolean => received.some((message) => message.header.msg_type === 'status' && message.content['execution_state'] === 'idle');

test('after a reconnect, nothing missing: the output is passed through as it came, with no note', { timeout: 20_000 }, async () => {
  const { received, sessions } = await dropAndResume(
    [
      [3, 'iopub', 'stream', { name: 'stdout', text: 'b\n' }],
      [4, 'shell', 'execute_reply', { status: 'ok' }],
      [5, 'iopub', 'status', { execution_state: 'idle' }],
    ],
    idleSeen,
  );
  assert.deepEqual(sessions, ['S1', 'S1'], 'the same session id on the reconnect (so the server replays)');
  assert.deepEqual(summary(received), ['status:busy', 'stream:a', 'stream:b', 'reply:ok', 'status:idle']);
});

test('after a reconnect, a kernel message number is missing: the output says so before the idle', { timeout: 20_000 }, async () => {
  const { received } = await dropAndResume(
    [
      [4, 'iopub', 'stream', { name: 'stdout', text: 'c\n' }],
      [5, 'shell', 'execute_reply', { status: 'ok' }],
      [6, 'iopub', 'status', { execution_state: 'idle' }],
    ],
    idleSeen,
  );
  const got = summary(received);
  assert.deepEqual(got.slice(0, 4), ['status:busy', 'stream:a', 'stream:c', 'reply:ok']);
  assert.match(got[4] ?? '', /^stream:\[mcp-server-jupyter\] The connection to the remote kernel dropped .* 1 kernel message\(s\) did not arrive/);
  assert.equal(received[4]?.parent_header.msg_id, received[0]?.parent_header.msg_id, 'the note belongs to the request');
  assert.equal(got[5], 'status:idle');
});

test('after a reconnect, the execute_reply itself is lost: the request still ends, with an error that says why', { timeout: 20_000 }, async () => {
  const { received } = await dropAndResume(
    [
      [4, 'iopub', 'stream', { name: 'stdout', text: 'c\n' }],
      [6, 'iopub', 'status', { execution_state: 'idle' }],
    ],
    idleSeen,
  );
  const got = summary(received);
  assert.deepEqual(got.slice(0, 3), ['status:busy', 'stream:a', 'stream:c']);
  assert.match(got[3] ?? '', /2 kernel message\(s\) did not arrive/);
  assert.equal(got[4], 'reply:error:ConnectionInterrupted');
  assert.equal(got[5], 'status:idle');
});

test('the handshake answers 404 or 403: the channel stops at once with `gone` or `auth`, without retrying', { timeout: 20_000 }, async () => {
  const { createServer } = await import('node:http');
  for (const [status, kind] of [
    [404, 'gone'],
    [403, 'auth'],
  ] as const) {
    let requests = 0;
    const server = createServer((_request, response) => {
      requests += 1;
      response.writeHead(status).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const channel = new WsChannel(channelOptions(`ws://127.0.0.1:${port}/api/kernels/k/channels?session_id=S1`, []));
    const error = await channel.connect().then(
      () => null,
      (failure: unknown) => failure,
    );
    assert.ok(error instanceof ChannelClosedError);
    assert.equal(error.kind, kind);
    assert.equal(requests, 1);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
