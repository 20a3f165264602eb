// Whether a code cell's outputs still describe the kernel: fresh, stale, never_run or from_old_kernel.
import { createHash } from 'node:crypto';
import type { Engine } from '../engine/engine.js';
import { joinText, type Cell } from '../notebook/nbformat.js';
import type { ExecutionState } from '../store/executions.js';

export type CellState = 'fresh' | 'stale' | 'never_run' | 'from_old_kernel';

export function sourceSha256(cell: Cell): string {
  return createHash('sha256').update(joinText(cell.source)).digest('hex');
}

interface Provenance {
  execution_id?: unknown;
  source_sha256?: unknown;
}

/** A cell's state plus what the journal knows about its last run (used to plan a sync). */
export interface CellProvenance {
  state: CellState;
  /** The journal's sequence number of the last run, for cells that ran in the current kernel instance: a later run has a larger number. */
  ranAt: number | null;
  /** How the last run ended ('succeeded', 'failed', 'interrupted', …), when the journal still has it. */
  lastStatus: ExecutionState | null;
  /** `ename: evalue` (or the status text) of a last run that did not succeed. */
  lastError: string | null;
  /** The code of the last run, for a stale cell whose run the journal still has. */
  previousSource: string | null;
}

/**
 * A cell is `fresh` when it last ran through this server, in the notebook's current kernel instance, with the
 * source it has now. Changed source is `stale` (also when a person edited it on disk, and also after a restart:
 * the edit is what the person needs to know first); outputs from a kernel that has since restarted or died — or
 * from a kernel we never saw (run in JupyterLab) — are `from_old_kernel`.
 */
export function cellProvenance(cell: Cell, engine: Engine, notebookPath: string): CellProvenance | null {
  if (cell.cell_type !== 'code') return null;
  const unknown = { ranAt: null, lastStatus: null, lastError: null, previousSource: null };
  const provenance = cell.metadata['mcp_jupyter'] as Provenance | undefined;
  const executionId = typeof provenance?.execution_id === 'string' ? provenance.execution_id : null;
  if (!executionId) return { state: cell.execution_count === null ? 'never_run' : 'from_old_kernel', ...unknown };
  const row = engine.journal.get(executionId);
  const lastStatus = row?.state ?? null;
  const lastError = row && row.state !== 'succeeded' ? (row.errorName !== null ? `${row.errorName}: ${row.errorValue ?? ''}` : row.statusText) : null;
  if (typeof provenance?.source_sha256 === 'string' && provenance.source_sha256 !== sourceSha256(cell)) {
    return { state: 'stale', ranAt: null, lastStatus, lastError, previousSource: row?.code ?? null };
  }
  const session = engine.existingKernel(notebookPath)?.session;
  if (!row || !session || row.kernelId !== session.id || row.kernelInstance !== session.instance) {
    return { state: 'from_old_kernel', ranAt: null, lastStatus, lastError, previousSource: null };
  }
  return { state: 'fresh', ranAt: row.seq, lastStatus, lastError, previousSource: null };
}

export function cellState(cell: Cell, engine: Engine, notebookPath: string): CellState | null {
  return cellProvenance(cell, engine, notebookPath)?.state ?? null;
}
