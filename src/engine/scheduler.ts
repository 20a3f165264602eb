// One notebook's kernel and its FIFO: runs the next execution when the previous one completes, driven by events only.
import { randomUUID } from 'node:crypto';
import { dirname } from 'node:path';
import type { KernelProvider, KernelSession, Unsubscribe } from '../kernel/types.js';
import type { ExecutionJournal, ExecutionState } from '../store/executions.js';
import type { KernelJournal, KernelRow } from '../store/kernels.js';
import type { EngineEvents } from './events.js';
import { Execution, type ExecutionHooks, type StopReason } from './execution.js';
import { Multiplexer } from './multiplexer.js';
import { OutputFlusher } from './output-flusher.js';

export const KERNEL_LOST_TEXT = 'kernel state was lost';

export interface SchedulerDeps {
  provider: KernelProvider;
  journal: ExecutionJournal;
  kernels: KernelJournal;
  events: EngineEvents;
  flusher: OutputFlusher;
  workspaceRoot: string;
  /** Called when an execution reaches a terminal state (the engine drops it from memory later). */
  onTerminal(execution: Execution): void;
  log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
}

/** How many finished executions stay in memory per kernel so that display updates can still reach them. */
const RECENT_LIMIT = 32;

export class NotebookKernel implements ExecutionHooks {
  session: KernelSession | null = null;
  private starting: Promise<KernelSession> | null = null;
  private readonly queue: Execution[] = [];
  running: Execution | null = null;
  private readonly recent: Execution[] = [];
  readonly mux = new Multiplexer();
  private unsubscribes: Unsubscribe[] = [];
  /** An interrupt asked for before the kernel began running the execution: sent when it does. */
  private interruptOnStart: Execution | null = null;
  /** While true, recovery owns this queue: nothing new is sent until it has re-attached (or given up). */
  private recovering = false;
  private closed = false;

  constructor(readonly notebookPath: string, private readonly deps: SchedulerDeps) {}

  get queueLength(): number {
    return this.queue.length;
  }

  pending(): readonly Execution[] {
    return this.queue;
  }

  positionOf(execution: Execution): number {
    const index = this.queue.indexOf(execution);
    if (index < 0) return 0;
    return index + (this.running ? 1 : 0);
  }

  enqueue(execution: Execution): void {
    execution.hooks = this;
    this.queue.push(execution);
    this.pump();
  }

  /** Starts the kernel if none is running (also used by `start_kernel`). */
  ensureKernel(kernelName: string): Promise<KernelSession> {
    if (this.session && this.session.status !== 'dead') return Promise.resolve(this.session);
    if (this.starting) return this.starting;
    const id = randomUUID();
    const absolute = `${this.deps.workspaceRoot}/${this.notebookPath}`;
    this.starting = this.deps.provider
      .start({ kernelName, cwd: dirname(absolute), id })
      .then((session) => {
        this.adopt(session);
        this.deps.events.emit('kernel.status', { notebookPath: this.notebookPath, kernelId: session.id, status: 'started' });
        return session;
      })
      .finally(() => {
        this.starting = null;
      });
    return this.starting;
  }

  /** Takes over a live session (a fresh one, or one re-attached after a restart of this server). */
  adopt(session: KernelSession): void {
    this.detachListeners();
    this.session = session;
    this.deps.kernels.recordLive(session.toStored(), this.notebookPath, session.instance);
    this.unsubscribes = [
      session.onMessage((message) => this.mux.route(message)),
      session.onStatus((status) => this.deps.events.emit('kernel.status', { notebookPath: this.notebookPath, kernelId: session.id, status })),
      session.onDeath((reason) => this.kernelDied(session, reason)),
    ];
  }

