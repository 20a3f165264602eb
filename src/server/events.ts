// The live event bus: one publisher, and per client a bounded, ordered send queue paced by the socket's own drain.
import type { Engine } from '../engine/engine.js';
import { metricsRegistry, type Counter, type Gauge, type Registry } from './metrics.js';
import { redactOutput, redactText } from './redact.js';

/** The fields of each event type on `/events` (besides `type`, `seq` and `time`). */
export interface LiveEventFields {
  'execution.queued': { notebook_path: string; execution_id: string; cell_id: string | null; kind: 'cell' | 'code'; code: string; code_truncated?: true; position: number };
  'execution.started': { notebook_path: string; execution_id: string; cell_id: string | null; kernel_id: string };
  /** `content` is the iopub message content as the kernel sent it (stream chunks are deltas). */
  'execution.output': { notebook_path: string; execution_id: string; cell_id: string | null; msg_type: string; content: Record<string, unknown> };
  'execution.state': { notebook_path: string; execution_id: string; state: string };
  'execution.finished': {
    notebook_path: string;
    execution_id: string;
    cell_id: string | null;
    kind: 'cell' | 'code';
    state: string;
    execution_count: number | null;
    status_text: string | null;
    duration_ms: number | null;
  };
  'execution.outputs_replaced': { notebook_path: string; execution_id: string; cell_id: string | null };
  'kernel.status': { notebook_path: string; kernel_id: string; kernel_name: string | null; status: string; detail?: string };
  /** `source`: `server` for our own saves, `disk` for edits made by someone else; `version` as read_notebook reports it. */
  'notebook.changed': { notebook_path: string; source: 'server' | 'disk'; version: string | null; deleted?: true };
}

export type LiveEventType = keyof LiveEventFields;
export type LiveEvent = { [K in LiveEventType]: { type: K } & LiveEventFields[K] }[LiveEventType];

/** What the bus needs of a WebSocket (the `ws` package's WebSocket fits). */
export interface EventSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string, cb: (error?: Error) => void): void;
  close(code: number, reason: string): void;
}

export interface EventBusOptions {
  /** Events one client may have waiting; past it the oldest are dropped (default 10,000). */
  maxQueuedEvents?: number;
  /** Bytes one client may have waiting; past it the oldest are dropped (default 8 MiB). */
  maxQueuedBytes?: number;
  /** A client that takes nothing for this long while its queue overflows is closed with 4008 (default 30 s). */
  stallLimitMs?: number;
  /** No more is handed to a socket while this much is still in its send buffer (default 256 KiB). */
  highWaterBytes?: number;
  /** Where the dropped-event and slow-close counters go (default: the process-wide registry). */
  registry?: Registry;
  /** Replace secrets in what clients are sent, as tool results do (in-process listeners get the events as they are). */
  redact?: boolean;
}

export interface EventBusStats {
  clients: number;
  published: number;
  dropped: number;
  gaps: number;
  closedSlow: number;
  /** The largest backlog (bytes) any client has had waiting: never above the byte bound plus one event. */
  peakQueuedBytes: number;
}

export interface ClientStats {
  seq: number;
  queuedEvents: number;
  queuedBytes: number;
  dropped: number;
}

/** Close code for a client dropped for being too slow (4000–4999 are free for applications). */
export const CLOSE_TOO_SLOW = 4008;
const OPEN = 1;

/** One event serialised once for every client; the per-connection `seq` is spliced in between `head` and `tail`. */
interface Serialized {
  head: string;
  tail: string;
  bytes: number;
}

/** A FIFO with O(1) shift that compacts itself now and then. */
class Fifo<T> {
  private items: T[] = [];
  private start = 0;

  get length(): number {
    return this.items.length - this.start;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.start >= this.items.length) return undefined;
    const item = this.items[this.start];
    this.items[this.start] = undefined as T;
    this.start += 1;
    if (this.start >= 1024 && this.start * 2 >= this.items.length) {
      this.items = this.items.slice(this.start);
      this.start = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.start = 0;
  }
}

