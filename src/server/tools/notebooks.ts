// Notebook and cell tools: list, create, read, insert, edit, delete, move, clear outputs.
import { z } from 'zod';
import { joinText, kernelspecOf, type Cell } from '../../notebook/nbformat.js';
import { locateCell } from '../../notebook/notebooks.js';
import { cellProvenance, cellState } from '../cell-state.js';
import { newSourceMarkerNote, restoredNote, sourceForEdit } from '../redact.js';
import { cutText, renderForAgent, summarize } from '../render.js';
import { boolean, cellRef, cellRefShape, defineTool, indexSchema, kernelNameSchema, notebookPathSchema, result, ToolInputError, toolSpec, type ToolRegistrar } from './common.js';

const cellTypeSchema = z.enum(['code', 'markdown', 'raw'], { errorMap: () => ({ message: "cell_type must be 'code', 'markdown' or 'raw'" }) });
const sourceSchema = z
  .string({ required_error: 'source is required: the cell text', invalid_type_error: 'source must be a string (the whole cell text)' })
  .max(5_000_000, 'source is too long (5,000,000 characters at most)')
  .describe('The cell text');

const cellOutline = {
  cell_id: z.string(),
  index: z.number(),
  cell_type: z.string(),
};

const LIST_NOTEBOOKS_SPEC = toolSpec('list_notebooks', {
  title: 'List notebooks',
  description: 'Lists the notebooks (*.ipynb) under the workspace root or a folder in it, with cell counts and kernel state.',
  input: { directory: z.string({ invalid_type_error: 'directory must be a string (a folder relative to the workspace root)' }).optional().describe('A folder relative to the workspace root (default: the whole workspace)') },
  output: { notebooks: z.array(z.object({ path: z.string() }).passthrough()) },
  annotations: { readOnlyHint: true },
});

const CREATE_NOTEBOOK_SPEC = toolSpec('create_notebook', {
  title: 'Create a notebook',
  description: 'Creates a new notebook (never overwrites an existing file), optionally with cells.',
  input: {
    notebook_path: notebookPathSchema,
    kernel_name: kernelNameSchema.optional().describe('A kernelspec name (default python3); list_kernelspecs shows them'),
    cells: z
      .array(z.object({ cell_type: cellTypeSchema, source: sourceSchema }).strict('each cell takes only cell_type and source'), {
        invalid_type_error: 'cells must be a list of {cell_type, source}',
      })
      .max(10_000)
      .optional()
      .describe('Initial cells'),
  },
  output: { notebook_path: z.string(), cells: z.array(z.object(cellOutline).passthrough()) },
});

const READ_NOTEBOOK_SPEC = toolSpec('read_notebook', {
  title: 'Read a notebook',
  description:
    'Outline of a notebook: per cell its id, index, type, source (long ones cut), execution count, state (fresh / stale / never_run / from_old_kernel) and a one-line output summary (or the outputs, with include_outputs).',
  input: {
    notebook_path: notebookPathSchema,
    include_outputs: boolean('include_outputs', 'Include the outputs themselves (default false: one-line summaries)').optional(),
    start_index: indexSchema.optional().describe('First cell to show (default 0)'),
    end_index: indexSchema.optional().describe('Last cell to show, inclusive (default: the last cell)'),
  },
  output: { notebook_path: z.string(), cell_count: z.number(), cells: z.array(z.object(cellOutline).passthrough()) },
  annotations: { readOnlyHint: true },
});

const READ_CELL_SPEC = toolSpec('read_cell', {
  title: 'Read a cell',
  description: 'The whole source of one cell and its outputs (text and images, within the output budget).',
  input: { notebook_path: notebookPathSchema, ...cellRefShape },
  output: { cell_id: z.string(), index: z.number(), cell_type: z.string(), source: z.string() },
  annotations: { readOnlyHint: true },
});

