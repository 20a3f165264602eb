// Which cells bring the kernel back in line with the notebook, in which order, and why each one.
import type { CellState } from './cell-state.js';
import type { CellDeps } from './python-deps.js';

export type SyncStrategy = 'smart' | 'incremental' | 'full';

export interface PlanCell {
  cellId: string;
  /** The cell's position in the notebook (markdown cells count), as read_notebook shows it. */
  index: number;
  state: CellState;
  source: string;
  /** For a fresh cell: the journal order of its last run (a later run has a larger number). */
  ranAt?: number | null;
  /** How its last run ended ('succeeded', 'failed', …), when known. */
  lastStatus?: string | null;
  lastError?: string | null;
}

export type PlanReasonKind =
  | 'source_changed'
  | 'never_run'
  | 'from_old_kernel'
  | 'reads_changed'
  | 'restores'
  | 'rebuilds'
  | 'retries_failed'
  | 'opaque'
  | 'below_first_change'
  | 'full';

export interface Dependency {
  /** The name read (or '*' for a cell whose effects cannot be analysed). */
  name: string;
  cellId: string;
  index: number;
}

export interface PlannedCell {
  cellId: string;
  index: number;
  kind: PlanReasonKind;
  reason: string;
  dependsOn: Dependency[];
}

export interface SyncPlan {
  /** The strategy the plan follows (smart falls back to incremental for languages other than Python). */
  strategy: SyncStrategy;
  cells: PlannedCell[];
  /** Things the caller should know: a fallback, names read before the cell that defines them, cells that will fail. */
  notes: string[];
}

const NO_DEPS: CellDeps = { defines: [], deletes: [], mutates: [], updates: [], reads: [], functions: {}, opaqueReads: null, opaqueDefines: null, syntaxError: null, sameAsPrevious: null };

function stateEntry(cell: PlanCell, deps: CellDeps): Pick<PlannedCell, 'kind' | 'reason'> | null {
  const broken = deps.syntaxError ? `; it does not parse (${deps.syntaxError}), so the run will stop there` : '';
  switch (cell.state) {
    case 'stale':
      return {
        kind: 'source_changed',
        reason: `source changed since it ran${deps.sameAsPrevious === true ? ' (only comments or whitespace differ: it re-runs all the same, and so do the cells that read its names)' : ''}${broken}`,
      };
    case 'never_run':
      return { kind: 'never_run', reason: `never run${broken}` };
    case 'from_old_kernel':
      return { kind: 'from_old_kernel', reason: `ran in an earlier kernel (restarted or replaced since), so what it did is gone${broken}` };
    default:
      return null;
  }
}

/** The first cell that is not fresh, and every code cell below it. */
export function planIncremental(cells: PlanCell[]): PlannedCell[] {
  const first = cells.findIndex((cell) => cell.state !== 'fresh');
  if (first < 0) return [];
  const firstIndex = cells[first]!.index;
  return cells.slice(first).map((cell) => {
    const entry = stateEntry(cell, NO_DEPS) ?? { kind: 'below_first_change' as const, reason: `below cell ${firstIndex}, the first cell out of date (incremental re-runs every cell after it)` };
    return { cellId: cell.cellId, index: cell.index, ...entry, dependsOn: [] };
  });
}

export function planFull(cells: PlanCell[]): PlannedCell[] {
  return cells.map((cell) => ({ cellId: cell.cellId, index: cell.index, kind: 'full' as const, reason: 'full: the kernel restarts and every code cell runs in order', dependsOn: [] }));
}

/** What a cell reads and changes once calls of functions defined in earlier cells are followed. */
interface Effects {
  deps: CellDeps;
  /** Name read → the function through whose call it is read (null: read directly). */
  reads: Map<string, string | null>;
  /** Everything the cell binds, deletes or changes (its own and through the functions it calls). */
  changes: Set<string>;
  /** Names bound from scratch (not changed in place): running the cell sets them regardless of their old value. */
  binds: Set<string>;
  /** Names whose new value depends on the old one (see CellDeps.updates). */
  updates: Set<string>;
  deletes: Set<string>;
}

