// The baseline: a minimal Jupyter client over ZeroMQ (sign, send execute_request, await execute_reply and iopub idle).
// Written for the bench on purpose, sharing no code with src/kernel, so our own protocol layer is measured too.
import { createHmac, randomUUID } from 'node:crypto';
import { Dealer, Subscriber } from 'zeromq';
import type { ConnectionInfo } from '../src/kernel/types.js';

const DELIMITER = Buffer.from('<IDS|MSG>');
const PROBE_EVERY_MS = 250;

interface Pending {
  replied: boolean;
  idle: boolean;
  failure: string | undefined;
  resolve: () => void;
  reject: (error: Error) => void;
}

export class RawClient {
  private readonly session = randomUUID();
  private readonly algorithm: string;
  private readonly key: Buffer;
  private readonly shell: Dealer;
  private readonly iopub: Subscriber;
  private readonly pending = new Map<string, Pending>();
  private sendTail: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(connection: ConnectionInfo) {
    const scheme = /^hmac-([a-z0-9-]+)$/i.exec(connection.signature_scheme)?.[1];
    if (!scheme) throw new Error(`the raw client cannot sign with "${connection.signature_scheme}"`);
    this.algorithm = scheme.toLowerCase();
    this.key = Buffer.from(connection.key, 'utf8');
    const url = (port: number): string => (connection.transport === 'ipc' ? `ipc://${connection.ip}-${port}` : `tcp://${connection.ip}:${port}`);
    this.shell = new Dealer({ linger: 0, routingId: this.session });
    this.shell.connect(url(connection.shell_port));
    this.iopub = new Subscriber({ linger: 0, receiveHighWaterMark: 0 });
    this.iopub.subscribe();
    this.iopub.connect(url(connection.iopub_port));
    void this.receive(this.shell, false);
    void this.receive(this.iopub, true);
  }

  /**
   * Resolves once a kernel_info_request round trip completed on both shell and iopub: a SUB socket's subscription
   * takes effect some time after it connects, and messages published before that are lost to it.
   */
  async ready(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      const answered = this.request('kernel_info_request', {}).then(() => true);
      const late = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), PROBE_EVERY_MS);
      });
      const ok = await Promise.race([answered, late]);
      clearTimeout(timer);
      if (ok) return;
    }
    throw new Error(`the raw client got no kernel_info round trip within ${timeoutMs} ms`);
  }

  /** Runs code; resolves when both its execute_reply (status ok) and its iopub idle have arrived. */
  execute(code: string): Promise<void> {
    return this.request('execute_request', { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: false });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.shell.close();
    this.iopub.close();
    for (const waiter of this.pending.values()) waiter.reject(new Error('the raw client was closed'));
    this.pending.clear();
  }

  private request(msgType: string, content: Record<string, unknown>): Promise<void> {
    const msgId = randomUUID();
    const header = { msg_id: msgId, session: this.session, username: 'bench', date: new Date().toISOString(), msg_type: msgType, version: '5.3' };
    const parts = [JSON.stringify(header), '{}', '{}', JSON.stringify(content)].map((text) => Buffer.from(text));
    const frames = [DELIMITER, Buffer.from(this.sign(parts)), ...parts];
    const done = new Promise<void>((resolve, reject) => {
      this.pending.set(msgId, { replied: false, idle: false, failure: undefined, resolve, reject });
    });
    // zeromq v6 refuses a second send while one is in flight on the same socket.
    const sent = this.sendTail.then(() => this.shell.send(frames));
    this.sendTail = sent.catch(() => undefined);
    sent.catch((error: Error) => this.settle(msgId, error));
    return done;
  }

  private sign(parts: readonly Buffer[]): string {
    if (this.key.length === 0) return '';
    const hmac = createHmac(this.algorithm, this.key);
    for (const part of parts) hmac.update(part);
    return hmac.digest('hex');
  }

  private async receive(socket: Dealer | Subscriber, isIopub: boolean): Promise<void> {
    try {
      for await (const frames of socket) this.deliver(frames, isIopub);
    } catch (error) {
      if (!this.closed) process.stderr.write(`bench raw client: receive failed: ${(error as Error).message}\n`);
    }
  }

  /** Only our own requests' messages are verified and parsed further: the others belong to the engine. */
  private deliver(frames: Buffer[], isIopub: boolean): void {
    const at = frames.findIndex((frame) => frame.equals(DELIMITER));
    const parts = frames.slice(at + 2, at + 6);
    if (at < 0 || parts.length < 4) return;
    const parent = JSON.parse(parts[1]!.toString()) as { msg_id?: unknown };
    const waiter = typeof parent.msg_id === 'string' ? this.pending.get(parent.msg_id) : undefined;
    if (!waiter || typeof parent.msg_id !== 'string') return;
    if (frames[at + 1]!.toString() !== this.sign(parts)) {
      this.settle(parent.msg_id, new Error('a message for our request had a bad signature'));
      return;
    }
    const header = JSON.parse(parts[0]!.toString()) as { msg_type?: unknown };
    if (isIopub) {
      if (header.msg_type !== 'status') return;
      const content = JSON.parse(parts[3]!.toString()) as { execution_state?: unknown };
      if (content.execution_state === 'idle') waiter.idle = true;
    } else if (typeof header.msg_type === 'string' && header.msg_type.endsWith('_reply')) {
      const content = JSON.parse(parts[3]!.toString()) as { status?: unknown; ename?: unknown; evalue?: unknown };
      waiter.replied = true;
      if (content.status !== 'ok') waiter.failure = `${header.msg_type} status ${String(content.status)}: ${String(content.ename)} ${String(content.evalue)}`;
    }
    if (waiter.replied && waiter.idle) this.settle(parent.msg_id, waiter.failure ? new Error(waiter.failure) : undefined);
  }

  private settle(msgId: string, error: Error | undefined): void {
    const waiter = this.pending.get(msgId);
    if (!waiter) return;
    this.pending.delete(msgId);
    if (error) waiter.reject(error);
    else waiter.resolve();
  }
}
