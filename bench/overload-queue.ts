// The overload benchmark's first half: execute_code from several clients at 10x a kernel's queue limit, through the
// real server, against the same call with the queue (nearly) empty.
import { Cleanup, percentile, tempDir } from './common.js';
import { connectClient, cpuMsOf, mustCall, startServe, timedCall, type BenchClient, type Outcome } from './overload-server.js';

const NOTEBOOK = 'queue.ipynb';
const CALL_TIMEOUT_MS = 30_000;
/** The cell that holds the kernel, so that everything submitted after it waits. */
const BLOCKER = 'import time; time.sleep(600)';

export interface QueueFigures {
  limit: number;
  callers: number;
  submitted: number;
  accepted: number;
  refused: number;
  failed: number;
  acceptedP50Ms: number;
  acceptedP99Ms: number;
  refusedP50Ms: number;
  refusedP99Ms: number;
  /** execute_code wait=false behind the same running cell with nothing waiting (each cancelled untimed): same callers. */
  emptyP50Ms: number;
  emptyP99Ms: number;
  /** The same, one caller alone. */
  soloP99Ms: number;
  /** The server's CPU time per call of the flood (user + system). */
  serverCpuMsPerCall: number;
  refusalText: string;
  refusalsCounted: number;
}

function latencies(outcomes: Outcome[]): number[] {
  return outcomes.map((outcome) => outcome.ms);
}

/**
 * execute_code wait=false behind the blocking cell, then (untimed) cancel_execution of it: the same call as the
 * flood's, with the same kernel state, but with the queue empty instead of full.
 */
async function acceptOnEmptyQueue(client: BenchClient, times: number): Promise<number[]> {
  const timings: number[] = [];
  for (let i = 0; i < times; i += 1) {
    const outcome = await timedCall(client.client, 'execute_code', { notebook_path: NOTEBOOK, code: `y = ${i}`, wait: false }, CALL_TIMEOUT_MS);
    if (outcome.kind !== 'ok') throw new Error(`execute_code on an empty queue did not succeed: ${outcome.kind === 'failed' ? outcome.error : outcome.text}`);
    const accepted = (outcome.result.structuredContent ?? {}) as { execution_id?: unknown; status?: unknown };
    if (typeof accepted.execution_id !== 'string' || accepted.status !== 'pending') throw new Error(`execute_code wait=false answered ${JSON.stringify(accepted)}`);
    const cancelled = await mustCall(client.client, 'cancel_execution', { execution_id: accepted.execution_id });
    if (cancelled['outcome'] !== 'removed') throw new Error(`cancelling a pending execution answered ${String(cancelled['outcome'])}`);
    timings.push(outcome.ms);
  }
  return timings;
}

