// Benchmark 7: `1+1` on a remote kernel (a real Jupyter Server over WebSocket): engine vs a minimal raw WebSocket
// client on its own kernel of the same server (one with TCP_NODELAY), next to a default server and a local kernel.
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { RemoteKernelProvider } from '../src/kernel/remote-provider.js';
import type { RemoteKernelSession } from '../src/kernel/remote-session.js';
import { startJupyterServer } from '../test/helpers/jupyter-server.js';
import { Cleanup, median, ms, now, openEngine, percentile, round, runCell, sessionOf, tempDir, type Benchmark } from './common.js';

const CODE = '1+1';
const TARGET_RATIO = 1.1;

/**
 * The baseline: the least a client can do over the kernel WebSocket (v1 binary frames, one execute_request, wait for
 * its execute_reply and iopub idle). Written for the bench, sharing no code with src/kernel.
 */
class RawWsClient {
  private readonly session = randomUUID();
  private readonly waiting = new Map<string, { replied: boolean; idle: boolean; resolve: () => void }>();
  private socket: WebSocket | undefined;

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly kernelId: string,
  ) {}

  async ready(): Promise<void> {
    const url = new URL(`api/kernels/${this.kernelId}/channels?session_id=${this.session}`, this.url);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(url, ['v1.kernel.websocket.jupyter.org'], { headers: { Authorization: `token ${this.token}` }, perMessageDeflate: false });
    socket.on('message', (data: Buffer) => this.receive(data));
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    this.socket = socket;
    await this.request('kernel_info_request', {});
  }

  execute(code: string): Promise<void> {
    return this.request('execute_request', { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: false });
  }

  close(): void {
    this.socket?.close();
  }

  private request(msgType: string, content: Record<string, unknown>): Promise<void> {
    const msgId = randomUUID();
    const header = { msg_id: msgId, session: this.session, username: 'bench', date: new Date().toISOString(), msg_type: msgType, version: '5.3' };
    const parts = [header, {}, {}, content].map((part) => Buffer.from(JSON.stringify(part)));
    const channel = Buffer.from('shell');
    const count = parts.length + 2;
    const table = Buffer.alloc(8 * (count + 1));
    table.writeBigUInt64LE(BigInt(count), 0);
    let offset = table.length;
    table.writeBigUInt64LE(BigInt(offset), 8);
    offset += channel.length;
    table.writeBigUInt64LE(BigInt(offset), 16);
    parts.forEach((part, index) => {
      offset += part.length;
      table.writeBigUInt64LE(BigInt(offset), 24 + 8 * index);
    });
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(msgId, { replied: false, idle: false, resolve });
      this.socket?.send(Buffer.concat([table, channel, ...parts]), (error) => error && reject(error));
    });
  }

  private receive(data: Buffer): void {
    const count = Number(data.readBigUInt64LE(0));
    const offsets = Array.from({ length: count }, (_, i) => Number(data.readBigUInt64LE(8 * (i + 1))));
    const channel = data.toString('utf8', offsets[0], offsets[1]);
    const part = (i: number): Record<string, unknown> => JSON.parse(data.toString('utf8', offsets[i], offsets[i + 1])) as Record<string, unknown>;
    const header = part(1);
    const parentId = part(2)['msg_id'];
    const entry = typeof parentId === 'string' ? this.waiting.get(parentId) : undefined;
    if (!entry) return;
    if (channel === 'shell' && String(header['msg_type']).endsWith('_reply')) entry.replied = true;
    if (channel === 'iopub' && header['msg_type'] === 'status' && part(4)['execution_state'] === 'idle') entry.idle = true;
    if (entry.replied && entry.idle) {
      this.waiting.delete(String(parentId));
      entry.resolve();
    }
  }
}

