// The execution journal: every accepted execution, its state changes and its outputs, in SQLite.
import type { Db } from './db.js';

export type ExecutionState =
  | 'pending'
  | 'running'
  | 'awaiting_input'
  | 'succeeded'
  | 'failed'
  | 'cancelled'
  | 'interrupted'
  | 'timed_out'
  | 'lost';

export const TERMINAL_STATES: ReadonlySet<ExecutionState> = new Set(['succeeded', 'failed', 'cancelled', 'interrupted', 'timed_out', 'lost']);
export const ALL_STATES: readonly ExecutionState[] = ['pending', 'running', 'awaiting_input', 'succeeded', 'failed', 'cancelled', 'interrupted', 'timed_out', 'lost'];

export type ExecutionKind = 'cell' | 'code';

export interface NewExecution {
  id: string;
  notebookPath: string;
  cellId: string | null;
  kind: ExecutionKind;
  code: string;
  sourceSha256: string;
  kernelName: string;
  batchId: string | null;
  stopOnError: boolean;
  createdAt: number;
}

export interface ExecutionRow extends NewExecution {
  seq: number;
  state: ExecutionState;
  kernelId: string | null;
  kernelInstance: number | null;
  msgId: string | null;
  executionCount: number | null;
  startedAt: number | null;
  finishedAt: number | null;
  statusText: string | null;
  errorName: string | null;
  errorValue: string | null;
  outputsDroppedChars: number;
  outputsNote: string | null;
}

export interface FinishFields {
  state: ExecutionState;
  finishedAt: number;
  statusText: string | null;
  errorName: string | null;
  errorValue: string | null;
  executionCount: number | null;
  outputsDroppedChars: number;
  outputsNote: string | null;
}

/** A change to an execution's stored outputs: rows to upsert by index, and the new output count. */
export interface OutputChange {
  upserts: Array<[index: number, outputJson: string]>;
  count: number;
}

interface RawRow {
  seq: number;
  id: string;
  notebook_path: string;
  cell_id: string | null;
  kind: string;
  code: string;
  source_sha256: string;
  kernel_name: string;
  state: string;
  batch_id: string | null;
  stop_on_error: number;
  kernel_id: string | null;
  kernel_instance: number | null;
  msg_id: string | null;
  execution_count: number | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  status_text: string | null;
  error_name: string | null;
  error_value: string | null;
  outputs_dropped_chars: number;
  outputs_note: string | null;
}

function fromRaw(raw: RawRow): ExecutionRow {
  return {
    seq: raw.seq,
    id: raw.id,
    notebookPath: raw.notebook_path,
    cellId: raw.cell_id,
    kind: raw.kind as ExecutionKind,
    code: raw.code,
    sourceSha256: raw.source_sha256,
    kernelName: raw.kernel_name,
    state: raw.state as ExecutionState,
    batchId: raw.batch_id,
    stopOnError: raw.stop_on_error === 1,
    kernelId: raw.kernel_id,
    kernelInstance: raw.kernel_instance,
    msgId: raw.msg_id,
    executionCount: raw.execution_count,
    createdAt: raw.created_at,
    startedAt: raw.started_at,
    finishedAt: raw.finished_at,
    statusText: raw.status_text,
    errorName: raw.error_name,
    errorValue: raw.error_value,
    outputsDroppedChars: raw.outputs_dropped_chars,
    outputsNote: raw.outputs_note,
  };
}

export interface ListFilter {
  notebookPath?: string;
  state?: ExecutionState;
  limit?: number;
}