export class EventClient {
  /** The `seq` of the last message handed to the socket. */
  private seq = 0;
  private readonly queue = new Fifo<Serialized>();
  private queuedBytes = 0;
  /** Dropped since the last `gap` was sent: the next message is a `gap` saying so. */
  private droppedPending = 0;
  private droppedTotal = 0;
  private hello: string | null;
  private scheduled = false;
  private closed = false;
  private lastProgress = performance.now();
  private stallTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly bus: EventBus,
    private readonly socket: EventSocket,
    readonly notebook: string | null,
    hello: Record<string, unknown> | null,
    private readonly limits: Required<Omit<EventBusOptions, 'registry' | 'redact'>>,
  ) {
    this.hello = hello ? JSON.stringify({ type: 'hello', seq: 1, time: new Date().toISOString(), ...hello }) : null;
    if (this.hello) this.schedule();
  }

  stats(): ClientStats {
    return { seq: this.seq, queuedEvents: this.queue.length, queuedBytes: this.queuedBytes, dropped: this.droppedTotal };
  }

  /** The only work the bus does per client: append, drop the oldest past the bounds, and ask for a pump. */
  enqueue(event: Serialized): void {
    if (this.closed) return;
    if (this.queue.length === 0 && this.socket.bufferedAmount === 0) this.lastProgress = performance.now();
    this.queue.push(event);
    this.queuedBytes += event.bytes;
    let dropped = 0;
    // One event larger than the byte bound is still sent: it is the newest, and the client may be able to take it.
    while (this.queue.length > this.limits.maxQueuedEvents || (this.queuedBytes > this.limits.maxQueuedBytes && this.queue.length > 1)) {
      const oldest = this.queue.shift();
      if (!oldest) break;
      this.queuedBytes -= oldest.bytes;
      dropped += 1;
    }
    if (dropped > 0) {
      this.droppedPending += dropped;
      this.droppedTotal += dropped;
      this.bus.noteDropped(dropped);
      this.stallTimer ??= setTimeout(this.checkStall, this.limits.stallLimitMs);
    }
    this.bus.notePeak(this.queuedBytes);
    this.schedule();
  }

  /** Stops sending and forgets the queue (the socket closed, or the bus is shutting down). */
  detach(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.clear();
    this.queuedBytes = 0;
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.stallTimer = null;
    this.bus.remove(this);
  }

  /**
   * The pump runs as its own microtask, after the publisher has returned: a burst of events (the kernel channel
   * delivers queued messages back to back) reaches the socket as it comes instead of piling up in the queue.
   */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(this.pump);
  }

  /** Hands messages to the socket while its buffer is below the high-water mark; `sent` resumes once it drains. */
  private readonly pump = (): void => {
    this.scheduled = false;
    while (!this.closed && this.socket.readyState === OPEN && this.socket.bufferedAmount < this.limits.highWaterBytes) {
      let text: string;
      if (this.hello !== null) {
        text = this.hello;
        this.hello = null;
        this.seq = 1;
      } else if (this.droppedPending > 0) {
        this.seq += 1;
        text = `{"type":"gap","seq":${this.seq},"time":"${new Date().toISOString()}","dropped":${this.droppedPending}}`;
        this.droppedPending = 0;
        this.bus.noteGap();
      } else {
        const event = this.queue.shift();
        if (!event) break;
        this.queuedBytes -= event.bytes;
        this.seq += 1;
        text = `${event.head},"seq":${this.seq}${event.tail}`;
      }
      this.socket.send(text, this.sent);
    }
  };

  /** A write reached the operating system: the client is taking data. */
  private readonly sent = (error?: Error): void => {
    if (error || this.closed) return;
    this.lastProgress = performance.now();
    if (!this.scheduled && this.hasWork() && this.socket.bufferedAmount < this.limits.highWaterBytes) this.pump();
  };

  private hasWork(): boolean {
    return this.hello !== null || this.droppedPending > 0 || this.queue.length > 0;
  }

  /** A liveness check armed by an overflow: closes the client if it took nothing for the whole limit. */
  private readonly checkStall = (): void => {
    this.stallTimer = null;
    if (this.closed || !this.hasWork()) return;
    const idle = performance.now() - this.lastProgress;
    if (idle < this.limits.stallLimitMs) {
      this.stallTimer = setTimeout(this.checkStall, this.limits.stallLimitMs - idle);
      return;
    }
    const dropped = this.droppedTotal;
    this.detach();
    this.bus.noteClosedSlow();
    const seconds = Math.round(this.limits.stallLimitMs / 1000);
    // Control frames carry at most 123 bytes of reason.
    this.socket.close(CLOSE_TOO_SLOW, `too slow: read nothing for ${seconds}s with a full queue; ${dropped} events dropped. Reconnect to resync.`.slice(0, 123));
  };
}

