// Writes changed outputs to the journal as they arrive, coalescing bursts so a flood cannot stall the event loop.
import type { ExecutionJournal } from '../store/executions.js';
import type { Execution } from './execution.js';

/** Bytes written per millisecond of pause we allow ourselves before the next write of the same burst. */
const BYTES_PER_MS = 50_000;
const MAX_PAUSE_MS = 250;

/**
 * Small changes are written on the next turn of the event loop (setImmediate: everything that arrived in one
 * turn goes in one transaction). After a large write the next one waits in proportion to its size, so a cell
 * printing hundreds of megabytes costs bounded I/O while its text is still journaled within a fraction of a second.
 */
export class OutputFlusher {
  private readonly dirty = new Set<Execution>();
  private scheduled: NodeJS.Immediate | NodeJS.Timeout | null = null;
  private pauseMs = 0;

  constructor(private readonly journal: ExecutionJournal, private readonly onError: (error: Error) => void) {}

  schedule(execution: Execution): void {
    this.dirty.add(execution);
    if (this.scheduled) return;
    this.scheduled = this.pauseMs > 0 ? setTimeout(() => this.flushAll(), this.pauseMs) : setImmediate(() => this.flushAll());
  }

  /** Writes this execution's pending changes now (used right before its final state is committed). */
  takeNow(execution: Execution): ReturnType<typeof serializeChanges> | null {
    this.dirty.delete(execution);
    return execution.outputs.hasChanges() ? serializeChanges(execution) : null;
  }

  flushAll(): void {
    this.scheduled = null;
    let bytes = 0;
    const batch = [...this.dirty];
    this.dirty.clear();
    for (const execution of batch) {
      if (!execution.outputs.hasChanges()) continue;
      const change = serializeChanges(execution);
      for (const [, json] of change.upserts) bytes += json.length;
      try {
        this.journal.writeOutputs(execution.id, change);
      } catch (error) {
        this.onError(error as Error);
      }
    }
    this.pauseMs = Math.min(MAX_PAUSE_MS, Math.floor(bytes / BYTES_PER_MS));
  }

  close(): void {
    if (this.scheduled) {
      clearTimeout(this.scheduled as NodeJS.Timeout);
      clearImmediate(this.scheduled as NodeJS.Immediate);
    }
    this.flushAll();
  }
}

export function serializeChanges(execution: Execution): { upserts: Array<[number, string]>; count: number } {
  const changes = execution.outputs.takeChanges();
  return { upserts: changes.upserts.map(([index, output]) => [index, JSON.stringify(output)]), count: changes.count };
}
