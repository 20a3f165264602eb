// Wire protocol: signing, framing, verification, and that the ZeroMQ channel drops forged messages.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, test } from 'node:test';
import { Router, XPublisher } from 'zeromq';
import { freePorts } from '../src/kernel/local-provider.js';
import { DELIMITER, Signer, createMessage, parseMessage, serializeMessage } from '../src/kernel/protocol.js';
import type { ConnectionInfo, JupyterMessage } from '../src/kernel/types.js';
import { ZmqChannel } from '../src/kernel/zmq-channel.js';

test('a message is framed as identities, delimiter, HMAC-SHA256 of the four JSON frames, the frames, buffers', () => {
  const signer = new Signer('secret');
  const message = createMessage('shell', 'execute_request', { code: '1+1' }, { session: 'sess-1', username: 'ada' });
  assert.match(message.header.msg_id, /^[0-9a-f-]{36}$/);
  assert.equal(message.header.version, '5.3');
  assert.equal(message.header.session, 'sess-1');
  assert.ok(!Number.isNaN(Date.parse(message.header.date)));
  message.buffers = [Buffer.from('raw')];

  const frames = serializeMessage(message, signer, [Buffer.from('ident')]);
  assert.equal(frames.length, 8);
  assert.equal(frames[0]?.toString(), 'ident');
  assert.equal(frames[1]?.toString(), DELIMITER);
  const expected = createHmac('sha256', 'secret');
  for (const frame of frames.slice(3, 7)) expected.update(frame);
  assert.equal(frames[2]?.toString(), expected.digest('hex'));
  assert.deepEqual(JSON.parse(frames[6]?.toString() ?? ''), { code: '1+1' });

  const parsed = parseMessage(frames, signer, 'shell');
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.identities.map(String), ['ident']);
  assert.deepEqual(parsed.message.header, message.header);
  assert.deepEqual(parsed.message.content, { code: '1+1' });
  assert.deepEqual(parsed.message.buffers.map(String), ['raw']);
});

test('a tampered frame, a wrong key or a missing signature is rejected as a signature failure', () => {
  const signer = new Signer('secret');
  const frames = serializeMessage(createMessage('iopub', 'stream', { text: 'hi' }, { session: 's' }), signer);
  const tampered = [...frames];
  tampered[5] = Buffer.from(JSON.stringify({ text: 'evil' }));
  assert.deepEqual(pick(parseMessage(tampered, signer, 'iopub')), { ok: false, reason: 'signature' });
  assert.deepEqual(pick(parseMessage(frames, new Signer('other'), 'iopub')), { ok: false, reason: 'signature' });
  const unsigned = [...frames];
  unsigned[1] = Buffer.alloc(0);
  assert.deepEqual(pick(parseMessage(unsigned, signer, 'iopub')), { ok: false, reason: 'signature' });
  assert.deepEqual(pick(parseMessage(frames.slice(0, 3), signer, 'iopub')), { ok: false, reason: 'signature' });
  assert.deepEqual(pick(parseMessage([Buffer.from('junk')], signer, 'iopub')), { ok: false, reason: 'malformed' });
});

test('an empty key means no signing and no verification, as in Jupyter', () => {
  const signer = new Signer('');
  const frames = serializeMessage(createMessage('shell', 'kernel_info_request', {}, { session: 's' }), signer);
  assert.equal(frames[1]?.toString(), '');
  assert.ok(parseMessage(frames, signer, 'shell').ok);
});

test('an unknown signature scheme is refused up front', () => {
  assert.throws(() => new Signer('k', 'rsa-lol'), /Unsupported signature_scheme/);
});

const cleanups: Array<() => void> = [];
after(() => {
  for (const cleanup of cleanups) cleanup();
});

