// Execution tools: execute_cell, execute_code, run_all_cells, get_execution, list_executions, cancel, send_input.
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { Snapshot } from '../../engine/engine.js';
import { ALL_STATES, type ExecutionState } from '../../store/executions.js';
import { joinText, kernelspecOf } from '../../notebook/nbformat.js';
import { locateCell } from '../../notebook/notebooks.js';
import { executionResult, statusLine, structuredExecution, waitForExecution } from '../execution-result.js';
import type { Workspace } from '../workspace.js';
import { boolean, cellRef, cellRefShape, defineTool, indexSchema, integer, notebookPathSchema, result, seconds, ToolInputError, toolSpec, type ToolExtra, type ToolRegistrar } from './common.js';

const executionIdSchema = z
  .string({ required_error: 'execution_id is required (execute_cell, execute_code and run_all_cells hand them out)', invalid_type_error: 'execution_id must be a string' })
  .min(1, 'execution_id must not be empty')
  .max(100, 'execution_id is too long: it is the id an execute call handed out');

const timeoutSchema = seconds('timeout_s', 'How long this call waits (default 60); the execution goes on after it, and get_execution picks it up', 86_400);

const executionOutput = { execution_id: z.string(), status: z.string() };

/** The notebook's kernelspec name, checked to exist when no kernel is running for it yet. */
async function kernelNameFor(workspace: Workspace, notebookPath: string, fromNotebook: string | undefined): Promise<string> {
  const name = fromNotebook ?? 'python3';
  if (workspace.engine.existingKernel(notebookPath)?.session) return name;
  const specs = await workspace.engine.provider.listSpecs();
  if (!specs.some((spec) => spec.name === name)) {
    throw new ToolInputError(
      `the notebook asks for kernelspec '${name}', which is not installed. Available: ${specs.map((spec) => spec.name).join(', ') || 'none'}. Install it, or change the notebook's kernel (start_kernel with kernel_name).`,
    );
  }
  return name;
}

const EXECUTE_CELL_SPEC = toolSpec('execute_cell', {
  title: 'Execute a cell',
  description:
    "Runs a code cell on the notebook's kernel (started on first use) and writes its outputs into the notebook. Waits up to timeout_s; past it the answer is `running` with the execution_id and the work goes on.",
  input: { notebook_path: notebookPathSchema, ...cellRefShape, timeout_s: timeoutSchema.optional(), wait: boolean('wait', 'Wait for the result (default true); false answers at once with the execution_id').optional() },
  output: executionOutput,
});

const EXECUTE_CODE_SPEC = toolSpec('execute_code', {
  title: 'Execute code',
  description: "Runs code on the notebook's kernel without touching the notebook file (scratch work, inspection).",
  input: {
    notebook_path: notebookPathSchema,
    code: z.string({ required_error: 'code is required', invalid_type_error: 'code must be a string' }).max(5_000_000, 'code is too long (5,000,000 characters at most)'),
    timeout_s: timeoutSchema.optional(),
    wait: boolean('wait', 'Wait for the result (default true)').optional(),
  },
  output: executionOutput,
});

const RUN_ALL_CELLS_SPEC = toolSpec('run_all_cells', {
  title: 'Run all cells',
  description: 'Queues every code cell (or those from start_index to end_index) in order; stops at the first error unless stop_on_error is false. Answers with the execution ids at once unless wait is true.',
  input: {
    notebook_path: notebookPathSchema,
    start_index: indexSchema.optional(),
    end_index: indexSchema.optional(),
    stop_on_error: boolean('stop_on_error', 'Cancel the rest at the first cell that fails (default true)').optional(),
    wait: boolean('wait', 'Wait for all of them (default false)').optional(),
    timeout_s: timeoutSchema.optional(),
  },
  output: { execution_ids: z.array(z.string()) },
});

const GET_EXECUTION_SPEC = toolSpec('get_execution', {
  title: 'Get an execution',
  description: 'Status and outputs of an execution (from output_offset on). With wait_s it waits up to that long for it to finish first.',
  input: {
    execution_id: executionIdSchema,
    wait_s: seconds('wait_s', 'Wait up to this long for it to finish (default 0: answer now)', 86_400).optional(),
    output_offset: integer('output_offset', 'Return outputs from this index on (next_output_offset of an earlier answer)', 0, 1_000_000).optional(),
  },
  output: executionOutput,
  annotations: { readOnlyHint: true },
});

