// What the engine announces as work happens; the server's event bus fans these out to watchers.
import { EventEmitter } from 'node:events';
import type { KernelStatus } from '../kernel/types.js';
import type { ExecutionState } from '../store/executions.js';

export interface EngineEventMap {
  'execution.queued': { executionId: string; notebookPath: string; cellId: string | null; kind: 'cell' | 'code'; code: string; position: number };
  'execution.started': { executionId: string; notebookPath: string; cellId: string | null; kernelId: string };
  /** One output-bearing iopub message, as the kernel sent it (stream chunks are deltas). */
  'execution.output': { executionId: string; notebookPath: string; cellId: string | null; msgType: string; content: Record<string, unknown> };
  'execution.state': { executionId: string; notebookPath: string; state: ExecutionState };
  'execution.finished': {
    executionId: string;
    notebookPath: string;
    cellId: string | null;
    kind: 'cell' | 'code';
    state: ExecutionState;
    executionCount: number | null;
    statusText: string | null;
    durationMs: number | null;
  };
  /** A finished execution's outputs changed afterwards (`update_display_data` from a later cell). */
  'execution.outputs_replaced': { executionId: string; notebookPath: string; cellId: string | null };
  'kernel.status': { notebookPath: string; kernelId: string; status: KernelStatus | 'started' | 'shutdown'; detail?: string };
}

export type EngineEventName = keyof EngineEventMap;

/** A typed facade over EventEmitter: listeners run synchronously, so they must be quick and must not throw. */
export class EngineEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  on<K extends EngineEventName>(name: K, listener: (event: EngineEventMap[K]) => void): () => void {
    this.emitter.on(name, listener);
    return () => this.emitter.off(name, listener);
  }

  onAny(listener: <K extends EngineEventName>(name: K, event: EngineEventMap[K]) => void): () => void {
    const names: EngineEventName[] = [
      'execution.queued',
      'execution.started',
      'execution.output',
      'execution.state',
      'execution.finished',
      'execution.outputs_replaced',
      'kernel.status',
    ];
    const offs = names.map((name) => this.on(name, (event) => listener(name, event)));
    return () => offs.forEach((off) => off());
  }

  emit<K extends EngineEventName>(name: K, event: EngineEventMap[K]): void {
    this.emitter.emit(name, event);
  }
}
