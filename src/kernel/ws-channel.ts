// The kernel WebSocket of a Jupyter Server or Gateway: both wire protocols, reconnect with replay, gap detection.
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { PROTOCOL_VERSION } from './protocol.js';
import type { ChannelName, JupyterMessage, MessageHeader } from './types.js';
import { isPlainObject } from '../util/plain-object.js';

export const V1_SUBPROTOCOL = 'v1.kernel.websocket.jupyter.org';
/** `v1`: binary frames with an offset table (jupyter_server ≥ 2); `legacy`: JSON text (binary only with buffers). */
export type WsProtocol = 'v1' | 'legacy';

const CHANNELS: ReadonlySet<string> = new Set<ChannelName>(['shell', 'iopub', 'stdin', 'control']);
/** Silence after which a request that got only half of its end (reply or idle) after a reconnect is closed off. */
const QUIET_MS = 3_000;
const MAX_OUTBOX = 10_000;
const MAX_OUTSTANDING = 1_000;
const MAX_SEEN = 200_000;
const CLOSE_WAIT_MS = 1_000;

// Wire formats --------------------------------------------------------------------------------------------

export type Decoded = { ok: true; message: JupyterMessage } | { ok: false; detail: string };

function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** v1: `[n][offset × n][channel][header][parent_header][metadata][content][buffers…]`, 64-bit little-endian numbers. */
export function encodeV1(message: JupyterMessage): Buffer {
  const channel = Buffer.from(message.channel, 'utf8');
  const parts = [jsonBytes(message.header), jsonBytes(message.parent_header), jsonBytes(message.metadata), jsonBytes(message.content), ...message.buffers];
  const count = parts.length + 2;
  const table = Buffer.alloc(8 * (count + 1));
  table.writeBigUInt64LE(BigInt(count), 0);
  let offset = table.length;
  table.writeBigUInt64LE(BigInt(offset), 8);
  offset += channel.length;
  table.writeBigUInt64LE(BigInt(offset), 16);
  parts.forEach((part, index) => {
    offset += part.length;
    table.writeBigUInt64LE(BigInt(offset), 24 + 8 * index);
  });
  return Buffer.concat([table, channel, ...parts]);
}

export function decodeV1(data: Buffer): Decoded {
  if (data.length < 8) return { ok: false, detail: 'v1 frame shorter than its offset count' };
  const count = Number(data.readBigUInt64LE(0));
  if (!Number.isSafeInteger(count) || count < 6 || 8 * (count + 1) > data.length) {
    return { ok: false, detail: `v1 frame has an impossible offset count (${count})` };
  }
  const offsets: number[] = [];
  for (let i = 0; i < count; i += 1) offsets.push(Number(data.readBigUInt64LE(8 * (i + 1))));
  for (let i = 0; i < count; i += 1) {
    const here = offsets[i]!;
    if (here > data.length || (i === 0 ? here < 8 * (count + 1) : here < offsets[i - 1]!)) {
      return { ok: false, detail: 'v1 frame has offsets out of order or past its end' };
    }
  }
  const channel = data.toString('utf8', offsets[0], offsets[1]);
  const parts: Buffer[] = [];
  for (let i = 1; i < count - 1; i += 1) parts.push(data.subarray(offsets[i], offsets[i + 1]));
  const [header, parent, metadata, content] = parts.slice(0, 4).map(parseObject);
  return build(channel, header, parent, metadata, content, parts.slice(4));
}

/** Legacy: a JSON text frame, or with buffers `[n][offset × n][json][buffers…]`, 32-bit big-endian numbers. */
export function encodeLegacy(message: JupyterMessage): string | Buffer {
  const body = { header: message.header, parent_header: message.parent_header, metadata: message.metadata, content: message.content, channel: message.channel };
  if (message.buffers.length === 0) return JSON.stringify(body);
  const parts = [jsonBytes(body), ...message.buffers];
  const table = Buffer.alloc(4 * (parts.length + 1));
  table.writeUInt32BE(parts.length, 0);
  let offset = table.length;
  parts.forEach((part, index) => {
    table.writeUInt32BE(offset, 4 * (index + 1));
    offset += part.length;
  });
  return Buffer.concat([table, ...parts]);
}

