// Benchmark 5: durable accepts per second (each execution committed to SQLite before its id is handed back),
// against raw better-sqlite3 single-row INSERT transactions into the same schema on the same kind of file.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { KernelProvider, KernelSession, KernelSpec, StartOptions } from '../src/kernel/types.js';
import { openDatabase } from '../src/store/db.js';
import { Cleanup, NOTEBOOK, now, openEngine, percentile, perSecond, round, tempDir, type Benchmark } from './common.js';

const TARGET_PER_SECOND = 2_000;
const CALLERS = 8;

/** A kernel that never comes up: executions are accepted and queued but never run, so only acceptance is timed. */
class NeverStartingProvider implements KernelProvider {
  readonly kind = 'local' as const;

  listSpecs(): Promise<KernelSpec[]> {
    return Promise.resolve([]);
  }

  start(_options: StartOptions): Promise<KernelSession> {
    return new Promise<KernelSession>(() => undefined);
  }

  attach(): Promise<KernelSession | null> {
    return Promise.resolve(null);
  }
}

/** A turn of the event loop between calls, as between two requests arriving at the server. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export const accept: Benchmark = {
  name: 'accept',
  title: 'Durable accept rate: engine.submit from 8 concurrent callers (kernel never starts) vs raw SQLite INSERT transactions',
  async run({ quick, log }) {
    const total = quick ? 1_000 : 10_000;
    const cleanup = new Cleanup();
    try {
      const dir = tempDir(cleanup, 'mcpj-bench-accept-');
      // Everything goes to one notebook's queue, which must hold it all: this measures accepting, not refusing.
      const { engine, db } = openEngine(cleanup, dir, { provider: new NeverStartingProvider(), queueLimit: total });

      const latencies: number[] = [];
      const ids = new Set<string>();
      const caller = async (count: number): Promise<void> => {
        for (let i = 0; i < count; i += 1) {
          await nextTurn();
          const start = now();
          const [accepted] = engine.submit([{ notebookPath: NOTEBOOK, code: `x = ${i}`, kind: 'code', kernelName: 'python3' }]);
          latencies.push(now() - start);
          ids.add(accepted!.id);
        }
      };
      const start = now();
      await Promise.all(Array.from({ length: CALLERS }, (_, index) => caller(Math.floor(total / CALLERS) + (index < total % CALLERS ? 1 : 0))));
      const engineSeconds = (now() - start) / 1000;
      const stored = db.prepare("SELECT COUNT(*) FROM execution_queue WHERE state = 'pending'").pluck().get() as number;
      if (ids.size !== total || stored !== total) throw new Error(`accepted ${ids.size} ids but the journal holds ${stored} pending executions (expected ${total})`);
      const engineRate = total / engineSeconds;
      // The same calls without the event-loop turns between them: the cost of submit itself.
      const submitOnlyRate = total / (latencies.reduce((sum, value) => sum + value, 0) / 1000);

      const rawRate = rawInsertRate(join(dir, 'raw', 'state.db'), total);
      const ratio = engineRate / rawRate;
      const pass = engineRate >= TARGET_PER_SECOND;
      log(`  ${total} accepts from ${CALLERS} callers in ${engineSeconds.toFixed(2)} s (submit p50 ${percentile(latencies, 50).toFixed(3)} ms, p99 ${percentile(latencies, 99).toFixed(3)} ms; submit alone ${perSecond(submitOnlyRate)}); raw inserts ${perSecond(rawRate)}`);
      return {
        line: `accept: ${perSecond(engineRate)} durable accepts (target >= ${perSecond(TARGET_PER_SECOND)}: ${pass ? 'PASS' : 'MISS'}), raw INSERT ${perSecond(rawRate)}, ratio ${ratio.toFixed(3)}`,
        rows: [
          { figure: 'durable accepts, engine.submit', value: engineRate, unit: '/s', baseline: { label: 'raw INSERT txn', value: rawRate }, ratio, target: { text: `>= ${TARGET_PER_SECOND}/s`, pass } },
          { figure: 'submit call p99', value: percentile(latencies, 99), unit: 'ms' },
        ],
        details: {
          total,
          callers: CALLERS,
          engineSeconds: round(engineSeconds),
          enginePerSecond: round(engineRate, 1),
          submitOnlyPerSecond: round(submitOnlyRate, 1),
          rawPerSecond: round(rawRate, 1),
          ratio: round(ratio),
          submitP50Ms: round(percentile(latencies, 50)),
          submitP99Ms: round(percentile(latencies, 99)),
        },
      };
    } finally {
      await cleanup.run();
    }
  },
};

/**
 * Single-row INSERTs into the journal's own table, each its own transaction, on a file opened like the journal
 * (same pragmas, same schema and indexes): what SQLite alone costs for one durable accept.
 */
function rawInsertRate(file: string, count: number): number {
  const db = openDatabase(file);
  try {
    const insert = db.prepare(`INSERT INTO execution_queue (id, notebook_path, kind, code, source_sha256, kernel_name, state, created_at)
      VALUES (?, ?, 'code', ?, ?, 'python3', 'pending', ?)`);
    const start = now();
    for (let i = 0; i < count; i += 1) insert.run(randomUUID(), NOTEBOOK, `x = ${i}`, '0'.repeat(64), Date.now());
    return count / ((now() - start) / 1000);
  } finally {
    db.close();
  }
}