  /**
   * Takes over after a server restart: re-attaches to the kernel found in the journal, catches the end of the
   * execution that was running, then runs the pending ones in their original order. Nothing that may have
   * reached the kernel is sent again.
   */
  async recover(work: { stored: KernelRow | null; running: Execution | null; pending: Execution[]; resumeOnNewKernel: boolean }): Promise<void> {
    this.recovering = true;
    for (const execution of work.pending) {
      execution.hooks = this;
      this.queue.push(execution);
    }
    if (work.running) work.running.hooks = this;
    let session: KernelSession | null = null;
    if (work.stored) {
      session = await this.deps.provider.attach(work.stored.stored).catch((error: Error) => {
        this.deps.log('warn', 'could not re-attach a kernel', { notebook: this.notebookPath, kernelId: work.stored?.stored.id, error: error.message });
        return null;
      });
      if (!session) this.deps.kernels.recordEnded(work.stored.stored.id, 'gone when the server restarted');
    }
    this.recovering = false;
    if (session) {
      this.adopt(session);
      this.deps.events.emit('kernel.status', { notebookPath: this.notebookPath, kernelId: session.id, status: 'started', detail: 're-attached after a server restart' });
      if (work.running) this.catchEndOf(session, work.running);
      this.pump();
      return;
    }
    if (work.running) {
      const how = work.stored ? 'its kernel was gone when the server restarted' : 'no kernel was recorded for it';
      this.finish(work.running, 'lost', `${how}; ${KERNEL_LOST_TEXT}`);
    }
    if (this.queue.length === 0) return;
    if (work.resumeOnNewKernel) {
      for (const execution of this.queue) execution.outputsNote = 'resumed on a new kernel after a server restart: kernel state was reset before it ran';
      this.pump();
      return;
    }
    this.endPending(
      'lost',
      `not run: its kernel was gone when the server restarted; ${KERNEL_LOST_TEXT}. Re-run the notebook from the top (run_all_cells), or start the server with --resume-on-new-kernel to replay pending work on a new kernel.`,
    );
  }

  /**
   * The execution that was running when the previous server died. Its remaining messages come to us (same
   * routing identity); a fence request queued behind it on the shell channel tells us when the kernel has moved
   * past it — if it has not completed by then, it ended while nobody was listening.
   */
  private catchEndOf(session: KernelSession, execution: Execution): void {
    this.running = execution;
    execution.outputsNote = 'the server restarted while this ran: outputs printed while it was down are missing';
    this.mux.register(execution.msgId ?? '', (message) => execution.handle(message));
    if (execution.state === 'awaiting_input') {
      // The prompt went to the dead server; nobody can answer it now. Interrupting ends input() cleanly.
      execution.inputRequest = null;
      void this.interrupt('interrupted');
    }
    const fence = session.createMessage('shell', 'kernel_info_request', {});
    // iopub is ordered: the fence's `idle` comes after the running execution's own `idle` (the shell reply
    // alone could overtake it).
    this.mux.register(fence.header.msg_id, (message) => {
      if (message.channel !== 'iopub' || message.header.msg_type !== 'status' || message.content.execution_state !== 'idle') return;
      this.mux.unregister(fence.header.msg_id);
      this.finish(
        execution,
        'lost',
        'it ended while the server was down: its result and the outputs it printed meanwhile were not observed (kernel state was kept)',
      );
    });
    session.send(fence).catch((error: Error) => this.deps.log('warn', 'recovery fence could not be sent', { error: error.message }));
  }

  /** An execution journaled as running on a kernel that is not this notebook's any more. */
  endOrphan(execution: Execution): void {
    execution.hooks = this;
    this.finish(execution, 'lost', `its kernel was gone when the server restarted; ${KERNEL_LOST_TEXT}`);
  }

  cancel(execution: Execution): 'removed' | 'interrupting' | 'finished' {
    if (execution.isTerminal) return 'finished';
    const index = this.queue.indexOf(execution);
    if (index >= 0) {
      this.queue.splice(index, 1);
      this.finish(execution, 'cancelled', 'cancelled before it ran');
      return 'removed';
    }
    if (this.running === execution) {
      void this.interrupt('cancelled');
      return 'interrupting';
    }
    return 'finished';
  }

  /** Interrupts the running execution; `reason` decides its terminal state once the kernel reports it stopped. */
  async interrupt(reason: StopReason = 'interrupted'): Promise<boolean> {
    const running = this.running;
    if (running) {
      running.stopReason = reason;
      // ipykernel ignores SIGINT until it dispatches the request: hold the interrupt until execute_input says it runs.
      if (!running.executingInKernel) {
        this.interruptOnStart = running;
        return this.session !== null;
      }
    }
    return this.interruptSession();
  }

