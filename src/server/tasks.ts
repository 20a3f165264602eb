// MCP tasks (protocol 2025-11-25) for execute_cell, execute_code and run_all_cells, answered from the execution journal.
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  CancelTaskRequestSchema,
  ElicitResultSchema,
  ErrorCode,
  GetTaskPayloadRequestSchema,
  GetTaskRequestSchema,
  ListTasksRequestSchema,
  McpError,
  RELATED_TASK_META_KEY,
  type CallToolResult,
  type CreateTaskResult,
  type ListTasksResult,
  type ServerNotification,
  type ServerRequest,
  type Task,
} from '@modelcontextprotocol/sdk/types.js';
import { randomUUID } from 'node:crypto';
import type { Snapshot } from '../engine/engine.js';
import type { ExecutionRow } from '../store/executions.js';
import { executionResult } from './execution-result.js';
import { redactToolResult } from './redact.js';
import { TASK_TOOLS, TaskJournal, type TaskRecord, type TaskTool } from './task-journal.js';
import { describeTask, isTerminalState, type ExecutionView } from './task-status.js';
import { batchResult } from './tools/execution.js';
import { callTool, setTaskRoute } from './tools/registry.js';
import type { Workspace } from './workspace.js';

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

const LIST_PAGE = 50;
/** How long one input() question may stay open in the client before tasks/result stops asking (send_input still works). */
const ELICIT_TIMEOUT_MS = 60 * 60 * 1000;
const IMMEDIATE_RESPONSE_META_KEY = 'io.modelcontextprotocol/model-immediate-response';

/** What every MCP session of one workspace shares: the task table, and the input() prompts being asked right now. */
interface TaskBook {
  journal: TaskJournal;
  /** Execution id → settles when that session's question is answered or given up. One question per prompt at a time. */
  eliciting: Map<string, Promise<void>>;
}

const books = new WeakMap<Workspace, TaskBook>();

function bookOf(workspace: Workspace): TaskBook {
  let book = books.get(workspace);
  if (!book) books.set(workspace, (book = { journal: new TaskJournal(workspace.db), eliciting: new Map() }));
  return book;
}

function isTaskTool(name: string): name is TaskTool {
  return (TASK_TOOLS as readonly string[]).includes(name);
}

function textOf(result: CallToolResult): string {
  return result.content
    .filter((item): item is { type: 'text'; text: string } => item.type === 'text')
    .map((item) => item.text)
    .join('\n');
}

function fromRow(row: ExecutionRow): ExecutionView {
  return {
    id: row.id,
    state: row.state,
    cellId: row.cellId,
    createdAt: row.createdAt,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    executionCount: row.executionCount,
    statusText: row.statusText,
    errorName: row.errorName,
    errorValue: row.errorValue,
  };
}

function fromSnapshot(snapshot: Snapshot): ExecutionView {
  return {
    id: snapshot.id,
    state: snapshot.state,
    cellId: snapshot.cellId,
    createdAt: snapshot.createdAt,
    startedAt: snapshot.startedAt,
    finishedAt: snapshot.finishedAt,
    executionCount: snapshot.executionCount,
    statusText: snapshot.statusText,
    errorName: snapshot.error?.ename ?? null,
    errorValue: snapshot.error?.evalue ?? null,
    ...(snapshot.queuePosition !== undefined ? { queuePosition: snapshot.queuePosition } : {}),
    prompt: snapshot.awaitingInput,
  };
}

/**
 * Lets this McpServer (one client session) run execute_cell, execute_code and run_all_cells as MCP tasks: registers
 * the tasks/* handlers and the route serveTools (tools/registry.ts) takes for task-augmented tools/call requests.
 * Call it after the tools are registered and before serveTools.
 *
 * Task ids are the execution id (execute_cell, execute_code) or the batch id (run_all_cells): random UUIDs that
 * stay valid, like execution ids, for as long as the state database is kept, in every session (there is no
 * per-user authorization context to bind them to; the bearer token guards the whole server).
 */