const LIST_EXECUTIONS_SPEC = toolSpec('list_executions', {
  title: 'List executions',
  description: 'Executions from the journal, newest first, optionally for one notebook and/or in one state.',
  input: {
    notebook_path: notebookPathSchema.optional(),
    status: z.enum(ALL_STATES as [ExecutionState, ...ExecutionState[]], { errorMap: () => ({ message: `status must be one of: ${ALL_STATES.join(', ')}` }) }).optional(),
    limit: integer('limit', 'How many (default 50, at most 1000)', 1, 1000).optional(),
  },
  output: { executions: z.array(z.object({ execution_id: z.string() }).passthrough()) },
  annotations: { readOnlyHint: true },
});

const CANCEL_EXECUTION_SPEC = toolSpec('cancel_execution', {
  title: 'Cancel an execution',
  description: 'A pending execution is removed from the queue; a running one is interrupted (the kernel gets an interrupt).',
  input: { execution_id: executionIdSchema },
  output: executionOutput,
});

const SEND_INPUT_SPEC = toolSpec('send_input', {
  title: 'Answer input()',
  description: "Answers the kernel's pending input() prompt of an execution, then waits up to wait_s (default 10) for it to finish or ask again.",
  input: {
    execution_id: executionIdSchema,
    value: z.string({ required_error: 'value is required: the text to answer input() with', invalid_type_error: 'value must be a string' }).max(1_000_000),
    wait_s: seconds('wait_s', 'Wait up to this long afterwards (default 10)', 86_400).optional(),
  },
  output: executionOutput,
});