export function decodeLegacy(data: Buffer, isBinary: boolean): Decoded {
  let json: Buffer = data;
  let buffers: Buffer[] = [];
  if (isBinary) {
    if (data.length < 4) return { ok: false, detail: 'legacy binary frame shorter than its buffer count' };
    const count = data.readUInt32BE(0);
    if (count < 1 || 4 * (count + 1) > data.length) return { ok: false, detail: `legacy binary frame has an impossible buffer count (${count})` };
    const offsets: number[] = [];
    for (let i = 0; i < count; i += 1) offsets.push(data.readUInt32BE(4 * (i + 1)));
    offsets.push(data.length);
    const pieces: Buffer[] = [];
    for (let i = 0; i < count; i += 1) {
      const start = offsets[i]!;
      const end = offsets[i + 1]!;
      if (start < 4 * (count + 1) || end < start || end > data.length) return { ok: false, detail: 'legacy binary frame has offsets out of order' };
      pieces.push(data.subarray(start, end));
    }
    json = pieces[0]!;
    buffers = pieces.slice(1);
  }
  const body = parseObject(json);
  if (!body) return { ok: false, detail: 'legacy frame is not a JSON object' };
  const metadata = body['metadata'] ?? {};
  return build(body['channel'], asObject(body['header']), asObject(body['parent_header']), asObject(metadata), asObject(body['content']), buffers);
}

function parseObject(bytes: Buffer | undefined): Record<string, unknown> | undefined {
  if (!bytes) return undefined;
  try {
    return asObject(JSON.parse(bytes.toString('utf8')));
  } catch {
    return undefined;
  }
}

function asObject(value: unknown): Record<string, unknown> | undefined {
  return isPlainObject(value) ? value : undefined;
}

function build(
  channel: unknown,
  header: Record<string, unknown> | undefined,
  parent: Record<string, unknown> | undefined,
  metadata: Record<string, unknown> | undefined,
  content: Record<string, unknown> | undefined,
  buffers: Buffer[],
): Decoded {
  if (typeof channel !== 'string' || !CHANNELS.has(channel)) return { ok: false, detail: `unknown channel ${JSON.stringify(channel)}` };
  if (!header || !parent || !metadata || !content) return { ok: false, detail: 'a header/parent_header/metadata/content part is not a JSON object' };
  if (typeof header['msg_id'] !== 'string' || typeof header['msg_type'] !== 'string') return { ok: false, detail: 'header lacks msg_id or msg_type' };
  return {
    ok: true,
    message: { header: header as MessageHeader, parent_header: parent as Partial<MessageHeader>, metadata, content, buffers, channel: channel as ChannelName },
  };
}

/** ipykernel numbers every message it sends: `<kernel session>_<pid>_<n>`. */
export function kernelSequence(msgId: string): { prefix: string; n: number } | undefined {
  const match = /^(.+_\d+)_(\d+)$/.exec(msgId);
  if (!match?.[1] || match[2] === undefined) return undefined;
  const n = Number(match[2]);
  return Number.isSafeInteger(n) ? { prefix: match[1], n } : undefined;
}

// The channel ---------------------------------------------------------------------------------------------

/** Why the channel stopped for good. `gone`: the server does not know the kernel; the rest: we cannot reach it. */
export type ChannelFailure = 'gone' | 'auth' | 'tls' | 'unreachable' | 'closed';

export class ChannelClosedError extends Error {
  constructor(
    readonly kind: ChannelFailure,
    message: string,
  ) {
    super(message);
    this.name = 'ChannelClosedError';
  }
}