const INSERT_CELL_SPEC = toolSpec('insert_cell', {
  title: 'Insert a cell',
  description: 'Inserts a cell at index, after after_cell_id, or (neither) at the end.',
  input: {
    notebook_path: notebookPathSchema,
    index: indexSchema.optional().describe('Position for the new cell (0 = first; the cell count appends)'),
    after_cell_id: z.string({ invalid_type_error: 'after_cell_id must be a cell id string' }).min(1).optional().describe('Insert right after this cell'),
    cell_type: cellTypeSchema.describe("'code', 'markdown' or 'raw'"),
    source: sourceSchema,
  },
  output: { cell_id: z.string(), index: z.number() },
});

const EDIT_CELL_SPEC = toolSpec('edit_cell', {
  title: 'Edit a cell',
  description: "Replaces a cell's source and/or changes its type.",
  input: { notebook_path: notebookPathSchema, ...cellRefShape, source: sourceSchema.optional(), cell_type: cellTypeSchema.optional() },
  output: { cell_id: z.string(), index: z.number(), cell_type: z.string() },
});

const DELETE_CELL_SPEC = toolSpec('delete_cell', {
  title: 'Delete a cell',
  description: 'Deletes one cell.',
  input: { notebook_path: notebookPathSchema, ...cellRefShape },
  output: { cell_id: z.string(), index: z.number() },
  annotations: { destructiveHint: true },
});

const MOVE_CELL_SPEC = toolSpec('move_cell', {
  title: 'Move a cell',
  description: 'Moves a cell so that it ends up at to_index.',
  input: { notebook_path: notebookPathSchema, ...cellRefShape, to_index: indexSchema.describe('Where the cell ends up (0-based)') },
  output: { cell_id: z.string(), from_index: z.number(), index: z.number() },
});

const CLEAR_OUTPUTS_SPEC = toolSpec('clear_outputs', {
  title: 'Clear outputs',
  description: 'Clears the outputs and execution count of one cell, or of every cell when no cell is named.',
  input: { notebook_path: notebookPathSchema, ...cellRefShape },
  output: { cleared_cell_ids: z.array(z.string()) },
});

