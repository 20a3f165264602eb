// One notebook's kernel and its FIFO: runs the next execution when the previous one completes, driven by events only.
import { randomUUID } from 'node:crypto';
import { dirname } from 'node:path';
import type { JupyterMessage, KernelProvider, KernelSession, Unsubscribe } from '../kernel/types.js';
import type { ExecutionJournal, ExecutionState, FinishFields, OutputChange } from '../store/executions.js';
import type { KernelJournal, KernelRow } from '../store/kernels.js';
import type { EngineEvents } from './events.js';
import { Execution, type ExecutionHooks, type StopReason } from './execution.js';
import { Multiplexer } from './multiplexer.js';
import { OutputFlusher } from './output-flusher.js';

export const KERNEL_LOST_TEXT = 'kernel state was lost';
/** When an interrupt is sent again to a cell still running (see watchInterrupt). */
const INTERRUPT_RESENDS_MS = [1_000, 3_000];
export const CANCELLED_BEFORE_RUN_TEXT = 'cancelled before it ran';

/** Limits that protect a notebook's kernel from crash loops and its callers from silent hangs. */
export interface KernelLimits {
  /** Deaths (or failed starts) within `restartWindowMs` after which the kernel is not started again automatically. */
  restartLimit: number;
  restartWindowMs: number;
  /** How long a running execution may outlive an interrupt before callers are told the kernel ignored it. */
  interruptGraceMs: number;
}

export const DEFAULT_KERNEL_LIMITS: KernelLimits = { restartLimit: 3, restartWindowMs: 300_000, interruptGraceMs: 10_000 };

/** Counters kept by the engine since it started (read by server_status and /metrics). */
export interface EngineStats {
  kernelDeaths: number;
  /** New kernels started for a notebook whose previous kernel had died. */
  restartsAfterDeath: number;
  /** restart_kernel calls that restarted (or, after the breaker opened, started) a kernel. */
  requestedRestarts: number;
  breakerTrips: number;
  interruptsIgnored: number;
  journalWriteErrors: number;
  queueFullRefusals: number;
}

export function emptyEngineStats(): EngineStats {
  return { kernelDeaths: 0, restartsAfterDeath: 0, requestedRestarts: 0, breakerTrips: 0, interruptsIgnored: 0, journalWriteErrors: 0, queueFullRefusals: 0 };
}

interface Death {
  at: number;
  reason: string;
}

/** The kernel died too often: nothing starts it again until restart_kernel. */
export class KernelBreakerOpenError extends Error {}

interface InterruptWatch {
  execution: Execution;
  sentAt: number;
  timer: NodeJS.Timeout;
  resends: NodeJS.Timeout[];
  /** Resolves when the grace period passed with the execution still running. */
  ignored: Promise<void>;
}

export interface SchedulerDeps {
  provider: KernelProvider;
  journal: ExecutionJournal;
  kernels: KernelJournal;
  events: EngineEvents;
  flusher: OutputFlusher;
  workspaceRoot: string;
  limits: KernelLimits;
  stats: EngineStats;
  /**
   * Called when an execution reaches a terminal state (the engine drops it from memory later). `saved` is false
   * when its final state could not be journaled: the engine keeps answering for it from memory and retries.
   */
  onTerminal(execution: Execution, saved: boolean): void;
  /** A journal write failed (disk full, read-only state directory): logged and counted; the work goes on in memory. */
  journalFailed(what: string, error: Error, execution?: Execution): void;
  /** The next execution's start could not be journaled: the queue waits until `resumeAfterJournal` is called. */
  waitingForJournal(kernel: NotebookKernel): void;
  /** Whether some of this execution's outputs never reached the journal (its final write then rewrites them all). */
  outputsIncomplete(execution: Execution): boolean;
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
  /** Recent deaths and failed starts, oldest first, within the breaker's window. */
  private deaths: Death[] = [];
  /** Open after too many deaths in the window: nothing starts this kernel again until restart_kernel. */
  breaker: { openedAt: number; deaths: Death[] } | null = null;
  private lastKernelName: string | null = null;
  private diedSinceStart = false;
  /** Told to the first execution on the kernel that replaces one that died: its variables are not there. */
  private resetNote: string | null = null;
  /** The clean-up of the last dead kernel, which the next start waits for. */
  private releasing: Promise<void> = Promise.resolve();
  private interruptWatch: InterruptWatch | null = null;
  /** The running execution outlived an interrupt by the grace period (cleared when it ends). */
  ignoredInterrupt: { executionId: string; sentAt: number; graceMs: number } | null = null;
  /**
   * Set while the start of the next execution cannot be journaled: nothing is sent to the kernel until the journal
   * takes writes again, so the execution stays `pending` in memory exactly as the journal has it.
   */
  private journalBlocked: Error | null = null;