/** Fields of live events that carry code or output text (the rest are ids, paths, states and numbers). */
const TEXT_FIELDS = new Set(['code', 'status_text', 'detail']);

/** A copy of an event's fields with secrets replaced in its code, output and messages. */
export function redactEventFields<T extends object>(fields: T): T {
  const copy = { ...fields } as Record<string, unknown>;
  for (const [key, value] of Object.entries(copy)) {
    if (key === 'content') copy[key] = redactOutput(value);
    else if (TEXT_FIELDS.has(key) && typeof value === 'string') copy[key] = redactText(value);
  }
  return copy as T;
}

export class EventBus {
  /** Replace secrets in what is sent to clients (the HTTP server turns it on when the workspace redacts). */
  redact: boolean;
  private readonly everyone = new Set<EventClient>();
  private readonly byNotebook = new Map<string, Set<EventClient>>();
  private readonly listeners = new Set<(event: LiveEvent) => void>();
  private readonly limits: Required<Omit<EventBusOptions, 'registry' | 'redact'>>;
  private readonly counters: EventBusStats = { clients: 0, published: 0, dropped: 0, gaps: 0, closedSlow: 0, peakQueuedBytes: 0 };
  private readonly droppedCounter: Counter;
  private readonly closedSlowCounter: Counter;
  private readonly peakGauge: Gauge;

  constructor(options: EventBusOptions = {}) {
    this.redact = options.redact ?? false;
    this.limits = {
      maxQueuedEvents: options.maxQueuedEvents ?? 10_000,
      maxQueuedBytes: options.maxQueuedBytes ?? 8 * 1024 * 1024,
      stallLimitMs: options.stallLimitMs ?? 30_000,
      highWaterBytes: options.highWaterBytes ?? 256 * 1024,
    };
    const registry = options.registry ?? metricsRegistry;
    this.droppedCounter = registry.counter('mcp_jupyter_event_dropped_total', 'Live events dropped from the queue of a client that fell behind');
    this.closedSlowCounter = registry.counter('mcp_jupyter_event_clients_closed_slow_total', 'Live-event clients closed (4008) for staying stalled with a full queue');
    this.peakGauge = registry.gauge('mcp_jupyter_event_queue_peak_bytes', 'Largest backlog in bytes that any live-event client has had waiting');
  }

  /** Live WebSocket clients. */
  get clientCount(): number {
    return this.counters.clients;
  }

  stats(): EventBusStats {
    return { ...this.counters };
  }

  /** Each connected client's position and backlog. */
  clientStats(): ClientStats[] {
    const all = [...this.everyone];
    for (const set of this.byNotebook.values()) all.push(...set);
    return all.map((client) => client.stats());
  }

  /**
   * Registers a socket. `hello` becomes its first message (seq 1); every event published after this call follows
   * it, so a snapshot taken in the same tick as `connect` is exactly the state the events continue from.
   */
  connect(socket: EventSocket, options: { notebook?: string | null; hello?: Record<string, unknown> } = {}): EventClient {
    const notebook = options.notebook ?? null;
    const client = new EventClient(this, socket, notebook, options.hello ?? null, this.limits);
    if (notebook === null) this.everyone.add(client);
    else {
      let set = this.byNotebook.get(notebook);
      if (!set) this.byNotebook.set(notebook, (set = new Set()));
      set.add(client);
    }
    this.counters.clients += 1;
    return client;
  }