export async function queueAtTenTimesLimit(quick: boolean, log: (line: string) => void): Promise<QueueFigures> {
  const limit = quick ? 20 : 100;
  const callers = quick ? 4 : 10;
  const submitted = 10 * limit;
  const emptyRounds = quick ? 10 : 40;
  const cleanup = new Cleanup();
  try {
    const workspace = tempDir(cleanup, 'mcpj-bench-overload-queue-');
    const server = await startServe(cleanup, workspace, { MCP_JUPYTER_QUEUE_LIMIT: String(limit) });
    const clients: BenchClient[] = [];
    for (let i = 0; i < callers; i += 1) {
      const client = await connectClient(server.url, `bench-overload-queue-${i}`, CALL_TIMEOUT_MS);
      clients.push(client);
      cleanup.defer(`close client ${i}`, () => client.close());
    }
    const first = clients[0]!.client;
    await mustCall(first, 'create_notebook', { notebook_path: NOTEBOOK });
    const started = await mustCall(first, 'execute_code', { notebook_path: NOTEBOOK, code: '1+1', timeout_s: 120 });
    if (started['status'] !== 'succeeded') throw new Error(`the first 1+1 ended ${String(started['status'])}`);
    // Cancels the blocker and everything queued behind it, and stops the kernel while the server is still up.
    cleanup.defer('shut the kernel down', () => mustCall(first, 'shutdown_kernel', { notebook_path: NOTEBOOK }));

    const blocker = await mustCall(first, 'execute_code', { notebook_path: NOTEBOOK, code: BLOCKER, wait: false });
    if (blocker['status'] !== 'running') throw new Error(`the blocking cell is ${String(blocker['status'])}, not running`);

    // Baselines (they also warm up every caller's path): one caller alone, then all callers at once.
    const solo = await acceptOnEmptyQueue(clients[0]!, emptyRounds);
    const together = (await Promise.all(clients.map((client) => acceptOnEmptyQueue(client, emptyRounds)))).flat();
    const before = await mustCall(first, 'server_status', {});
    if (before['queue_depth'] !== 0) throw new Error(`${String(before['queue_depth'])} executions still wait after the baseline cancelled them all`);

    // Each caller takes the next submission as soon as its previous one is answered: `callers` calls in flight.
    const outcomes: Outcome[] = new Array<Outcome>(submitted);
    let next = 0;
    const cpuBefore = cpuMsOf(server.pid);
    await Promise.all(
      clients.map(async ({ client }) => {
        while (next < submitted) {
          const index = next;
          next += 1;
          outcomes[index] = await timedCall(client, 'execute_code', { notebook_path: NOTEBOOK, code: `x = ${index}`, wait: false }, CALL_TIMEOUT_MS);
        }
      }),
    );
    const serverCpuMsPerCall = (cpuMsOf(server.pid) - cpuBefore) / submitted;

    const accepted = outcomes.filter((outcome) => outcome.kind === 'ok');
    const refused = outcomes.filter((outcome): outcome is Extract<Outcome, { kind: 'tool-error' }> => outcome.kind === 'tool-error');
    const failed = outcomes.filter((outcome): outcome is Extract<Outcome, { kind: 'failed' }> => outcome.kind === 'failed');
    if (failed.length > 0) throw new Error(`${failed.length} of ${submitted} calls failed or hung (first: ${failed[0]!.error}); server log: ${server.logTail()}`);
    const notQueueFull = refused.filter((outcome) => !/queue full/.test(outcome.text) || !/retry after/.test(outcome.text));
    if (notQueueFull.length > 0) throw new Error(`${notQueueFull.length} refusals do not say the queue is full and when to retry: ${notQueueFull[0]!.text}`);
    const notPending = accepted.filter((outcome) => (outcome.result.structuredContent as { status?: unknown } | undefined)?.status !== 'pending');
    if (notPending.length > 0) throw new Error(`${notPending.length} accepted executions are not pending behind the blocking cell`);
    // The limit counts the running blocker too: the flood can fill the other limit - 1 places, no more, no fewer.
    if (accepted.length !== limit - 1) throw new Error(`accepted ${accepted.length} of ${submitted} with the queue limit at ${limit} and one cell running (expected ${limit - 1})`);

    const status = await mustCall(first, 'server_status', {});
    const counters = status['counters'] as { queue_full_refusals?: unknown } | null;
    const counted = typeof counters?.queue_full_refusals === 'number' ? counters.queue_full_refusals : -1;
    if (status['queue_depth'] !== limit - 1) throw new Error(`server_status shows ${String(status['queue_depth'])} queued (expected ${limit - 1})`);
    if (counted !== refused.length) throw new Error(`server_status counts ${counted} queue-full refusals, the clients saw ${refused.length}`);

    const figures: QueueFigures = {
      limit,
      callers,
      submitted,
      accepted: accepted.length,
      refused: refused.length,
      failed: failed.length,
      acceptedP50Ms: percentile(latencies(accepted), 50),
      acceptedP99Ms: percentile(latencies(accepted), 99),
      refusedP50Ms: percentile(latencies(refused), 50),
      refusedP99Ms: percentile(latencies(refused), 99),
      emptyP50Ms: percentile(together, 50),
      emptyP99Ms: percentile(together, 99),
      soloP99Ms: percentile(solo, 99),
      serverCpuMsPerCall,
      refusalText: refused[0]?.text ?? '',
      refusalsCounted: counted,
    };
    log(
      `  queue limit ${limit}, ${submitted} execute_code wait=false from ${callers} clients behind a sleeping cell: ${figures.accepted} accepted ` +
        `(p50 ${figures.acceptedP50Ms.toFixed(1)} ms, p99 ${figures.acceptedP99Ms.toFixed(1)} ms), ${figures.refused} refused ` +
        `(p50 ${figures.refusedP50Ms.toFixed(1)} ms, p99 ${figures.refusedP99Ms.toFixed(1)} ms); empty queue, same clients: p50 ${figures.emptyP50Ms.toFixed(1)} ms, ` +
        `p99 ${figures.emptyP99Ms.toFixed(1)} ms; one client alone p99 ${figures.soloP99Ms.toFixed(1)} ms; server CPU ${serverCpuMsPerCall.toFixed(2)} ms per flood call`,
    );
    return figures;
  } finally {
    await cleanup.run();
  }
}