  constructor(readonly notebookPath: string, private readonly deps: SchedulerDeps) {}

  get queueLength(): number {
    return this.queue.length;
  }

  /** Accepted and not finished: the waiting ones and the running one (what the queue limit counts). */
  get unfinished(): number {
    return this.queue.length + (this.running ? 1 : 0);
  }

  /** Why the queue is held back (the start of its next execution could not be journaled), or null. */
  get waitingForJournal(): Error | null {
    return this.journalBlocked;
  }

  /** The journal takes writes again: retries the start that could not be recorded. */
  resumeAfterJournal(): void {
    if (!this.journalBlocked) return;
    this.journalBlocked = null;
    this.pump();
  }

  /** Why new work for this notebook is refused right now, or null. */
  refusal(): string | null {
    const breaker = this.breaker;
    if (!breaker) return null;
    const last = breaker.deaths[breaker.deaths.length - 1];
    const windowS = Math.round(this.deps.limits.restartWindowMs / 1000);
    return (
      `the kernel of ${this.notebookPath} died ${breaker.deaths.length} times within ${windowS} s (last: ${last?.reason ?? 'unknown'}), ` +
      `so it is not restarted automatically any more. Nothing was accepted. Fix what kills it (e.g. memory use, os._exit, a crashing extension), ` +
      `then call restart_kernel for ${this.notebookPath} to start a fresh kernel (kernel state will be reset) and run again.`
    );
  }

  /** A rough wait, from the durations of recent executions, until `count` of the unfinished ones have finished. */
  estimateDrainMs(count: number): number | null {
    const durations = this.recent
      .filter((execution) => execution.startedAt !== null && execution.finishedAt !== null)
      .map((execution) => (execution.finishedAt ?? 0) - (execution.startedAt ?? 0));
    if (durations.length === 0) return null;
    const mean = durations.reduce((sum, ms) => sum + ms, 0) / durations.length;
    return Math.max(1_000, Math.round(mean * count));
  }

