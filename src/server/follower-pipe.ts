// A stdio process that does not own the workspace: pipes its client's JSON-RPC to the owner, takes over if it dies.
import type { Duplex, Readable, Writable } from 'node:stream';
import type { Logger } from '../log.js';
import type { OwnerInfo } from './ownership.js';

export interface Upstream {
  socket: Duplex;
  owner: OwnerInfo;
}

export interface FollowerPipeOptions {
  /** The client's side: stdin and stdout of this process. */
  input: Readable;
  output: Writable;
  /** The owner this process joined at start. */
  upstream: Upstream;
  /**
   * Called when the owner's connection closes: wins the election (and opens the workspace, recovering every
   * client's pending work) or joins the process that won, and returns the connection to the new owner.
   */
  reconnect(): Promise<Upstream>;
  log: Logger;
}

type JsonRpcId = string | number;

interface Message {
  id?: JsonRpcId;
  method?: string;
  params?: unknown;
}

/** Ids of the requests this pipe makes itself (replays after a takeover); no client picks ids like these. */
const REPLAY_PREFIX = 'mcp-jupyter-takeover-';

function idKey(id: JsonRpcId): string {
  return `${typeof id}:${id}`;
}

function parse(line: string): Message | null {
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
    const message = value as Record<string, unknown>;
    const id = message['id'];
    const method = message['method'];
    return {
      ...(typeof id === 'string' || typeof id === 'number' ? { id } : {}),
      ...(typeof method === 'string' ? { method } : {}),
      ...('params' in message ? { params: message['params'] } : {}),
    };
  } catch {
    return null;
  }
}

/** Splits a byte stream into lines; a long line's chunks are joined once, when its end arrives. */
class Lines {
  private pending: Buffer[] = [];

  push(chunk: Buffer, onLine: (line: string) => void): void {
    let start = 0;
    for (let end = chunk.indexOf(10); end >= 0; end = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, end);
      const whole = this.pending.length === 0 ? piece : Buffer.concat([...this.pending.splice(0), piece]);
      start = end + 1;
      const line = whole.toString('utf8').replace(/\r$/, '');
      if (line.trim() !== '') onLine(line);
    }
    if (start < chunk.length) this.pending.push(chunk.subarray(start));
  }
}

/**
 * The pipe parses the newline-delimited messages only to remember what a new owner must be told (the client's
 * `initialize`, `initialized`, logging level and resource subscriptions) and which requests are in flight; it never
 * changes a message. Server-to-client traffic passes through untouched.
 */
export class FollowerPipe {
  /**
   * Settles when the pipe ends: `client-left` (its input ended), `closed` (`close()`: this process is stopping) or
   * `failed` (the owner was lost and this process could neither take over nor join the new owner).
   */
  readonly done: Promise<'client-left' | 'closed' | 'failed'>;
  private resolveDone: (how: 'client-left' | 'closed' | 'failed') => void = () => undefined;
  private upstream: Upstream | null = null;
  /** False from the owner's loss until the new owner has been told the session state: client lines wait in `held`. */
  private ready = false;
  private held: string[] = [];
  private readonly inFlight = new Map<string, JsonRpcId>();
  private initialize: unknown = undefined;
  private initialized = false;
  private logLevel: unknown = undefined;
  private readonly subscriptions = new Set<string>();
  private readonly replies = new Map<string, () => void>();
  private replaySeq = 0;
  private takeover: Promise<void> | null = null;
  private inputEnded = false;
  private closed = false;

  constructor(private readonly options: FollowerPipeOptions) {
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    const lines = new Lines();
    options.input.on('data', (chunk: Buffer) => lines.push(chunk, (line) => this.fromClient(line)));
    options.input.once('end', () => this.clientGone());
    options.input.once('error', () => this.clientGone());
    options.output.on('error', () => this.clientGone());
    this.attach(options.upstream);
    this.ready = true;
    options.log('info', 'joined the process that owns this workspace', { ownerPid: options.upstream.owner.pid });
  }

  /** Stops piping for good (this process is stopping): no takeover follows. */
  close(): void {
    this.end('closed');
  }

  private end(how: 'client-left' | 'closed' | 'failed'): void {
    if (this.closed) return;
    this.closed = true;
    // Nothing more is read from the client: a paused stdin does not keep the process alive.
    this.options.input.pause();
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.socket.destroy();
    this.resolveDone(how);
  }

  private clientGone(): void {
    if (this.inputEnded) return;
    this.inputEnded = true;
    // A takeover in progress finishes first, so whoever started it knows whether this process became the owner.
    void (this.takeover ?? Promise.resolve()).then(() => {
      // Ending (not destroying) lets the last lines reach the owner; its close then ends the pipe.
      if (this.upstream) this.upstream.socket.end();
      else this.end('client-left');
    });
  }

  private fromClient(line: string): void {
    if (this.ready) this.send(line);
    else this.held.push(line);
  }

