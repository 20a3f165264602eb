// The ZeroMQ sockets of one local kernel connection: shell, stdin, control, iopub and heartbeat.

import { randomBytes } from 'node:crypto';
import { Dealer, Request, Subscriber } from 'zeromq';
import { Signer, parseMessage, serializeMessage } from './protocol.js';
import type { ChannelName, ConnectionInfo, JupyterMessage } from './types.js';

export interface ZmqChannelOptions {
  connection: ConnectionInfo;
  /** Our client session id: the routing id of shell, stdin and control. */
  session: string;
  /** Every verified message, in arrival order per channel. */
  onMessage: (message: JupyterMessage) => void;
  /** A frame set that was dropped (bad signature or not a Jupyter message); for logging only. */
  onRejected?: (channel: ChannelName, reason: 'signature' | 'malformed', detail: string) => void;
}

type Writable = 'shell' | 'stdin' | 'control';

export function endpoint(connection: ConnectionInfo, port: number): string {
  return connection.transport === 'ipc' ? `ipc://${connection.ip}-${port}` : `tcp://${connection.ip}:${port}`;
}

export class ZmqChannel {
  private readonly signer: Signer;
  private readonly sockets: Record<Writable, Dealer>;
  private readonly iopub: Subscriber;
  private heartbeat: Request;
  // zeromq v6 rejects a send while another is in flight on the same socket, so sends are chained per socket.
  private readonly sendTails: Record<Writable, Promise<void>> = {
    shell: Promise.resolve(),
    stdin: Promise.resolve(),
    control: Promise.resolve(),
  };
  private pingInFlight: Promise<boolean> | undefined;
  private readonly handshakes: Record<Writable, number> = { shell: 0, stdin: 0, control: 0 };
  private readonly handshakeWaiters = new Set<{ channel: Writable; after: number; resolve: () => void }>();
  private isClosed = false;
  private rejectedSignatures = 0;
  private rejectedMalformed = 0;

  constructor(private readonly options: ZmqChannelOptions) {
    const { connection, session } = options;
    this.signer = new Signer(connection.key, connection.signature_scheme);
    // ipykernel sends input_request on stdin to the routing id of the shell request, so both must share it.
    const dealer = (channel: Writable, port: number): Dealer => {
      const socket = new Dealer({ linger: 0, routingId: session });
      socket.events.on('handshake', () => this.onHandshake(channel));
      socket.connect(endpoint(connection, port));
      return socket;
    };
    this.sockets = {
      shell: dealer('shell', connection.shell_port),
      stdin: dealer('stdin', connection.stdin_port),
      control: dealer('control', connection.control_port),
    };
    // No receive limit: at zeromq's default of 1,000 queued messages a fast kernel's outputs would be dropped
    // silently; we read them as fast as they come, and the engine bounds what it keeps.
    this.iopub = new Subscriber({ linger: 0, receiveHighWaterMark: 0 });
    this.iopub.subscribe();
    this.iopub.connect(endpoint(connection, connection.iopub_port));
    this.heartbeat = this.newHeartbeat();

    void this.receiveLoop(this.sockets.shell, 'shell');
    void this.receiveLoop(this.sockets.stdin, 'stdin');
    void this.receiveLoop(this.sockets.control, 'control');
    void this.receiveLoop(this.iopub, 'iopub');
  }

  /** Messages dropped because their HMAC signature was missing or wrong. */
  get badSignatures(): number {
    return this.rejectedSignatures;
  }

  /** Frame sets dropped because they were not Jupyter messages. */
  get malformedMessages(): number {
    return this.rejectedMalformed;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  send(message: JupyterMessage): Promise<void> {
    const channel = message.channel;
    if (channel === 'iopub') return Promise.reject(new Error('Cannot send on iopub: it is the kernel’s broadcast channel.'));
    if (this.isClosed) return Promise.reject(new Error(`Cannot send ${message.header.msg_type}: the kernel connection is closed.`));
    const frames = serializeMessage(message, this.signer);
    const socket = this.sockets[channel];
    const sent = this.sendTails[channel].then(() => socket.send(frames));
    this.sendTails[channel] = sent.catch(() => undefined);
    return sent;
  }

  /** How many times this socket completed a connection to the kernel (each kernel process start adds one). */
  handshakeCount(channel: Writable): number {
    return this.handshakes[channel];
  }

  /**
   * Resolves once the socket has connected more than `after` times. The kernel can only send to a peer it knows,
   * so an input_request on stdin is lost if our stdin socket has not connected yet: readiness waits for this.
   */
  whenConnected(channel: Writable, after: number): Promise<void> {
    if (this.handshakes[channel] > after) return Promise.resolve();
    return new Promise<void>((resolve) => this.handshakeWaiters.add({ channel, after, resolve }));
  }

  /** One heartbeat round trip; resolves false if the echo did not come back within `timeoutMs`. */
  ping(timeoutMs: number): Promise<boolean> {
    if (this.isClosed) return Promise.resolve(false);
    this.pingInFlight ??= this.doPing(timeoutMs).finally(() => {
      this.pingInFlight = undefined;
    });
    return this.pingInFlight;
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const socket of [...Object.values(this.sockets), this.iopub, this.heartbeat]) socket.close();
    // Nobody will connect any more; waiters are racing their own deadline or were abandoned with the session.
    this.handshakeWaiters.clear();
  }

  private onHandshake(channel: Writable): void {
    this.handshakes[channel] += 1;
    for (const waiter of [...this.handshakeWaiters]) {
      if (waiter.channel === channel && this.handshakes[channel] > waiter.after) {
        this.handshakeWaiters.delete(waiter);
        waiter.resolve();
      }
    }
  }

  private newHeartbeat(): Request {
    const socket = new Request({ linger: 0 });
    socket.connect(endpoint(this.options.connection, this.options.connection.hb_port));
    return socket;
  }

  private async doPing(timeoutMs: number): Promise<boolean> {
    const socket = this.heartbeat;
    const payload = randomBytes(8);
    const exchange = (async () => {
      await socket.send(payload);
      const [reply] = await socket.receive();
      return reply !== undefined && payload.equals(reply);
    })().catch(() => false);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
      timer.unref();
    });
    const ok = await Promise.race([exchange, timedOut]);
    clearTimeout(timer);
    if (!ok) {
      // A REQ socket waits forever for the lost reply (e.g. the kernel restarted): start over with a fresh one.
      socket.close();
      if (!this.isClosed) this.heartbeat = this.newHeartbeat();
    }
    return ok;
  }

  private async receiveLoop(socket: Dealer | Subscriber, channel: ChannelName): Promise<void> {
    try {
      for await (const frames of socket) this.deliver(frames, channel);
    } catch (error) {
      if (!this.isClosed) console.error(`mcp-server-jupyter: the ${channel} socket stopped receiving: ${(error as Error).message}`);
    }
  }

  private deliver(frames: Buffer[], channel: ChannelName): void {
    const parsed = parseMessage(frames, this.signer, channel);
    if (!parsed.ok) {
      if (parsed.reason === 'signature') this.rejectedSignatures += 1;
      else this.rejectedMalformed += 1;
      this.options.onRejected?.(channel, parsed.reason, parsed.detail);
      return;
    }
    try {
      this.options.onMessage(parsed.message);
    } catch (error) {
      // A throwing listener must not end the receive loop of the whole channel.
      console.error(`mcp-server-jupyter: a ${channel} message listener threw: ${(error as Error).stack ?? String(error)}`);
    }
  }
}