  async restart(): Promise<void> {
    const session = this.session;
    this.endPending('cancelled', 'not run: the kernel was restarted (kernel state was reset)');
    if (this.running) this.finish(this.running, 'cancelled', 'the kernel was restarted while this ran; kernel state was reset');
    if (!session) return;
    await session.restart();
    this.deps.kernels.recordLive(session.toStored(), this.notebookPath, session.instance);
    this.deps.events.emit('kernel.status', { notebookPath: this.notebookPath, kernelId: session.id, status: 'started', detail: 'restarted' });
    this.pump();
  }

  async shutdown(reason = 'shut down on request'): Promise<void> {
    this.endPending('cancelled', 'not run: the kernel was shut down');
    if (this.running) this.finish(this.running, 'cancelled', 'the kernel was shut down while this ran; kernel state was lost');
    const session = this.session;
    this.detachListeners();
    this.session = null;
    if (!session) return;
    this.deps.kernels.recordEnded(session.id, reason);
    this.deps.events.emit('kernel.status', { notebookPath: this.notebookPath, kernelId: session.id, status: 'shutdown' });
    await session.shutdown();
  }

  /** Leaves the kernel running for a later server process to re-attach (server stop, not kernel stop). */
  async detach(): Promise<void> {
    this.closed = true;
    const session = this.session;
    this.detachListeners();
    this.session = null;
    if (session) await session.detach();
  }

  answerInput(execution: Execution, value: string): void {
    const request = execution.inputRequest;
    const session = this.session;
    if (!request || !session) throw new Error('this execution is not waiting for input');
    const reply = session.createMessage('stdin', 'input_reply', { value }, request.header);
    execution.inputAnswered();
    void session.send(reply);
  }

  // ExecutionHooks -----------------------------------------------------------------------------------------

  stateChanged(execution: Execution): void {
    this.deps.journal.setState(execution.id, execution.state);
    this.deps.events.emit('execution.state', { executionId: execution.id, notebookPath: this.notebookPath, state: execution.state });
  }

  outputsChanged(execution: Execution, msgType: string, content: Record<string, unknown>): void {
    this.deps.flusher.schedule(execution);
    this.deps.events.emit('execution.output', { executionId: execution.id, notebookPath: this.notebookPath, cellId: execution.row.cellId, msgType, content });
  }

  executionCountKnown(execution: Execution): void {
    if (execution.executionCount !== null) this.deps.journal.setExecutionCount(execution.id, execution.executionCount);
  }

  executing(execution: Execution): void {
    if (this.interruptOnStart !== execution) return;
    this.interruptOnStart = null;
    void this.interruptSession();
  }

  displayUpdated(_source: Execution, displayId: string, content: Record<string, unknown>): void {
    for (const target of [...this.recent, ...(this.running ? [this.running] : [])]) {
      if (!target.outputs.updateDisplay(displayId, content)) continue;
      if (target.isTerminal) {
        const change = this.deps.flusher.takeNow(target);
        if (change) this.deps.journal.writeOutputs(target.id, change);
        this.deps.events.emit('execution.outputs_replaced', { executionId: target.id, notebookPath: this.notebookPath, cellId: target.row.cellId });
      } else {
        this.deps.flusher.schedule(target);
      }
    }
  }

  completed(execution: Execution): void {
    this.commitTerminal(execution);
    if (this.running === execution) this.running = null;
    if (execution.state !== 'succeeded') this.stopBatchAfter(execution);
    this.pump();
  }

  // Internals ----------------------------------------------------------------------------------------------

  private pump(): void {
    if (this.closed || this.recovering || this.running || this.queue.length === 0) return;
    const session = this.session;
    // A restart in progress calls pump() again when the kernel is back.
    if (session?.status === 'restarting') return;
    if (!session || session.status === 'dead') {
      const first = this.queue[0];
      if (!first) return;
      this.ensureKernel(first.row.kernelName).then(
        () => this.pump(),
        (error: Error) => this.endPending('lost', `not run: the kernel could not be started: ${error.message}`),
      );
      return;
    }
    const execution = this.queue.shift();
    if (!execution) return;
    this.running = execution;
    const message = session.createMessage('shell', 'execute_request', {
      code: execution.row.code,
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: true,
      stop_on_error: false,
    });
    const msgId = message.header.msg_id;
    execution.msgId = msgId;
    execution.kernelId = session.id;
    execution.kernelInstance = session.instance;
    execution.startedAt = Date.now();
    execution.state = 'running';
    // Journal first: after a crash we must know this request may have reached the kernel, so it is never sent twice.
    this.deps.journal.markRunning(execution.id, session.id, session.instance, msgId, execution.startedAt);
    this.mux.register(msgId, (reply) => execution.handle(reply));
    this.deps.events.emit('execution.started', { executionId: execution.id, notebookPath: this.notebookPath, cellId: execution.row.cellId, kernelId: session.id });
    session.send(message).catch((error: Error) => {
      this.finish(execution, 'lost', `the request could not be sent to the kernel (${error.message}); ${KERNEL_LOST_TEXT} may have been affected`);
    });
  }

