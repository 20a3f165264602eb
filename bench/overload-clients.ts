// The overload benchmark's second half: hundreds of MCP HTTP sessions on one server at once: its memory, and whether
// every one of their calls is answered, against one client alone in the same run.
import { Cleanup, now, percentile, tempDir } from './common.js';
import { connectClient, cpuMsOf, memoryOf, metric, mustCall, openDescriptors, startServe, timedCall, within, type BenchClient, type Memory, type Outcome } from './overload-server.js';

const NOTEBOOK = 'shared.ipynb';
const CALL_TIMEOUT_MS = 60_000;
/** One client in this many runs `1+1` on the shared notebook; the others make cheap calls. */
const EXECUTE_EVERY = 10;
/** One client of the crowd in this many quits without ending its session (no DELETE), as crashed agents do. */
const ABANDON_EVERY = 10;

export interface ClientsFigures {
  clients: number;
  rounds: number;
  connectP50Ms: number;
  connectP99Ms: number;
  connectFailed: number;
  /** initialize (connect) of one client alone, several times in a row. */
  connectSoloP99Ms: number;
  /** The server's CPU time per session while the crowd connected. */
  serverCpuMsPerSession: number;
  sseStreams: number;
  sessionsOnServer: number | null;
  sessionsAfterClose: number | null;
  /** Clients of the crowd that quit without DELETE; the rest ended their sessions. */
  abandoned: number;
  idle: Memory;
  open: Memory;
  afterCalls: Memory;
  afterClose: Memory;
  descriptorsIdle: number;
  descriptorsOpen: number;
  perSessionKb: number;
  calls: number;
  answered: number;
  toolErrors: number;
  failed: number;
  firstProblem: string | null;
  cheapP50Ms: number;
  cheapP99Ms: number;
  executeP50Ms: number;
  executeP99Ms: number;
  cheapSoloP99Ms: number;
  executeSoloP99Ms: number;
  serverAlive: boolean;
}

/** The cheap calls a connected agent makes: alternately server_status and list_notebooks. */
function cheapCall(index: number): { name: string; args: Record<string, unknown> } {
  return index % 2 === 0 ? { name: 'server_status', args: {} } : { name: 'list_notebooks', args: {} };
}

const executeArgs = { notebook_path: NOTEBOOK, code: '1+1', timeout_s: 120 };

function executeSucceeded(outcome: Outcome): boolean {
  return outcome.kind === 'ok' && (outcome.result.structuredContent as { status?: unknown } | undefined)?.status === 'succeeded';
}

