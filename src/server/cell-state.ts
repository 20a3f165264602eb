// Whether a code cell's outputs still describe the kernel: fresh, stale, never_run or from_old_kernel.
import { createHash } from 'node:crypto';
import type { Engine } from '../engine/engine.js';
import { joinText, type Cell } from '../notebook/nbformat.js';

export type CellState = 'fresh' | 'stale' | 'never_run' | 'from_old_kernel';

export function sourceSha256(cell: Cell): string {
  return createHash('sha256').update(joinText(cell.source)).digest('hex');
}

interface Provenance {
  execution_id?: unknown;
  source_sha256?: unknown;
}

/**
 * A cell is `fresh` when it last ran through this server, in the notebook's current kernel instance, with the
 * source it has now. Changed source is `stale` (also when a person edited it on disk); outputs from a kernel
 * that has since restarted or died — or from a kernel we never saw (run in JupyterLab) — are `from_old_kernel`.
 */
export function cellState(cell: Cell, engine: Engine, notebookPath: string): CellState | null {
  if (cell.cell_type !== 'code') return null;
  const provenance = cell.metadata['mcp_jupyter'] as Provenance | undefined;
  const executionId = typeof provenance?.execution_id === 'string' ? provenance.execution_id : null;
  if (!executionId) return cell.execution_count === null ? 'never_run' : 'from_old_kernel';
  if (typeof provenance?.source_sha256 === 'string' && provenance.source_sha256 !== sourceSha256(cell)) return 'stale';
  const row = engine.journal.get(executionId);
  const session = engine.existingKernel(notebookPath)?.session;
  if (!row || !session || row.kernelId !== session.id || row.kernelInstance !== session.instance) return 'from_old_kernel';
  return 'fresh';
}