export const registerNotebookTools: ToolRegistrar = (server, workspace) => {
  const store = workspace.notebooks;

  defineTool(server, LIST_NOTEBOOKS_SPEC, async ({ directory }) => {
    const listing = await store.listNotebooks(directory);
    const notebooks = listing.map((entry) => {
      const kernel = workspace.engine.existingKernel(entry.path)?.session;
      return { ...entry, kernel_state: kernel ? kernel.status : 'no kernel' };
    });
    const lines = notebooks.map((entry) =>
      entry.error ? `${entry.path}  (unreadable: ${entry.error})` : `${entry.path}  ${entry.cells ?? 0} cells, kernel ${entry.kernel_state}`,
    );
    return result({ text: lines.length ? lines.join('\n') : 'no notebooks found', structured: { notebooks } });
  });

  defineTool(server, CREATE_NOTEBOOK_SPEC, async ({ notebook_path, kernel_name, cells }) => {
    const kernelName = kernel_name ?? 'python3';
    const specs = await workspace.engine.provider.listSpecs();
    const spec = specs.find((candidate) => candidate.name === kernelName);
    if (!spec) {
      throw new ToolInputError(`no kernelspec named '${kernelName}'. Available: ${specs.map((candidate) => candidate.name).join(', ') || 'none (run `mcp-server-jupyter doctor`)'}`);
    }
    const created = await store.create(notebook_path, {
      kernelName: spec.name,
      displayName: spec.display_name,
      language: spec.language,
      cells: (cells ?? []).map((cell) => ({ cellType: cell.cell_type, source: cell.source })),
    });
    const outline = created.notebook.cells.map((cell, index) => ({ cell_id: cell.id, index, cell_type: cell.cell_type }));
    return result({
      text: `created ${created.path} (kernel ${spec.name}, ${outline.length} cells)${newSourceMarkerNote(workspace, (cells ?? []).map((cell) => cell.source))}${outline.map((cell) => `\n[${cell.index}] ${cell.cell_type} id=${cell.cell_id}`).join('')}`,
      structured: { notebook_path: created.path, kernel_name: spec.name, cells: outline },
    });
  });

  defineTool(server, READ_NOTEBOOK_SPEC, async ({ notebook_path, include_outputs, start_index, end_index }) => {
    const read = await store.read(notebook_path);
    const cells = read.notebook.cells;
    const first = start_index ?? 0;
    const last = Math.min(end_index ?? cells.length - 1, cells.length - 1);
    if (cells.length > 0 && first > cells.length - 1) throw new ToolInputError(`start_index ${first} is past the last cell (${read.path} has ${cells.length} cells: 0–${cells.length - 1})`);
    if (end_index !== undefined && end_index < first) throw new ToolInputError('end_index must not be smaller than start_index');
    const shown = cells.slice(first, last + 1);
    const budget = workspace.config.maxOutputChars;
    const perCell = Math.max(200, Math.floor(budget / 2 / Math.max(1, shown.length)));
    const kernel = workspace.engine.existingKernel(read.path)?.session;
    const outline = shown.map((cell, offset) => {
      const index = first + offset;
      const source = cutText(joinText(cell.source), perCell, `read_cell with cell_id '${cell.id}' shows it all`);
      const entry: Record<string, unknown> = { cell_id: cell.id, index, cell_type: cell.cell_type, source: source.text, source_truncated: source.truncated };
      if (cell.cell_type === 'code') {
        entry.execution_count = cell.execution_count;
        const provenance = cellProvenance(cell, workspace.engine, read.path);
        entry.state = provenance?.state ?? null;
        // A fresh cell whose run failed did not finish defining what it defines.
        if (provenance?.lastStatus && provenance.lastStatus !== 'succeeded') entry.last_run = provenance.lastStatus;
        entry.outputs_summary = summarize(cell.outputs);
      }
      return { entry, cell };
    });
    const header = `${read.path}: ${cells.length} cells (showing ${shown.length ? `${first}–${last}` : 'none'}), kernel ${kernelspecOf(read.notebook)?.name ?? 'unknown'} ${kernel ? `(${kernel.status})` : '(not started)'}${read.externalChange ? '\nnote: the file had changed on disk since the server last read it; this is the new version' : ''}`;
    const lines = outline.map(({ entry }) => {
      const meta = entry.cell_type === 'code' ? ` exec=${String(entry.execution_count ?? '-')} ${String(entry.state)}${entry.last_run ? ` (last run ${String(entry.last_run)})` : ''} | ${String(entry.outputs_summary)}` : '';
      return `[${String(entry.index)}] ${String(entry.cell_type)} id=${String(entry.cell_id)}${meta}\n${indent(String(entry.source))}`;
    });
    const extra = [];
    if (include_outputs) {
      for (const { entry, cell } of outline) {
        if (cell.cell_type !== 'code' || cell.outputs.length === 0) continue;
        const rendered = await renderForAgent(workspace, read.path, cell.outputs as never);
        extra.push({ type: 'text' as const, text: `--- outputs of [${String(entry.index)}] id=${String(entry.cell_id)} ---` }, ...rendered.content);
      }
    }
    return result({
      text: [header, ...lines].join('\n'),
      structured: { notebook_path: read.path, cell_count: cells.length, version: read.version, cells: outline.map(({ entry }) => entry) },
      extra: limitExtra(extra, budget),
    });
  });

  defineTool(server, READ_CELL_SPEC, async (args) => {
    const read = await store.read(args.notebook_path);
    const { cell, index } = locateCell(read.notebook, cellRef(args)!, read.path);
    const budget = workspace.config.maxOutputChars;
    const hasOutputs = cell.cell_type === 'code' && cell.outputs.length > 0;
    // Source and outputs share one budget: the source may take half of it when there are outputs to show.
    const source = cutText(joinText(cell.source), hasOutputs ? Math.floor(budget / 2) : budget - 200, 'the source is longer than the output budget');
    const structured: Record<string, unknown> = { cell_id: cell.id, index, cell_type: cell.cell_type, source: source.text, source_truncated: source.truncated };
    let extra: Awaited<ReturnType<typeof renderForAgent>>['content'] = [];
    if (cell.cell_type === 'code') {
      structured.execution_count = cell.execution_count;
      structured.state = cellState(cell, workspace.engine, read.path);
      const rendered = await renderForAgent(workspace, read.path, cell.outputs as never, undefined, Math.max(0, budget - source.text.length - 200));
      structured.outputs_summary = rendered.summary;
      structured.assets = rendered.assets;
      extra = rendered.content;
    }
    const head = `[${index}] ${cell.cell_type} id=${cell.id}${cell.cell_type === 'code' ? ` exec=${String(cell.execution_count ?? '-')} ${String(structured.state)}` : ''}`;
    return result({ text: `${head}\n${source.text}`, structured, extra });
  });

  defineTool(server, INSERT_CELL_SPEC, async ({ notebook_path, index, after_cell_id, cell_type, source }) => {
    const inserted = await store.insertCell(notebook_path, {
      ...(index !== undefined ? { index } : {}),
      ...(after_cell_id !== undefined ? { afterCellId: after_cell_id } : {}),
      cellType: cell_type,
      source,
    });
    return result({
      text: `inserted ${cell_type} cell id=${inserted.cellId} at index ${inserted.index} in ${inserted.path}${newSourceMarkerNote(workspace, [source])}${externalNote(inserted.externalChange)}`,
      structured: { cell_id: inserted.cellId, index: inserted.index, external_change: inserted.externalChange },
    });
  });

  defineTool(server, EDIT_CELL_SPEC, async (args) => {
    const { source, restored } = await sourceForEdit(workspace, args.notebook_path, cellRef(args)!, args.source);
    const edited = await store.editCell(args.notebook_path, cellRef(args)!, {
      ...(source !== undefined ? { source } : {}),
      ...(args.cell_type !== undefined ? { cellType: args.cell_type } : {}),
    });
    const cell: Cell = edited.cell;
    return result({
      text: `edited [${edited.index}] ${cell.cell_type} id=${cell.id}${edited.saved ? '' : ' (no change)'}${restoredNote(restored)}${externalNote(edited.externalChange)}`,
      structured: { cell_id: cell.id, index: edited.index, cell_type: cell.cell_type, saved: edited.saved, external_change: edited.externalChange },
    });
  });

  defineTool(server, DELETE_CELL_SPEC, async (args) => {
    const deleted = await store.deleteCell(args.notebook_path, cellRef(args)!);
    return result({ text: `deleted cell id=${deleted.cellId} (was at index ${deleted.index})${externalNote(deleted.externalChange)}`, structured: { cell_id: deleted.cellId, index: deleted.index } });
  });

  defineTool(server, MOVE_CELL_SPEC, async (args) => {
    const moved = await store.moveCell(args.notebook_path, cellRef(args)!, args.to_index);
    return result({
      text: `moved cell id=${moved.cellId} from index ${moved.fromIndex} to ${moved.index}${externalNote(moved.externalChange)}`,
      structured: { cell_id: moved.cellId, from_index: moved.fromIndex, index: moved.index },
    });
  });

  defineTool(server, CLEAR_OUTPUTS_SPEC, async (args) => {
    const cleared = await store.clearOutputs(args.notebook_path, cellRef(args, false));
    return result({
      text: cleared.clearedCellIds.length ? `cleared outputs of ${cleared.clearedCellIds.length} cell(s)` : 'nothing to clear',
      structured: { cleared_cell_ids: cleared.clearedCellIds },
    });
  });
};

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}

function externalNote(externalChange: boolean): string {
  return externalChange ? '\nnote: the file had been changed on disk by someone else; the edit was applied to their newer version' : '';
}

/** Keeps rendered outputs of several cells within the text budget as a whole. */
function limitExtra<T extends { type: string; text?: string }>(items: T[], budget: number): T[] {
  let used = 0;
  const kept: T[] = [];
  for (const item of items) {
    const size = item.type === 'text' ? (item.text ?? '').length : 0;
    if (used + size > budget) {
      kept.push({ type: 'text', text: `[... outputs of further cells left out to stay within the output budget; read_cell shows them one at a time ...]` } as unknown as T);
      break;
    }
    used += size;
    kept.push(item);
  }
  return kept;
}

