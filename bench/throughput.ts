// Benchmark 2: executions per second for a queue of small cells on one kernel, against raw sequential round trips.
import type { Engine } from '../src/engine/engine.js';
import { Cleanup, NOTEBOOK, connectionOf, now, openEngine, perSecond, round, runCell, sessionOf, tempDir, type Benchmark } from './common.js';
import { RawClient } from './raw-client.js';

const CODE = 'x = 1';

async function engineBatch(engine: Engine, count: number): Promise<number> {
  const start = now();
  const accepted = engine.submit(Array.from({ length: count }, () => ({ notebookPath: NOTEBOOK, code: CODE, kind: 'code' as const, kernelName: 'python3' })));
  const finished = await engine.waitAll(accepted.map((snapshot) => snapshot.id));
  const elapsed = now() - start;
  const failed = finished.filter((snapshot) => snapshot.state !== 'succeeded');
  if (failed.length > 0) throw new Error(`${failed.length} of ${count} queued cells did not succeed (first: ${failed[0]!.state}, ${failed[0]!.statusText ?? ''})`);
  return elapsed;
}

async function rawSequence(raw: RawClient, count: number): Promise<number> {
  const start = now();
  for (let i = 0; i < count; i += 1) await raw.execute(CODE);
  return now() - start;
}

export const throughput: Benchmark = {
  name: 'throughput',
  title: 'Throughput of queued small cells (x = 1) on one kernel: engine queue + waitAll vs raw sequential round trips',
  async run({ quick, log }) {
    const count = quick ? 100 : 1_000;
    const cleanup = new Cleanup();
    try {
      const dir = tempDir(cleanup, 'mcpj-bench-throughput-');
      const { engine } = openEngine(cleanup, dir);
      await runCell(engine, CODE);
      const raw = new RawClient(connectionOf(sessionOf(engine)));
      cleanup.defer('close the raw client', () => raw.close());
      await raw.ready();
      for (let i = 0; i < 10; i += 1) {
        await runCell(engine, CODE);
        await raw.execute(CODE);
      }

      // A-B-B-A in full runs so a slow drift of the machine weighs on both sides alike.
      const order = quick ? ['engine', 'raw'] : ['engine', 'raw', 'raw', 'engine'];
      let engineMs = 0;
      let rawMs = 0;
      const runs: Array<{ side: string; ms: number }> = [];
      for (const side of order) {
        if (side === 'engine') {
          const elapsed = await engineBatch(engine, count);
          engineMs += elapsed;
          runs.push({ side, ms: round(elapsed, 1) });
          log(`  engine: ${count} queued cells in ${elapsed.toFixed(0)} ms`);
        } else {
          const elapsed = await rawSequence(raw, count);
          rawMs += elapsed;
          runs.push({ side, ms: round(elapsed, 1) });
          log(`  raw: ${count} sequential round trips in ${elapsed.toFixed(0)} ms`);
        }
      }
      const perSide = order.length / 2;
      const engineRate = (count * perSide) / (engineMs / 1000);
      const rawRate = (count * perSide) / (rawMs / 1000);
      const ratio = engineRate / rawRate;
      return {
        line: `throughput: engine ${perSecond(engineRate)} vs raw ${perSecond(rawRate)} (ratio ${ratio.toFixed(3)})`,
        rows: [{ figure: `${count} queued x = 1, engine`, value: engineRate, unit: 'exec/s', baseline: { label: 'raw sequential', value: rawRate }, ratio }],
        details: { count, runs, engineMs: round(engineMs, 1), rawMs: round(rawMs, 1), enginePerSecond: round(engineRate, 1), rawPerSecond: round(rawRate, 1), ratio: round(ratio) },
      };
    } finally {
      await cleanup.run();
    }
  },
};