async function startKernelByRest(url: string, token: string): Promise<string> {
  const response = await fetch(`${url}api/kernels`, {
    method: 'POST',
    headers: { Authorization: `token ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'python3' }),
  });
  const model = (await response.json()) as { id?: unknown };
  if (!response.ok || typeof model.id !== 'string') throw new Error(`POST api/kernels answered ${response.status}`);
  return model.id;
}

/** What README "Remote kernels" tells operators to put in jupyter_server_config.py: TCP_NODELAY on kernel WebSockets. */
const NODELAY_CONFIG = [
  'from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection',
  '',
  'class NoDelayConnection(ZMQChannelsWebsocketConnection):',
  '    def connect(self):',
  '        self.websocket_handler.set_nodelay(True)',
  '        return super().connect()',
  '',
  'c.ServerApp.kernel_websocket_connection_class = NoDelayConnection',
  '',
].join('\n');

export const remote: Benchmark = {
  name: 'remote',
  title: 'Remote kernel on a real Jupyter Server (1+1): engine vs raw WebSocket client (TCP_NODELAY server), vs the default server, vs a local kernel',
  async run({ quick, log }) {
    const iterations = quick ? 20 : 200;
    const warmup = quick ? 3 : 20;
    const cleanup = new Cleanup();
    try {
      // Our overhead is measured where Nagle does not drown it: on a server with TCP_NODELAY, as README advises. With
      // Jupyter's default, a reply waits for the client's delayed ACK (~40 ms) or not, depending on the client's
      // recent traffic, which says nothing about the client's own work.
      const [plain, nodelay] = await Promise.all([startJupyterServer(), startJupyterServer({ configPy: NODELAY_CONFIG })]);
      cleanup.defer('stop the Jupyter servers', () => Promise.all([plain.stop(), nodelay.stop()]));
      const local = openEngine(cleanup, tempDir(cleanup, 'mcpj-bench-remote-local-')).engine;
      const engineOn = (server: typeof plain, label: string) => {
        const dir = tempDir(cleanup, `mcpj-bench-remote-${label}-`);
        return openEngine(cleanup, dir, { provider: new RemoteKernelProvider({ url: server.url, token: server.token, workspaceRoot: dir }) }).engine;
      };
      const remoteEngine = engineOn(nodelay, 'nodelay');
      const plainEngine = engineOn(plain, 'plain');
      await runCell(local, CODE);
      await runCell(remoteEngine, CODE);
      await runCell(plainEngine, CODE);
      const remoteSession = sessionOf(remoteEngine) as RemoteKernelSession;
      // Its own kernel on the same server, so neither client also receives the other's iopub broadcasts.
      const rawKernelId = await startKernelByRest(nodelay.url, nodelay.token);
      cleanup.defer('delete the raw client kernel', () => fetch(`${nodelay.url}api/kernels/${rawKernelId}`, { method: 'DELETE', headers: { Authorization: `token ${nodelay.token}` } }));
      const raw = new RawWsClient(nodelay.url, nodelay.token, rawKernelId);
      cleanup.defer('close the raw WebSocket client', () => raw.close());
      await raw.ready();

      const timed = async (work: () => Promise<unknown>): Promise<number> => {
        const start = now();
        await work();
        return now() - start;
      };
      const ways = [
        { name: 'local', times: [] as number[], run: () => runCell(local, CODE) },
        { name: 'remote', times: [] as number[], run: () => runCell(remoteEngine, CODE) },
        { name: 'raw', times: [] as number[], run: () => raw.execute(CODE) },
        { name: 'plain', times: [] as number[], run: () => runCell(plainEngine, CODE) },
      ];
      for (let i = 0; i < warmup; i += 1) for (const way of ways) await way.run();
      // Each round in a rotated order, so drift and ordering effects hit all of them alike.
      for (let i = 0; i < iterations; i += 1) {
        for (let k = 0; k < ways.length; k += 1) {
          const way = ways[(i + k) % ways.length]!;
          way.times.push(await timed(way.run));
        }
      }
      const last = await runCell(remoteEngine, CODE);
      const shown = last.outputs[0]?.['data'] as Record<string, unknown> | undefined;
      if (shown?.['text/plain'] !== '2') throw new Error(`1+1 on the remote kernel did not show 2 (outputs: ${JSON.stringify(last.outputs).slice(0, 200)})`);

      const [localTimes, remoteTimes, rawTimes, plainTimes] = ways.map((way) => way.times) as [number[], number[], number[], number[]];
      const remoteMedian = median(remoteTimes);
      const rawMedian = median(rawTimes);
      const localMedian = median(localTimes);
      const plainMedian = median(plainTimes);
      const ratio = remoteMedian / rawMedian;
      log(
        `  ${iterations} rounds (TCP_NODELAY server): remote engine median ${ms(remoteMedian)} p99 ${ms(percentile(remoteTimes, 99))}; raw WebSocket median ${ms(rawMedian)} ` +
          `p99 ${ms(percentile(rawTimes, 99))}; default server: remote engine median ${ms(plainMedian)}; local engine median ${ms(localMedian)} (protocol ${remoteSession.wireProtocol})`,
      );
      return {
        line:
          `remote: engine/raw-ws median ${ratio.toFixed(3)} (target < ${TARGET_RATIO}: ${ratio < TARGET_RATIO ? 'PASS' : 'MISS'}), ` +
          `remote ${ms(remoteMedian)} vs local ${ms(localMedian)}; ${ms(plainMedian)} on a server that leaves Nagle on (see README "Remote kernels")`,
        rows: [
          {
            figure: '1+1 median, remote engine (TCP_NODELAY server)',
            value: remoteMedian,
            unit: 'ms',
            baseline: { label: 'raw WebSocket client', value: rawMedian },
            ratio,
            target: { text: `ratio < ${TARGET_RATIO}`, pass: ratio < TARGET_RATIO },
          },
          { figure: '1+1 p99, remote engine (TCP_NODELAY server)', value: percentile(remoteTimes, 99), unit: 'ms', baseline: { label: 'raw WebSocket client', value: percentile(rawTimes, 99) }, ratio: percentile(remoteTimes, 99) / percentile(rawTimes, 99) },
          { figure: '1+1 median, remote engine vs local engine', value: remoteMedian, unit: 'ms', baseline: { label: 'local kernel', value: localMedian }, ratio: remoteMedian / localMedian },
          { figure: '1+1 median, remote engine on a default server (Nagle on)', value: plainMedian, unit: 'ms', baseline: { label: 'TCP_NODELAY server', value: remoteMedian }, ratio: plainMedian / remoteMedian },
        ],
        details: {
          iterations,
          warmup,
          protocol: remoteSession.wireProtocol,
          remote: { medianMs: round(remoteMedian), p99Ms: round(percentile(remoteTimes, 99)), minMs: round(Math.min(...remoteTimes)) },
          raw: { medianMs: round(rawMedian), p99Ms: round(percentile(rawTimes, 99)), minMs: round(Math.min(...rawTimes)) },
          plain: { medianMs: round(plainMedian), p99Ms: round(percentile(plainTimes, 99)), minMs: round(Math.min(...plainTimes)) },
          local: { medianMs: round(localMedian), p99Ms: round(percentile(localTimes, 99)), minMs: round(Math.min(...localTimes)) },
          ratio: round(ratio),
        },
      };
    } finally {
      await cleanup.run();
    }
  },
};