function effectsOf(deps: CellDeps[], count: number): Effects[] {
  /** The functions visible at this point of the notebook: name → what their bodies read and write when called. */
  const functions = new Map<string, { reads: string[]; writes: string[] }>();
  const out: Effects[] = [];
  for (let position = 0; position < count; position += 1) {
    const cellDeps = deps[position] ?? NO_DEPS;
    const reads = new Map<string, string | null>(cellDeps.reads.map((name) => [name, null]));
    const changes = new Set(cellDeps.defines);
    const mutated = new Set(cellDeps.mutates);
    const binds = new Set(cellDeps.defines.filter((name) => !mutated.has(name)));
    const updates = new Set(cellDeps.updates);
    const queue = [...cellDeps.reads];
    const followed = new Set<string>();
    for (let name = queue.pop(); name !== undefined; name = queue.pop()) {
      const fn = functions.get(name);
      if (!fn || followed.has(name)) continue;
      followed.add(name);
      const via = reads.get(name) ?? name;
      for (const read of fn.reads) {
        if (!reads.has(read)) reads.set(read, via);
        queue.push(read);
      }
      for (const written of fn.writes) {
        changes.add(written);
        // A body that reads what it writes changes it from its old value (lst.append, global x; x += 1).
        if (fn.reads.includes(written)) updates.add(written);
        else binds.add(written);
      }
    }
    for (const name of cellDeps.defines) {
      const defined = cellDeps.functions[name];
      if (defined) functions.set(name, defined);
      else if (!mutated.has(name)) functions.delete(name);
    }
    out.push({ deps: cellDeps, reads, changes, binds, updates, deletes: new Set(cellDeps.deletes) });
  }
  return out;
}

type Entry = Pick<PlannedCell, 'kind' | 'reason' | 'dependsOn'>;

/**
 * Smart planning, in notebook order: a cell re-runs when
 * - it is stale, never ran, or ran in an earlier kernel;
 * - it reads (directly, or through a function it calls) a name that a cell above it changes and that cell
 *   re-runs in this plan or ran after it (e.g. an agent re-ran a helper with execute_cell);
 * - it binds a name again that a re-running cell above overwrites, and a cell below reads it (so the kernel ends
 *   with the value the notebook order gives);
 * - a cell above whose effects cannot be analysed (`%run`, `!cmd`, `import *`) re-runs, or it is such a cell;
 * - a cell below that re-runs changes a name from its old value (`x += 1`, `lst.append()`, `del x`): the name is
 *   rebuilt from the cell that created it, or running it again would apply the change twice;
 * - its last run failed and a re-running cell below needs a name it defines.
 * Cells are planned in notebook order only: a cell that reads a name defined below it is reported in `notes`.
 */
export function planSmart(cells: PlanCell[], deps: CellDeps[]): SyncPlan {
  const effects = effectsOf(deps, cells.length);
  const readersOf = new Map<string, number[]>();
  let lastOpaqueReader = -1;
  effects.forEach((effect, position) => {
    for (const name of effect.reads.keys()) {
      const readers = readersOf.get(name);
      if (readers) readers.push(position);
      else readersOf.set(name, [position]);
    }
    if (effect.deps.opaqueReads) lastOpaqueReader = position;
  });
  const readerBelow = (name: string, position: number): number | null => {
    const reader = readersOf.get(name)?.find((candidate) => candidate > position);
    if (reader !== undefined) return reader;
    return lastOpaqueReader > position ? lastOpaqueReader : null;
  };
  const label = (position: number): string => `cell ${cells[position]!.index}`;
  const dependency = (name: string, position: number): Dependency => ({ name, cellId: cells[position]!.cellId, index: cells[position]!.index });

  const forced = new Map<number, Entry>();
  let planned = new Map<number, Entry>();
  // Each round can only add cells (forcing is monotone), so this ends after at most one round per cell.
  for (let round = 0; round <= cells.length; round += 1) {
    planned = planPass(cells, effects, forced, readerBelow, label, dependency);
    const added = forceRound(cells, effects, planned, forced, label, dependency);
    if (!added) break;
  }
  const plan = [...planned.entries()]
    .sort(([a], [b]) => a - b)
    .map(([position, entry]) => ({ cellId: cells[position]!.cellId, index: cells[position]!.index, ...entry }));
  return { strategy: 'smart', cells: plan, notes: notesFor(effects, planned, label) };
}

/** A virtual time for cells that re-run in this plan: after every run so far, in notebook order. */
const PLANNED_TIME = Number.MAX_SAFE_INTEGER / 2;