  /** Ends an execution that the kernel will not complete for us (cancelled, lost), and moves on. */
  private finish(execution: Execution, state: ExecutionState, statusText: string): void {
    if (execution.isTerminal) return;
    execution.end(state, statusText);
    this.commitTerminal(execution);
    if (this.running === execution) {
      this.running = null;
      if (state !== 'succeeded') this.stopBatchAfter(execution);
      this.pump();
    }
  }

  private commitTerminal(execution: Execution): void {
    if (execution.msgId) this.mux.unregister(execution.msgId);
    const change = this.deps.flusher.takeNow(execution);
    this.deps.journal.finish(
      execution.id,
      {
        state: execution.state,
        finishedAt: execution.finishedAt ?? Date.now(),
        statusText: execution.statusText,
        errorName: execution.error?.ename ?? null,
        errorValue: execution.error?.evalue ?? null,
        executionCount: execution.executionCount,
        outputsDroppedChars: execution.outputs.droppedChars,
        outputsNote: execution.outputsNote,
      },
      change,
    );
    this.recent.push(execution);
    if (this.recent.length > RECENT_LIMIT) this.recent.shift();
    this.deps.events.emit('execution.finished', {
      executionId: execution.id,
      notebookPath: this.notebookPath,
      cellId: execution.row.cellId,
      kind: execution.row.kind,
      state: execution.state,
      executionCount: execution.executionCount,
      statusText: execution.statusText,
      durationMs: execution.startedAt !== null && execution.finishedAt !== null ? execution.finishedAt - execution.startedAt : null,
    });
    this.deps.onTerminal(execution);
  }

  /** A batch with stop_on_error stops at its first execution that did not succeed. */
  private stopBatchAfter(failed: Execution): void {
    const batchId = failed.row.batchId;
    if (!batchId || !failed.row.stopOnError) return;
    const label = failed.row.cellId ? `cell ${failed.row.cellId}` : `execution ${failed.id}`;
    for (const execution of [...this.queue]) {
      if (execution.row.batchId !== batchId) continue;
      this.queue.splice(this.queue.indexOf(execution), 1);
      this.finish(execution, 'cancelled', `not run: an earlier cell of this batch did not succeed (${label}: ${failed.state})`);
    }
  }

  private endPending(state: ExecutionState, statusText: string): void {
    const pending = this.queue.splice(0, this.queue.length);
    for (const execution of pending) this.finish(execution, state, statusText);
  }

  private kernelDied(session: KernelSession, reason: string): void {
    if (this.session !== session) return;
    this.deps.log('warn', 'kernel died', { notebook: this.notebookPath, kernelId: session.id, reason });
    this.detachListeners();
    this.session = null;
    this.deps.kernels.recordEnded(session.id, reason);
    // Release its sockets, timers and connection file (and anything left of its process group).
    session.shutdown().catch((error: Error) => this.deps.log('warn', 'cleanup of a dead kernel failed', { kernelId: session.id, error: error.message }));
    this.deps.events.emit('kernel.status', { notebookPath: this.notebookPath, kernelId: session.id, status: 'dead', detail: reason });
    const running = this.running;
    this.running = null;
    if (running) this.finish(running, 'lost', `the kernel died (${reason}); ${KERNEL_LOST_TEXT}`);
    this.endPending('lost', `not run: the kernel died (${reason}) before this ran; ${KERNEL_LOST_TEXT}. Re-run the notebook from the top (run_all_cells).`);
  }

  private async interruptSession(): Promise<boolean> {
    const session = this.session;
    if (!session) return false;
    await session.interrupt();
    return true;
  }

  private detachListeners(): void {
    for (const unsubscribe of this.unsubscribes) unsubscribe();
    this.unsubscribes = [];
  }
}
