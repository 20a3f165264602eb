// Which executions were started as MCP tasks, kept in the workspace's SQLite journal so task ids outlive the server.
import { EventEmitter } from 'node:events';
import type { Db } from '../store/db.js';

/** The tools that can run as MCP tasks, and so the only values of `tool`. */
export const TASK_TOOLS = ['execute_cell', 'execute_code', 'run_all_cells'] as const;
export type TaskTool = (typeof TASK_TOOLS)[number];

export interface TaskRecord {
  /** The execution id for execute_cell / execute_code, the batch id for run_all_cells. */
  taskId: string;
  tool: TaskTool;
  notebookPath: string;
  /** In run order; empty when run_all_cells found no code cell to run. */
  executionIds: string[];
  createdAt: number;
  /** Set by tasks/cancel: the task stays `cancelled` whatever its executions do afterwards. */
  cancelledAt: number | null;
  /** Acceptance order, for listing newest first. */
  seq: number;
}

interface RawTask {
  seq: number;
  task_id: string;
  tool: string;
  notebook_path: string;
  execution_ids: string;
  created_at: number;
  cancelled_at: number | null;
}


function fromRaw(raw: RawTask): TaskRecord {
  const ids = JSON.parse(raw.execution_ids) as unknown;
  return {
    seq: raw.seq,
    taskId: raw.task_id,
    tool: (TASK_TOOLS as readonly string[]).includes(raw.tool) ? (raw.tool as TaskTool) : 'execute_code',
    notebookPath: raw.notebook_path,
    executionIds: Array.isArray(ids) ? ids.filter((id): id is string => typeof id === 'string') : [],
    createdAt: raw.created_at,
    cancelledAt: raw.cancelled_at,
  };
}

export class TaskJournal {
  private readonly insertStatement;
  private readonly getStatement;
  private readonly pageStatement;
  private readonly firstPageStatement;
  private readonly cancelStatement;
  /** Tells waiting tasks/result calls (of any session) that a task was cancelled. */
  private readonly cancelled = new EventEmitter();

  constructor(db: Db) {
    this.insertStatement = db.prepare(`INSERT INTO mcp_tasks (task_id, tool, notebook_path, execution_ids, created_at)
      VALUES (@taskId, @tool, @notebookPath, @executionIds, @createdAt)`);
    this.getStatement = db.prepare('SELECT * FROM mcp_tasks WHERE task_id = ?');
    this.firstPageStatement = db.prepare('SELECT * FROM mcp_tasks ORDER BY seq DESC LIMIT ?');
    this.pageStatement = db.prepare('SELECT * FROM mcp_tasks WHERE seq < ? ORDER BY seq DESC LIMIT ?');
    this.cancelStatement = db.prepare('UPDATE mcp_tasks SET cancelled_at = ? WHERE task_id = ? AND cancelled_at IS NULL');
    this.cancelled.setMaxListeners(0);
  }

  /** Committed before it returns: the task id is durable before the client hears of it. */
  insert(task: Omit<TaskRecord, 'seq' | 'cancelledAt'>): TaskRecord {
    this.insertStatement.run({ ...task, executionIds: JSON.stringify(task.executionIds) });
    return this.get(task.taskId)!;
  }

  get(taskId: string): TaskRecord | undefined {
    const raw = this.getStatement.get(taskId) as RawTask | undefined;
    return raw ? fromRaw(raw) : undefined;
  }

  /** Newest first; `beforeSeq` continues an earlier page. */
  page(limit: number, beforeSeq?: number): TaskRecord[] {
    const rows = (beforeSeq === undefined ? this.firstPageStatement.all(limit) : this.pageStatement.all(beforeSeq, limit)) as RawTask[];
    return rows.map(fromRaw);
  }

  markCancelled(taskId: string, at: number): void {
    this.cancelStatement.run(at, taskId);
    this.cancelled.emit(taskId);
  }

  onCancelled(taskId: string, listener: () => void): () => void {
    this.cancelled.on(taskId, listener);
    return () => this.cancelled.off(taskId, listener);
  }
}
