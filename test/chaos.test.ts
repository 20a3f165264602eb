// Chaos: a busy three-notebook workload while kernels, the server and event clients are killed at random; nothing is lost, doubled or corrupted.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { invalidNotebooks, liveKernels, missingAssets, notebookFiles, readJournal, readRunsLog, type JournalSnapshot } from './helpers/chaos-checks.js';
import { EventRecorder } from './helpers/chaos-events.js';
import { Random } from './helpers/chaos-random.js';
import { ChaosServer, isRunning, killKernelGroup, workspaceKernelPids } from './helpers/chaos-server.js';
import { Ledger, NotebookAgent, TERMINAL_STATES } from './helpers/chaos-workload.js';
import { textOfResult } from './helpers/mcp.js';
import { PythonOracle } from './helpers/python-oracle.js';

const SEED = Number(process.env.CHAOS_SEED ?? 20_261_207);
const CHAOS_SECONDS = Number(process.env.CHAOS_SECONDS ?? 90);
if (!Number.isInteger(SEED) || !(CHAOS_SECONDS > 0)) throw new Error('CHAOS_SEED must be an integer and CHAOS_SECONDS a positive number of seconds');
const NOTEBOOKS = ['alpha.ipynb', 'beta.ipynb', 'gamma.ipynb'];
/** /events clients kept connected: two for everything, one per notebook filter for the first two notebooks. */
const EVENT_FILTERS: Array<string | null> = [null, null, 'alpha.ipynb', 'beta.ipynb'];
/** How long the last server gets to finish what was accepted once the chaos stops. */
const SETTLE_MS = 60_000;
/** A lease without its file is harmless only when the server died while writing it (lease first, then file). */
const LEASE_WRITE_WINDOW_MS = 5_000;

