// One execution: its state machine, its outputs, and the promise that settles when both reply and idle arrived.
import type { JupyterMessage } from '../kernel/types.js';
import { TERMINAL_STATES, type ExecutionKind, type ExecutionRow, type ExecutionState } from '../store/executions.js';
import { OutputModel, type NbOutput } from './output-model.js';

export interface InputRequest {
  prompt: string;
  password: boolean;
  header: JupyterMessage['header'];
}

/** Why the engine stopped an execution itself: decides the terminal state when the kernel reports the error. */
export type StopReason = 'interrupted' | 'timed_out' | 'cancelled';

export interface ExecutionHooks {
  stateChanged(execution: Execution): void;
  /** An output-bearing iopub message was applied (the message content goes to live watchers as is). */
  outputsChanged(execution: Execution, msgType: string, content: Record<string, unknown>): void;
  executionCountKnown(execution: Execution): void;
  /** The kernel published execute_input: the code is running now (and an interrupt will reach it). */
  executing(execution: Execution): void;
  displayUpdated(execution: Execution, displayId: string, content: Record<string, unknown>): void;
  /** Both `execute_reply` and iopub `idle` arrived: the execution is complete. */
  completed(execution: Execution): void;
  /**
   * iopub `idle` arrived and `execute_reply` has not (yet). Usually the reply is a moment behind, but ipykernel sends
   * none when an interrupt lands in its own request handling ("KeyboardInterrupt caught in kernel"): the code never
   * ran and, without a check, the execution would look running forever.
   */
  idleWithoutReply(execution: Execution): void;
}

export interface ExecutionSnapshot {
  id: string;
  notebookPath: string;
  cellId: string | null;
  kind: ExecutionKind;
  code: string;
  sourceSha256: string;
  state: ExecutionState;
  executionCount: number | null;
  outputs: NbOutput[];
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  statusText: string | null;
  error: { ename: string; evalue: string } | null;
  awaitingInput: { prompt: string; password: boolean } | null;
  droppedChars: number;
  outputsNote: string | null;
  kernelId: string | null;
  kernelInstance: number | null;
  batchId: string | null;
}

export class Execution {
  state: ExecutionState;
  msgId: string | null;
  kernelId: string | null;
  kernelInstance: number | null;
  executionCount: number | null;
  startedAt: number | null;
  finishedAt: number | null = null;
  statusText: string | null = null;
  error: { ename: string; evalue: string } | null = null;
  inputRequest: InputRequest | null = null;
  stopReason: StopReason | null = null;
  /** The kernel announced (execute_input) that it runs this code; before that an interrupt signal is ignored. */
  executingInKernel = false;
  outputsNote: string | null = null;
  readonly outputs: OutputModel;
  private gotReply = false;
  private gotIdle = false;
  private replyStatus: string | null = null;
  private settle!: () => void;
  /** Settles when the execution reaches a terminal state (never rejects). */
  readonly done: Promise<void>;
  hooks: ExecutionHooks | null = null;

