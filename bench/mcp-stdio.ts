// Benchmark 4: execute_code (1+1) through a real MCP SDK client and the real server over stdio, vs the engine in-process.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { join } from 'node:path';
import { CLI, Cleanup, median, ms, now, openEngine, percentile, reapKernels, round, runCell, tempDir, type Benchmark } from './common.js';

const CODE = '1+1';
const NOTEBOOK = 'bench.ipynb';
const TARGET_ADDED_MS = 1;

function textOf(result: CallToolResult): string {
  return result.content.map((item) => (item.type === 'text' ? item.text : '')).join('\n');
}

export const mcpStdio: Benchmark = {
  name: 'mcp',
  title: 'MCP over stdio: execute_code 1+1 via the SDK client and `serve` vs the engine in-process (own kernels)',
  async run({ quick, log }) {
    // Enough rounds that the median of a ~0.5 ms difference between two ~5 ms figures is steady on shared cores.
    const iterations = quick ? 50 : 1000;
    const warmup = quick ? 5 : 30;
    const cleanup = new Cleanup();
    try {
      const workspace = tempDir(cleanup, 'mcpj-bench-mcp-');
      cleanup.defer('reap kernels the server left', () => reapKernels(join(workspace, '.mcp-jupyter', 'state.db')));
      const transport = new StdioClientTransport({
        command: process.execPath,
        args: [CLI, 'serve', '--workspace', workspace],
        env: { ...(process.env as Record<string, string>), MCP_JUPYTER_LOG_LEVEL: 'warn' },
        stderr: 'pipe',
      });
      let serverLog = '';
      // Read it, or a chatty server would block once the pipe fills.
      transport.stderr?.on('data', (chunk: Buffer) => (serverLog = (serverLog + chunk.toString()).slice(-4_000)));
      const client = new Client({ name: 'mcp-server-jupyter-bench', version: '1.0.0' });
      await client.connect(transport);
      cleanup.defer('stop the server', () => client.close());
      const call = async (name: string, args: Record<string, unknown>): Promise<CallToolResult> => {
        const result = (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
        if (result.isError) throw new Error(`${name} failed: ${textOf(result)}${serverLog ? ` (server log: ${serverLog.slice(-500)})` : ''}`);
        return result;
      };
      await call('create_notebook', { notebook_path: NOTEBOOK });
      cleanup.defer('shut the server kernel down', () => call('shutdown_kernel', { notebook_path: NOTEBOOK }));

      const engineDir = tempDir(cleanup, 'mcpj-bench-mcp-engine-');
      const { engine } = openEngine(cleanup, engineDir);

      const viaMcp = async (): Promise<number> => {
        const start = now();
        const result = await call('execute_code', { notebook_path: NOTEBOOK, code: CODE, timeout_s: 120 });
        const elapsed = now() - start;
        const status = (result.structuredContent as { status?: unknown } | undefined)?.status;
        if (status !== 'succeeded') throw new Error(`execute_code ended ${String(status)}: ${textOf(result)}`);
        return elapsed;
      };
      const viaEngine = async (): Promise<number> => {
        const start = now();
        await runCell(engine, CODE);
        return now() - start;
      };

      // The first calls start both kernels.
      const first = await call('execute_code', { notebook_path: NOTEBOOK, code: CODE, timeout_s: 120 });
      if (!textOf(first).includes('2')) throw new Error(`execute_code 1+1 did not show 2: ${textOf(first).slice(0, 300)}`);
      for (let i = 0; i < warmup; i += 1) {
        await viaMcp();
        await viaEngine();
      }
      // The floor any MCP server pays over this transport: a JSON-RPC ping through the same SDK client and pipe.
      const pingTimes: number[] = [];
      for (let i = 0; i < iterations; i += 1) {
        const start = now();
        await client.ping();
        pingTimes.push(now() - start);
      }
      const mcpTimes: number[] = [];
      const engineTimes: number[] = [];
      for (let i = 0; i < iterations; i += 1) {
        if (i % 2 === 0) {
          mcpTimes.push(await viaMcp());
          engineTimes.push(await viaEngine());
        } else {
          engineTimes.push(await viaEngine());
          mcpTimes.push(await viaMcp());
        }
      }
      const mcpMedian = median(mcpTimes);
      const engineMedian = median(engineTimes);
      const added = mcpMedian - engineMedian;
      const ratio = mcpMedian / engineMedian;
      const pass = added < TARGET_ADDED_MS;
      const pingMedian = median(pingTimes);
      log(`  ${iterations} rounds: MCP median ${ms(mcpMedian)} p99 ${ms(percentile(mcpTimes, 99))}; engine median ${ms(engineMedian)} p99 ${ms(percentile(engineTimes, 99))}`);
      return {
        line:
          `mcp: added median ${ms(added)} over the engine (target < ${TARGET_ADDED_MS} ms: ${pass ? 'PASS' : 'MISS'}), ratio ${ratio.toFixed(3)}; ` +
          `of it ${ms(pingMedian)} is the SDK's own stdio round trip (ping)`,
        rows: [
          { figure: 'execute_code median, MCP stdio', value: mcpMedian, unit: 'ms', baseline: { label: 'engine in-process', value: engineMedian }, ratio },
          { figure: 'execute_code p99, MCP stdio', value: percentile(mcpTimes, 99), unit: 'ms', baseline: { label: 'engine in-process', value: percentile(engineTimes, 99) }, ratio: percentile(mcpTimes, 99) / percentile(engineTimes, 99) },
          { figure: 'MCP stdio added median', value: added, unit: 'ms', target: { text: `< ${TARGET_ADDED_MS} ms`, pass } },
          { figure: 'MCP ping round trip, same client and pipe (transport floor)', value: pingMedian, unit: 'ms' },
        ],
        details: {
          iterations,
          warmup,
          mcp: { medianMs: round(mcpMedian), p99Ms: round(percentile(mcpTimes, 99)), minMs: round(Math.min(...mcpTimes)) },
          engine: { medianMs: round(engineMedian), p99Ms: round(percentile(engineTimes, 99)), minMs: round(Math.min(...engineTimes)) },
          addedMedianMs: round(added),
          pingMedianMs: round(pingMedian),
          ratio: round(ratio),
        },
      };
    } finally {
      await cleanup.run();
    }
  },
};
