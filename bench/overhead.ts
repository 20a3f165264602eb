// Benchmark 1: what the engine adds to a trivial cell (`1+1`), against a minimal raw client on the same kernel.
import { Cleanup, connectionOf, median, ms, now, openEngine, percentile, round, runCell, sessionOf, tempDir, type Benchmark } from './common.js';
import { RawClient } from './raw-client.js';

const CODE = '1+1';
const TARGET_RATIO = 1.1;

export const overhead: Benchmark = {
  name: 'overhead',
  title: 'Engine overhead on a trivial cell (1+1): engine submit+wait vs raw ZeroMQ client, same kernel',
  async run({ quick, log }) {
    // Enough rounds that the median of a ~0.5 ms difference between two ~5 ms figures is steady on shared cores.
    const iterations = quick ? 50 : 1000;
    const warmup = quick ? 5 : 30;
    const cleanup = new Cleanup();
    try {
      const dir = tempDir(cleanup, 'mcpj-bench-overhead-');
      const { engine } = openEngine(cleanup, dir);
      await runCell(engine, CODE);
      const raw = new RawClient(connectionOf(sessionOf(engine)));
      cleanup.defer('close the raw client', () => raw.close());
      await raw.ready();

      const viaEngine = async (): Promise<number> => {
        const start = now();
        await runCell(engine, CODE);
        return now() - start;
      };
      const viaRaw = async (): Promise<number> => {
        const start = now();
        await raw.execute(CODE);
        return now() - start;
      };

      for (let i = 0; i < warmup; i += 1) {
        await viaEngine();
        await viaRaw();
      }
      const engineTimes: number[] = [];
      const rawTimes: number[] = [];
      // Alternating rounds, and alternating which goes first, so drift and ordering effects hit both alike.
      for (let i = 0; i < iterations; i += 1) {
        if (i % 2 === 0) {
          engineTimes.push(await viaEngine());
          rawTimes.push(await viaRaw());
        } else {
          rawTimes.push(await viaRaw());
          engineTimes.push(await viaEngine());
        }
      }
      const last = await runCell(engine, CODE);
      const shown = last.outputs[0]?.['data'] as Record<string, unknown> | undefined;
      if (shown?.['text/plain'] !== '2') throw new Error(`1+1 through the engine did not show 2 (outputs: ${JSON.stringify(last.outputs).slice(0, 200)})`);

      const engineMedian = median(engineTimes);
      const rawMedian = median(rawTimes);
      const ratio = engineMedian / rawMedian;
      const added = engineMedian - rawMedian;
      log(`  ${iterations} rounds: engine median ${ms(engineMedian)} p99 ${ms(percentile(engineTimes, 99))}; raw median ${ms(rawMedian)} p99 ${ms(percentile(rawTimes, 99))}`);
      return {
        line: `overhead: engine/raw median ${ratio.toFixed(3)} (target < ${TARGET_RATIO}: ${ratio < TARGET_RATIO ? 'PASS' : 'MISS'}), added median ${ms(added)}`,
        rows: [
          {
            figure: '1+1 median, engine',
            value: engineMedian,
            unit: 'ms',
            baseline: { label: 'raw client', value: rawMedian },
            ratio,
            target: { text: `ratio < ${TARGET_RATIO}`, pass: ratio < TARGET_RATIO },
          },
          { figure: '1+1 p99, engine', value: percentile(engineTimes, 99), unit: 'ms', baseline: { label: 'raw client', value: percentile(rawTimes, 99) }, ratio: percentile(engineTimes, 99) / percentile(rawTimes, 99) },
          { figure: '1+1 added median', value: added, unit: 'ms' },
        ],
        details: {
          iterations,
          warmup,
          engine: { medianMs: round(engineMedian), p99Ms: round(percentile(engineTimes, 99)), minMs: round(Math.min(...engineTimes)) },
          raw: { medianMs: round(rawMedian), p99Ms: round(percentile(rawTimes, 99)), minMs: round(Math.min(...rawTimes)) },
          ratio: round(ratio),
          addedMedianMs: round(added),
        },
      };
    } finally {
      await cleanup.run();
    }
  },
};
