// Which cells bring the kernel back in line with the notebook, in which order, and why each one.
import type { CellState } from './cell-state.js';
import type { CellDeps } from './python-deps.js';

export type SyncStrategy = 'smart' | 'incremental' | 'full';

export interface PlanCell {
  cellId: string;
  index: number;
  state: CellState;
  source: string;
}

export interface PlannedCell {
  cellId: string;
  index: number;
  reason: string;
}

function stateReason(state: CellState): string | null {
  switch (state) {
    case 'stale':
      return 'source changed since it ran';
    case 'never_run':
      return 'never run';
    case 'from_old_kernel':
      return 'its outputs come from an earlier kernel (state was reset since)';
    default:
      return null;
  }
}

/** The first cell that is not fresh, and every code cell below it. */
export function planIncremental(cells: PlanCell[]): PlannedCell[] {
  const first = cells.findIndex((cell) => cell.state !== 'fresh');
  if (first < 0) return [];
  return cells.slice(first).map((cell, offset) => ({
    cellId: cell.cellId,
    index: cell.index,
    reason: offset === 0 ? (stateReason(cell.state) ?? 'first cell out of date') : (stateReason(cell.state) ?? `below cell ${cells[first]?.index ?? '?'}, the first cell out of date`),
  }));
}

export function planFull(cells: PlanCell[]): PlannedCell[] {
  return cells.map((cell) => ({ cellId: cell.cellId, index: cell.index, reason: 'full: the kernel is restarted and every cell runs' }));
}

/**
 * Out-of-date cells, plus every later cell that reads a name an already planned cell defines — transitively,
 * in notebook order. A cell whose effects cannot be known (magics, shell escapes, `import *`, a syntax error)
 * is re-run when anything above it is, and makes every later cell depend on it.
 */
export function planSmart(cells: PlanCell[], deps: CellDeps[]): PlannedCell[] {
  const plan: PlannedCell[] = [];
  /** Name → index of the planned cell that (last) defines it. */
  const changed = new Map<string, number>();
  let opaqueChangedAt: number | null = null;
  cells.forEach((cell, position) => {
    const cellDeps = deps[position] ?? { defines: [], reads: [], opaque: true, syntaxError: 'not analysed' };
    let reason = stateReason(cell.state);
    if (!reason) {
      const readsChanged = cellDeps.reads.filter((name) => changed.has(name));
      if (readsChanged.length > 0) {
        const sources = [...new Set(readsChanged.map((name) => changed.get(name)))].join(', ');
        reason = `reads ${readsChanged.slice(0, 6).join(', ')}${readsChanged.length > 6 ? ', …' : ''} (defined by cell ${sources})`;
      } else if (opaqueChangedAt !== null) {
        reason = `cell ${opaqueChangedAt} above it was re-planned and its effects cannot be analysed (magics, shell, import *)`;
      } else if ((cellDeps.opaque || cellDeps.syntaxError) && plan.length > 0) {
        reason = cellDeps.syntaxError ? `does not parse (${cellDeps.syntaxError}); re-run after changes above` : 'uses magics or shell commands whose inputs cannot be analysed';
      }
    }
    if (!reason) return;
    plan.push({ cellId: cell.cellId, index: cell.index, reason });
    for (const name of cellDeps.defines) changed.set(name, cell.index);
    if (cellDeps.opaque || cellDeps.syntaxError) opaqueChangedAt ??= cell.index;
  });
  return plan;
}