export async function manyClients(quick: boolean, log: (line: string) => void): Promise<ClientsFigures> {
  const count = quick ? 50 : 500;
  const rounds = quick ? 1 : 2;
  const soloRounds = quick ? 20 : 100;
  const cleanup = new Cleanup();
  try {
    const workspace = tempDir(cleanup, 'mcpj-bench-overload-clients-');
    const server = await startServe(cleanup, workspace);
    const main = await connectClient(server.url, 'bench-overload-main', CALL_TIMEOUT_MS);
    cleanup.defer('close the first client', () => main.close());
    await mustCall(main.client, 'create_notebook', { notebook_path: NOTEBOOK });
    const first = await mustCall(main.client, 'execute_code', executeArgs);
    if (first['status'] !== 'succeeded') throw new Error(`the first 1+1 ended ${String(first['status'])}`);
    cleanup.defer('shut the kernel down', () => mustCall(main.client, 'shutdown_kernel', { notebook_path: NOTEBOOK }));

    // Baseline: one client alone, which also warms every code path the crowd will take.
    const cheapSolo: number[] = [];
    const executeSolo: number[] = [];
    for (let i = 0; i < soloRounds; i += 1) {
      const { name, args } = cheapCall(i);
      const cheap = await timedCall(main.client, name, args, CALL_TIMEOUT_MS);
      if (cheap.kind !== 'ok') throw new Error(`${name} failed with one client: ${cheap.kind === 'failed' ? cheap.error : cheap.text}`);
      cheapSolo.push(cheap.ms);
      if (i % 2 === 0) {
        const run = await timedCall(main.client, 'execute_code', executeArgs, CALL_TIMEOUT_MS);
        if (!executeSucceeded(run)) throw new Error(`1+1 did not succeed with one client: ${JSON.stringify(run).slice(0, 300)}`);
        executeSolo.push(run.ms);
      }
    }
    const connectSolo: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const start = now();
      const alone = await connectClient(server.url, `bench-overload-alone-${i}`, CALL_TIMEOUT_MS);
      connectSolo.push(now() - start);
      await alone.close();
    }
    await within(main.sseOpen, CALL_TIMEOUT_MS, false);
    const idle = memoryOf(server.pid);
    const descriptorsIdle = openDescriptors(server.pid);

    // Everyone connects at once, as a fleet of agents restarting together would.
    const crowd: BenchClient[] = [];
    const connectTimes: number[] = [];
    const connectProblems: string[] = [];
    cleanup.defer('close the crowd', () => Promise.allSettled(crowd.map((client) => client.close())));
    const cpuBefore = cpuMsOf(server.pid);
    await Promise.all(
      Array.from({ length: count - 1 }, async (_, index) => {
        const start = now();
        try {
          crowd.push(await connectClient(server.url, `bench-overload-${index}`, CALL_TIMEOUT_MS));
          connectTimes.push(now() - start);
        } catch (error) {
          connectProblems.push((error as Error).message);
        }
      }),
    );
    const serverCpuMsPerSession = (cpuMsOf(server.pid) - cpuBefore) / Math.max(1, crowd.length);
    const sseStreams = (await Promise.all([main, ...crowd].map((client) => within(client.sseOpen, CALL_TIMEOUT_MS, false)))).filter(Boolean).length;
    const sessionsOnServer = await metric(server.url, 'mcp_jupyter_mcp_sessions');
    const open = memoryOf(server.pid);
    const descriptorsOpen = openDescriptors(server.pid);

    // Then everyone calls at once; every call has a deadline, so a hung one is counted, not waited for.
    const everyone = [main, ...crowd];
    const cheapTimes: number[] = [];
    const executeTimes: number[] = [];
    let answered = 0;
    let toolErrors = 0;
    let failed = 0;
    let firstProblem: string | null = connectProblems[0] ?? null;
    for (let round = 0; round < rounds; round += 1) {
      await Promise.all(
        everyone.map(async ({ client }, index) => {
          const executes = index % EXECUTE_EVERY === 0;
          const { name, args } = executes ? { name: 'execute_code', args: executeArgs } : cheapCall(index + round);
          const outcome = await timedCall(client, name, args, CALL_TIMEOUT_MS);
          if (outcome.kind === 'failed') {
            failed += 1;
            firstProblem ??= `${name}: ${outcome.error}`;
            return;
          }
          answered += 1;
          if (outcome.kind === 'tool-error' || (executes && !executeSucceeded(outcome))) {
            toolErrors += 1;
            firstProblem ??= `${name}: ${outcome.kind === 'tool-error' ? outcome.text : JSON.stringify(outcome.result.structuredContent)}`.slice(0, 300);
            return;
          }
          (executes ? executeTimes : cheapTimes).push(outcome.ms);
        }),
      );
    }
    const afterCalls = memoryOf(server.pid);
    const serverAlive = server.alive();

    const leaving = crowd.splice(0);
    const abandoned = leaving.filter((_, index) => index % ABANDON_EVERY === 0).length;
    await Promise.allSettled(leaving.map((client, index) => (index % ABANDON_EVERY === 0 ? client.abandon() : client.close())));
    const sessionsAfterClose = serverAlive ? await metric(server.url, 'mcp_jupyter_mcp_sessions') : null;
    const afterClose = serverAlive ? memoryOf(server.pid) : afterCalls;

    const figures: ClientsFigures = {
      clients: count,
      rounds,
      connectP50Ms: percentile(connectTimes, 50),
      connectP99Ms: percentile(connectTimes, 99),
      connectFailed: connectProblems.length,
      connectSoloP99Ms: percentile(connectSolo, 99),
      serverCpuMsPerSession,
      sseStreams,
      sessionsOnServer,
      sessionsAfterClose,
      abandoned,
      idle,
      open,
      afterCalls,
      afterClose,
      descriptorsIdle,
      descriptorsOpen,
      perSessionKb: ((open.rssMb - idle.rssMb) * 1024) / Math.max(1, everyone.length - 1),
      calls: everyone.length * rounds,
      answered,
      toolErrors,
      failed,
      firstProblem,
      cheapP50Ms: percentile(cheapTimes, 50),
      cheapP99Ms: percentile(cheapTimes, 99),
      executeP50Ms: percentile(executeTimes, 50),
      executeP99Ms: percentile(executeTimes, 99),
      cheapSoloP99Ms: percentile(cheapSolo, 99),
      executeSoloP99Ms: percentile(executeSolo, 99),
      serverAlive,
    };
    log(
      `  ${count} clients: connected ${connectTimes.length + 1} (initialize p50 ${figures.connectP50Ms.toFixed(0)} ms, p99 ${figures.connectP99Ms.toFixed(0)} ms; ` +
        `1 client alone ${figures.connectSoloP99Ms.toFixed(1)} ms; server CPU ${serverCpuMsPerSession.toFixed(1)} ms per session), ` +
        `${sseStreams} SSE streams, ${String(sessionsOnServer)} sessions on the server, ${descriptorsOpen} descriptors (idle ${descriptorsIdle})`,
    );
    log(
      `  server RSS: idle with 1 client ${idle.rssMb.toFixed(1)} MB, ${count} sessions open ${open.rssMb.toFixed(1)} MB (${figures.perSessionKb.toFixed(0)} KB each), ` +
        `after the calls ${afterCalls.rssMb.toFixed(1)} MB (peak ${afterCalls.peakMb.toFixed(1)} MB), after closing ${afterClose.rssMb.toFixed(1)} MB with ${String(sessionsAfterClose)} session(s) left ` +
        `(${abandoned} clients quit without DELETE)`,
    );
    log(
      `  ${figures.calls} calls at once in ${rounds} round(s): ${answered} answered, ${toolErrors} tool errors, ${failed} failed or timed out; ` +
        `cheap p50 ${figures.cheapP50Ms.toFixed(0)} ms p99 ${figures.cheapP99Ms.toFixed(0)} ms (1 client: p99 ${figures.cheapSoloP99Ms.toFixed(1)} ms); ` +
        `1+1 p50 ${figures.executeP50Ms.toFixed(0)} ms p99 ${figures.executeP99Ms.toFixed(0)} ms (1 client: p99 ${figures.executeSoloP99Ms.toFixed(1)} ms)` +
        (firstProblem ? `; first problem: ${firstProblem}` : ''),
    );
    return figures;
  } finally {
    await cleanup.run();
  }
}