  /**
   * Resolves `stopped` when the execution ends, or `ignored` when it is still running `interruptGraceMs` after an
   * interrupt was sent to it (the caller can then restart the kernel). Without an interrupt in flight: `stopped`
   * once it ends.
   */
  interruptOutcome(execution: Execution): Promise<'stopped' | 'ignored'> {
    const ended = execution.done.then(() => 'stopped' as const);
    const watch = this.interruptWatch;
    if (this.ignoredInterrupt?.executionId === execution.id) return Promise.resolve('ignored');
    if (!watch || watch.execution !== execution) return ended;
    return Promise.race([ended, watch.ignored.then(() => 'ignored' as const)]);
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
    const refusal = this.refusal();
    if (refusal) return Promise.reject(new KernelBreakerOpenError(refusal));
    const id = randomUUID();
    const absolute = `${this.deps.workspaceRoot}/${this.notebookPath}`;
    this.starting = this.releasing
      .then(() => this.deps.provider.start({ kernelName, cwd: dirname(absolute), id }))
      .then((session) => {
        this.adopt(session);
        if (this.diedSinceStart) this.deps.stats.restartsAfterDeath += 1;
        this.diedSinceStart = false;
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
    this.lastKernelName = session.kernelName;
    this.record('the live kernel', () => this.deps.kernels.recordLive(session.toStored(), this.notebookPath, session.instance));
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
      const storedId = work.stored.stored.id;
      if (!session) this.record('a kernel end', () => this.deps.kernels.recordEnded(storedId, 'gone when the server restarted'));
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
      const how = !work.stored
        ? 'no kernel was recorded for it'
        : work.stored.stored.provider !== this.deps.provider.kind
          ? `its ${work.stored.stored.provider} kernel could not be re-attached now that this server runs ${this.deps.provider.kind} kernels`
          : 'its kernel was gone when the server restarted';
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
    execution.outputsNote = session.replaysMissedMessages
      ? 'the server restarted while this ran: the Jupyter server replayed what the kernel printed meanwhile'
      : 'the server restarted while this ran: outputs printed while it was down are missing';
    this.mux.register(execution.msgId ?? '', (message) => execution.handle(message));
    if (execution.state === 'awaiting_input') {
      // The prompt went to the dead server; nobody can answer it now. Interrupting ends input() cleanly.
      execution.inputRequest = null;
      void this.interrupt('interrupted');
    }
    // iopub is ordered: the fence's `idle` comes after the running execution's own `idle` (the shell reply
    // alone could overtake it).
    this.fence(
      session,
      (message) => message.channel === 'iopub' && message.header.msg_type === 'status' && message.content.execution_state === 'idle',
      () =>
        this.finish(
          execution,
          'lost',
          'it ended while the server was down: its result and the outputs it printed meanwhile were not observed (kernel state was kept)',
        ),
      'recovery fence',
    );
  }

  /**
   * Sends a kernel_info_request on shell as a fence: the kernel handles shell requests one at a time and answers
   * them in order, so once the fence's message picked by `passedOn` arrives, the kernel is past everything before it.
   */
  private fence(session: KernelSession, passedOn: (message: JupyterMessage) => boolean, passed: () => void, what: string): void {
    const fence = session.createMessage('shell', 'kernel_info_request', {});
    this.mux.register(fence.header.msg_id, (message) => {
      if (!passedOn(message)) return;
      this.mux.unregister(fence.header.msg_id);
      passed();
    });
    session.send(fence).catch((error: Error) => this.deps.log('warn', `${what} could not be sent`, { error: error.message }));
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
      this.finish(execution, 'cancelled', CANCELLED_BEFORE_RUN_TEXT);
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
      this.watchInterrupt(running);
      // ipykernel ignores SIGINT until it dispatches the request: hold the interrupt until execute_input says it runs.
      if (!running.executingInKernel) {
        this.interruptOnStart = running;
        return this.session !== null;
      }
    }
    return this.interruptSession();
  }

  /**
   * Restarts the kernel, and resets the breaker: after repeated deaths (no session left) this is what starts a fresh
   * kernel again. Resolves false when there was nothing to restart.
   */
  async restart(): Promise<boolean> {
    const session = this.session;
    const blocked = this.breaker !== null;
    this.breaker = null;
    this.deaths = [];
    if (!session && !blocked) return false;
    // Whoever restarts knows the state goes.
    this.resetNote = null;
    this.endPending('cancelled', 'not run: the kernel was restarted (kernel state was reset)');
    if (this.running) this.finish(this.running, 'cancelled', 'the kernel was restarted while this ran; kernel state was reset');
    this.deps.stats.requestedRestarts += 1;
    if (!session) {
      this.diedSinceStart = false;
      await this.ensureKernel(this.lastKernelName ?? 'python3').catch((error: Error) => {
        this.noteDeath(`it failed to start: ${error.message}`);
        throw error;
      });
      this.pump();
      return true;
    }
    await session.restart();
    this.record('the live kernel', () => this.deps.kernels.recordLive(session.toStored(), this.notebookPath, session.instance));
    this.deps.events.emit('kernel.status', { notebookPath: this.notebookPath, kernelId: session.id, status: 'started', detail: 'restarted' });
    this.pump();
    return true;
  }

  async shutdown(reason = 'shut down on request'): Promise<void> {
    this.clearInterruptWatch();
    this.endPending('cancelled', 'not run: the kernel was shut down');
    if (this.running) this.finish(this.running, 'cancelled', 'the kernel was shut down while this ran; kernel state was lost');
    const session = this.session;
    this.detachListeners();
    this.session = null;
    if (!session) return;
    this.record('a kernel end', () => this.deps.kernels.recordEnded(session.id, reason));
    this.deps.events.emit('kernel.status', { notebookPath: this.notebookPath, kernelId: session.id, status: 'shutdown' });
    await session.shutdown();
  }

  /** Leaves the kernel running for a later server process to re-attach (server stop, not kernel stop). */
  async detach(): Promise<void> {
    this.closed = true;
    this.clearInterruptWatch();
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
    this.record('a state change', () => this.deps.journal.setState(execution.id, execution.state), execution);
    this.deps.events.emit('execution.state', { executionId: execution.id, notebookPath: this.notebookPath, state: execution.state });
  }

  outputsChanged(execution: Execution, msgType: string, content: Record<string, unknown>): void {
    this.deps.flusher.schedule(execution);
    this.deps.events.emit('execution.output', { executionId: execution.id, notebookPath: this.notebookPath, cellId: execution.row.cellId, msgType, content });
  }

  executionCountKnown(execution: Execution): void {
    const count = execution.executionCount;
    if (count !== null) this.record('an execution count', () => this.deps.journal.setExecutionCount(execution.id, count), execution);
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
        if (change) this.record('updated outputs', () => this.deps.journal.writeOutputs(target.id, change), target);
        this.deps.events.emit('execution.outputs_replaced', { executionId: target.id, notebookPath: this.notebookPath, cellId: target.row.cellId });
      } else {
        this.deps.flusher.schedule(target);
      }
    }
  }

  idleWithoutReply(execution: Execution): void {
    const session = this.session;
    if (!session || this.running !== execution) return;
    // A reply still on its way comes before the fence's own reply on the shell channel; if the fence answers first,
    // the kernel dropped the request (seen: an interrupt taken by ipykernel's request handling, before the code ran).
    this.fence(
      session,
      (message) => message.channel === 'shell' && message.header.msg_type === 'kernel_info_reply',
      () => {
        if (execution.isTerminal || execution.replied) return;
        const noReply = 'the kernel went idle without replying to this request';
        const reason = execution.stopReason;
        if (reason === null) this.finish(execution, 'failed', `${noReply} (an error in the kernel's own request handling: see the kernel log)`);
        else if (reason === 'timed_out') this.finish(execution, 'timed_out', `the execution ran past its timeout and was interrupted; ${noReply}`);
        else this.finish(execution, reason, `interrupted on request; ${noReply}: the interrupt reached it before or around the code, which may not have run`);
      },
      'the reply check',
    );
  }

  completed(execution: Execution): void {
    this.commitTerminal(execution);
    if (this.running === execution) this.running = null;
    if (execution.state !== 'succeeded') this.stopBatchAfter(execution);
    this.pump();
  }

  // Internals ----------------------------------------------------------------------------------------------

  private pump(): void {
    if (this.closed || this.recovering || this.journalBlocked || this.running || this.queue.length === 0) return;
    const session = this.session;
    // A restart in progress calls pump() again when the kernel is back.
    if (session?.status === 'restarting') return;
    if (!session || session.status === 'dead') {
      const first = this.queue[0];
      if (!first) return;
      this.ensureKernel(first.row.kernelName).then(
        () => this.pump(),
        (error: Error) => {
          if (!(error instanceof KernelBreakerOpenError)) this.noteDeath(`it failed to start: ${error.message}`);
          this.endPending('lost', `not run: the kernel could not be started: ${error.message}${this.breakerNote()}`);
        },
      );
      return;
    }
    const execution = this.queue[0];
    if (!execution) return;
    const message = session.createMessage('shell', 'execute_request', {
      code: execution.row.code,
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: true,
      stop_on_error: false,
    });
    const msgId = message.header.msg_id;
    const startedAt = Date.now();
    // Journal first: after a crash we must know this request may have reached the kernel, so it is never sent twice.
    // If that cannot be recorded, it is neither sent nor ended: it stays pending, as the journal has it, so what a
    // caller is told and what a restarted server finds agree (ending it `lost` here could not be journaled either,
    // and recovery would then run work the caller was told had not run). The queue waits for the journal.
    const failure = this.tryRecord('the start of an execution', () => this.deps.journal.markRunning(execution.id, session.id, session.instance, msgId, startedAt), execution);
    if (failure) {
      this.journalBlocked = failure;
      this.deps.waitingForJournal(this);
      return;
    }
    this.queue.shift();
    this.running = execution;
    execution.msgId = msgId;
    execution.kernelId = session.id;
    execution.kernelInstance = session.instance;
    execution.startedAt = startedAt;
    if (this.resetNote) execution.outputsNote ??= this.resetNote;
    this.resetNote = null;
    execution.state = 'running';
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
    if (this.interruptWatch?.execution === execution) this.clearInterruptWatch();
    const pendingChange = this.deps.flusher.takeNow(execution);
    // Outputs that failed to reach the journal earlier are lost from the change stream: write them all again.
    const change = this.deps.outputsIncomplete(execution) ? fullOutputChange(execution) : pendingChange;
    const saved = this.record('the final state of an execution', () => this.deps.journal.finish(execution.id, finishFields(execution), change), execution);
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
    this.deps.onTerminal(execution, saved);
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
    this.deps.stats.kernelDeaths += 1;
    this.diedSinceStart = true;
    this.resetNote = `the previous kernel died (${reason}), so this ran on a new kernel: kernel state was reset (variables and imports from earlier cells are gone)`;
    this.noteDeath(reason);
    this.record('a kernel end', () => this.deps.kernels.recordEnded(session.id, reason));
    // Release its sockets, timers and connection file (and anything left of its process group); a remote kernel
    // that its server restarted is kept for the next start rather than deleted.
    // The next start waits for this: it may reuse what is released.
    this.releasing = session.release().catch((error: Error) => this.deps.log('warn', 'cleanup of a dead kernel failed', { kernelId: session.id, error: error.message }));
    const note = this.breakerNote();
    this.deps.events.emit('kernel.status', { notebookPath: this.notebookPath, kernelId: session.id, status: 'dead', detail: `${reason}${note}` });
    const running = this.running;
    this.running = null;
    if (running) this.finish(running, 'lost', `the kernel died (${reason}); ${KERNEL_LOST_TEXT}${note}`);
    this.endPending('lost', `not run: the kernel died (${reason}) before this ran; ${KERNEL_LOST_TEXT}. Re-run the notebook from the top (run_all_cells).${note}`);
  }

  /** Counts a death (or failed start) against the breaker's window, and opens the breaker at the limit. */
  private noteDeath(reason: string): void {
    const now = Date.now();
    const { restartLimit, restartWindowMs } = this.deps.limits;
    this.deaths = [...this.deaths.filter((death) => now - death.at < restartWindowMs), { at: now, reason }];
    if (this.breaker || this.deaths.length < restartLimit) return;
    this.breaker = { openedAt: now, deaths: [...this.deaths] };
    this.deps.stats.breakerTrips += 1;
    this.deps.log('error', 'kernel keeps dying: not restarting it automatically until restart_kernel', {
      notebook: this.notebookPath,
      deaths: this.deaths.length,
      windowS: restartWindowMs / 1000,
      last: reason,
    });
  }

  private breakerNote(): string {
    if (!this.breaker) return '';
    return ` It has died ${this.breaker.deaths.length} times within ${Math.round(this.deps.limits.restartWindowMs / 1000)} s, so it will not be restarted automatically: call restart_kernel to start a fresh one.`;
  }

  /** Starts the grace period of an interrupt sent to the running execution (the first interrupt sets the clock). */
  private watchInterrupt(execution: Execution): void {
    if (this.interruptWatch?.execution === execution) return;
    this.clearInterruptWatch();
    const graceMs = this.deps.limits.interruptGraceMs;
    const sentAt = Date.now();
    let fire: () => void = () => undefined;
    const ignored = new Promise<void>((resolve) => {
      fire = resolve;
    });
    const timer = setTimeout(() => {
      if (this.running !== execution || execution.isTerminal) return;
      this.ignoredInterrupt = { executionId: execution.id, sentAt, graceMs };
      this.deps.stats.interruptsIgnored += 1;
      this.deps.log('warn', 'the kernel ignored an interrupt', { notebook: this.notebookPath, executionId: execution.id, graceS: graceMs / 1000 });
      fire();
    }, graceMs);
    // A pending grace period must not keep a finished process alive.
    timer.unref();
    // A SIGINT that lands after execute_input but before the cell's code really runs is swallowed by the kernel's
    // own machinery (seen under CPU load: `while True: pass` then runs on). Sent again a couple of times within
    // the grace period, it reaches the code; a cell that handles KeyboardInterrupt and goes on is rare, and one
    // that ignores interrupts on purpose is still reported as ignored.
    const resends = INTERRUPT_RESENDS_MS.filter((delayMs) => delayMs < graceMs).map((delayMs) => {
      const resend = setTimeout(() => {
        if (this.running !== execution || execution.isTerminal || !execution.executingInKernel) return;
        this.interruptSession().catch((error: Error) => this.deps.log('warn', 'could not send the interrupt again', { error: error.message }));
      }, delayMs);
      resend.unref();
      return resend;
    });
    this.interruptWatch = { execution, sentAt, timer, resends, ignored };
  }

  private clearInterruptWatch(): void {
    if (this.interruptWatch) clearTimeout(this.interruptWatch.timer);
    for (const resend of this.interruptWatch?.resends ?? []) clearTimeout(resend);
    this.interruptWatch = null;
    this.ignoredInterrupt = null;
  }

  /** Runs a journal write; a failure (disk full, read-only state directory) is reported, counted and survived. */
  private record(what: string, write: () => void, execution?: Execution): boolean {
    return this.tryRecord(what, write, execution) === null;
  }

  /** `record`, answering the error of a failed write (or null). */
  private tryRecord(what: string, write: () => void, execution?: Execution): Error | null {
    try {
      write();
      return null;
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      this.deps.journalFailed(what, failure, execution);
      return failure;
    }
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

export function finishFields(execution: Execution): FinishFields {
  return {
    state: execution.state,
    finishedAt: execution.finishedAt ?? Date.now(),
    statusText: execution.statusText,
    errorName: execution.error?.ename ?? null,
    errorValue: execution.error?.evalue ?? null,
    executionCount: execution.executionCount,
    outputsDroppedChars: execution.outputs.droppedChars,
    outputsNote: execution.outputsNote,
  };
}

/** Every output of the execution, as a change that replaces what the journal holds. */
export function fullOutputChange(execution: Execution): OutputChange {
  const outputs = execution.outputs.outputs();
  return { upserts: outputs.map((output, index) => [index, JSON.stringify(output)]), count: outputs.length };
}
