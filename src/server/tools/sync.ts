// sync_notebook: plan (and run) the cells that bring the kernel back in line with the notebook.
import { z } from 'zod';
import { joinText, kernelspecOf } from '../../notebook/nbformat.js';
import { cellState } from '../cell-state.js';
import { statusLine, structuredExecution, waitForExecution } from '../execution-result.js';
import { analyzePythonCells } from '../python-deps.js';
import { planFull, planIncremental, planSmart, type PlanCell, type PlannedCell, type SyncStrategy } from '../sync-plan.js';
import { boolean, defineTool, notebookPathSchema, result, seconds, type ToolRegistrar } from './common.js';

export const registerSyncTools: ToolRegistrar = (server, workspace) => {
  const engine = workspace.engine;

  defineTool(server, 'sync_notebook', {
    title: 'Sync the kernel with the notebook',
    description:
      "Brings the kernel back in line with the notebook. smart (default): stale and never-run cells plus the cells below that read what they define (Python; other languages fall back to incremental). incremental: the first out-of-date cell and everything below. full: restart and run all. dry_run returns the plan with a reason per cell.",
    input: {
      notebook_path: notebookPathSchema,
      strategy: z.enum(['smart', 'incremental', 'full'], { errorMap: () => ({ message: "strategy must be 'smart', 'incremental' or 'full'" }) }).optional(),
      dry_run: boolean('dry_run', 'Only return the plan (default false)').optional(),
      wait: boolean('wait', 'Wait for the planned cells to finish (default false)').optional(),
      timeout_s: seconds('timeout_s', 'How long to wait with wait=true (default 60)', 86_400).optional(),
    },
    output: { strategy: z.string(), plan: z.array(z.object({ cell_id: z.string(), index: z.number(), reason: z.string() })) },
    handler: async (args, extra) => {
      const read = await workspace.notebooks.read(args.notebook_path);
      const requested: SyncStrategy = args.strategy ?? 'smart';
      const cells: PlanCell[] = [];
      read.notebook.cells.forEach((cell, index) => {
        if (cell.cell_type !== 'code' || joinText(cell.source).trim() === '') return;
        cells.push({ cellId: cell.id, index, state: cellState(cell, engine, read.path) ?? 'never_run', source: joinText(cell.source) });
      });
      const session = engine.existingKernel(read.path)?.session;
      const notes: string[] = [];
      let strategy = requested;
      let plan: PlannedCell[];
      if (requested === 'full') {
        plan = planFull(cells);
      } else if (requested === 'incremental') {
        plan = planIncremental(cells);
      } else if (!session || session.status === 'dead') {
        // Without a live kernel nothing is fresh: every cell is needed to rebuild the state.
        plan = planSmart(cells, cells.map(() => ({ defines: [], reads: [], opaque: false, syntaxError: null })));
      } else if ((session.info?.languageName ?? kernelspecOf(read.notebook)?.language ?? 'python').toLowerCase() !== 'python') {
        strategy = 'incremental';
        notes.push(`smart needs a Python kernel; this one runs ${session.info?.languageName ?? 'another language'}, so the plan is incremental`);
        plan = planIncremental(cells);
      } else {
        const deps = await analyzePythonCells(session, cells.map((cell) => cell.source), 30_000);
        plan = planSmart(cells, deps);
      }
      const planned = plan.map((entry) => ({ cell_id: entry.cellId, index: entry.index, reason: entry.reason }));
      const planText = planned.length ? planned.map((entry) => `[${entry.index}] ${entry.cell_id}: ${entry.reason}`).join('\n') : 'nothing to run: every code cell is fresh';
      if (args.dry_run === true || planned.length === 0) {
        return result({ text: [`${strategy} plan for ${read.path}${args.dry_run ? ' (dry run)' : ''}:`, planText, ...notes].join('\n'), structured: { strategy, dry_run: args.dry_run === true, plan: planned, execution_ids: [] } });
      }
      if (strategy === 'full' && session) await engine.restartKernel(read.path);
      const kernelName = session?.kernelName ?? kernelspecOf(read.notebook)?.name ?? 'python3';
      const byId = new Map(cells.map((cell) => [cell.cellId, cell]));
      const accepted = engine.submit(
        plan.map((entry) => ({ notebookPath: read.path, code: byId.get(entry.cellId)?.source ?? '', kind: 'cell' as const, cellId: entry.cellId, kernelName })),
        { stopOnError: true },
      );
      const ids = accepted.map((snapshot) => snapshot.id);
      if (args.wait === true) {
        await waitForExecution(workspace, ids, (args.timeout_s ?? 60) * 1000, extra);
        await workspace.settled();
      }
      const snapshots = ids.map((id) => engine.get(id));
      return result({
        text: [`${strategy} plan for ${read.path}:`, planText, ...notes, '', ...snapshots.map((snapshot) => statusLine(snapshot))].join('\n'),
        structured: { strategy, dry_run: false, plan: planned, execution_ids: ids, executions: snapshots.map(structuredExecution) },
      });
    },
  });
};