export const registerExecutionTools: ToolRegistrar = (server, workspace) => {
  const engine = workspace.engine;
  const store = workspace.notebooks;

  defineTool(server, EXECUTE_CELL_SPEC, async (args, extra) => {
    const read = await store.read(args.notebook_path);
    const { cell, index } = locateCell(read.notebook, cellRef(args)!, read.path);
    if (cell.cell_type !== 'code') throw new ToolInputError(`cell ${index} (id ${cell.id}) is a ${cell.cell_type} cell; only code cells run. Use edit_cell with cell_type 'code' to change it.`);
    const kernelName = await kernelNameFor(workspace, read.path, kernelspecOf(read.notebook)?.name);
    const [accepted] = engine.submit([{ notebookPath: read.path, code: joinText(cell.source), kind: 'cell', cellId: cell.id, kernelName }]);
    return finishCall(workspace, accepted!.id, args.wait !== false, args.timeout_s, extra);
  });

  defineTool(server, EXECUTE_CODE_SPEC, async (args, extra) => {
    // With a live kernel the notebook file has nothing to add (code runs as is). A path given exactly as the key of a
    // live kernel (the workspace-relative form every earlier call resolved to) names that kernel without a look at
    // the disk: execute_code touches no file, and the kernel already runs where that path was checked. Any other
    // spelling is resolved (and checked) first.
    const known = engine.existingKernel(args.notebook_path)?.session;
    const relative = known && known.status !== 'dead' ? args.notebook_path : (await store.resolve(args.notebook_path)).relative;
    const live = engine.existingKernel(relative)?.session;
    const kernelName =
      live && live.status !== 'dead' ? live.kernelName : await kernelNameFor(workspace, relative, kernelspecOf((await store.read(relative)).notebook)?.name);
    const [accepted] = engine.submit([{ notebookPath: relative, code: args.code, kind: 'code', kernelName }]);
    return finishCall(workspace, accepted!.id, args.wait !== false, args.timeout_s, extra);
  });

  defineTool(server, RUN_ALL_CELLS_SPEC, async (args, extra) => {
    const read = await store.read(args.notebook_path);
    const cells = read.notebook.cells;
    const first = args.start_index ?? 0;
    const last = Math.min(args.end_index ?? cells.length - 1, cells.length - 1);
    if (args.end_index !== undefined && args.end_index < first) throw new ToolInputError('end_index must not be smaller than start_index');
    const chosen = cells.slice(first, last + 1).filter((cell) => cell.cell_type === 'code' && joinText(cell.source).trim() !== '');
    if (chosen.length === 0) return result({ text: 'no code cells to run in that range', structured: { execution_ids: [], executions: [] } });
    const kernelName = await kernelNameFor(workspace, read.path, kernelspecOf(read.notebook)?.name);
    const accepted = engine.submit(
      chosen.map((cell) => ({ notebookPath: read.path, code: joinText(cell.source), kind: 'cell' as const, cellId: cell.id, kernelName })),
      { stopOnError: args.stop_on_error !== false },
    );
    const ids = accepted.map((snapshot) => snapshot.id);
    if (args.wait === true) {
      await waitForExecution(workspace, ids, (args.timeout_s ?? 60) * 1000, extra);
      await workspace.settled();
    }
    return batchResult(workspace, read.path, ids, args.wait === true ? 'ran' : 'queued');
  });

  defineTool(server, GET_EXECUTION_SPEC, async (args, extra) => {
    const started = Date.now();
    // An unknown id throws here, before any waiting.
    let snapshot = engine.get(args.execution_id);
    if (args.wait_s && snapshot.finishedAt === null) snapshot = await waitAndGet(workspace, args.execution_id, args.wait_s * 1000, extra);
    if (snapshot.kind === 'cell' && snapshot.finishedAt !== null) await workspace.settled();
    return executionResult(workspace, snapshot, { outputOffset: args.output_offset ?? 0, waitedMs: args.wait_s ? Date.now() - started : 0 });
  });

  defineTool(server, LIST_EXECUTIONS_SPEC, async (args) => {
    const notebookPath = args.notebook_path !== undefined ? (await store.resolve(args.notebook_path)).relative : undefined;
    const rows = engine.list({
      ...(notebookPath !== undefined ? { notebookPath } : {}),
      ...(args.status !== undefined ? { state: args.status } : {}),
      limit: args.limit ?? 50,
    });
    const executions = rows.map((row) => ({
      execution_id: row.id,
      notebook_path: row.notebookPath,
      cell_id: row.cellId,
      kind: row.kind,
      status: row.state,
      execution_count: row.executionCount,
      created_at: new Date(row.createdAt).toISOString(),
      duration_s: row.startedAt !== null && row.finishedAt !== null ? (row.finishedAt - row.startedAt) / 1000 : null,
      status_text: row.statusText,
      code_first_line: row.code.split('\n', 1)[0]?.slice(0, 120) ?? '',
    }));
    const lines = executions.map((entry) => `${entry.execution_id}  ${entry.status.padEnd(14)} ${entry.notebook_path}${entry.cell_id ? `#${entry.cell_id}` : ' (code)'}  ${entry.code_first_line}`);
    return result({ text: lines.length ? lines.join('\n') : 'no executions', structured: { executions } });
  });

  defineTool(server, CANCEL_EXECUTION_SPEC, async (args) => {
    const { outcome, snapshot } = engine.cancel(args.execution_id);
    const text =
      outcome === 'removed'
        ? `execution ${snapshot.id} was pending and is cancelled; it never ran`
        : outcome === 'interrupting'
          ? `execution ${snapshot.id} is running; the kernel was sent an interrupt. get_execution shows when it stopped.`
          : `execution ${snapshot.id} had already finished (${snapshot.state}); nothing to cancel`;
    return result({ text, structured: { ...structuredExecution(snapshot), outcome } });
  });

  defineTool(server, SEND_INPUT_SPEC, async (args, extra) => {
    engine.sendInput(args.execution_id, args.value);
    const waitMs = (args.wait_s ?? 10) * 1000;
    const snapshot = waitMs > 0 ? await waitAndGet(workspace, args.execution_id, waitMs, extra) : engine.get(args.execution_id);
    if (snapshot.kind === 'cell' && snapshot.finishedAt !== null) await workspace.settled();
    return executionResult(workspace, snapshot);
  });
};

/** The run_all_cells answer: one line per cell. Also the result of a run_all_cells MCP task (see ../tasks.ts). */
export function batchResult(workspace: Workspace, notebookPath: string, ids: string[], verb: 'ran' | 'queued'): CallToolResult {
  if (ids.length === 0) return result({ text: 'no code cells to run in that range', structured: { execution_ids: [], executions: [] } });
  const snapshots = ids.map((id) => workspace.engine.get(id));
  const lines = snapshots.map((snapshot) => `${snapshot.cellId ?? ''}: ${statusLine(snapshot)}`);
  return result({
    text: `${verb} ${ids.length} cells of ${notebookPath}\n${lines.join('\n')}`,
    structured: { execution_ids: ids, executions: snapshots.map(structuredExecution) },
  });
}

/** Waits for one execution, then its snapshot: the one the wait ended with when final, else a fresh one. */
async function waitAndGet(workspace: Workspace, id: string, timeoutMs: number, extra: ToolExtra): Promise<Snapshot> {
  const ended = await waitForExecution(workspace, [id], timeoutMs, extra);
  // A finished execution no longer changes, and once journaled each get is a database read: one is enough.
  return ended.get(id) ?? workspace.engine.get(id);
}

/** Waits (or not) for one accepted execution and reports it. */
async function finishCall(workspace: Workspace, id: string, wait: boolean, timeoutS: number | undefined, extra: ToolExtra) {
  const started = Date.now();
  const snapshot = wait ? await waitAndGet(workspace, id, (timeoutS ?? 60) * 1000, extra) : workspace.engine.get(id);
  // The notebook file shows the outputs by the time the agent hears the cell finished.
  if (snapshot.kind === 'cell' && snapshot.finishedAt !== null) await workspace.settled();
  return executionResult(workspace, snapshot, { waitedMs: wait ? Date.now() - started : 0 });
}