export type ChannelEvent =
  | { type: 'disconnected'; reason: string }
  | { type: 'retrying'; attempt: number; of: number; delayMs: number; error: string }
  | { type: 'reconnected'; attempts: number; downtimeMs: number; protocol: WsProtocol }
  | { type: 'protocol'; protocol: WsProtocol }
  /** After a reconnect, kernel message numbers are missing: output may have been lost (noted in the output too). */
  | { type: 'gap'; missing: number; requestIds: string[] }
  /** Messages now come from another kernel process (restarted by the server or someone else). */
  | { type: 'kernel-changed'; previous: string; current: string }
  | { type: 'malformed'; detail: string }
  | { type: 'closed'; error: ChannelClosedError };

export interface WsChannelOptions {
  /** `ws(s)://…/api/kernels/{id}/channels?session_id=S`: the same session id on every reconnect makes the server replay. */
  url: string;
  /** Our client session id (the `session_id` of the URL): messages the server makes itself carry it. */
  sessionId: string;
  headers: Record<string, string>;
  /** Trusted CA certificates for wss (replaces the default list: include the system ones to add a private CA). */
  ca?: Array<string | Buffer>;
  /** `auto` offers v1 and falls back to legacy when the server picks no subprotocol. */
  protocol: WsProtocol | 'auto';
  reconnectAttempts: number;
  reconnectBaseDelayMs: number;
  reconnectMaxDelayMs: number;
  handshakeTimeoutMs: number;
  /** WebSocket ping period; a connection that shows no sign of life for two periods is dropped and reconnected. */
  pingIntervalMs: number;
  onMessage(message: JupyterMessage): void;
  onEvent?(event: ChannelEvent): void;
}

type ChannelState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

interface Outbound {
  message: JupyterMessage;
  resolve: () => void;
  reject: (error: Error) => void;
}

/** A request of ours that the kernel has not finished answering (reply on its channel + `idle` on iopub). */
interface Outstanding {
  header: MessageHeader;
  channel: 'shell' | 'control';
  replied: boolean;
  idle: boolean;
  /** While reconnect-watched: the iopub `idle` held back until the reply came (so a gap note can precede it). */
  heldIdle?: JupyterMessage;
}

/** What is being checked after a reconnect: the requests that were unfinished when the connection dropped. */
interface Recovery {
  prefix: string;
  /** The highest kernel message number seen before the drop. */
  mark: number;
  watched: Map<string, Outstanding>;
  /** Kernel message numbers above `mark` seen since. */
  seen: Set<number>;
  /** Messages that arrived after a held `idle`, delivered once it is released (order is kept). */
  queue: JupyterMessage[];
  quietTimer: NodeJS.Timeout | undefined;
}

type AttemptFailure = { kind: 'gone' | 'auth' | 'tls' | 'protocol' | 'transient'; message: string };

export class WsChannel {
  private state: ChannelState = 'idle';
  private ws: WebSocket | undefined;
  /** The socket whose handshake is under way (ended at once by close()). */
  private handshaking: WebSocket | undefined;
  private protocolInUse: WsProtocol;
  private readonly outbox: Outbound[] = [];
  private readonly outstanding = new Map<string, Outstanding>();
  private kernelPrefix: string | null = null;
  private maxSeq = -1;
  private recovery: Recovery | null = null;
  private opening: Promise<void> | undefined;
  private openWaiters: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  private closedError: ChannelClosedError | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private backoffTimer: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  /** Frames that could not be decoded (a proxy mangling them, or a protocol we do not speak). */
  malformed = 0;
  reconnects = 0;

  constructor(private readonly options: WsChannelOptions) {
    this.protocolInUse = options.protocol === 'legacy' ? 'legacy' : 'v1';
  }

  get protocol(): WsProtocol {
    return this.protocolInUse;
  }

