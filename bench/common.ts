// Shared pieces of the benchmarks: result rows, timing statistics, clean-up, a real engine and leftover-kernel reaping.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Engine, type Snapshot } from '../src/engine/engine.js';
import { LocalKernelProvider } from '../src/kernel/local-provider.js';
import { isProcessAlive, signalGroup } from '../src/kernel/session.js';
import type { ConnectionInfo, KernelProvider, KernelSession } from '../src/kernel/types.js';
import { openDatabase, type Db } from '../src/store/db.js';
import { KernelJournal } from '../src/store/kernels.js';

/** The package root (this file runs from dist/bench/). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');

export interface BenchOptions {
  /** Fewer iterations and smaller payloads: a smoke run, not a measurement. */
  quick: boolean;
  /** Progress lines (stdout). */
  log: (line: string) => void;
}

/** One figure of the summary table. */
export interface Row {
  figure: string;
  value: number;
  unit: string;
  baseline?: { label: string; value: number };
  /** value / baseline.value, when the two are comparable. */
  ratio?: number;
  target?: { text: string; pass: boolean };
}

export interface BenchResult {
  rows: Row[];
  /** The one-line verdict printed as soon as the benchmark ends (the smoke test looks for it). */
  line: string;
  details: Record<string, unknown>;
}

export interface Benchmark {
  /** Used by BENCH_ONLY and as the line prefix. */
  name: string;
  title: string;
  run(options: BenchOptions): Promise<BenchResult>;
}

export const now = (): number => performance.now();

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Nearest-rank percentile: an observed value, never an interpolation. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

export function round(value: number, digits = 3): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** Clean-up steps run in reverse order, each one even if an earlier one failed. */
export class Cleanup {
  private readonly steps: Array<{ what: string; step: () => unknown }> = [];

  defer(what: string, step: () => unknown): void {
    this.steps.push({ what, step });
  }

  async run(): Promise<void> {
    const errors: string[] = [];
    for (const { what, step } of this.steps.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        errors.push(`${what}: ${(error as Error).message}`);
      }
    }
    if (errors.length > 0) process.stderr.write(`bench: clean-up trouble (continuing): ${errors.join('; ')}\n`);
  }
}

export function tempDir(cleanup: Cleanup, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanup.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Kills, by the pid and start time journaled for them, kernels that a state database still lists as live: what a
 * crashed engine or server left behind. Returns how many it killed.
 */
export function reapKernels(stateDb: string): number {
  let db: Db;
  try {
    db = openDatabase(stateDb);
  } catch {
    return 0;
  }
  let killed = 0;
  try {
    for (const row of new KernelJournal(db).live()) {
      const { pid, startTime } = row.stored.details;
      if (typeof pid !== 'number' || (startTime !== null && typeof startTime !== 'string')) continue;
      if (isProcessAlive(pid, startTime) && signalGroup(pid, 'SIGKILL')) killed += 1;
    }
  } finally {
    db.close();
  }
  return killed;
}

export interface EngineHandle {
  db: Db;
  engine: Engine;
  stateDb: string;
}

/** A real engine (real SQLite file, the given provider or real local kernels) in `dir`, closed by `cleanup`. */
export function openEngine(cleanup: Cleanup, dir: string, options: { provider?: KernelProvider; outputBudgetChars?: number; queueLimit?: number } = {}): EngineHandle {
  const stateDb = join(dir, '.mcp-jupyter', 'state.db');
  const db = openDatabase(stateDb);
  cleanup.defer('close the journal', () => db.close());
  cleanup.defer('reap leftover kernels', () => reapKernels(stateDb));
  const provider = options.provider ?? new LocalKernelProvider({ runtimeDir: join(dir, '.mcp-jupyter', 'kernels'), workspace: dir });
  const engine = new Engine({
    db,
    provider,
    workspaceRoot: dir,
    ...(options.outputBudgetChars ? { outputBudgetChars: options.outputBudgetChars } : {}),
    ...(options.queueLimit ? { queueLimit: options.queueLimit } : {}),
  });
  cleanup.defer('shut the engine and its kernels down', () => engine.close({ kernels: 'shutdown' }));
  return { db, engine, stateDb };
}

export const NOTEBOOK = 'bench.ipynb';

/** Submits one execution, waits for it, and insists that it succeeded. */
export async function runCell(engine: Engine, code: string, timeoutMs = 120_000, notebookPath = NOTEBOOK): Promise<Snapshot> {
  const [accepted] = engine.submit([{ notebookPath, code, kind: 'code', kernelName: 'python3' }]);
  const done = await engine.wait(accepted!.id, timeoutMs);
  if (done.state !== 'succeeded') {
    throw new Error(`the cell ${JSON.stringify(code.slice(0, 60))} ended ${done.state}: ${done.statusText ?? done.error?.evalue ?? 'no detail'}`);
  }
  return done;
}

/** The live kernel session behind a notebook of the engine (after it ran something). */
export function sessionOf(engine: Engine, notebookPath = NOTEBOOK): KernelSession {
  const session = engine.existingKernel(notebookPath)?.session;
  if (!session) throw new Error(`no live kernel for ${notebookPath}: run a cell first`);
  return session;
}

/** The connection info of a local kernel, read back from what it would journal. */
export function connectionOf(session: KernelSession): ConnectionInfo {
  const connection = session.toStored().details['connection'];
  if (!isConnectionInfo(connection)) throw new Error(`kernel ${session.id} has no local connection info (is it a remote kernel?)`);
  return connection;
}

function isConnectionInfo(value: unknown): value is ConnectionInfo {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  const ports = ['shell_port', 'iopub_port', 'stdin_port', 'control_port', 'hb_port'];
  return (
    (v['transport'] === 'tcp' || v['transport'] === 'ipc') &&
    typeof v['ip'] === 'string' &&
    typeof v['key'] === 'string' &&
    typeof v['signature_scheme'] === 'string' &&
    ports.every((port) => typeof v[port] === 'number')
  );
}

export function ms(value: number): string {
  return `${value.toFixed(3)} ms`;
}

export function perSecond(value: number): string {
  return `${Math.round(value).toLocaleString('en-US')}/s`;
}