export function enableExecutionTasks(mcp: McpServer, workspace: Workspace): void {
  const server = mcp.server;
  const engine = workspace.engine;
  const book = bookOf(workspace);
  server.registerCapabilities({ tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } });

  /** Only a client that takes form elicitation can be asked for input() through tasks/result. */
  const canElicit = (): boolean => {
    const elicitation = server.getClientCapabilities()?.elicitation;
    return elicitation !== undefined && (elicitation.form !== undefined || elicitation.url === undefined);
  };

  /** Terminal rows are final in the journal; an unfinished one is asked of the engine, which holds it in memory. */
  const viewOf = (id: string): ExecutionView => {
    const row = engine.journal.get(id);
    if (row && isTerminalState(row.state)) return fromRow(row);
    return fromSnapshot(engine.get(id));
  };

  const find = (taskId: string): TaskRecord => {
    const record = book.journal.get(taskId);
    if (!record) {
      throw new McpError(
        ErrorCode.InvalidParams,
        `Failed to retrieve task: no task '${taskId}' in this workspace's journal. A task id is the execution_id (execute_cell, execute_code) or the batch id (run_all_cells) of a call made as a task; tasks/list shows recent ones.`,
      );
    }
    return record;
  };

  const describe = (record: TaskRecord): Task => describeTask(record, record.executionIds.map(viewOf), { canElicit: canElicit() });

  /** The same finishing step a normal call's result gets (secrets replaced when the workspace redacts). */
  const finish = (outcome: CallToolResult): CallToolResult => (workspace.config.redact ? redactToolResult(outcome) : outcome);

  /** What a normal call of the task's tool answers once its work has ended. */
  const report = async (record: TaskRecord): Promise<CallToolResult> => {
    if (record.tool === 'run_all_cells') {
      await workspace.settled();
      return finish(batchResult(workspace, record.notebookPath, record.executionIds, 'ran'));
    }
    const id = record.executionIds[0];
    if (id === undefined) throw new McpError(ErrorCode.InternalError, `task ${record.taskId} has no execution`);
    const snapshot = engine.get(id);
    // As for a normal call: the notebook file shows the outputs by the time the agent hears the cell finished.
    if (snapshot.kind === 'cell' && snapshot.finishedAt !== null) await workspace.settled();
    return finish(await executionResult(workspace, snapshot));
  };

  /** Asks the client for the answer to an input() prompt; false when it did not give one. */
  const ask = async (taskId: string, view: ExecutionView, extra: Extra): Promise<boolean> => {
    let settle: () => void = () => undefined;
    book.eliciting.set(
      view.id,
      new Promise<void>((resolve) => {
        settle = resolve;
      }),
    );
    try {
      const prompt = view.prompt?.prompt ?? '';
      const where = view.cellId ? `cell ${view.cellId}` : `execution ${view.id}`;
      const answer = await extra.sendRequest(
        {
          method: 'elicitation/create',
          params: {
            // The spec ties requests made for a task to it (the SDK's request options cannot say so in its types).
            _meta: { [RELATED_TASK_META_KEY]: { taskId } },
            message: `The code of ${where} called input(${JSON.stringify(prompt)})${view.prompt?.password ? ' (a password prompt)' : ''} and waits for the answer.`,
            requestedSchema: {
              type: 'object',
              properties: { value: { type: 'string', title: prompt.trim() || 'input()', description: 'The text input() returns to the code' } },
              required: ['value'],
            },
          },
        },
        ElicitResultSchema,
        { signal: extra.signal, timeout: ELICIT_TIMEOUT_MS },
      );
      const value = answer.action === 'accept' ? answer.content?.value : undefined;
      if (typeof value !== 'string') return false;
      try {
        engine.sendInput(view.id, value);
        return true;
      } catch {
        // Answered meanwhile (send_input) or ended: the next look at the state tells; not asked again in this call.
        return false;
      }
    } catch (error) {
      if (extra.signal.aborted) throw error;
      return false;
    } finally {
      book.eliciting.delete(view.id);
      settle();
    }
  };

  /**
   * Resolves when the task is cancelled or all its executions have ended. Driven by engine events: each turn
   * re-reads the state, then sleeps until an execution of the task changes state or ends, the task is cancelled or
   * the request goes away. An input() prompt is asked of the client (once per prompt and call) when it can answer.
   */
  const untilEnded = async (taskId: string, extra: Extra): Promise<void> => {
    const watched = new Set(find(taskId).executionIds);
    let wake: () => void = () => undefined;
    const onChange = (event: { executionId: string }): void => {
      if (watched.has(event.executionId)) wake();
    };
    const offs = [engine.events.on('execution.state', onChange), engine.events.on('execution.finished', onChange), book.journal.onCancelled(taskId, () => wake())];
    const onAbort = (): void => wake();
    extra.signal.addEventListener('abort', onAbort, { once: true });
    const declined = new Set<string>();
    try {
      for (;;) {
        // Armed before the state is read: a change after the read wakes this turn's wait.
        const changed = new Promise<void>((resolve) => {
          wake = resolve;
        });
        if (extra.signal.aborted) throw new McpError(ErrorCode.ConnectionClosed, 'tasks/result was cancelled; the task goes on');
        const record = find(taskId);
        if (record.cancelledAt !== null) return;
        const views = record.executionIds.map(viewOf);
        if (views.every((view) => isTerminalState(view.state))) return;
        const prompting = canElicit() ? views.find((view) => view.state === 'awaiting_input' && !declined.has(view.id)) : undefined;
        const askedElsewhere = prompting ? book.eliciting.get(prompting.id) : undefined;
        if (prompting && !askedElsewhere) {
          if (!(await ask(taskId, prompting, extra))) declined.add(prompting.id);
          continue;
        }
        // Another session is asking that prompt: when it gives up, this one may ask.
        await (askedElsewhere ? Promise.race([changed, askedElsewhere]) : changed);
      }
    } finally {
      extra.signal.removeEventListener('abort', onAbort);
      for (const off of offs) off();
    }
  };

  const createTask = async (tool: string, args: Record<string, unknown>, extra: Extra): Promise<CreateTaskResult> => {
    if (!isTaskTool(tool)) {
      throw new McpError(ErrorCode.MethodNotFound, `${tool} cannot run as a task (only ${TASK_TOOLS.join(', ')} can): call it without 'task'.`);
    }
    // Accepting is the tool's own `wait: false` call (same validation, errors and metrics as a normal call); the
    // task then stands for the waiting. timeout_s does not apply: tasks/result waits for the end.
    const accepted = await callTool(mcp, tool, { ...args, wait: false }, extra);
    if (accepted.isError) throw new McpError(ErrorCode.InvalidParams, textOf(accepted));
    const structured = accepted.structuredContent ?? {};
    const listed: unknown[] = tool === 'run_all_cells' ? (Array.isArray(structured.execution_ids) ? structured.execution_ids : []) : [structured.execution_id];
    const ids = listed.filter((id): id is string => typeof id === 'string');
    if (ids.length !== listed.length || (tool !== 'run_all_cells' && ids.length !== 1)) {
      throw new McpError(ErrorCode.InternalError, `${tool} accepted the call but did not name its executions: ${textOf(accepted)}`);
    }
    const first = ids[0] !== undefined ? engine.get(ids[0]) : undefined;
    const taskId = tool === 'run_all_cells' ? (first?.batchId ?? randomUUID()) : ids[0]!;
    const record = book.journal.insert({
      taskId,
      tool,
      notebookPath: first?.notebookPath ?? String(args['notebook_path'] ?? ''),
      executionIds: ids,
      createdAt: Date.now(),
    });
    const task = describe(record);
    const what = tool === 'run_all_cells' ? `${ids.length} cells` : `execution ${taskId}`;
    const ended = task.status === 'completed' || task.status === 'cancelled';
    return {
      // Every task starts `working` (spec); one that has already ended shows it at the first tasks/get.
      task: ended ? { ...task, status: 'working', statusMessage: `accepted: ${what}` } : task,
      _meta: { [IMMEDIATE_RESPONSE_META_KEY]: `${tool} runs as task ${taskId} (${what} on ${record.notebookPath}); its result comes with tasks/result.` },
    };
  };

  setTaskRoute(mcp, { tools: TASK_TOOLS, create: createTask });

  server.setRequestHandler(GetTaskRequestSchema, async (request) => describe(find(request.params.taskId)));

  server.setRequestHandler(GetTaskPayloadRequestSchema, async (request, extra) => {
    const taskId = request.params.taskId;
    await untilEnded(taskId, extra);
    const outcome = await report(find(taskId));
    return { ...outcome, _meta: { ...outcome._meta, [RELATED_TASK_META_KEY]: { taskId } } };
  });

  server.setRequestHandler(ListTasksRequestSchema, async (request): Promise<ListTasksResult> => {
    const cursor = request.params?.cursor;
    let before: number | undefined;
    if (cursor !== undefined) {
      before = Number(Buffer.from(cursor, 'base64url').toString('utf8'));
      if (!Number.isInteger(before) || before <= 0) throw new McpError(ErrorCode.InvalidParams, `invalid cursor '${cursor}': pass the nextCursor of an earlier tasks/list answer unchanged`);
    }
    const rows = book.journal.page(LIST_PAGE + 1, before);
    const page = rows.slice(0, LIST_PAGE);
    const last = page[page.length - 1];
    return {
      tasks: page.map(describe),
      ...(rows.length > LIST_PAGE && last ? { nextCursor: Buffer.from(String(last.seq), 'utf8').toString('base64url') } : {}),
    };
  });

  server.setRequestHandler(CancelTaskRequestSchema, async (request) => {
    const record = find(request.params.taskId);
    const now = describe(record);
    if (now.status === 'completed' || now.status === 'failed' || now.status === 'cancelled') {
      throw new McpError(ErrorCode.InvalidParams, `Cannot cancel task: already in terminal status '${now.status}' (${now.statusMessage ?? ''})`);
    }
    // Recorded first: from here on the task is `cancelled` whatever its executions do. Then the waiting ones are
    // dropped from the back of the queue forward, so none starts when the running one stops, and that one is
    // interrupted (the kernel and its state stay).
    book.journal.markCancelled(record.taskId, Date.now());
    for (const id of [...record.executionIds].reverse()) engine.cancel(id);
    return describe(find(record.taskId));
  });
}
