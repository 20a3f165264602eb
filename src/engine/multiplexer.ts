// Routes every kernel message to the request it answers, by exact parent msg_id, with a ring buffer for early arrivals.
import type { JupyterMessage } from '../kernel/types.js';

export type MessageHandler = (message: JupyterMessage) => void;

/** Bounded FIFO that drops its oldest entry when full, so a flood for one parent cannot grow memory. */
class Ring {
  private items: Array<{ message: JupyterMessage; bytes: number }> = [];
  private start = 0;
  dropped = 0;
  bytes = 0;

  constructor(private readonly capacity: number) {}

  push(message: JupyterMessage, bytes: number): void {
    if (this.size >= this.capacity) this.dropOldest();
    this.items.push({ message, bytes });
    this.bytes += bytes;
  }

  /** Returns the bytes freed. */
  dropOldest(): number {
    const oldest = this.items[this.start];
    if (!oldest) return 0;
    this.start += 1;
    this.dropped += 1;
    this.bytes -= oldest.bytes;
    // Compact now and then instead of shifting on every drop.
    if (this.start > 64 && this.start * 2 > this.items.length) {
      this.items = this.items.slice(this.start);
      this.start = 0;
    }
    return oldest.bytes;
  }

  get size(): number {
    return this.items.length - this.start;
  }

  drain(): JupyterMessage[] {
    const drained = this.items.slice(this.start).map((item) => item.message);
    this.items = [];
    this.start = 0;
    this.bytes = 0;
    return drained;
  }
}

/**
 * Roughly what a message holds in memory: its binary buffers plus the text in its content (outputs are mostly
 * strings: stream text, base64 images, HTML). Cheap, and close enough for a memory bound.
 */
export function approximateSize(message: JupyterMessage): number {
  let bytes = 256;
  for (const buffer of message.buffers) bytes += buffer.byteLength;
  const stack: Array<{ value: unknown; depth: number }> = [{ value: message.content, depth: 0 }];
  while (stack.length > 0) {
    const { value, depth } = stack.pop()!;
    if (typeof value === 'string') bytes += value.length * 2;
    else if (typeof value === 'object' && value !== null && depth < 6) {
      for (const child of Array.isArray(value) ? value : Object.values(value)) stack.push({ value: child, depth: depth + 1 });
    } else bytes += 8;
  }
  return bytes;
}

export interface MultiplexerOptions {
  /** Messages kept per unregistered parent id (the oldest go first). */
  perParentCapacity?: number;
  /** Unregistered parent ids remembered at once (least recently seen go first): messages of other clients' requests. */
  maxParents?: number;
  /** Memory all buffered messages may take together (least recently seen parents lose theirs first). */
  maxBytes?: number;
}

/**
 * No time-based expiry anywhere: an execution that registers late (after a restart of this server, or because the
 * kernel answered before the journal write finished) still receives every message that was buffered for it.
 */
export class Multiplexer {
  private readonly handlers = new Map<string, MessageHandler>();
  private readonly orphans = new Map<string, Ring>();
  private readonly perParentCapacity: number;
  private readonly maxParents: number;
  private readonly maxBytes: number;
  private bufferedBytes = 0;
  /** Messages dropped from full ring buffers or evicted parents: exposed as a metric. */
  droppedOrphans = 0;

  constructor(options: MultiplexerOptions = {}) {
    this.perParentCapacity = options.perParentCapacity ?? 1000;
    this.maxParents = options.maxParents ?? 256;
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
  }

  /** Hands over, in arrival order, what was buffered for `parentId`, then routes its live messages to `handler`. */
  register(parentId: string, handler: MessageHandler): void {
    this.handlers.set(parentId, handler);
    const ring = this.orphans.get(parentId);
    if (!ring) return;
    this.orphans.delete(parentId);
    this.bufferedBytes -= ring.bytes;
    for (const message of ring.drain()) {
      // The handler may unregister itself part-way (it saw its completion); later messages then are not its own.
      if (this.handlers.get(parentId) !== handler) break;
      handler(message);
    }
  }

  unregister(parentId: string): void {
    this.handlers.delete(parentId);
  }

  isRegistered(parentId: string): boolean {
    return this.handlers.has(parentId);
  }

  /** Returns true when the message went to a registered handler. */
  route(message: JupyterMessage): boolean {
    const parentId = message.parent_header.msg_id;
    if (typeof parentId !== 'string' || parentId.length === 0) return false;
    const handler = this.handlers.get(parentId);
    if (handler) {
      handler(message);
      return true;
    }
    let ring = this.orphans.get(parentId);
    if (ring) {
      // Re-insert to mark it most recently seen.
      this.orphans.delete(parentId);
    } else {
      ring = new Ring(this.perParentCapacity);
      this.evictIfFull();
    }
    this.orphans.set(parentId, ring);
    const before = { dropped: ring.dropped, bytes: ring.bytes };
    ring.push(message, approximateSize(message));
    this.droppedOrphans += ring.dropped - before.dropped;
    this.bufferedBytes += ring.bytes - before.bytes;
    this.shrinkToBudget();
    return false;
  }

  /** Memory held by messages waiting for their parent to register (approximate). */
  get bytesBuffered(): number {
    return this.bufferedBytes;
  }

  /** Over the byte budget: the least recently seen parents' oldest messages go first. */
  private shrinkToBudget(): void {
    for (const [parentId, ring] of this.orphans) {
      if (this.bufferedBytes <= this.maxBytes) return;
      while (ring.size > 0 && this.bufferedBytes > this.maxBytes) {
        this.bufferedBytes -= ring.dropOldest();
        this.droppedOrphans += 1;
      }
      if (ring.size === 0) this.orphans.delete(parentId);
    }
  }

  /** How many messages wait for `parentId` to register. */
  bufferedFor(parentId: string): number {
    return this.orphans.get(parentId)?.size ?? 0;
  }

  private evictIfFull(): void {
    while (this.orphans.size >= this.maxParents) {
      const oldest = this.orphans.keys().next().value;
      if (oldest === undefined) return;
      const ring = this.orphans.get(oldest);
      this.droppedOrphans += ring?.size ?? 0;
      this.bufferedBytes -= ring?.bytes ?? 0;
      this.orphans.delete(oldest);
    }
  }
}
