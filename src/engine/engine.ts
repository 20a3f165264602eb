// The engine's front door: accepts executions durably, runs them per notebook, answers for them by id.
import { createHash, randomUUID } from 'node:crypto';
import { dirname } from 'node:path';
import type { KernelProvider, KernelSession } from '../kernel/types.js';
import type { Db } from '../store/db.js';
import { ExecutionJournal, TERMINAL_STATES, type ExecutionKind, type ExecutionRow, type ExecutionState, type ListFilter, type NewExecution } from '../store/executions.js';
import { KernelJournal } from '../store/kernels.js';
import { EngineEvents } from './events.js';
import { Execution, type ExecutionSnapshot } from './execution.js';
import type { NbOutput } from './output-model.js';
import { OutputFlusher } from './output-flusher.js';
import {
  CANCELLED_BEFORE_RUN_TEXT,
  DEFAULT_KERNEL_LIMITS,
  emptyEngineStats,
  finishFields,
  fullOutputChange,
  KernelBreakerOpenError,
  NotebookKernel,
  type EngineStats,
  type KernelLimits,
} from './scheduler.js';

export { KernelBreakerOpenError };

export interface EngineOptions {
  db: Db;
  provider: KernelProvider;
  workspaceRoot: string;
  /** Characters of output kept per execution, in memory and in the journal (head and tail). */
  outputBudgetChars?: number;
  /** Crash-loop breaker and interrupt grace (defaults: 3 deaths in 300 s, 10 s). */
  limits?: Partial<KernelLimits>;
  /** Unfinished executions one kernel accepts (running + waiting); default 1000. */
  queueLimit?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

export interface SubmitRequest {
  notebookPath: string;
  code: string;
  kind: ExecutionKind;
  cellId?: string | null;
  kernelName: string;
}

export class UnknownExecutionError extends Error {
  constructor(id: string) {
    super(`no execution with id '${id}' is known to this workspace's journal. Use list_executions to see recent ids.`);
  }
}

export type Snapshot = ExecutionSnapshot & {
  queuePosition?: number;
  /** The execution kept running `graceMs` after an interrupt was sent at `sentAt` (epoch ms). */
  interruptIgnored?: { sentAt: number; graceMs: number };
};

/** Submissions refused because a kernel's queue is at its limit; nothing of the request was accepted. */
export class QueueFullError extends Error {}

/**
 * The state directory cannot take writes (disk full, read-only, I/O error): nothing of the request was accepted,
 * and what was committed before is untouched (SQLite rolls the transaction back).
 */
export class StateStorageError extends Error {}

/** A user-facing explanation of a failed journal write, or null when it is not a storage problem. */
export function describeStorageError(error: unknown, stateDir: string): string | null {
  const code = typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : '';
  const message = error instanceof Error ? error.message : String(error);
  if (code.startsWith('SQLITE_FULL') || /ENOSPC|disk is full|database or disk is full/i.test(message)) {
    return `the state directory ${stateDir} is full (${message}). Free some space there; the server recovers by itself once it can write again`;
  }
  if (code.startsWith('SQLITE_READONLY') || /EROFS|read-only|readonly/i.test(message)) {
    return `the state directory ${stateDir} is read-only (${message}). Make it writable (or start the server with another --state-dir)`;
  }
  if (code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_CORRUPT') || /EIO\b/.test(message)) {
    return `the journal in ${stateDir} could not be written (${code || message}). Check the disk and the state directory`;
  }
  return null;
}

export const DEFAULT_OUTPUT_BUDGET_CHARS = 8 * 1024 * 1024;

/**
 * While writes are owed to the journal (final states, starts held back), they are retried on this backoff. No
 * event says that a disk has room again, so this is a probe of a failed resource, like a heartbeat, and it exists
 * only while something is owed; any accepted request retries at once as well.
 */
const JOURNAL_RETRY_FIRST_MS = 500;
const JOURNAL_RETRY_MAX_MS = 5_000;

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export class Engine {
  readonly events = new EngineEvents();
  readonly journal: ExecutionJournal;
  readonly kernelJournal: KernelJournal;
  private readonly flusher: OutputFlusher;
  private readonly notebooks = new Map<string, NotebookKernel>();
  /** Unfinished executions, by id; finished ones are answered from the journal. */
  private readonly live = new Map<string, { execution: Execution; kernel: NotebookKernel }>();
  private readonly outputBudgetChars: number;
  private readonly log: NonNullable<EngineOptions['log']>;
  readonly limits: KernelLimits;
  readonly queueLimit: number;
  readonly stats: EngineStats = emptyEngineStats();
  /** Executions some of whose outputs failed to reach the journal (their final write rewrites all of them). */
  private readonly incompleteOutputs = new Set<string>();
  /** Finished executions whose final state could not be journaled yet: answered from memory, written when possible. */
  private readonly unsaved = new Map<string, Execution>();
  private readonly stateDir: string;
  /** The last failed journal write, for the notes that tell callers what is not journaled yet. */
  private lastJournalError: Error | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDelayMs = JOURNAL_RETRY_FIRST_MS;
  private closed = false;

  constructor(private readonly options: EngineOptions) {
    this.journal = new ExecutionJournal(options.db);
    this.kernelJournal = new KernelJournal(options.db);
    this.outputBudgetChars = options.outputBudgetChars ?? DEFAULT_OUTPUT_BUDGET_CHARS;
    this.log = options.log ?? (() => undefined);
    this.limits = { ...DEFAULT_KERNEL_LIMITS, ...options.limits };
    this.queueLimit = options.queueLimit ?? 1000;
    this.stateDir = dirname(options.db.name);
    const journal = this.journal;
    const incomplete = this.incompleteOutputs;
    // The flusher reports failures without the execution: a journal that remembers whose write failed fills the gap.
    const tracking = Object.create(journal) as ExecutionJournal;
    tracking.writeOutputs = (id, change) => {
      try {
        journal.writeOutputs(id, change);
      } catch (error) {
        incomplete.add(id);
        throw error;
      }
    };
    this.flusher = new OutputFlusher(tracking, (error) => {
      this.stats.journalWriteErrors += 1;
      this.lastJournalError = error;
      this.log('error', 'could not journal outputs; the execution goes on and its outputs are written again when it ends', {
        error: describeStorageError(error, this.stateDir) ?? error.message,
      });
    });
  }

  get provider(): KernelProvider {
    return this.options.provider;
  }

  /**
   * Accepts executions: all rows are committed in one transaction before this returns (and so before any kernel
   * sees them). With `batch`, the executions share a batch id and, with `stopOnError`, the rest of the batch is
   * cancelled at the first one that does not succeed.
   */
  submit(requests: SubmitRequest[], batch?: { stopOnError: boolean }): Snapshot[] {
    this.checkAdmission(requests);
    const batchId = batch ? randomUUID() : null;
    const now = Date.now();
    const rows: NewExecution[] = requests.map((request) => ({
      id: randomUUID(),
      notebookPath: request.notebookPath,
      cellId: request.cellId ?? null,
      kind: request.kind,
      code: request.code,
      sourceSha256: sha256(request.code),
      kernelName: request.kernelName,
      batchId,
      stopOnError: batch?.stopOnError ?? true,
      createdAt: now,
    }));
    try {
      this.journal.insert(rows);
    } catch (error) {
      const problem = describeStorageError(error, this.stateDir);
      if (!problem) throw error;
      this.stats.journalWriteErrors += 1;
      this.lastJournalError = error instanceof Error ? error : new Error(String(error));
      this.log('error', 'could not accept executions', { error: problem });
      throw new StateStorageError(`not accepted: ${problem}. Nothing of this request was queued, and earlier executions are unaffected.`);
    }
    // The journal takes writes again: what could not be saved earlier goes in now, before the new work starts.
    this.retryJournal();
    return rows.map((newRow) => {
      const row: ExecutionRow = {
        ...newRow,
        seq: 0,
        state: 'pending',
        kernelId: null,
        kernelInstance: null,
        msgId: null,
        executionCount: null,
        startedAt: null,
        finishedAt: null,
        statusText: null,
        errorName: null,
        errorValue: null,
        outputsDroppedChars: 0,
        outputsNote: null,
      };
      const execution = new Execution(row, this.outputBudgetChars);
      const kernel = this.kernelFor(row.notebookPath);
      this.live.set(row.id, { execution, kernel });
      // Announced before it is enqueued: on an idle kernel enqueue starts it at once, and watchers must see
      // `queued` before `started`.
      const position = kernel.queueLength + (kernel.running ? 1 : 0);
      this.events.emit('execution.queued', {
        executionId: row.id,
        notebookPath: row.notebookPath,
        cellId: row.cellId,
        kind: row.kind,
        code: row.code,
        position,
      });
      kernel.enqueue(execution);
      return execution.snapshot(execution.state === 'pending' ? kernel.positionOf(execution) : undefined);
    });
  }

  /**
   * Refuses the whole request, before anything is journaled, when a notebook's kernel is blocked by the breaker or
   * its queue cannot take all of the request's executions.
   */
  private checkAdmission(requests: SubmitRequest[]): void {
    const perNotebook = new Map<string, number>();
    for (const request of requests) perNotebook.set(request.notebookPath, (perNotebook.get(request.notebookPath) ?? 0) + 1);
    for (const [notebookPath, adding] of perNotebook) {
      const kernel = this.notebooks.get(notebookPath);
      const refusal = kernel?.refusal();
      if (refusal) throw new KernelBreakerOpenError(refusal);
      const unfinished = kernel?.unfinished ?? 0;
      if (unfinished + adding <= this.queueLimit) continue;
      this.stats.queueFullRefusals += 1;
      const running = kernel?.running ? 1 : 0;
      const mustFinish = unfinished + adding - this.queueLimit;
      const drainMs = kernel?.estimateDrainMs(mustFinish) ?? null;
      const when = drainMs !== null ? `about ${Math.ceil(drainMs / 1000)} s` : 'some of them have finished';
      const what = adding > 1 ? `these ${adding} executions (accepted all together or not at all)` : 'this execution';
      throw new QueueFullError(
        `queue full (${unfinished} pending on notebook ${notebookPath}: ${running} running, ${unfinished - running} waiting; the limit is ${this.queueLimit}); ` +
          `retry after ${when}${adding > this.queueLimit ? `, in batches of at most ${this.queueLimit}` : ''}. Nothing of ${what} was accepted; list_executions shows the queue, cancel_execution shortens it.`,
      );
    }
  }

  /**
   * The execution now: from memory while it is unfinished (or its end is not journaled yet), else from the journal.
   * What memory knows beyond the journal is said in a note, so that a caller is never surprised by a restart.
   */
  get(id: string): Snapshot {
    const entry = this.live.get(id);
    if (entry) {
      const { execution, kernel } = entry;
      const snapshot: Snapshot = execution.snapshot(execution.state === 'pending' ? kernel.positionOf(execution) : undefined);
      const ignored = kernel.ignoredInterrupt;
      if (ignored && ignored.executionId === id && !execution.isTerminal) snapshot.interruptIgnored = { sentAt: ignored.sentAt, graceMs: ignored.graceMs };
      const note = this.journalNote(execution, kernel);
      if (note) snapshot.outputsNote = snapshot.outputsNote ? `${snapshot.outputsNote}; ${note}` : note;
      return snapshot;
    }
    const row = this.journal.get(id);
    if (!row) throw new UnknownExecutionError(id);
    return snapshotFromRow(row, this.journal.outputs(id) as NbOutput[], row.state === 'pending' ? this.journal.aheadOf(row) : undefined);
  }

  /**
   * Resolves when the execution reaches a terminal state, or after `timeoutMs` with its current (non-terminal)
   * state — the execution itself goes on. An aborted `signal` resolves early the same way.
   */
  async wait(id: string, timeoutMs: number, signal?: AbortSignal): Promise<Snapshot> {
    const entry = this.live.get(id);
    if (!entry || entry.execution.isTerminal || timeoutMs <= 0) return this.get(id);
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const stop = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
      if (signal) {
        onAbort = () => resolve();
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    try {
      await Promise.race([entry.execution.done, stop]);
    } finally {
      clearTimeout(timer);
      if (signal && onAbort) signal.removeEventListener('abort', onAbort);
    }
    return this.get(id);
  }

  /** Resolves when every listed execution is terminal (used by `run` and batches). */
  async waitAll(ids: string[]): Promise<Snapshot[]> {
    await Promise.all(ids.map((id) => this.live.get(id)?.execution.done));
    return ids.map((id) => this.get(id));
  }

  cancel(id: string): { outcome: 'removed' | 'interrupting' | 'finished'; snapshot: Snapshot } {
    const entry = this.live.get(id);
    if (!entry) return { outcome: 'finished', snapshot: this.get(id) };
    if (entry.execution.state === 'pending' && entry.kernel.pending().includes(entry.execution)) this.journalCancellation(entry.execution);
    const outcome = entry.kernel.cancel(entry.execution);
    return { outcome, snapshot: this.get(id) };
  }

  /** Interrupts the running execution of `id` with a given reason (used for per-cell timeouts). */
  async stop(id: string, reason: 'timed_out' | 'interrupted'): Promise<void> {
    const entry = this.live.get(id);
    if (!entry || entry.kernel.running !== entry.execution) return;
    await entry.kernel.interrupt(reason);
  }

  sendInput(id: string, value: string): Snapshot {
    const entry = this.live.get(id);
    if (!entry || entry.execution.state !== 'awaiting_input') {
      const state = entry ? entry.execution.state : this.get(id).state;
      throw new Error(`execution '${id}' is not waiting for input (it is ${state}). send_input only answers a pending input() prompt.`);
    }
    entry.kernel.answerInput(entry.execution, value);
    return this.get(id);
  }

  /**
   * A pending execution is told `cancelled` only once the journal says so: a cancellation held in memory alone
   * would be undone by a restart, whose recovery runs every pending row.
   */
  private journalCancellation(execution: Execution): void {
    try {
      this.journal.finish(execution.id, { ...finishFields(execution), state: 'cancelled', finishedAt: Date.now(), statusText: CANCELLED_BEFORE_RUN_TEXT }, null);
    } catch (error) {
      const problem = describeStorageError(error, this.stateDir);
      if (!problem) throw error;
      this.stats.journalWriteErrors += 1;
      this.lastJournalError = error instanceof Error ? error : new Error(String(error));
      throw new StateStorageError(
        `not cancelled: ${problem}. Execution ${execution.id} is still pending and nothing of it was sent to the kernel; a cancellation the journal ` +
          `does not hold would be undone by a server restart. Cancel it again once the state directory has room.`,
      );
    }
  }

  /** What memory knows that the journal does not hold yet, for this execution, or null. */
  private journalNote(execution: Execution, kernel: NotebookKernel): string | null {
    const blocked = kernel.waitingForJournal;
    if (blocked && execution.state === 'pending') {
      const problem = describeStorageError(blocked, this.stateDir) ?? `the journal could not be written (${blocked.message})`;
      return (
        `not started yet: the start of this notebook's next execution could not be recorded in the journal because ${problem}. ` +
        `Nothing was sent to the kernel; the queue starts again by itself once the journal can be written`
      );
    }
    if (!this.unsaved.has(execution.id)) return null;
    const error = this.lastJournalError;
    const problem = (error && describeStorageError(error, this.stateDir)) ?? 'the journal could not be written';
    const afterRestart =
      execution.startedAt === null
        ? 'the journal still lists it as pending, so a server restarted before then would run it'
        : 'a server restarted before then could not tell how it ended and would report it lost';
    return `this result is not in the journal yet because ${problem}. It is written there as soon as it can be; ${afterRestart}`;
  }

  /** Retries what is owed to the journal (final states, held-back starts) and keeps retrying while something is. */
  private retryJournal(): void {
    if (this.closed) return;
    this.saveUnsaved();
    for (const kernel of this.notebooks.values()) kernel.resumeAfterJournal();
    if (this.journalOwed()) {
      this.scheduleJournalRetry();
    } else {
      this.retryDelayMs = JOURNAL_RETRY_FIRST_MS;
    }
  }

  private journalOwed(): boolean {
    return this.unsaved.size > 0 || [...this.notebooks.values()].some((kernel) => kernel.waitingForJournal !== null);
  }

  private scheduleJournalRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.retryJournal();
    }, this.retryDelayMs);
    // Owed writes must not keep a finished process alive.
    this.retryTimer.unref();
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, JOURNAL_RETRY_MAX_MS);
  }

  /** Writes the final state of executions whose end could not be journaled earlier; stops at the first failure. */
  private saveUnsaved(): void {
    for (const [id, execution] of this.unsaved) {
      try {
        this.journal.finish(id, finishFields(execution), fullOutputChange(execution));
      } catch {
        return;
      }
      this.unsaved.delete(id);
      this.incompleteOutputs.delete(id);
      this.live.delete(id);
      this.log('info', 'journaled an execution whose end could not be written before', { executionId: id });
    }
  }

  /** From the journal, except that an end the journal could not take yet is shown as memory knows it. */
  list(filter: ListFilter): ExecutionRow[] {
    return this.journal.list(filter).map((row) => {
      const execution = this.unsaved.get(row.id);
      if (!execution) return row;
      const fields = finishFields(execution);
      return { ...row, state: fields.state, finishedAt: fields.finishedAt, statusText: fields.statusText, errorName: fields.errorName, errorValue: fields.errorValue, executionCount: fields.executionCount ?? row.executionCount };
    });
  }

  countsByState(): Record<ExecutionState, number> {
    return this.journal.countsByState();
  }

  /**
   * After a restart: every unfinished execution of the journal is taken over in its original order, and every
   * kernel recorded live is re-attached (or its work ends `lost`, or with `resumeOnNewKernel` replays on a new
   * kernel). Returns at once with what was found; re-attaching goes on in the background per notebook, and a
   * notebook's new work waits behind its recovery.
   */
  recover(options: { resumeOnNewKernel: boolean }): { notebooks: number; running: number; pending: number; kernels: number; done: Promise<void> } {
    const active = this.journal.active();
    const kernelRows = this.kernelJournal.live();
    const notebooks = new Set([...active.map((row) => row.notebookPath), ...kernelRows.map((row) => row.notebookPath)]);
    let running = 0;
    let pending = 0;
    const tasks: Promise<void>[] = [];
    /** Each notebook's newest live kernel: the ones recovery re-attaches (every other kernel process is reaped). */
    const recorded = new Set<string>();
    for (const notebookPath of notebooks) {
      const rows = kernelRows.filter((row) => row.notebookPath === notebookPath);
      const stored = rows[rows.length - 1] ?? null;
      if (stored) recorded.add(stored.stored.id);
      // Older rows for the same notebook are kernels the previous process had already replaced.
      for (const old of rows.slice(0, -1)) this.kernelJournal.recordEnded(old.stored.id, 'superseded by a newer kernel of the same notebook');
      const kernel = this.kernelFor(notebookPath);
      let runningExecution: Execution | null = null;
      const pendingExecutions: Execution[] = [];
      for (const row of active.filter((candidate) => candidate.notebookPath === notebookPath)) {
        const execution = new Execution(row, this.outputBudgetChars);
        this.live.set(row.id, { execution, kernel });
        if (row.state === 'pending') {
          pendingExecutions.push(execution);
          pending += 1;
        } else if (runningExecution === null && row.msgId && stored && row.kernelId === stored.stored.id) {
          execution.outputs.restore(this.journal.outputs(row.id) as NbOutput[]);
          runningExecution = execution;
          running += 1;
        } else {
          // Running on a kernel that is no longer the notebook's: nothing will ever report its end.
          running += 1;
          tasks.push(Promise.resolve().then(() => kernel.endOrphan(execution)));
        }
      }
      tasks.push(kernel.recover({ stored, running: runningExecution, pending: pendingExecutions, resumeOnNewKernel: options.resumeOnNewKernel }));
    }
    // Kernels started but never journaled (or superseded) by the dead process have no owner now: stop them.
    const reaping = this.options.provider.reapUnrecorded?.(recorded);
    if (reaping) {
      tasks.push(
        reaping.then(
          (count) => void (count > 0 && this.log('warn', 'stopped kernel processes that the previous server started but never recorded', { count })),
          (error: Error) => this.log('warn', 'could not look for unrecorded kernel processes', { error: error.message }),
        ),
      );
    }
    this.log('info', 'recovering', { notebooks: notebooks.size, running, pending, kernels: kernelRows.length });
    return { notebooks: notebooks.size, running, pending, kernels: kernelRows.length, done: Promise.all(tasks).then(() => undefined) };
  }

  // Kernels ------------------------------------------------------------------------------------------------

  kernelFor(notebookPath: string): NotebookKernel {
    let kernel = this.notebooks.get(notebookPath);
    if (!kernel) {
      kernel = new NotebookKernel(notebookPath, {
        provider: this.options.provider,
        journal: this.journal,
        kernels: this.kernelJournal,
        events: this.events,
        flusher: this.flusher,
        workspaceRoot: this.options.workspaceRoot,
        limits: this.limits,
        stats: this.stats,
        onTerminal: (execution, saved) => {
          if (saved) {
            this.live.delete(execution.id);
            this.incompleteOutputs.delete(execution.id);
            this.saveUnsaved();
            // Not from inside this kernel's own state change: a held-back queue resumes on the next turn.
            if (this.journalOwed()) setImmediate(() => this.retryJournal());
          } else {
            this.unsaved.set(execution.id, execution);
            this.scheduleJournalRetry();
          }
        },
        waitingForJournal: () => this.scheduleJournalRetry(),
        journalFailed: (what, error, execution) => {
          this.stats.journalWriteErrors += 1;
          this.lastJournalError = error;
          this.log('error', `could not journal ${what}; going on in memory`, {
            executionId: execution?.id,
            error: describeStorageError(error, this.stateDir) ?? error.message,
          });
        },
        outputsIncomplete: (execution) => this.incompleteOutputs.has(execution.id),
        log: this.log,
      });
      this.notebooks.set(notebookPath, kernel);
    }
    return kernel;
  }

  /** The notebook's live kernel, started with `kernelName` when there is none. */
  startKernel(notebookPath: string, kernelName: string): Promise<KernelSession> {
    return this.kernelFor(notebookPath).ensureKernel(kernelName);
  }

  existingKernel(notebookPath: string): NotebookKernel | undefined {
    return this.notebooks.get(notebookPath);
  }

  kernels(): NotebookKernel[] {
    return [...this.notebooks.values()];
  }

  async interruptKernel(notebookPath: string): Promise<boolean> {
    const kernel = this.notebooks.get(notebookPath);
    return kernel ? kernel.interrupt('interrupted') : false;
  }

  /**
   * Interrupts the notebook's running execution and waits, driven by its end or by the grace timer, until it
   * stopped or the interrupt counts as ignored. `sent` is false when the notebook has no kernel.
   */
  async interruptAndWatch(notebookPath: string): Promise<{ sent: boolean; executionId: string | null; outcome: 'stopped' | 'ignored' | 'idle' }> {
    const kernel = this.notebooks.get(notebookPath);
    if (!kernel) return { sent: false, executionId: null, outcome: 'idle' };
    const running = kernel.running;
    const sent = await kernel.interrupt('interrupted');
    if (!sent || !running) return { sent, executionId: running?.id ?? null, outcome: 'idle' };
    return { sent, executionId: running.id, outcome: await kernel.interruptOutcome(running) };
  }

  /**
   * Restarts the notebook's kernel and resets its breaker (after repeated deaths, this starts a fresh kernel).
   * False when there is no kernel to restart.
   */
  async restartKernel(notebookPath: string): Promise<boolean> {
    const kernel = this.notebooks.get(notebookPath);
    if (!kernel) return false;
    return kernel.restart();
  }

  async shutdownKernel(notebookPath: string): Promise<boolean> {
    const kernel = this.notebooks.get(notebookPath);
    if (!kernel?.session) return false;
    await kernel.shutdown();
    return true;
  }

  /**
   * Stops everything. `keep` leaves every kernel running for the next server process to re-attach; `shutdown`
   * stops them all; `shutdown-idle` stops the kernels with nothing queued or running and keeps the others, so
   * accepted work is resumed by the next start instead of lost.
   */
  async close(options: { kernels: 'keep' | 'shutdown' | 'shutdown-idle' }): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.flusher.close();
    this.saveUnsaved();
    await Promise.all(
      [...this.notebooks.values()].map((kernel) => {
        const idle = kernel.running === null && kernel.queueLength === 0;
        if (options.kernels === 'shutdown' || (options.kernels === 'shutdown-idle' && idle)) return kernel.shutdown('server stopped');
        return kernel.detach();
      }),
    );
  }
}

export function snapshotFromRow(row: ExecutionRow, outputs: NbOutput[], queuePosition?: number): Snapshot {
  const snapshot: Snapshot = {
    id: row.id,
    notebookPath: row.notebookPath,
    cellId: row.cellId,
    kind: row.kind,
    code: row.code,
    sourceSha256: row.sourceSha256,
    state: row.state,
    executionCount: row.executionCount,
    outputs,
    createdAt: row.createdAt,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    statusText: row.statusText,
    error: row.errorName !== null ? { ename: row.errorName, evalue: row.errorValue ?? '' } : null,
    awaitingInput: null,
    droppedChars: row.outputsDroppedChars,
    outputsNote: row.outputsNote,
    kernelId: row.kernelId,
    kernelInstance: row.kernelInstance,
    batchId: row.batchId,
  };
  if (queuePosition !== undefined) snapshot.queuePosition = queuePosition;
  return snapshot;
}

export function isTerminal(state: ExecutionState): boolean {
  return TERMINAL_STATES.has(state);
}