test(`chaos: ${CHAOS_SECONDS} s of kernel, server and event-client kills under a 3-notebook workload (seed ${SEED})`, { timeout: (CHAOS_SECONDS + 170) * 1000 }, async () => {
  console.log(`chaos seed ${SEED}; replay with CHAOS_SEED=${SEED} CHAOS_SECONDS=${CHAOS_SECONDS}`);
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'mcpj-chaos-')));
  const workspace = join(root, 'ws');
  mkdirSync(workspace);
  const runsLog = join(root, 'runs.log');
  const random = new Random(SEED);
  const chaosRandom = random.fork(1);
  const recorder = new EventRecorder(random.fork(2));
  const agentRandoms = NOTEBOOKS.map((_, i) => random.fork(10 + i));
  const server = new ChaosServer(workspace);
  const ledger = new Ledger();
  const started = Date.now();
  const timeline: string[] = [];
  const note = (what: string): void => {
    timeline.push(`+${((Date.now() - started) / 1000).toFixed(1)}s ${what}`);
  };
  const kills = { kernel: 0, server: 0, events: 0 };
  let stopped = true;
  let oracle: PythonOracle | null = null;
  const openEventClients = (): void => {
    const live = server.live;
    if (!live) return;
    for (const filter of new Set(EVENT_FILTERS)) {
      const wanted = EVENT_FILTERS.filter((entry) => entry === filter).length;
      for (let n = recorder.openWith(filter); n < wanted; n += 1) recorder.connect(live.url, live.token, live.generation, filter);
    }
  };

  try {
    await server.start();
    const { client: setup } = await server.connect();
    for (const notebook of NOTEBOOKS) {
      const created = (await setup.callTool({ name: 'create_notebook', arguments: { notebook_path: notebook } })) as CallToolResult;
      assert.ok(!created.isError, `create_notebook ${notebook}: ${textOfResult(created)}`);
    }
    await setup.close();
    openEventClients();
    note('notebooks created');

    stopped = false;
    const agents = NOTEBOOKS.map((notebook, i) => new NotebookAgent(server, notebook, agentRandoms[i]!, ledger, runsLog, () => stopped).run());

    // The chaos: at seeded-random moments, one move each. The first kernel and server kills are forced if chance
    // has not brought them by a quarter and a half of the time, so even a short run exercises both.
    const chaosEnd = Date.now() + CHAOS_SECONDS * 1000;
    while (Date.now() < chaosEnd) {
      await sleep(Math.min(chaosRandom.int(700, 3_500), Math.max(0, chaosEnd - Date.now())));
      assert.deepEqual(server.crashes, [], 'no server exits unless it is killed or stopped');
      if (Date.now() >= chaosEnd) break;
      const elapsed = 1 - (chaosEnd - Date.now()) / (CHAOS_SECONDS * 1000);
      let move = chaosRandom.weighted({ kernel: 3, server: 2, events: 3 });
      if (kills.kernel === 0 && elapsed > 0.25) move = 'kernel';
      else if (kills.server === 0 && elapsed > 0.5) move = 'server';
      if (move === 'kernel') {
        const ours = new Set(workspaceKernelPids(workspace));
        const live = liveKernels(workspace).filter((kernel) => ours.has(kernel.pid) && isRunning(kernel.pid));
        if (live.length === 0) {
          note('kernel kill skipped: no live kernel yet');
          continue;
        }
        const victim = chaosRandom.pick(live);
        if (killKernelGroup(victim.pid)) kills.kernel += 1;
        note(`SIGKILL kernel of ${victim.notebook} (pid ${victim.pid})`);
      } else if (move === 'server') {
        const pid = server.live?.pid;
        await server.kill();
        kills.server += 1;
        note(`SIGKILL server (pid ${pid})`);
        await sleep(chaosRandom.int(0, 600));
        const next = await server.start();
        note(`server ${next.generation} up (pid ${next.pid})`);
        openEventClients();
      } else {
        const what = recorder.disturb();
        if (what) {
          kills.events += 1;
          note(`events: ${what}`);
        }
        openEventClients();
      }
    }

    // Settle: no new work; the last server finishes (or honestly ends) everything accepted.
    stopped = true;
    note('chaos over');
    await Promise.all(agents);
    note('agents stopped');
    assert.deepEqual(server.crashes, [], 'no server exits unless it is killed or stopped');
    const { client } = await server.connect(server.live?.generation ?? 1);
    // Also the executions accepted by calls whose answer was lost with their server (WAL lets a reader in meanwhile).
    const ids = new Map<string, string>();
    for (const row of readJournal(workspace).rows) ids.set(row.id, row.notebook_path);
    for (const [id, entry] of ledger.accepted) if (!ids.has(id)) ids.set(id, entry.notebook);
    const { answered, unanswered } = await settle(client, ids, Date.now() + SETTLE_MS);
    note(`settled: ${answered.size} executions answered`);
    for (const notebook of NOTEBOOKS) await client.callTool({ name: 'shutdown_kernel', arguments: { notebook_path: notebook } }).catch(() => undefined);
    await client.close();
    await recorder.closeAll();
    await server.stop();
    note('server stopped');
    const leftover = workspaceKernelPids(workspace);

    // Everything below reads what the chaos left behind.
    const journal: JournalSnapshot = readJournal(workspace);
    const state = new Map(journal.rows.map((row) => [row.id, row]));
    const events = recorder.analyze();
    const runs = readRunsLog(runsLog);
    const notebooks = notebookFiles(workspace);
    oracle = new PythonOracle(() => workspace);
    const invalid = await invalidNotebooks(oracle, notebooks);
    const byState = new Map<string, number>();
    for (const row of journal.rows) byState.set(row.state, (byState.get(row.state) ?? 0) + 1);
    const recovered = journal.rows.filter((row) => /server restarted|server was down|server restart/.test(`${row.status_text ?? ''} ${row.outputs_note ?? ''}`));
    const summary = [
      `chaos summary (seed ${SEED}, ${CHAOS_SECONDS} s): kills: ${kills.kernel} kernel, ${kills.server} server, ${kills.events} event-client moves`,
      `  accepted by tool results: ${ledger.accepted.size}; journal rows: ${journal.rows.length}; by state: ${[...byState].map(([s, n]) => `${s} ${n}`).join(', ')}`,
      `  ended by a server restart (recovered or lost over it): ${recovered.length}; calls lost to server kills: ${ledger.failedByKill}; restart_kernel after breaker: ${ledger.restartsRequested}`,
      `  event streams: ${events.streams}, events: ${events.events}, gaps: ${events.gaps}; runs logged by kernels: ${runs.length}; notebooks: ${notebooks.join(', ')}`,
      `  agent moves: ${[...ledger.actions].map(([a, n]) => `${a} ${n}`).join(', ')}`,
      `  slow calls: ${ledger.slowCalls.join(' | ') || 'none'}`,
      `  tool errors: ${[...ledger.toolErrors].map(([k, n]) => `${n}× ${k}`).join(' | ') || 'none'}`,
      `  kernel processes still running after the clean stop: ${leftover.length}${leftover.length ? ` (pids ${leftover.join(', ')}; unknown to the journal: ${leftover.filter((pid) => !journal.kernelPids.includes(pid)).join(', ') || 'none'})` : ''}`,
    ].join('\n');
    console.log(summary);
    if (process.env.CHAOS_DEBUG) console.log(`timeline:\n${timeline.join('\n')}`);

    // The workload really did something, and the chaos really happened.
    const minAccepted = Math.max(10, Math.floor(CHAOS_SECONDS / 2));
    assert.ok(ledger.accepted.size >= minAccepted, `at least ${minAccepted} executions were accepted (got ${ledger.accepted.size})`);
    assert.ok(kills.kernel >= 1, 'at least one kernel was killed');
    assert.ok(kills.server >= 1, 'at least one server was killed');
    assert.ok(byState.get('lost') || recovered.length > 0, 'at least one execution ended lost or was recovered across a server restart');
    assert.deepEqual(ledger.unexpectedFailures, [], 'no tool call failed against a live server (only calls in flight when it was killed may fail)');

    // (1) Every accepted execution is in the journal exactly once, terminal, and every report of it agrees.
    assert.equal(journal.integrity, 'ok', `PRAGMA integrity_check on the state database: ${journal.integrity}`);
    assert.deepEqual(journal.duplicateIds, [], 'no execution id has two journal rows');
    const missing = [...ledger.accepted.keys()].filter((id) => !state.has(id));
    assert.deepEqual(missing, [], 'every execution id a tool call handed out is in the journal');
    assert.deepEqual(ledger.unknownIds, [], 'get_execution knew every execution id a tool call handed out');
    assert.deepEqual(unanswered, [], 'get_execution answered for every journaled execution after the chaos');
    const stuck = journal.rows.filter((row) => !TERMINAL_STATES.has(row.state) || row.finished_at === null).map((row) => `${row.id} (${row.notebook_path}, ${row.kind}): ${row.state}`);
    assert.deepEqual(stuck, [], `every execution ended in a terminal state within ${SETTLE_MS / 1000} s of the chaos stopping`);
    const disagreeing = [...answered].filter(([id, status]) => state.get(id)?.state !== status).map(([id, status]) => `${id}: get_execution ${status}, journal ${state.get(id)?.state ?? 'missing'}`);
    assert.deepEqual(disagreeing, [], 'the journal agrees with get_execution');
    const contradicted = [...ledger.reported]
      .filter(([id, statuses]) => [...statuses].some((status) => status !== state.get(id)?.state))
      .map(([id, statuses]) => `${id}: tool results said ${[...statuses].join(' and ')}, journal ${state.get(id)?.state ?? 'missing'}`);
    assert.deepEqual(contradicted, [], 'no tool result reported a terminal state other than the final one');
    assert.deepEqual(ledger.regressions, [], 'no tool result showed an execution unfinished after one showed it finished');
    assert.deepEqual(events.violations, [], 'the /events streams never reported two terminal states for one execution, nor an unfinished one after it finished');
    const eventMismatch = [...events.terminal]
      .filter(([id, reported]) => state.has(id) && state.get(id)!.state !== reported)
      .map(([id, reported]) => `${id}: /events said ${reported}, journal ${state.get(id)!.state}`);
    assert.deepEqual(eventMismatch, [], 'every terminal state /events reported is the journal\'s');

    // Exactly once, from the kernels' side: each run logged the msg_id of the request it ran under.
    const journalMsgIds = new Map(journal.rows.filter((row) => row.msg_id).map((row) => [row.msg_id!, row]));
    const loggedTwice = runs.filter((run, i) => runs.findIndex((other) => other.msgId === run.msgId) !== i).map((run) => run.msgId);
    assert.deepEqual(loggedTwice, [], 'no kernel request ran twice');
    const unjournaled = runs.filter((run) => !journalMsgIds.has(run.msgId)).map((run) => `${run.msgId} (${run.tag})`);
    assert.deepEqual(unjournaled, [], 'every run a kernel made is the request its journaled execution was sent as (nothing sent twice or unrecorded)');
    const logged = new Set(runs.map((run) => run.msgId));
    const claimedButNotRun = journal.rows
      .filter((row) => (row.state === 'succeeded' || row.state === 'failed') && (!row.msg_id || !logged.has(row.msg_id)))
      .map((row) => `${row.id} (${row.state}, msg ${row.msg_id ?? 'none'})`);
    assert.deepEqual(claimedButNotRun, [], 'every execution that succeeded or failed really ran in a kernel');
    const codeTags = runs.filter((run) => run.tag.includes('-code-')).map((run) => run.tag);
    assert.equal(new Set(codeTags).size, codeTags.length, 'no execute_code submission ran twice');

    // (2) integrity: above. (3) Every notebook is valid nbformat.
    assert.deepEqual(notebooks, [...NOTEBOOKS].sort(), 'the workspace holds the three notebooks');
    assert.deepEqual(invalid, [], 'every notebook passes nbformat.validate');

    // (4) No referenced asset is missing.
    assert.deepEqual(missingAssets(workspace, notebooks, journal, ledger.assets, server.kills, LEASE_WRITE_WINDOW_MS), [], 'every asset a notebook, the journal, a lease or a tool result names exists');
    assert.ok(journal.leases.length > 0, 'the workload produced assets (plots, long outputs)');

    // No kernel outlives shutdown_kernel and a clean stop: one nobody stops keeps its memory and ports forever.
    assert.deepEqual(
      leftover.map((pid) => `pid ${pid}${journal.kernelPids.includes(pid) ? '' : ' (not in the journal: spawned by a server killed before it recorded the kernel)'}`),
      [],
      'no kernel process is left running after every kernel was shut down and the server stopped',
    );
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    console.log(`timeline:\n${timeline.join('\n')}\nlast server logs:\n${server.log()}${cause ? `\ncause: ${String(cause)}` : ''}`);
    throw error;
  } finally {
    stopped = true;
    await recorder.closeAll().catch(() => undefined);
    await server.kill().catch(() => undefined);
    // Kernels run detached in their own process groups and outlive the server: stop every one this workspace started.
    for (const pid of workspaceKernelPids(workspace)) killKernelGroup(pid);
    await oracle?.close();
    rmSync(root, { recursive: true, force: true });
  }
});