/** Prepared once, used synchronously: better-sqlite3 commits before the call returns. */
export class ExecutionJournal {
  private readonly insertStatement;
  private readonly markRunningStatement;
  private readonly setStateStatement;
  private readonly setCountStatement;
  private readonly finishStatement;
  private readonly upsertOutputStatement;
  private readonly trimOutputsStatement;
  private readonly getStatement;
  private readonly outputsStatement;
  private readonly activeStatement;
  private readonly countsStatement;
  private readonly activeCountsStatement;
  private readonly stateOfStatement;
  /**
   * Terminal executions by state, counted once and then kept up to date by the writes below: terminal rows are
   * never deleted, so after the first count only state changes move these numbers. (A full count is a scan of the
   * whole journal, 20 ms at 100,000 executions, and /metrics asks on every scrape.)
   */
  private terminalCounts: Map<ExecutionState, number> | null = null;
  /** `PRAGMA data_version` when they were counted: it moves when another connection (process) commits. */
  private countedAtVersion = -1;
  private readonly dataVersionStatement;
  private readonly aheadStatement;
  private readonly insertMany;
  private readonly applyOutputChange;
  private readonly finishWithOutputs;

  constructor(private readonly db: Db) {
    this.insertStatement = db.prepare(`INSERT INTO execution_queue
      (id, notebook_path, cell_id, kind, code, source_sha256, kernel_name, state, batch_id, stop_on_error, created_at)
      VALUES (@id, @notebookPath, @cellId, @kind, @code, @sourceSha256, @kernelName, 'pending', @batchId, @stopOnError, @createdAt)`);
    this.markRunningStatement = db.prepare(`UPDATE execution_queue
      SET state = 'running', kernel_id = ?, kernel_instance = ?, msg_id = ?, started_at = ? WHERE id = ?`);
    this.setStateStatement = db.prepare('UPDATE execution_queue SET state = ? WHERE id = ?');
    this.setCountStatement = db.prepare('UPDATE execution_queue SET execution_count = ? WHERE id = ?');
    this.finishStatement = db.prepare(`UPDATE execution_queue SET state = @state, finished_at = @finishedAt,
      status_text = @statusText, error_name = @errorName, error_value = @errorValue,
      execution_count = COALESCE(@executionCount, execution_count),
      outputs_dropped_chars = @outputsDroppedChars, outputs_note = @outputsNote WHERE id = @id`);
    this.upsertOutputStatement = db.prepare('INSERT OR REPLACE INTO execution_outputs (execution_id, idx, output) VALUES (?, ?, ?)');
    this.trimOutputsStatement = db.prepare('DELETE FROM execution_outputs WHERE execution_id = ? AND idx >= ?');
    this.getStatement = db.prepare('SELECT * FROM execution_queue WHERE id = ?');
    this.outputsStatement = db.prepare('SELECT output FROM execution_outputs WHERE execution_id = ? ORDER BY idx').pluck();
    this.activeStatement = db.prepare(`SELECT * FROM execution_queue WHERE state IN ('pending', 'running', 'awaiting_input') ORDER BY seq`);
    this.countsStatement = db.prepare('SELECT state, COUNT(*) AS n FROM execution_queue GROUP BY state');
    // Answered from the partial index execution_active: as cheap as the number of unfinished executions.
    this.activeCountsStatement = db.prepare(`SELECT state, COUNT(*) AS n FROM execution_queue
      WHERE state IN ('pending', 'running', 'awaiting_input') GROUP BY state`);
    this.stateOfStatement = db.prepare('SELECT state FROM execution_queue WHERE id = ?').pluck();
    this.dataVersionStatement = db.prepare('PRAGMA data_version').pluck();
    this.aheadStatement = db.prepare(`SELECT COUNT(*) FROM execution_queue
      WHERE notebook_path = ? AND seq < ? AND state IN ('pending', 'running', 'awaiting_input')`).pluck();

    this.insertMany = db.transaction((rows: NewExecution[]) => {
      for (const row of rows) this.insertStatement.run({ ...row, stopOnError: row.stopOnError ? 1 : 0 });
    });
    this.applyOutputChange = db.transaction((id: string, change: OutputChange) => {
      for (const [index, json] of change.upserts) this.upsertOutputStatement.run(id, index, json);
      this.trimOutputsStatement.run(id, change.count);
    });
    this.finishWithOutputs = db.transaction((id: string, fields: FinishFields, change: OutputChange | null) => {
      if (change) this.applyOutputChange(id, change);
      this.finishStatement.run({ ...fields, id });
    });
  }

