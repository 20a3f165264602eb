// Benchmark 9: live-event fan-out to 100 WebSocket clients (events/s, p99 delivery latency), with and without one
// stalled client, measured against the real server in the same run and reported as a ratio.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { CLI, Cleanup, percentile, round, tempDir, type Benchmark } from './common.js';

const TOKEN = 'bench-fanout-token-0123456789';
const CLIENTS = 100;

interface Phase {
  eventsPerSecond: number;
  p99Ms: number;
  delivered: number;
}

function startServer(workspace: string): Promise<{ url: string; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'serve', '--workspace', workspace, '--http', '127.0.0.1:0', '--token', TOKEN], {
      env: { ...process.env, MCP_JUPYTER_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let seen = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const match = /listening on (http:\/\/[^/\s]+)\/mcp/.exec(seen);
      if (match?.[1]) resolve({ url: match[1], child });
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${seen}`)));
  });
}

/** One measured run: `clients` readers (plus a stalled one when asked) while a cell prints `lines` lines. */
async function phase(url: string, mcp: Client, lines: number, stalled: boolean): Promise<Phase> {
  const wsUrl = `${url.replace('http', 'ws')}/events?token=${TOKEN}&notebook=fan.ipynb`;
  const latencies: number[] = [];
  let delivered = 0;
  let finished = 0;
  let allDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (allDone = resolve));
  const sockets: WebSocket[] = [];
  for (let i = 0; i < CLIENTS; i += 1) {
    const ws = new WebSocket(wsUrl);
    sockets.push(ws);
    ws.on('message', (data: Buffer) => {
      const text = data.toString('utf8', 0, Math.min(data.length, 300));
      const time = /"time":"([^"]+)"/.exec(text)?.[1];
      if (time) latencies.push(Date.now() - Date.parse(time));
      delivered += 1;
      if (text.includes('"type":"execution.finished"')) {
        finished += 1;
        if (finished === CLIENTS) allDone();
      }
    });
  }
  let stalledSocket: WebSocket | null = null;
  if (stalled) {
    stalledSocket = new WebSocket(wsUrl);
    stalledSocket.on('open', () => ((stalledSocket as unknown as { _socket: Socket })._socket.pause()));
    sockets.push(stalledSocket);
  }
  await Promise.all(sockets.map((ws) => new Promise((resolve) => ws.once('open', resolve))));
  const start = Date.now();
  await mcp.callTool({ name: 'execute_code', arguments: { notebook_path: 'fan.ipynb', code: `for i in range(${lines}):\n    print(i, flush=True)`, timeout_s: 600 } }, undefined, { timeout: 600_000 });
  await done;
  const seconds = (Date.now() - start) / 1000;
  for (const ws of sockets) ws.terminate();
  return { eventsPerSecond: delivered / seconds, p99Ms: percentile(latencies, 99), delivered };
}

export const fanout: Benchmark = {
  name: 'fanout',
  title: `Event fan-out to ${CLIENTS} /events clients: events/s and p99 delivery latency, with vs without one stalled client`,
  async run({ quick, log }) {
    const lines = quick ? 200 : 2_000;
    const cleanup = new Cleanup();
    let child: ChildProcess | null = null;
    try {
      const workspace = tempDir(cleanup, 'mcpj-bench-fanout-');
      const server = await startServer(workspace);
      child = server.child;
      const mcp = new Client({ name: 'bench-fanout', version: '1' });
      await mcp.connect(new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${TOKEN}` } } }));
      await mcp.callTool({ name: 'create_notebook', arguments: { notebook_path: 'fan.ipynb' } });
      await mcp.callTool({ name: 'execute_code', arguments: { notebook_path: 'fan.ipynb', code: '1' } });
      // Alternate so machine noise hits both.
      const without: Phase[] = [];
      const withStalled: Phase[] = [];
      for (let round = 0; round < (quick ? 1 : 2); round += 1) {
        without.push(await phase(server.url, mcp, lines, false));
        withStalled.push(await phase(server.url, mcp, lines, true));
      }
      const best = (phases: Phase[]) => phases.reduce((a, b) => (a.eventsPerSecond >= b.eventsPerSecond ? a : b));
      const a = best(without);
      const b = best(withStalled);
      const rateRatio = b.eventsPerSecond / a.eventsPerSecond;
      const p99Ratio = b.p99Ms / Math.max(1, a.p99Ms);
      log(`  without a stalled client: ${a.eventsPerSecond.toFixed(0)} events/s delivered, p99 ${a.p99Ms.toFixed(0)} ms; with one: ${b.eventsPerSecond.toFixed(0)} events/s, p99 ${b.p99Ms.toFixed(0)} ms`);
      await mcp.callTool({ name: 'shutdown_kernel', arguments: { notebook_path: 'fan.ipynb' } });
      await mcp.close();
      return {
        line: `fanout: ${b.eventsPerSecond.toFixed(0)} events/s to ${CLIENTS} clients with a stalled one vs ${a.eventsPerSecond.toFixed(0)} without (ratio ${rateRatio.toFixed(2)}), p99 ${b.p99Ms.toFixed(0)} vs ${a.p99Ms.toFixed(0)} ms (ratio ${p99Ratio.toFixed(2)})`,
        rows: [
          { figure: `fan-out events/s, ${CLIENTS} clients + 1 stalled`, value: b.eventsPerSecond, unit: '/s', baseline: { label: 'no stalled client', value: a.eventsPerSecond }, ratio: rateRatio },
          { figure: 'fan-out p99 delivery latency, with stalled', value: b.p99Ms, unit: 'ms', baseline: { label: 'no stalled client', value: a.p99Ms }, ratio: p99Ratio },
        ],
        details: { clients: CLIENTS, lines, without: without.map((p) => ({ ...p, eventsPerSecond: round(p.eventsPerSecond) })), withStalled: withStalled.map((p) => ({ ...p, eventsPerSecond: round(p.eventsPerSecond) })) },
      };
    } finally {
      if (child && child.exitCode === null) {
        const exited = new Promise((resolve) => child!.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await cleanup.run();
    }
  },
};
