// Benchmark 7: execute_code 1+1 through a server process that does not own the workspace (it pipes to the owner) vs
// through the owner process itself, on one notebook and one kernel, in the same run.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { join } from 'node:path';
import { CLI, Cleanup, median, ms, now, percentile, reapKernels, round, tempDir, type Benchmark } from './common.js';

const CODE = '1+1';
const NOTEBOOK = 'bench.ipynb';
const TARGET_ADDED_MS = 1;

function textOf(result: CallToolResult): string {
  return result.content.map((item) => (item.type === 'text' ? item.text : '')).join('\n');
}

interface Side {
  pid: number;
  call(name: string, args: Record<string, unknown>): Promise<CallToolResult>;
}

async function startServer(cleanup: Cleanup, workspace: string, name: string): Promise<Side> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'serve', '--workspace', workspace],
    env: { ...(process.env as Record<string, string>), MCP_JUPYTER_LOG_LEVEL: 'warn' },
    stderr: 'pipe',
  });
  let serverLog = '';
  // Read it, or a chatty server would block once the pipe fills.
  transport.stderr?.on('data', (chunk: Buffer) => (serverLog = (serverLog + chunk.toString()).slice(-4_000)));
  const client = new Client({ name: `mcp-server-jupyter-bench-${name}`, version: '1.0.0' });
  await client.connect(transport);
  cleanup.defer(`stop the ${name} server`, () => client.close());
  return {
    pid: transport.pid ?? 0,
    async call(tool, args) {
      const result = (await client.callTool({ name: tool, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
      if (result.isError) throw new Error(`${name}: ${tool} failed: ${textOf(result)}${serverLog ? ` (server log: ${serverLog.slice(-500)})` : ''}`);
      return result;
    },
  };
}

export const multiprocess: Benchmark = {
  name: 'multiprocess',
  title: 'Several processes on one workspace: execute_code 1+1 through a follower process vs through the owner process',
  async run({ quick, log }) {
    const iterations = quick ? 40 : 300;
    const warmup = quick ? 5 : 30;
    const cleanup = new Cleanup();
    try {
      const workspace = tempDir(cleanup, 'mcpj-bench-multi-');
      cleanup.defer('reap kernels the servers left', () => reapKernels(join(workspace, '.mcp-jupyter', 'state.db')));
      // Started in turn, so the first one owns the workspace. Deferred steps run in reverse: the follower stops first.
      const owner = await startServer(cleanup, workspace, 'owner');
      const follower = await startServer(cleanup, workspace, 'follower');
      const status = (await follower.call('server_status', {})).structuredContent as { owner_pid?: number; follower_pids?: number[] };
      if (status.owner_pid !== owner.pid || !status.follower_pids?.includes(follower.pid)) {
        throw new Error(`expected process ${owner.pid} to own the workspace and ${follower.pid} to follow it; server_status says ${JSON.stringify(status)}`);
      }
      await owner.call('create_notebook', { notebook_path: NOTEBOOK });
      cleanup.defer('shut the kernel down', () => owner.call('shutdown_kernel', { notebook_path: NOTEBOOK }));

      const timed = async (side: Side): Promise<number> => {
        const start = now();
        const result = await side.call('execute_code', { notebook_path: NOTEBOOK, code: CODE, timeout_s: 120 });
        const elapsed = now() - start;
        const structured = result.structuredContent as { status?: unknown } | undefined;
        if (structured?.status !== 'succeeded') throw new Error(`execute_code ended ${String(structured?.status)}: ${textOf(result)}`);
        return elapsed;
      };
      // The first call starts the one kernel both use.
      const first = await follower.call('execute_code', { notebook_path: NOTEBOOK, code: CODE, timeout_s: 120 });
      if (!textOf(first).includes('2')) throw new Error(`execute_code 1+1 did not show 2: ${textOf(first).slice(0, 300)}`);
      for (let i = 0; i < warmup; i += 1) {
        await timed(owner);
        await timed(follower);
      }
      const ownerTimes: number[] = [];
      const followerTimes: number[] = [];
      // Alternated, so machine noise and the kernel's state hit both alike.
      for (let i = 0; i < iterations; i += 1) {
        if (i % 2 === 0) {
          ownerTimes.push(await timed(owner));
          followerTimes.push(await timed(follower));
        } else {
          followerTimes.push(await timed(follower));
          ownerTimes.push(await timed(owner));
        }
      }
      const ownerMedian = median(ownerTimes);
      const followerMedian = median(followerTimes);
      const added = followerMedian - ownerMedian;
      const ratio = followerMedian / ownerMedian;
      const pass = added < TARGET_ADDED_MS;
      log(`  ${iterations} rounds: via the follower median ${ms(followerMedian)} p99 ${ms(percentile(followerTimes, 99))}; via the owner median ${ms(ownerMedian)} p99 ${ms(percentile(ownerTimes, 99))}`);
      return {
        line: `multiprocess: a follower process adds median ${ms(added)} over the owner (target < ${TARGET_ADDED_MS} ms: ${pass ? 'PASS' : 'MISS'}), ratio ${ratio.toFixed(3)}`,
        rows: [
          { figure: 'execute_code median, via a follower process', value: followerMedian, unit: 'ms', baseline: { label: 'via the owner process', value: ownerMedian }, ratio },
          {
            figure: 'execute_code p99, via a follower process',
            value: percentile(followerTimes, 99),
            unit: 'ms',
            baseline: { label: 'via the owner process', value: percentile(ownerTimes, 99) },
            ratio: percentile(followerTimes, 99) / percentile(ownerTimes, 99),
          },
          { figure: 'follower process added median', value: added, unit: 'ms', target: { text: `< ${TARGET_ADDED_MS} ms`, pass } },
        ],
        details: {
          iterations,
          warmup,
          follower: { medianMs: round(followerMedian), p99Ms: round(percentile(followerTimes, 99)), minMs: round(Math.min(...followerTimes)) },
          owner: { medianMs: round(ownerMedian), p99Ms: round(percentile(ownerTimes, 99)), minMs: round(Math.min(...ownerTimes)) },
          addedMedianMs: round(added),
          ratio: round(ratio),
        },
      };
    } finally {
      await cleanup.run();
    }
  },
};