  /** In-process watchers (MCP resource subscriptions); called synchronously, so they must be quick. */
  listen(listener: (event: LiveEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  publish<K extends LiveEventType>(type: K, fields: LiveEventFields[K]): void {
    this.counters.published += 1;
    if (this.listeners.size > 0) {
      const event = { type, ...fields } as LiveEvent;
      for (const listener of this.listeners) listener(event);
    }
    const watchers = this.byNotebook.get(fields.notebook_path);
    if (this.everyone.size === 0 && !watchers) return;
    // Serialised (and redacted) once; each client only splices in its own seq when it sends.
    const body = JSON.stringify(this.redact ? redactEventFields(fields) : fields);
    const head = `{"type":${JSON.stringify(type)}`;
    const tail = `,"time":"${new Date().toISOString()}"${body.length > 2 ? `,${body.slice(1)}` : '}'}`;
    const event: Serialized = { head, tail, bytes: Buffer.byteLength(head) + Buffer.byteLength(tail) + 16 };
    for (const client of this.everyone) client.enqueue(event);
    if (watchers) for (const client of watchers) client.enqueue(event);
  }

  /** Called by a client as it detaches. */
  remove(client: EventClient): void {
    let removed = this.everyone.delete(client);
    if (client.notebook !== null) {
      const set = this.byNotebook.get(client.notebook);
      if (set?.delete(client)) removed = true;
      if (set && set.size === 0) this.byNotebook.delete(client.notebook);
    }
    if (removed) this.counters.clients -= 1;
  }

  noteDropped(n: number): void {
    this.counters.dropped += n;
    this.droppedCounter.inc(undefined, n);
  }

  notePeak(bytes: number): void {
    if (bytes <= this.counters.peakQueuedBytes) return;
    this.counters.peakQueuedBytes = bytes;
    this.peakGauge.set(undefined, bytes);
  }

  noteGap(): void {
    this.counters.gaps += 1;
  }

  noteClosedSlow(): void {
    this.counters.closedSlow += 1;
    this.closedSlowCounter.inc();
  }
}

/** Longest `code` carried by an `execution.queued` event; the whole source is in the journal. */
const MAX_EVENT_CODE_CHARS = 20_000;

/** Translates the engine's events into live events (snake_case, as the rest of the public API). */
export function forwardEngineEvents(source: Engine, bus: EventBus): () => void {
  const engine = source.events;
  const offs = [
    engine.on('execution.queued', (e) =>
      bus.publish('execution.queued', {
        notebook_path: e.notebookPath,
        execution_id: e.executionId,
        cell_id: e.cellId,
        kind: e.kind,
        ...(e.code.length > MAX_EVENT_CODE_CHARS ? { code: e.code.slice(0, MAX_EVENT_CODE_CHARS), code_truncated: true as const } : { code: e.code }),
        position: e.position,
      }),
    ),
    engine.on('execution.started', (e) =>
      bus.publish('execution.started', { notebook_path: e.notebookPath, execution_id: e.executionId, cell_id: e.cellId, kernel_id: e.kernelId }),
    ),
    engine.on('execution.output', (e) =>
      bus.publish('execution.output', { notebook_path: e.notebookPath, execution_id: e.executionId, cell_id: e.cellId, msg_type: e.msgType, content: e.content }),
    ),
    engine.on('execution.state', (e) => bus.publish('execution.state', { notebook_path: e.notebookPath, execution_id: e.executionId, state: e.state })),
    engine.on('execution.finished', (e) =>
      bus.publish('execution.finished', {
        notebook_path: e.notebookPath,
        execution_id: e.executionId,
        cell_id: e.cellId,
        kind: e.kind,
        state: e.state,
        execution_count: e.executionCount,
        status_text: e.statusText,
        duration_ms: e.durationMs,
      }),
    ),
    engine.on('execution.outputs_replaced', (e) =>
      bus.publish('execution.outputs_replaced', { notebook_path: e.notebookPath, execution_id: e.executionId, cell_id: e.cellId }),
    ),
    engine.on('kernel.status', (e) =>
      bus.publish('kernel.status', {
        notebook_path: e.notebookPath,
        kernel_id: e.kernelId,
        kernel_name: source.existingKernel(e.notebookPath)?.session?.kernelName ?? null,
        status: e.status,
        ...(e.detail !== undefined ? { detail: e.detail } : {}),
      }),
    ),
  ];
  return () => offs.forEach((off) => off());
}
