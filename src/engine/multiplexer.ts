// Routes every kernel message to the request it answers, by exact parent msg_id, with a ring buffer for early arrivals.
import type { JupyterMessage } from '../kernel/types.js';

export type MessageHandler = (message: JupyterMessage) => void;

/** Bounded FIFO that drops its oldest entry when full, so a flood for one parent cannot grow memory. */
class Ring {
  private items: JupyterMessage[] = [];
  private start = 0;
  dropped = 0;

  constructor(private readonly capacity: number) {}

  push(message: JupyterMessage): void {
    if (this.items.length - this.start >= this.capacity) {
      this.start += 1;
      this.dropped += 1;
      // Compact now and then instead of shifting on every push.
      if (this.start > this.capacity) {
        this.items = this.items.slice(this.start);
        this.start = 0;
      }
    }
    this.items.push(message);
  }

  get size(): number {
    return this.items.length - this.start;
  }

  drain(): JupyterMessage[] {
    const drained = this.items.slice(this.start);
    this.items = [];
    this.start = 0;
    return drained;
  }
}

export interface MultiplexerOptions {
  /** Messages kept per unregistered parent id (the oldest go first). */
  perParentCapacity?: number;
  /** Unregistered parent ids remembered at once (least recently seen go first): messages of other clients' requests. */
  maxParents?: number;
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
  /** Messages dropped from full ring buffers or evicted parents: exposed as a metric. */
  droppedOrphans = 0;

  constructor(options: MultiplexerOptions = {}) {
    this.perParentCapacity = options.perParentCapacity ?? 1000;
    this.maxParents = options.maxParents ?? 256;
  }

  /** Hands over, in arrival order, what was buffered for `parentId`, then routes its live messages to `handler`. */
  register(parentId: string, handler: MessageHandler): void {
    this.handlers.set(parentId, handler);
    const ring = this.orphans.get(parentId);
    if (!ring) return;
    this.orphans.delete(parentId);
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
    const before = ring.dropped;
    ring.push(message);
    this.droppedOrphans += ring.dropped - before;
    return false;
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
      this.orphans.delete(oldest);
    }
  }
}