  constructor(readonly row: ExecutionRow, outputBudgetChars: number) {
    this.state = row.state;
    this.msgId = row.msgId;
    this.kernelId = row.kernelId;
    this.kernelInstance = row.kernelInstance;
    this.executionCount = row.executionCount;
    this.startedAt = row.startedAt;
    this.outputs = new OutputModel(outputBudgetChars);
    this.done = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  get id(): string {
    return this.row.id;
  }

  get isTerminal(): boolean {
    return TERMINAL_STATES.has(this.state);
  }

  /** Every message whose parent is this execution's execute_request. */
  handle(message: JupyterMessage): void {
    if (this.isTerminal) return;
    const type = message.header.msg_type;
    const content = message.content;
    if (message.channel === 'iopub') {
      switch (type) {
        case 'status':
          if (content.execution_state === 'idle' && !this.gotIdle) {
            this.gotIdle = true;
            if (this.gotReply) this.maybeComplete();
            else this.hooks?.idleWithoutReply(this);
          }
          return;
        case 'execute_input':
          this.executingInKernel = true;
          if (typeof content.execution_count === 'number') this.setCount(content.execution_count);
          this.hooks?.executing(this);
          return;
        case 'execute_result':
          if (typeof content.execution_count === 'number') this.setCount(content.execution_count);
          this.outputs.apply(type, content, this.executionCount);
          this.hooks?.outputsChanged(this, type, content);
          return;
        case 'error':
          this.error = { ename: String(content.ename ?? ''), evalue: String(content.evalue ?? '') };
          this.outputs.apply(type, content, this.executionCount);
          this.hooks?.outputsChanged(this, type, content);
          return;
        case 'stream':
        case 'display_data':
        case 'clear_output':
          this.outputs.apply(type, content, this.executionCount);
          this.hooks?.outputsChanged(this, type, content);
          return;
        case 'update_display_data': {
          const displayId = (content.transient as { display_id?: unknown } | undefined)?.display_id;
          if (typeof displayId === 'string') this.hooks?.displayUpdated(this, displayId, content);
          return;
        }
        default:
          return;
      }
    }
    if (message.channel === 'shell' && type === 'execute_reply') {
      this.gotReply = true;
      this.replyStatus = typeof content.status === 'string' ? content.status : 'error';
      if (typeof content.execution_count === 'number') this.setCount(content.execution_count);
      if (this.replyStatus === 'error' && !this.error) {
        this.error = { ename: String(content.ename ?? 'Error'), evalue: String(content.evalue ?? '') };
      }
      this.maybeComplete();
      return;
    }
    if (message.channel === 'stdin' && type === 'input_request') {
      this.inputRequest = { prompt: String(content.prompt ?? ''), password: content.password === true, header: message.header };
      this.state = 'awaiting_input';
      this.hooks?.stateChanged(this);
    }
  }

  /** The input was sent: back to running. */
  inputAnswered(): void {
    this.inputRequest = null;
    if (this.state === 'awaiting_input') {
      this.state = 'running';
      this.hooks?.stateChanged(this);
    }
  }

  /** Ends the execution now with `state` (used for cancellation, death and loss). Idempotent. */
  end(state: ExecutionState, statusText: string | null): void {
    if (this.isTerminal) return;
    this.state = state;
    this.statusText = statusText;
    this.inputRequest = null;
    this.finishedAt = Date.now();
    this.settle();
  }

  snapshot(queuePosition?: number): ExecutionSnapshot & { queuePosition?: number } {
    const snapshot: ExecutionSnapshot & { queuePosition?: number } = {
      id: this.id,
      notebookPath: this.row.notebookPath,
      cellId: this.row.cellId,
      kind: this.row.kind,
      code: this.row.code,
      sourceSha256: this.row.sourceSha256,
      state: this.state,
      executionCount: this.executionCount,
      outputs: this.outputs.outputs(),
      createdAt: this.row.createdAt,
      startedAt: this.startedAt,
      finishedAt: this.finishedAt,
      statusText: this.statusText,
      error: this.error,
      awaitingInput: this.inputRequest ? { prompt: this.inputRequest.prompt, password: this.inputRequest.password } : null,
      droppedChars: this.outputs.droppedChars,
      outputsNote: this.outputsNote,
      kernelId: this.kernelId,
      kernelInstance: this.kernelInstance,
      batchId: this.row.batchId,
    };
    if (queuePosition !== undefined) snapshot.queuePosition = queuePosition;
    return snapshot;
  }

  private setCount(count: number): void {
    if (this.executionCount === count) return;
    this.executionCount = count;
    this.hooks?.executionCountKnown(this);
  }

  /** Whether the kernel has answered the execute_request (its outputs may still be arriving). */
  get replied(): boolean {
    return this.gotReply;
  }

  private maybeComplete(): void {
    if (!this.gotReply || !this.gotIdle) return;
    const { state, text } = this.terminalFromReply();
    this.end(state, text);
    this.hooks?.completed(this);
  }

  private terminalFromReply(): { state: ExecutionState; text: string | null } {
    if (this.replyStatus === 'ok') return { state: 'succeeded', text: null };
    if (this.replyStatus === 'aborted') return { state: 'cancelled', text: 'the kernel aborted this request (an earlier request failed)' };
    if (this.stopReason === 'timed_out') return { state: 'timed_out', text: 'the execution ran past its timeout and was interrupted' };
    if (this.stopReason !== null && this.error?.ename === 'KeyboardInterrupt') {
      return { state: this.stopReason === 'cancelled' ? 'cancelled' : 'interrupted', text: 'interrupted on request' };
    }
    const error = this.error;
    return { state: 'failed', text: error ? `${error.ename}: ${error.evalue}` : 'the kernel reported an error' };
  }
}
