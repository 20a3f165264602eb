// sync_notebook: plan (and run) the cells that bring the kernel back in line with the notebook.
import { z } from 'zod';
import { joinText, kernelspecOf } from '../../notebook/nbformat.js';
import { cellProvenance } from '../cell-state.js';
import { statusLine, structuredExecution, waitForExecution } from '../execution-result.js';
import { analyzePythonCells, type CellDeps } from '../python-deps.js';
import { planSync, type PlanCell, type SyncPlan, type SyncStrategy } from '../sync-plan.js';
import { boolean, defineTool, notebookPathSchema, result, seconds, ToolInputError, toolSpec, type ToolRegistrar } from './common.js';

const ANALYSIS_TIMEOUT_MS = 30_000;

const SYNC_NOTEBOOK_SPEC = toolSpec('sync_notebook', {
  title: 'Sync the kernel with the notebook',
  description:
    'Brings the kernel back in line with the notebook. smart (default): the stale, never-run and old-kernel cells plus the cells that read what they define, transitively, in notebook order (Python; other languages fall back to incremental). incremental: the first out-of-date cell and everything below. full: restart and run all. dry_run returns the plan with a reason per cell; otherwise the plan is queued, stops at the first error, and the execution ids are returned.',
  input: {
    notebook_path: notebookPathSchema,
    strategy: z.enum(['smart', 'incremental', 'full'], { errorMap: () => ({ message: "strategy must be 'smart', 'incremental' or 'full'" }) }).optional(),
    dry_run: boolean('dry_run', 'Only return the plan (default false)').optional(),
    wait: boolean('wait', 'Wait for the planned cells to finish (default false)').optional(),
    timeout_s: seconds('timeout_s', 'How long to wait with wait=true (default 60)', 86_400).optional(),
  },
  output: {
    strategy: z.string(),
    requested_strategy: z.string(),
    dry_run: z.boolean(),
    plan: z.array(
      z
        .object({
          cell_id: z.string(),
          index: z.number(),
          kind: z.string(),
          reason: z.string(),
          depends_on: z.array(z.object({ name: z.string(), cell_id: z.string(), index: z.number() })),
        })
        .passthrough(),
    ),
    notes: z.array(z.string()),
    execution_ids: z.array(z.string()),
  },
});

export const registerSyncTools: ToolRegistrar = (server, workspace) => {
  const engine = workspace.engine;

  defineTool(server, SYNC_NOTEBOOK_SPEC, async (args, extra) => {
    const read = await workspace.notebooks.read(args.notebook_path);
    const requested: SyncStrategy = args.strategy ?? 'smart';
    const cells: PlanCell[] = [];
    const previous: Array<string | null> = [];
    read.notebook.cells.forEach((cell, index) => {
      // Empty code cells change nothing; running them would only add noise to the plan.
      if (cell.cell_type !== 'code' || joinText(cell.source).trim() === '') return;
      const provenance = cellProvenance(cell, engine, read.path);
      if (!provenance) return;
      cells.push({ cellId: cell.id, index, state: provenance.state, source: joinText(cell.source), ranAt: provenance.ranAt, lastStatus: provenance.lastStatus, lastError: provenance.lastError });
      previous.push(provenance.previousSource);
    });
    const kernel = engine.existingKernel(read.path);
    const session = kernel?.session && kernel.session.status !== 'dead' ? kernel.session : null;
    const language = session?.info?.languageName ?? kernelspecOf(read.notebook)?.language ?? null;
    let deps: CellDeps[] | null = null;
    let analysisError: string | null = null;
    if (requested === 'smart' && session && (language ?? 'python').toLowerCase() === 'python') {
      try {
        deps = await analyzePythonCells(session, cells.map((cell, position) => ({ source: cell.source, previous: previous[position] ?? null })), ANALYSIS_TIMEOUT_MS);
      } catch (error) {
        analysisError = (error as Error).message;
      }
    }
    const plan: SyncPlan = planSync({ strategy: requested, language, cells, deps, analysisError });
    const notes = [...plan.notes];
    const busy = kernel ? kernel.pending().length + (kernel.running ? 1 : 0) : 0;
    if (busy > 0) {
      notes.push(`${busy} execution(s) of this notebook are still queued or running; their cells keep their old state until they finish, so this plan may repeat them (list_executions shows them)`);
    }
    const planned = plan.cells.map((entry) => ({
      cell_id: entry.cellId,
      index: entry.index,
      kind: entry.kind,
      reason: entry.reason,
      depends_on: entry.dependsOn.map((dependency) => ({ name: dependency.name, cell_id: dependency.cellId, index: dependency.index })),
    }));
    const header = `${plan.strategy} plan for ${read.path}${plan.strategy !== requested ? ` (${requested} was asked for)` : ''}${args.dry_run ? ' (dry run: nothing was run)' : ''}:`;
    const planText = planned.length ? planned.map((entry) => `[${entry.index}] ${entry.cell_id}: ${entry.reason}`).join('\n') : 'nothing to run: every code cell is fresh';
    const structured = { strategy: plan.strategy, requested_strategy: requested, dry_run: args.dry_run === true, plan: planned, notes };
    const noteText = notes.map((note) => `note: ${note}`);
    if (args.dry_run === true || planned.length === 0) {
      return result({ text: [header, planText, ...noteText].join('\n'), structured: { ...structured, execution_ids: [] } });
    }
    const kernelName = session?.kernelName ?? kernelspecOf(read.notebook)?.name ?? 'python3';
    if (!session) {
      const specs = await engine.provider.listSpecs();
      if (!specs.some((spec) => spec.name === kernelName)) {
        throw new ToolInputError(`the notebook asks for kernelspec '${kernelName}', which is not installed. Available: ${specs.map((spec) => spec.name).join(', ') || 'none'}. Nothing was run.`);
      }
    }
    if (plan.strategy === 'full' && session) await engine.restartKernel(read.path);
    const byId = new Map(cells.map((cell) => [cell.cellId, cell.source]));
    const accepted = engine.submit(
      plan.cells.map((entry) => ({ notebookPath: read.path, code: byId.get(entry.cellId) ?? '', kind: 'cell' as const, cellId: entry.cellId, kernelName })),
      { stopOnError: true },
    );
    const ids = accepted.map((snapshot) => snapshot.id);
    if (args.wait === true) {
      await waitForExecution(workspace, ids, (args.timeout_s ?? 60) * 1000, extra);
      await workspace.settled();
    }
    const snapshots = ids.map((id) => engine.get(id));
    return result({
      text: [header, planText, ...noteText, '', ...snapshots.map((snapshot) => statusLine(snapshot))].join('\n'),
      structured: { ...structured, execution_ids: ids, executions: snapshots.map(structuredExecution) },
    });
  });
};