  /** Read through a getter so checks after an `await` are not narrowed away by the compiler. */
  private get stopped(): boolean {
    return this.state === 'closed';
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Resolves once the socket is open (now, or after the connect / reconnect under way); rejects once it has given up. */
  connect(): Promise<void> {
    if (this.state === 'open') return Promise.resolve();
    if (this.state === 'closed') return Promise.reject(this.closedError ?? new ChannelClosedError('closed', 'the kernel WebSocket was closed'));
    const waiting = new Promise<void>((resolve, reject) => this.openWaiters.push({ resolve, reject }));
    if (this.state === 'idle') {
      this.state = 'connecting';
      this.opening = this.establish(true);
    }
    return waiting;
  }

  /** Sends now, or after the reconnect under way (in order). Rejects if it cannot be written. */
  send(message: JupyterMessage): Promise<void> {
    if (this.state === 'closed') {
      return Promise.reject(this.closedError ?? new ChannelClosedError('closed', `the kernel WebSocket is closed: cannot send ${message.header.msg_type}`));
    }
    this.track(message);
    const ws = this.ws;
    if (this.state === 'open' && ws && this.outbox.length === 0) return this.write(ws, message);
    if (this.outbox.length >= MAX_OUTBOX) return Promise.reject(new Error(`${MAX_OUTBOX} messages already wait for the kernel WebSocket to reconnect`));
    return new Promise<void>((resolve, reject) => this.outbox.push({ message, resolve, reject }));
  }

  /** Forgets unfinished requests (after a kernel restart they will never be answered). */
  resetTracking(): void {
    this.outstanding.clear();
    this.endRecovery();
  }

  /** Closes on purpose: no reconnect. The server keeps the kernel and buffers its messages for this session id. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.fail(new ChannelClosedError('closed', 'the kernel WebSocket was closed'), false);
    await this.opening?.catch(() => undefined);
  }

  // Connecting ---------------------------------------------------------------------------------------------

  private async establish(initial: boolean): Promise<void> {
    const { reconnectAttempts, reconnectBaseDelayMs, reconnectMaxDelayMs } = this.options;
    const started = Date.now();
    let lastError = '';
    let switchedProtocol = false;
    for (let attempt = 1; attempt <= reconnectAttempts; attempt += 1) {
      if (this.stopped) return;
      // After a drop the first try waits too: the server must see the old socket close before it buffers for us.
      if (!initial || attempt > 1) {
        const delay = Math.min(reconnectMaxDelayMs, reconnectBaseDelayMs * 2 ** (attempt - 1)) * (0.8 + 0.4 * Math.random());
        if (attempt > 1) this.emit({ type: 'retrying', attempt, of: reconnectAttempts, delayMs: Math.round(delay), error: lastError });
        await this.backoff(delay);
      }
      if (this.stopped) return;
      try {
        await this.openSocket(this.protocolInUse);
        if (this.stopped) return;
        if (!initial) {
          this.reconnects += 1;
          // A request whose reply came before the drop but whose idle never comes is closed off after a silence.
          this.armQuietTimer();
          this.emit({ type: 'reconnected', attempts: attempt, downtimeMs: Date.now() - started, protocol: this.protocolInUse });
        }
        return;
      } catch (error) {
        const failure = error as AttemptFailure;
        if (failure.kind === 'protocol' && this.options.protocol === 'auto' && !switchedProtocol) {
          // The server speaks only the legacy JSON protocol (jupyter_server < 2, or kernel_ws_protocol set to '').
          switchedProtocol = true;
          this.protocolInUse = this.protocolInUse === 'v1' ? 'legacy' : 'v1';
          this.emit({ type: 'protocol', protocol: this.protocolInUse });
          attempt -= 1;
          continue;
        }
        if (failure.kind !== 'transient' && failure.kind !== 'protocol') {
          this.fail(new ChannelClosedError(failure.kind, failure.message), true);
          return;
        }
        lastError = failure.message;
      }
    }
    if (this.stopped) return;
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    this.fail(
      new ChannelClosedError(
        'unreachable',
        `could not ${initial ? 'open' : 're-open'} the kernel WebSocket ${this.displayUrl()} after ${reconnectAttempts} attempts in ${seconds} s (last error: ${lastError}). Check that the Jupyter server is up and reachable.`,
      ),
      true,
    );
  }

  private backoff(delayMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.backoffTimer = { timer: setTimeout(resolve, delayMs), resolve };
    }).finally(() => {
      this.backoffTimer = undefined;
    });
  }

  /** Opens one socket and adopts it the moment it is open; rejects with why it could not. */
  private openSocket(protocol: WsProtocol): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(this.options.url, protocol === 'v1' ? [V1_SUBPROTOCOL] : [], {
        headers: this.options.headers,
        handshakeTimeout: this.options.handshakeTimeoutMs,
        perMessageDeflate: false,
        followRedirects: false,
        maxPayload: 1024 * 1024 * 1024,
        ...(this.options.ca ? { ca: this.options.ca } : {}),
      });
      this.handshaking = ws;
      let settled = false;
      const fail = (failure: AttemptFailure): void => {
        if (settled) return;
        settled = true;
        this.handshaking = undefined;
        ws.removeAllListeners();
        ws.on('error', () => undefined);
        ws.terminate();
        reject(failure);
      };
      // ws sets TCP_NODELAY itself; said again here because every request waits on small frames (no Nagle delay).
      ws.once('upgrade', (response) => response.socket.setNoDelay(true));
      ws.once('unexpected-response', (request, response) => {
        const status = response.statusCode ?? 0;
        response.resume();
        request.destroy();
        fail(handshakeFailure(status, response.headers['location'], this.displayUrl()));
      });
      ws.once('error', (error: Error & { code?: string }) => fail(networkFailure(error, this.displayUrl())));
      ws.once('open', () => {
        if (settled) return;
        settled = true;
        this.handshaking = undefined;
        ws.removeAllListeners();
        if (this.state === 'closed') {
          ws.terminate();
        } else {
          // Now, not after an await: a server that replays at once sends frames before the next microtask.
          this.adopt(ws);
        }
        resolve();
      });
    });
  }

  private adopt(ws: WebSocket): void {
    this.ws = ws;
    this.state = 'open';
    let alive = true;
    ws.on('message', (data, isBinary) => {
      alive = true;
      this.onFrame(toBuffer(data), isBinary);
    });
    ws.on('pong', () => {
      alive = true;
    });
    // An 'error' is always followed by 'close', where the reconnect starts.
    ws.on('error', () => undefined);
    ws.on('close', (code, reason) => this.onClose(ws, code, reason.toString('utf8')));
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (!alive) {
        ws.terminate();
        return;
      }
      alive = false;
      ws.ping();
    }, this.options.pingIntervalMs);
    this.pingTimer.unref();

    for (const waiter of this.openWaiters.splice(0)) waiter.resolve();
    // Requests queued while disconnected go out first, in order.
    for (const item of this.outbox.splice(0)) this.write(ws, item.message).then(item.resolve, item.reject);
  }

  private onClose(ws: WebSocket, code: number, reason: string): void {
    if (this.ws !== ws) return;
    this.ws = undefined;
    clearInterval(this.pingTimer);
    if (this.state === 'closed') return;
    const why = `the kernel WebSocket closed (code ${code}${reason ? `: ${reason}` : ''})`;
    this.emit({ type: 'disconnected', reason: why });
    this.startRecovery();
    this.state = 'reconnecting';
    this.opening = this.establish(false);
  }

  private fail(error: ChannelClosedError, report: boolean): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closedError = error;
    clearInterval(this.pingTimer);
    if (this.backoffTimer) {
      clearTimeout(this.backoffTimer.timer);
      this.backoffTimer.resolve();
    }
    const ws = this.ws;
    this.ws = undefined;
    if (ws) closeGently(ws);
    // Its 'error' ends the attempt under way.
    this.handshaking?.terminate();
    for (const waiter of this.openWaiters.splice(0)) waiter.reject(error);
    for (const item of this.outbox.splice(0)) item.reject(error);
    if (this.recovery) {
      clearTimeout(this.recovery.quietTimer);
      this.recovery = null;
    }
    if (report) this.emit({ type: 'closed', error });
  }

  private write(ws: WebSocket, message: JupyterMessage): Promise<void> {
    const data = this.protocolInUse === 'v1' ? encodeV1(message) : encodeLegacy(message);
    return new Promise<void>((resolve, reject) => {
      // Not queued again on failure: the request may have reached the kernel, and must never run twice.
      ws.send(data, { binary: typeof data !== 'string' }, (error) => (error ? reject(new Error(`could not send ${message.header.msg_type} to the kernel: ${error.message}`)) : resolve()));
    });
  }

  // Receiving ---------------------------------------------------------------------------------------------

  private onFrame(data: Buffer, isBinary: boolean): void {
    const decoded = this.protocolInUse === 'v1' ? (isBinary ? decodeV1(data) : decodeLegacy(data, false)) : decodeLegacy(data, isBinary);
    if (!decoded.ok) {
      this.malformed += 1;
      this.emit({ type: 'malformed', detail: decoded.detail });
      return;
    }
    const message = decoded.message;
    this.account(message);
    this.route(message);
  }

  /** Our unfinished requests, and the kernel's message numbers (the server's own messages carry our session id). */
  private account(message: JupyterMessage): void {
    const parentId = message.parent_header.msg_id;
    const request = parentId === undefined ? undefined : this.outstanding.get(parentId);
    if (request) {
      if (message.channel === request.channel && message.header.msg_type.endsWith('_reply')) request.replied = true;
      if (isIdle(message)) request.idle = true;
      if (request.replied && request.idle && parentId !== undefined) this.outstanding.delete(parentId);
    }
    if (message.header.session === this.options.sessionId) return;
    const seq = kernelSequence(message.header.msg_id);
    if (!seq) return;
    if (seq.prefix !== this.kernelPrefix) {
      const previous = this.kernelPrefix;
      this.kernelPrefix = seq.prefix;
      this.maxSeq = seq.n;
      if (previous !== null) {
        // Numbers of another process say nothing about gaps in the old one's.
        this.endRecovery();
        this.emit({ type: 'kernel-changed', previous, current: seq.prefix });
      }
      return;
    }
    if (seq.n > this.maxSeq) this.maxSeq = seq.n;
    const recovery = this.recovery;
    if (recovery && seq.n > recovery.mark) {
      recovery.seen.add(seq.n);
      // A request that runs for hours after a drop: stop counting rather than grow without bound.
      if (recovery.seen.size > MAX_SEEN) this.endRecovery();
    }
  }

  private route(message: JupyterMessage): void {
    const recovery = this.recovery;
    if (!recovery) {
      this.deliver(message);
      return;
    }
    const parentId = message.parent_header.msg_id;
    const watch = parentId === undefined ? undefined : recovery.watched.get(parentId);
    if (watch && message.channel === watch.channel && message.header.msg_type.endsWith('_reply')) {
      this.deliver(message);
      if (watch.heldIdle) this.settle(watch);
      else if (watch.idle) this.finishQuietly(watch); // its idle came before the drop: nothing is missing here
      else this.armQuietTimer();
      return;
    }
    if (watch && isIdle(message) && !watch.heldIdle) {
      watch.heldIdle = message;
      if (watch.replied) this.settle(watch);
      else this.armQuietTimer();
      return;
    }
    if ([...recovery.watched.values()].some((candidate) => candidate.heldIdle)) {
      recovery.queue.push(message);
      return;
    }
    this.deliver(message);
    if (recovery.quietTimer) this.armQuietTimer();
  }

  private deliver(message: JupyterMessage): void {
    try {
      this.options.onMessage(message);
    } catch (error) {
      console.error(`mcp-server-jupyter: a kernel message listener threw: ${(error as Error).stack ?? String(error)}`);
    }
  }

  // Gaps after a reconnect ---------------------------------------------------------------------------------

  private startRecovery(): void {
    const unfinished = [...this.outstanding.values()];
    if (this.kernelPrefix === null || unfinished.length === 0) return;
    if (!this.recovery) {
      this.recovery = { prefix: this.kernelPrefix, mark: this.maxSeq, watched: new Map(), seen: new Set(), queue: [], quietTimer: undefined };
    }
    for (const request of unfinished) this.recovery.watched.set(request.header.msg_id, request);
  }

  /**
   * A watched request has (or is given up on for) both its reply and its idle. Missing kernel message numbers
   * since the drop are reported in its output, before its idle, so the reader sees where the hole is.
   */
  private settle(watch: Outstanding, fromSilence = false): void {
    const recovery = this.recovery;
    if (!recovery) return;
    recovery.watched.delete(watch.header.msg_id);
    let missing = this.maxSeq - recovery.mark - recovery.seen.size;
    if (fromSilence) missing = Math.max(missing, 1);
    if (missing > 0) {
      this.deliver(this.synthetic(watch.header, 'iopub', 'stream', {
        name: 'stderr',
        text:
          `[mcp-server-jupyter] The connection to the remote kernel dropped while this ran and was re-established; ` +
          `${missing} kernel message(s) did not arrive (output of this request, or messages meant for another client).\n`,
      }));
      this.emit({ type: 'gap', missing, requestIds: [watch.header.msg_id] });
    }
    if (!watch.replied && watch.header.msg_type === 'execute_request') {
      this.deliver(this.synthetic(watch.header, watch.channel, 'execute_reply', {
        status: 'error',
        ename: 'ConnectionInterrupted',
        evalue: 'the execute_reply was lost when the connection to the remote kernel dropped; the outputs shown are those that arrived',
        traceback: [],
        execution_count: null,
      }));
    }
    this.deliver(watch.heldIdle ?? this.synthetic(watch.header, 'iopub', 'status', { execution_state: 'idle' }));
    watch.heldIdle = undefined;
    this.outstanding.delete(watch.header.msg_id);
    if ([...recovery.watched.values()].some((candidate) => candidate.heldIdle)) return;
    const queued = recovery.queue.splice(0);
    if (recovery.watched.size === 0) this.endRecovery();
    for (const message of queued) this.route(message);
  }

  /** A watched request that completed without anything to report: just stop watching it. */
  private finishQuietly(watch: Outstanding): void {
    const recovery = this.recovery;
    if (!recovery) return;
    recovery.watched.delete(watch.header.msg_id);
    if (recovery.watched.size === 0) this.endRecovery();
  }

  private armQuietTimer(): void {
    const recovery = this.recovery;
    if (!recovery) return;
    clearTimeout(recovery.quietTimer);
    recovery.quietTimer = setTimeout(() => {
      recovery.quietTimer = undefined;
      if (this.recovery !== recovery) return;
      // Half-finished requests whose other half never came: it was lost at the drop.
      for (const watch of [...recovery.watched.values()]) {
        if (watch.heldIdle || (watch.replied && !watch.idle)) this.settle(watch, true);
      }
    }, QUIET_MS);
    recovery.quietTimer.unref();
  }

  private endRecovery(): void {
    const recovery = this.recovery;
    if (!recovery) return;
    clearTimeout(recovery.quietTimer);
    this.recovery = null;
    for (const watch of recovery.watched.values()) {
      if (watch.heldIdle) this.deliver(watch.heldIdle);
      watch.heldIdle = undefined;
    }
    for (const message of recovery.queue) this.deliver(message);
  }

  private synthetic(parent: MessageHeader, channel: ChannelName, msgType: string, content: Record<string, unknown>): JupyterMessage {
    return {
      header: {
        msg_id: `mcp-server-jupyter-${randomUUID()}`,
        session: this.options.sessionId,
        username: 'mcp-server-jupyter',
        date: new Date().toISOString(),
        msg_type: msgType,
        version: PROTOCOL_VERSION,
      },
      parent_header: { ...parent },
      metadata: {},
      content,
      buffers: [],
      channel,
    };
  }

  /** Whether a shell request of ours still waits for its reply or its idle (a cell that runs, as far as we know). */
  get waitingOnShell(): boolean {
    for (const request of this.outstanding.values()) if (request.channel === 'shell') return true;
    return false;
  }

  private track(message: JupyterMessage): void {
    // Only requests have a reply to wait for (comm messages on shell have none).
    if ((message.channel !== 'shell' && message.channel !== 'control') || !message.header.msg_type.endsWith('_request')) return;
    this.outstanding.set(message.header.msg_id, { header: message.header, channel: message.channel, replied: false, idle: false });
    if (this.outstanding.size > MAX_OUTSTANDING) this.outstanding.delete(this.outstanding.keys().next().value as string);
  }

  private emit(event: ChannelEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch (error) {
      console.error(`mcp-server-jupyter: a kernel channel event listener threw: ${(error as Error).stack ?? String(error)}`);
    }
  }

  /** The URL without its query (the session id is noise in messages). */
  private displayUrl(): string {
    return this.options.url.split('?')[0] ?? this.options.url;
  }
}