  /** Commits all rows in one transaction; when this returns, the executions are durable. */
  insert(rows: NewExecution[]): void {
    this.insertMany(rows);
  }

  markRunning(id: string, kernelId: string, kernelInstance: number, msgId: string, startedAt: number): void {
    const before = this.stateBefore(id);
    this.markRunningStatement.run(kernelId, kernelInstance, msgId, startedAt, id);
    this.counted(before, 'running');
  }

  setState(id: string, state: ExecutionState): void {
    const before = this.stateBefore(id);
    this.setStateStatement.run(state, id);
    this.counted(before, state);
  }

  setExecutionCount(id: string, count: number): void {
    this.setCountStatement.run(count, id);
  }

  writeOutputs(id: string, change: OutputChange): void {
    this.applyOutputChange(id, change);
  }

  finish(id: string, fields: FinishFields, change: OutputChange | null): void {
    const before = this.stateBefore(id);
    this.finishWithOutputs(id, fields, change);
    this.counted(before, fields.state);
  }

  /** A row's state before a write, when the terminal counts are being kept (one primary-key read). */
  private stateBefore(id: string): ExecutionState | undefined {
    return this.terminalCounts ? (this.stateOfStatement.get(id) as ExecutionState | undefined) : undefined;
  }

  /** Moves the terminal counts for a committed change of one row's state (none when the row did not exist). */
  private counted(before: ExecutionState | undefined, after: ExecutionState): void {
    const counts = this.terminalCounts;
    if (!counts || before === undefined || before === after) return;
    if (TERMINAL_STATES.has(before)) counts.set(before, (counts.get(before) ?? 0) - 1);
    if (TERMINAL_STATES.has(after)) counts.set(after, (counts.get(after) ?? 0) + 1);
  }

  get(id: string): ExecutionRow | undefined {
    const raw = this.getStatement.get(id) as RawRow | undefined;
    return raw ? fromRaw(raw) : undefined;
  }

  outputs(id: string): unknown[] {
    return (this.outputsStatement.all(id) as string[]).map((json) => JSON.parse(json) as unknown);
  }

  /** Unfinished executions in acceptance order (what recovery resumes). */
  active(): ExecutionRow[] {
    return (this.activeStatement.all() as RawRow[]).map(fromRaw);
  }

  /** How many unfinished executions of the same notebook were accepted before this one. */
  aheadOf(row: ExecutionRow): number {
    return this.aheadStatement.get(row.notebookPath, row.seq) as number;
  }

  list(filter: ListFilter): ExecutionRow[] {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.notebookPath !== undefined) {
      where.push('notebook_path = ?');
      params.push(filter.notebookPath);
    }
    if (filter.state !== undefined) {
      where.push('state = ?');
      params.push(filter.state);
    }
    const sql = `SELECT * FROM execution_queue ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`;
    params.push(Math.max(1, Math.min(filter.limit ?? 50, 1000)));
    return (this.db.prepare(sql).all(...params) as RawRow[]).map(fromRaw);
  }

  countsByState(): Record<ExecutionState, number> {
    const counts = Object.fromEntries(ALL_STATES.map((state) => [state, 0])) as Record<ExecutionState, number>;
    const version = this.dataVersionStatement.get() as number;
    // Another process wrote to the journal (a takeover, a `run` beside the server): what it changed is not known here.
    if (!this.terminalCounts || version !== this.countedAtVersion) {
      this.countedAtVersion = version;
      const terminal = new Map<ExecutionState, number>();
      for (const { state, n } of this.countsStatement.all() as Array<{ state: ExecutionState; n: number }>) if (TERMINAL_STATES.has(state)) terminal.set(state, n);
      this.terminalCounts = terminal;
    }
    for (const [state, n] of this.terminalCounts) counts[state] = n;
    for (const { state, n } of this.activeCountsStatement.all() as Array<{ state: ExecutionState; n: number }>) counts[state] = n;
    return counts;
  }
}