  private send(line: string): void {
    const upstream = this.upstream;
    // A socket that failed is destroyed a moment before its 'close' arrives: what comes meanwhile waits for the next owner.
    if (!upstream || !upstream.socket.writable) {
      this.held.push(line);
      return;
    }
    const message = parse(line);
    if (message) this.remember(message);
    if (!upstream.socket.write(`${line}\n`)) {
      // Backpressure: the client waits while the owner catches up (or until this owner is gone).
      this.options.input.pause();
      const resume = (): void => {
        upstream.socket.off('drain', resume);
        upstream.socket.off('close', resume);
        if (!this.closed) this.options.input.resume();
      };
      upstream.socket.on('drain', resume);
      upstream.socket.on('close', resume);
    }
  }

  private remember(message: Message): void {
    if (message.method === undefined) return; // The client's answer to a server request.
    if (message.id !== undefined) this.inFlight.set(idKey(message.id), message.id);
    const params = message.params as Record<string, unknown> | undefined;
    switch (message.method) {
      case 'initialize':
        this.initialize = message.params;
        break;
      case 'notifications/initialized':
        this.initialized = true;
        break;
      case 'logging/setLevel':
        this.logLevel = message.params;
        break;
      case 'resources/subscribe':
        if (typeof params?.['uri'] === 'string') this.subscriptions.add(params['uri']);
        break;
      case 'resources/unsubscribe':
        if (typeof params?.['uri'] === 'string') this.subscriptions.delete(params['uri']);
        break;
    }
  }

  private fromOwner(upstream: Upstream, line: string): void {
    const message = parse(line);
    if (message && message.method === undefined && message.id !== undefined) {
      const replay = typeof message.id === 'string' ? this.replies.get(message.id) : undefined;
      if (replay) {
        // The answer to a replay: the client had its own answer from the old owner.
        this.replies.delete(message.id as string);
        replay();
        return;
      }
      this.inFlight.delete(idKey(message.id));
    }
    if (!this.options.output.write(`${line}\n`)) {
      upstream.socket.pause();
      this.options.output.once('drain', () => upstream.socket.resume());
    }
  }

  private attach(upstream: Upstream): void {
    this.upstream = upstream;
    const lines = new Lines();
    const { socket } = upstream;
    socket.on('data', (chunk: Buffer) => lines.push(chunk, (line) => this.fromOwner(upstream, line)));
    socket.once('close', () => {
      if (this.upstream !== upstream) return;
      this.upstream = null;
      this.ready = false;
      this.ownerLost(upstream.owner);
    });
    socket.resume();
  }

  private ownerLost(owner: OwnerInfo): void {
    // The lost owner may or may not have acted on these: say so, and how to find out.
    for (const id of this.inFlight.values()) {
      this.options.output.write(
        `${JSON.stringify({
          jsonrpc: '2.0',
          id,
          error: {
            code: -32603,
            message: `the mcp-server-jupyter process that owned this workspace (pid ${owner.pid}) stopped while handling this request, and another process is taking the workspace over. If the request started an execution, it may have been accepted before the stop: list_executions shows whether it was (accepted work goes on, and get_execution follows it); otherwise send the request again.`,
          },
        })}\n`,
      );
    }
    this.inFlight.clear();
    for (const settle of this.replies.values()) settle();
    this.replies.clear();
    if (this.closed || this.inputEnded) {
      this.end('client-left');
      return;
    }
    this.options.log('warn', 'the process that owned this workspace stopped; taking over', { ownerPid: owner.pid });
    const takeover: Promise<void> = this.takeOver().finally(() => {
      if (this.takeover === takeover) this.takeover = null;
    });
    this.takeover = takeover;
  }

  private async takeOver(): Promise<void> {
    let upstream: Upstream;
    try {
      upstream = await this.options.reconnect();
    } catch (error) {
      this.options.log('error', 'could not take the workspace over or join its new owner', { error: (error as Error).message });
      this.end('failed');
      return;
    }
    if (this.closed || this.inputEnded) {
      upstream.socket.destroy();
      this.end('client-left');
      return;
    }
    this.attach(upstream);
    this.options.log('info', 'the workspace has a new owner', { ownerPid: upstream.owner.pid, thisProcess: upstream.owner.pid === process.pid });
    // The new owner's MCP session for this client starts fresh: tell it what the client told the old one.
    if (this.initialize !== undefined) await this.replay(upstream, 'initialize', this.initialize);
    if (this.initialized && this.upstream === upstream) upstream.socket.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
    const replays: Promise<void>[] = [];
    if (this.logLevel !== undefined) replays.push(this.replay(upstream, 'logging/setLevel', this.logLevel));
    for (const uri of this.subscriptions) replays.push(this.replay(upstream, 'resources/subscribe', { uri }));
    await Promise.all(replays);
    if (this.upstream !== upstream) return; // It was lost during the replay: the next takeover starts over.
    this.ready = true;
    for (const line of this.held.splice(0)) this.send(line);
  }

  /** Sends a request of our own; resolves on its answer (swallowed) or when that owner is lost. */
  private replay(upstream: Upstream, method: string, params: unknown): Promise<void> {
    if (this.upstream !== upstream) return Promise.resolve();
    this.replaySeq += 1;
    const id = `${REPLAY_PREFIX}${this.replaySeq}`;
    return new Promise((resolve) => {
      this.replies.set(id, resolve);
      upstream.socket.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })}\n`);
    });
  }
}