/**
 * Waits, with get_execution's own wait, until every execution has ended or the deadline passed; answers each one's
 * status. One notebook's executions finish in acceptance order, so waiting on each in turn costs one wait per queue.
 */
async function settle(client: Client, ids: Map<string, string>, deadline: number): Promise<{ answered: Map<string, string>; unanswered: string[] }> {
  const answered = new Map<string, string>();
  const unanswered: string[] = [];
  await Promise.all(
    NOTEBOOKS.map(async (notebook) => {
      for (const [id] of [...ids].filter(([, path]) => path === notebook)) {
        const waitS = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
        const askedAt = Date.now();
        let result: CallToolResult;
        try {
          result = (await client.callTool({ name: 'get_execution', arguments: { execution_id: id, wait_s: waitS } }, undefined, { timeout: waitS * 1000 + 30_000 })) as CallToolResult;
        } catch (error) {
          const cause = (error as { cause?: unknown }).cause;
          unanswered.push(`${id}: get_execution (wait_s ${waitS}) threw after ${((Date.now() - askedAt) / 1000).toFixed(1)} s: ${(error as Error).message}${cause ? ` (${String(cause)})` : ''}`);
          continue;
        }
        if (result.isError) unanswered.push(`${id}: ${textOfResult(result).slice(0, 200)}`);
        else answered.set(id, String((result.structuredContent as { status?: unknown }).status));
      }
    }),
  );
  return { answered, unanswered };
}
