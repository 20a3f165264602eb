// Variable tools: list_variables and inspect_variable, answered out of band (no notebook change, no count bump).
import { z } from 'zod';
import { inspectVariable, listVariables } from '../variables.js';
import type { Workspace } from '../workspace.js';
import { defineTool, notebookPathSchema, result, seconds, ToolInputError, toolSpec, type ToolRegistrar } from './common.js';

async function liveSession(workspace: Workspace, notebookPath: string) {
  const { relative } = await workspace.notebooks.resolve(notebookPath);
  const kernel = workspace.engine.existingKernel(relative);
  const session = kernel?.session;
  if (!session || session.status === 'dead') {
    throw new ToolInputError(`${relative} has no running kernel, so it has no variables yet. Run a cell (execute_cell) or start_kernel first.`);
  }
  return { session, kernel: kernel!, relative };
}

function busyNote(running: string | null): string {
  return running ? ` The kernel is busy with execution ${running}; inspection waits until it finishes (interrupt_kernel stops it).` : '';
}

const LIST_VARIABLES_SPEC = toolSpec('list_variables', {
  title: 'List variables',
  description: "The user's variables in the notebook's kernel (no interpreter internals or modules): name, type and a short summary (shape, length).",
  input: { notebook_path: notebookPathSchema, timeout_s: seconds('timeout_s', 'How long to wait for the kernel (default 30)', 3600).optional() },
  output: { variables: z.array(z.object({ name: z.string(), type: z.string() }).passthrough()) },
  annotations: { readOnlyHint: true },
});

const INSPECT_VARIABLE_SPEC = toolSpec('inspect_variable', {
  title: 'Inspect a variable',
  description: 'A bounded description of one variable, looked up by name only (nothing else is evaluated): for a data frame its shape, columns, dtypes and first rows.',
  input: {
    notebook_path: notebookPathSchema,
    name: z.string({ required_error: 'name is required: a variable name as list_variables shows it', invalid_type_error: 'name must be a string' }).min(1).max(200),
    timeout_s: seconds('timeout_s', 'How long to wait for the kernel (default 30)', 3600).optional(),
  },
  output: { name: z.string(), type: z.string() },
  annotations: { readOnlyHint: true },
});

export const registerVariableTools: ToolRegistrar = (server, workspace) => {
  defineTool(server, LIST_VARIABLES_SPEC, async (args) => {
    const { session, kernel } = await liveSession(workspace, args.notebook_path);
    const running = kernel.running?.id ?? null;
    const listed = await listVariables(session, (args.timeout_s ?? 30) * 1000).catch((error: Error) => {
      throw new Error(`${error.message}.${busyNote(running)}`);
    });
    const lines = listed.variables.map((variable) => `${variable.name}: ${variable.type}${variable.summary ? ` (${variable.summary})` : ''}`);
    const more = listed.total > listed.variables.length ? `\n(${listed.total - listed.variables.length} more not shown)` : '';
    return result({ text: lines.length ? lines.join('\n') + more : 'no user variables defined', structured: { variables: listed.variables, total: listed.total } });
  });

  defineTool(server, INSPECT_VARIABLE_SPEC, async (args) => {
    const { session, kernel } = await liveSession(workspace, args.notebook_path);
    const running = kernel.running?.id ?? null;
    const maxChars = Math.max(500, Math.floor(workspace.config.maxOutputChars / 2));
    const described = await inspectVariable(session, args.name, (args.timeout_s ?? 30) * 1000, maxChars).catch((error: Error) => {
      throw new Error(`${error.message}${error.message.includes('no variable') || error.message.includes('not a variable') ? '' : `.${busyNote(running)}`}`);
    });
    const lines = [`${String(described.name)}: ${String(described.module)}.${String(described.type)}`];
    for (const key of ['shape', 'length', 'dtype', 'column_count', 'series_name', 'signature']) {
      if (described[key] !== undefined) lines.push(`${key}: ${JSON.stringify(described[key])}`);
    }
    if (described.columns) lines.push(`columns: ${(described.columns as string[]).join(', ')}`);
    if (described.dtypes) lines.push(`dtypes: ${Object.entries(described.dtypes as Record<string, string>).map(([column, dtype]) => `${column}=${dtype}`).join(', ')}`);
    for (const key of ['head', 'preview', 'doc', 'preview_error']) {
      if (typeof described[key] === 'string' && described[key]) lines.push(`${key}:\n${described[key] as string}`);
    }
    return result({ text: lines.join('\n'), structured: described });
  });
};