function isIdle(message: JupyterMessage): boolean {
  return message.channel === 'iopub' && message.header.msg_type === 'status' && message.content['execution_state'] === 'idle';
}

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function closeGently(ws: WebSocket): void {
  ws.removeAllListeners();
  ws.on('error', () => undefined);
  if (ws.readyState === WebSocket.CLOSED) return;
  // A clean close tells the server at once that we left (it then buffers for this session); terminate if it stalls.
  const timer = setTimeout(() => ws.terminate(), CLOSE_WAIT_MS);
  timer.unref();
  ws.once('close', () => clearTimeout(timer));
  ws.close(1000, 'client closing');
}

function handshakeFailure(status: number, location: string | undefined, url: string): AttemptFailure {
  if (status === 404) return { kind: 'gone', message: `the Jupyter server does not know this kernel (HTTP 404 on ${url}): it was shut down or culled` };
  if (status === 401 || status === 403) {
    return { kind: 'auth', message: `the Jupyter server refused the kernel WebSocket ${url} (HTTP ${status}): check the token (--jupyter-token)` };
  }
  if (status >= 300 && status < 400) {
    return {
      kind: 'auth',
      message: `the Jupyter server redirected the kernel WebSocket ${url} to ${location ?? 'another page'} (HTTP ${status}), usually a login page: check the token (--jupyter-token) and the base URL`,
    };
  }
  return { kind: 'transient', message: `HTTP ${status} on the kernel WebSocket handshake` };
}

/** Node's error codes for a certificate the system CAs (and --jupyter-ca) do not vouch for. */
export const TLS_CODES: ReadonlySet<string> = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function networkFailure(error: Error & { code?: string }, url: string): AttemptFailure {
  if (error.code && TLS_CODES.has(error.code)) {
    return { kind: 'tls', message: `TLS error on ${url}: ${error.message} (${error.code}). For a private CA pass its certificate with --jupyter-ca FILE.` };
  }
  if (/subprotocol/i.test(error.message)) return { kind: 'protocol', message: error.message };
  return { kind: 'transient', message: error.code ? `${error.message} (${error.code})` : error.message };
}