function planPass(
  cells: PlanCell[],
  effects: Effects[],
  forced: Map<number, Entry>,
  readerBelow: (name: string, position: number) => number | null,
  label: (position: number) => string,
  dependency: (name: string, position: number) => Dependency,
): Map<number, Entry> {
  const planned = new Map<number, Entry>();
  const ranAt: number[] = [];
  /** Name → the cells above that change it, in notebook order. */
  const changers = new Map<string, number[]>();
  const opaqueChangers: number[] = [];
  const how = (position: number): string => (planned.has(position) ? 're-runs' : 're-ran after this cell');
  cells.forEach((cell, position) => {
    const effect = effects[position]!;
    const at = cell.ranAt ?? -1;
    const later = (other: number): boolean => ranAt[other]! > at;
    let entry: Entry | null = null;
    const byState = stateEntry(cell, effect.deps);
    if (byState) entry = { ...byState, dependsOn: [] };
    if (!entry) {
      const opaque = opaqueChangers.find(later);
      if (opaque !== undefined) {
        entry = {
          kind: 'opaque',
          reason: `${label(opaque)} above ${how(opaque)} and uses ${effects[opaque]!.deps.opaqueDefines}, whose effects cannot be analysed`,
          dependsOn: [dependency('*', opaque)],
        };
      }
    }
    if (!entry) {
      const found: Array<{ name: string; via: string | null; by: number }> = [];
      for (const [name, via] of effect.reads) {
        for (const by of changers.get(name) ?? []) if (later(by)) found.push({ name, via, by });
      }
      if (found.length > 0) entry = { kind: 'reads_changed', reason: readsReason(found, effects, label, how), dependsOn: found.map(({ name, by }) => dependency(name, by)) };
    }
    if (!entry && effect.deps.opaqueReads) {
      const above = ranAt.findIndex((time, other) => other < position && time > at);
      if (above >= 0) {
        entry = {
          kind: 'opaque',
          reason: `uses ${effect.deps.opaqueReads}, which may read any name, and ${label(above)} above ${how(above)}`,
          dependsOn: [dependency('*', above)],
        };
      }
    }
    if (!entry) {
      for (const name of effect.binds) {
        if (effect.reads.has(name)) continue;
        const by = (changers.get(name) ?? []).filter(later).pop();
        const reader = by === undefined ? null : readerBelow(name, position);
        if (by === undefined || reader === null) continue;
        entry = {
          kind: 'restores',
          reason: `defines ${name} again after ${label(by)}, which ${how(by)} and overwrites it; ${label(reader)} below reads ${name}`,
          dependsOn: [dependency(name, by)],
        };
        break;
      }
    }
    entry ??= forced.get(position) ?? null;
    if (entry) planned.set(position, entry);
    ranAt[position] = entry ? PLANNED_TIME + position : at;
    for (const name of effect.changes) {
      const cellsChanging = changers.get(name);
      if (cellsChanging) cellsChanging.push(position);
      else changers.set(name, [position]);
    }
    if (effect.deps.opaqueDefines) opaqueChangers.push(position);
  });
  return planned;
}

function readsReason(
  found: Array<{ name: string; via: string | null; by: number }>,
  effects: Effects[],
  label: (position: number) => string,
  how: (position: number) => string,
): string {
  const verb = (name: string, by: number): string => {
    const effect = effects[by]!;
    return effect.deletes.has(name) ? 'delete' : effect.deps.mutates.includes(name) || effect.updates.has(name) ? 'change' : 'define';
  };
  // One part per name set: "reads df, which cells 1 and 2 define or change (they re-run)".
  const byName = new Map<string, { cells: number[]; verbs: Set<string> }>();
  for (const { name, via, by } of found) {
    const shown = via ? `${name} (through ${via}())` : name;
    const group = byName.get(shown) ?? { cells: [], verbs: new Set<string>() };
    if (!group.cells.includes(by)) group.cells.push(by);
    group.verbs.add(verb(name, by));
    byName.set(shown, group);
  }
  const parts = new Map<string, { names: string[]; cells: number[]; verbs: Set<string> }>();
  for (const [shown, group] of byName) {
    const key = `${group.cells.join(',')}|${group.cells.map(how).join(',')}`;
    const part = parts.get(key) ?? { names: [], cells: group.cells, verbs: new Set<string>() };
    part.names.push(shown);
    for (const each of group.verbs) part.verbs.add(each);
    parts.set(key, part);
  }
  const texts = [...parts.values()].slice(0, 4).map(({ names, cells, verbs }) => {
    const shown = names.length > 5 ? `${names.slice(0, 5).join(', ')}, …` : names.join(', ');
    const did = [...verbs].join(' or ');
    const hows = new Set(cells.map(how));
    if (cells.length === 1) return `reads ${shown}, which ${label(cells[0]!)} ${[...verbs].map((each) => `${each}s`).join(' or ')} (it ${how(cells[0]!)})`;
    const which = `cells ${cells.map((cell) => label(cell).replace('cell ', '')).join(' and ')}`;
    return `reads ${shown}, which ${which} ${did} (${hows.size === 1 ? `they ${[...hows][0]!.replace('re-runs', 're-run')}` : 'they re-run or re-ran after this cell'})`;
  });
  return `${texts.join('; ')}${parts.size > 4 ? `; and names from ${parts.size - 4} more cells` : ''}`;
}