test('the channel drops a forged iopub message, counts it, and delivers the genuine one', async () => {
  const [iopubPort, shell, stdin, control, hb] = await freePorts(5);
  const connection: ConnectionInfo = {
    transport: 'tcp',
    ip: '127.0.0.1',
    shell_port: shell ?? 0,
    iopub_port: iopubPort ?? 0,
    stdin_port: stdin ?? 0,
    control_port: control ?? 0,
    hb_port: hb ?? 0,
    key: 'the-real-key',
    signature_scheme: 'hmac-sha256',
  };
  // An XPublisher is a publisher that also tells us when the subscription arrived, so nothing is sent too early.
  const publisher = new XPublisher({ linger: 0 });
  cleanups.push(() => publisher.close());
  await publisher.bind(`tcp://127.0.0.1:${connection.iopub_port}`);

  const delivered: JupyterMessage[] = [];
  let genuineArrived!: () => void;
  const arrived = new Promise<void>((resolve) => (genuineArrived = resolve));
  const channel = new ZmqChannel({
    connection,
    session: 'client-1',
    onMessage: (message) => {
      delivered.push(message);
      genuineArrived();
    },
  });
  cleanups.push(() => channel.close());

  const [subscription] = await publisher.receive();
  assert.equal(subscription?.[0], 1, 'the channel subscribes to iopub');

  const forged = createMessage('iopub', 'stream', { name: 'stdout', text: 'forged' }, { session: 'kernel' });
  const genuine = createMessage('iopub', 'stream', { name: 'stdout', text: 'genuine' }, { session: 'kernel' });
  await publisher.send([Buffer.from('kernel.x.stream'), ...serializeMessage(forged, new Signer('a-guessed-key'))]);
  await publisher.send([Buffer.from('kernel.x.stream'), ...serializeMessage(genuine, new Signer(connection.key))]);
  await arrived;

  assert.equal(delivered.length, 1);
  assert.equal(delivered[0]?.header.msg_id, genuine.header.msg_id);
  assert.equal(delivered[0]?.channel, 'iopub');
  assert.equal(delivered[0]?.content['text'], 'genuine');
  assert.equal(channel.badSignatures, 1);
});

test('sends on one socket are queued while the kernel cannot take them, then all arrive in order', async () => {
  const ports = await freePorts(5);
  const connection: ConnectionInfo = {
    transport: 'tcp',
    ip: '127.0.0.1',
    shell_port: ports[0] ?? 0,
    iopub_port: ports[1] ?? 0,
    stdin_port: ports[2] ?? 0,
    control_port: ports[3] ?? 0,
    hb_port: ports[4] ?? 0,
    key: 'k',
    signature_scheme: 'hmac-sha256',
  };
  const channel = new ZmqChannel({ connection, session: 'client-2', onMessage: () => undefined });
  cleanups.push(() => channel.close());
  // More than the socket's high-water mark (1000): raw zeromq would reject the overflow with EBUSY.
  const count = 1_500;
  const sends = Array.from({ length: count }, (_, i) => channel.send(createMessage('shell', 'kernel_info_request', { i }, { session: 's' })));

  const kernelShell = new Router({ linger: 0 });
  cleanups.push(() => kernelShell.close());
  await kernelShell.bind(`tcp://127.0.0.1:${connection.shell_port}`);
  const signer = new Signer(connection.key);
  for (let i = 0; i < count; i += 1) {
    const parsed = parseMessage(await kernelShell.receive(), signer, 'shell');
    assert.ok(parsed.ok);
    assert.equal(parsed.message.content['i'], i);
    assert.equal(parsed.identities[0]?.toString(), 'client-2', 'our session id is the routing id');
  }
  await Promise.all(sends);
  channel.close();
  await assert.rejects(channel.send(createMessage('shell', 'kernel_info_request', {}, { session: 's' })), /connection is closed/);
});

function pick(result: ReturnType<typeof parseMessage>): { ok: boolean; reason?: string } {
  return result.ok ? { ok: true } : { ok: false, reason: result.reason };
}
