// How a task's executions read as an MCP task: status (working / input_required / completed / cancelled) and message.
import type { Task } from '@modelcontextprotocol/sdk/types.js';
import { TERMINAL_STATES, type ExecutionState } from '../store/executions.js';
import type { TaskRecord } from './task-journal.js';

/** What the status of a task needs to know about one of its executions (no outputs: listing stays cheap). */
export interface ExecutionView {
  id: string;
  state: ExecutionState;
  cellId: string | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  executionCount: number | null;
  statusText: string | null;
  errorName: string | null;
  errorValue: string | null;
  /** How many executions are ahead of a pending one. */
  queuePosition?: number;
  /** The open input() prompt of an execution that is awaiting input. */
  prompt?: { prompt: string; password: boolean } | null;
}

/** A hint for clients that poll tasks/get; tasks/result needs none (it answers when the work ends). */
export const POLL_INTERVAL_MS = 1000;

export function isTerminalState(state: ExecutionState): boolean {
  return TERMINAL_STATES.has(state);
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;
}

function name(view: ExecutionView): string {
  return view.cellId ? `cell ${view.cellId}` : `execution ${view.id}`;
}

/** One execution's outcome in a line, e.g. "failed [3] in 0.02s — NameError: name 'x' is not defined". */
function outcome(view: ExecutionView): string {
  const count = view.executionCount !== null ? ` [${view.executionCount}]` : '';
  const took = view.startedAt !== null && view.finishedAt !== null ? ` in ${seconds(view.finishedAt - view.startedAt)}` : '';
  const error = view.errorName !== null ? `${view.errorName}: ${view.errorValue ?? ''}` : null;
  const why = view.statusText ?? error;
  return `${view.state}${count}${took}${why ? ` — ${why}` : ''}`;
}

function waitingFor(view: ExecutionView, canElicit: boolean): { status: Task['status']; message: string } {
  const prompt = JSON.stringify(view.prompt?.prompt ?? '');
  // input_required tells the requestor that tasks/result will ask it something; only a client that accepts
  // elicitation requests can be asked, so any other one sees `working` and how to answer instead.
  if (canElicit) return { status: 'input_required', message: `${name(view)} called input(${prompt}); tasks/result asks for the answer` };
  return { status: 'working', message: `${name(view)} is waiting for input(${prompt}): answer it with send_input (execution_id ${view.id})` };
}

function active(view: ExecutionView): string {
  if (view.state === 'pending') return `${name(view)} is pending, ${view.queuePosition ?? 0} ahead of it in the queue`;
  return `${name(view)} is running`;
}

/**
 * The task's status. The task reports on the tool call, not on the code: a cell that raised, a kernel that was
 * lost or a timed-out execution all end a tool call that completed (its result, the same one a normal call would
 * give, says what happened, and is not an `isError` result), so those tasks are `completed`. Only a stop asked for
 * (tasks/cancel, cancel_execution, an interrupt) makes a task `cancelled`. `failed` is never used: a call that
 * cannot even start is refused when the task would be created.
 */
export function describeTask(record: TaskRecord, executions: ExecutionView[], options: { canElicit: boolean }): Task {
  const times = [record.createdAt, record.cancelledAt ?? 0, ...executions.flatMap((view) => [view.startedAt ?? 0, view.finishedAt ?? 0])];
  const base = {
    taskId: record.taskId,
    ttl: null,
    createdAt: new Date(record.createdAt).toISOString(),
    lastUpdatedAt: new Date(Math.max(...times)).toISOString(),
    pollInterval: POLL_INTERVAL_MS,
  };
  const { status, message } = statusOf(record, executions, options.canElicit);
  return { ...base, status, statusMessage: message };
}

function statusOf(record: TaskRecord, executions: ExecutionView[], canElicit: boolean): { status: Task['status']; message: string } {
  const unfinished = executions.filter((view) => !isTerminalState(view.state));
  if (record.cancelledAt !== null) {
    const still = unfinished.length ? `; ${unfinished.length} execution(s) still stopping` : '';
    return { status: 'cancelled', message: `cancelled by tasks/cancel${still}` };
  }
  if (record.tool !== 'run_all_cells') {
    const view = executions[0];
    if (!view) return { status: 'completed', message: 'nothing to run' };
    if (view.state === 'awaiting_input') return waitingFor(view, canElicit);
    if (!isTerminalState(view.state)) return { status: 'working', message: active(view) };
    const status = view.state === 'cancelled' || view.state === 'interrupted' ? 'cancelled' : 'completed';
    return { status, message: `${name(view)}: ${outcome(view)}` };
  }
  if (executions.length === 0) return { status: 'completed', message: 'no code cells to run in that range' };
  const done = executions.length - unfinished.length;
  const progress = `${done} of ${executions.length} cells done`;
  const prompting = unfinished.find((view) => view.state === 'awaiting_input');
  if (prompting) {
    const waiting = waitingFor(prompting, canElicit);
    return { status: waiting.status, message: `${progress}; ${waiting.message}` };
  }
  const current = unfinished.find((view) => view.state === 'running') ?? unfinished[0];
  if (current) return { status: 'working', message: `${progress}; ${active(current)}` };
  // The batch ended where its first cell that did not succeed ended: a failure completes the call (the cells
  // after it were cancelled by stop_on_error), a stop that was asked for cancels it.
  const stopper = executions.find((view) => view.state !== 'succeeded');
  if (!stopper) return { status: 'completed', message: `all ${executions.length} cells succeeded` };
  const status = stopper.state === 'cancelled' || stopper.state === 'interrupted' ? 'cancelled' : 'completed';
  const succeeded = executions.filter((view) => view.state === 'succeeded').length;
  return { status, message: `${succeeded} of ${executions.length} cells succeeded; ${name(stopper)}: ${outcome(stopper)}` };
}