/** Cells that must re-run because of cells planned below them; returns whether any was added. */
function forceRound(
  cells: PlanCell[],
  effects: Effects[],
  planned: Map<number, Entry>,
  forced: Map<number, Entry>,
  label: (position: number) => string,
  dependency: (name: string, position: number) => Dependency,
): boolean {
  let added = false;
  const force = (position: number, entry: Entry): void => {
    if (planned.has(position) || forced.has(position)) return;
    forced.set(position, entry);
    added = true;
  };
  for (const position of planned.keys()) {
    for (const name of effects[position]!.updates) {
      for (let above = position - 1; above >= 0; above -= 1) {
        const effect = effects[above]!;
        if (!effect.changes.has(name)) continue;
        force(above, {
          kind: 'rebuilds',
          reason: `${label(position)} below changes ${name} from its current value (like x += 1, .append(), del x or x = f(x)), so running it again alone would apply that twice: ${name} is rebuilt from here first`,
          dependsOn: [dependency(name, position)],
        });
        if (effect.binds.has(name) && !effect.updates.has(name)) break;
      }
    }
  }
  cells.forEach((cell, position) => {
    if (cell.state !== 'fresh' || !cell.lastStatus || cell.lastStatus === 'succeeded' || planned.has(position)) return;
    const defines = effects[position]!.changes;
    for (const [reader] of [...planned.entries()].filter(([other]) => other > position)) {
      const name = [...effects[reader]!.reads.keys()].find((read) => defines.has(read));
      if (name === undefined) continue;
      force(position, {
        kind: 'retries_failed',
        reason: `its last run did not succeed (${cell.lastError ?? cell.lastStatus}), and ${label(reader)}, which re-runs, reads ${name} from it`,
        dependsOn: [dependency(name, reader)],
      });
      return;
    }
  });
  return added;
}

function notesFor(effects: Effects[], planned: Map<number, Entry>, label: (position: number) => string): string[] {
  const notes: string[] = [];
  const outOfOrder: string[] = [];
  const definedAbove = new Set<string>();
  // Reported whether or not either cell is planned: a notebook in this shape does not run top to bottom (a cell
  // moved above its definer, or a definition added below its first use).
  effects.forEach((effect, position) => {
    for (const name of effect.reads.keys()) {
      if (definedAbove.has(name)) continue;
      let below = position + 1;
      while (below < effects.length && !effects[below]!.changes.has(name)) below += 1;
      if (below >= effects.length) continue;
      outOfOrder.push(
        `${label(position)} reads ${name} before ${label(below)} below defines it: in notebook order ${name} does not exist yet when ${label(position)} runs (it worked only if the kernel already had ${name}). Move ${label(below)} above it, or define ${name} earlier; the plan keeps notebook order.`,
      );
    }
    for (const name of effect.changes) definedAbove.add(name);
    if (planned.has(position) && effect.deps.syntaxError) {
      notes.push(`${label(position)} does not parse (${effect.deps.syntaxError}): the run stops there. Fix it with edit_cell and sync again.`);
    }
  });
  notes.push(...outOfOrder.slice(0, 5));
  if (outOfOrder.length > 5) notes.push(`… and ${outOfOrder.length - 5} more names read above the cell that defines them`);
  return notes;
}

export interface SyncInput {
  strategy: SyncStrategy;
  /** The kernel's language (from kernel_info or the notebook's kernelspec); null when unknown (taken as Python). */
  language: string | null;
  cells: PlanCell[];
  /** The analysis of every cell, in order; null when it could not be had. */
  deps: CellDeps[] | null;
  /** Why the analysis could not be had, when `deps` is null. */
  analysisError?: string | null;
}

/** Chooses and runs the planner, falling back to incremental where smart cannot work, and says so. */
export function planSync(input: SyncInput): SyncPlan {
  if (input.strategy === 'full') return { strategy: 'full', cells: planFull(input.cells), notes: [] };
  if (input.strategy === 'incremental') return { strategy: 'incremental', cells: planIncremental(input.cells), notes: [] };
  const language = (input.language ?? 'python').toLowerCase();
  if (language !== 'python') {
    return {
      strategy: 'incremental',
      cells: planIncremental(input.cells),
      notes: [`smart needs to read the code's names, which it can for Python only; this kernel runs ${input.language}, so the plan is incremental (the first cell out of date and everything below it)`],
    };
  }
  if (input.deps) return planSmart(input.cells, input.deps);
  // Nothing fresh: every cell re-runs whatever it reads, so the plan needs no analysis.
  if (input.cells.every((cell) => cell.state !== 'fresh')) return planSmart(input.cells, []);
  return {
    strategy: 'incremental',
    cells: planIncremental(input.cells),
    notes: [`smart could not analyse the cells (${input.analysisError ?? 'no live kernel to run the analysis in'}), so the plan is incremental`],
  };
}
