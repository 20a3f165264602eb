// When the process that owns a workspace dies, another live one takes it over: accepted work runs exactly once.
import assert from 'node:assert/strict';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeWorkspace } from './helpers/mcp.js';
import { killGroups, liveKernelPids, startPeer, type Peer } from './helpers/multiprocess.js';

const TERMINAL = ['succeeded', 'failed', 'cancelled', 'interrupted', 'timed_out', 'lost'];

async function ownerOf(peer: Peer): Promise<number> {
  return (await peer.ok<{ owner_pid: number }>('server_status')).owner_pid;
}

test('SIGKILL of the owner with several clients\' executions pending: the others finish them exactly once, in order, on the same kernel', { timeout: 90_000 }, async () => {
  const workspace = makeWorkspace('mcpj-mp-kill-');
  const peers: Peer[] = [];
  const kernels = new Set<number>();
  try {
    const a = await startPeer(workspace, 'a');
    const b = await startPeer(workspace, 'b');
    const c = await startPeer(workspace, 'c');
    peers.push(a, b, c);
    assert.equal(await ownerOf(c), a.pid);
    await a.ok('create_notebook', { notebook_path: 'k.ipynb' });
    await b.ok('execute_code', { notebook_path: 'k.ipynb', code: 'order = []\nsecret = 1234' });
    const kernelBefore = (await c.ok<{ kernels: Array<{ kernel_id: string }> }>('list_kernels')).kernels[0]!.kernel_id;
    for (const pid of liveKernelPids(workspace)) kernels.add(pid);

    // One execution runs until the test lets it finish (it blocks reading a FIFO); every client queues work behind it.
    const gate = join(workspace, 'gate.fifo');
    execFileSync('mkfifo', [gate]);
    const running = await a.ok<{ execution_id: string }>('execute_code', { notebook_path: 'k.ipynb', code: `open(${JSON.stringify(gate)}).read()\norder.append('r')`, wait: false });
    const queued: Array<{ id: string; tag: string }> = [];
    for (let k = 0; k < 4; k += 1) {
      for (const peer of [a, b, c]) {
        const tag = `${peer.name}${k}`;
        const accepted = await peer.ok<{ execution_id: string }>('execute_code', { notebook_path: 'k.ipynb', code: `order.append('${tag}')`, wait: false });
        queued.push({ id: accepted.execution_id, tag });
      }
    }
    // c waits for a result when the owner dies: its call is in flight in the dead process.
    const waiting = c.call('execute_code', { notebook_path: 'k.ipynb', code: "order.append('c-wait')", timeout_s: 60 }).then(
      (result: CallToolResult) => ({ result, error: null as Error | null }),
      (error: Error) => ({ result: null, error }),
    );
    await sleep(200);
    await a.kill();

    const outcome = await waiting;
    assert.ok(outcome.error, `the in-flight call is answered with an error, not a result: ${JSON.stringify(outcome.result)}`);
    assert.match(outcome.error.message, /stopped while handling this request.*list_executions shows whether it was/s);

    const newOwner = await ownerOf(b);
    assert.ok(newOwner === b.pid || newOwner === c.pid, `a live process took over (owner ${newOwner})`);
    assert.equal(await ownerOf(c), newOwner);
    const before = await b.ok<{ status: string }>('get_execution', { execution_id: running.execution_id });
    assert.equal(before.status, 'running', 'the new owner knows the execution is still running');
    // Opening a FIFO for writing waits for its reader: done off the event loop, so a test timeout still fires.
    await writeFile(gate, 'go');

    const first = await b.ok<{ status: string; status_text: string | null }>('get_execution', { execution_id: running.execution_id, wait_s: 60 });
    assert.equal(first.status, 'succeeded', `the execution that was running finished under the new owner: ${first.__text}`);
    for (const { id, tag } of queued) {
      const done = await (tag.startsWith('b') ? c : b).ok<{ status: string }>('get_execution', { execution_id: id, wait_s: 60 });
      assert.equal(done.status, 'succeeded', `${tag}: ${done.__text}`);
    }
    // c's waiting call was accepted before the owner died (the sleep above): it ran too, once, after the others.
    const listed = await c.ok<{ executions: Array<{ execution_id: string; code_first_line: string; status: string }> }>('list_executions', { notebook_path: 'k.ipynb', limit: 100 });
    const cWait = listed.executions.filter((entry) => entry.code_first_line.includes('c-wait'));
    assert.equal(cWait.length, 1);
    await c.ok('get_execution', { execution_id: cWait[0]!.execution_id, wait_s: 60 });

    const printed = await c.ok('execute_code', { notebook_path: 'k.ipynb', code: 'print(order, secret)' });
    const expected = ['r', ...queued.map((q) => q.tag), 'c-wait'].map((tag) => `'${tag}'`).join(', ');
    assert.ok(printed.__text.includes(`[${expected}] 1234`), `every execution ran once, in acceptance order, with the kernel's state kept: ${printed.__text}`);

    const kernelAfter = (await b.ok<{ kernels: Array<{ kernel_id: string }> }>('list_kernels')).kernels[0]!.kernel_id;
    assert.equal(kernelAfter, kernelBefore, 'the same kernel, re-attached by the new owner');
    assert.deepEqual(liveKernelPids(workspace), [...kernels]);
    await b.ok('shutdown_kernel', { notebook_path: 'k.ipynb' });
  } finally {
    for (const peer of peers.reverse()) await peer.close().catch(() => undefined);
    killGroups(kernels);
    rmSync(workspace, { recursive: true, force: true });
  }
});

test('processes start and stop (SIGKILL or quit) in a loop under a workload: journal intact, every accepted execution ran exactly once', { timeout: 120_000 }, async () => {
  const workspace = makeWorkspace('mcpj-mp-churn-');
  const live: Peer[] = [];
  const all: Peer[] = [];
  const kernels = new Set<number>();
  let tag = 0;
  let ownersLeft = 0;
  const accepted = new Set<string>();
  const start = async (name: string): Promise<Peer> => {
    const peer = await startPeer(workspace, name);
    live.push(peer);
    all.push(peer);
    return peer;
  };
  const submit = async (peer: Peer): Promise<void> => {
    tag += 1;
    try {
      const result = await peer.call('execute_code', { notebook_path: 'churn.ipynb', code: `import time\ntime.sleep(0.02)\nruns.append(${tag})`, wait: false });
      const id = (result.structuredContent as { execution_id?: string } | undefined)?.execution_id;
      if (!result.isError && id) accepted.add(id);
    } catch {
      // Its process, or the owner, died under the call: the journal says whether it was accepted.
    }
  };
  try {
    const first = await start('p0');
    await start('p1');
    await first.ok('create_notebook', { notebook_path: 'churn.ipynb' });
    await first.ok('execute_code', { notebook_path: 'churn.ipynb', code: 'runs = []' });
    for (const pid of liveKernelPids(workspace)) kernels.add(pid);
    for (let cycle = 0; cycle < 8; cycle += 1) {
      const joined = await start(`p${cycle + 2}`);
      const calls = live.flatMap((peer) => [submit(peer), submit(peer), submit(peer)]);
      // The oldest process leaves: often the owner. Every other one is killed, the rest quit the way a client quits.
      const leaving = live.shift()!;
      if ((await ownerOf(leaving)) === leaving.pid) ownersLeft += 1;
      await sleep(20 + ((cycle * 37) % 80));
      if (cycle % 2 === 0) await leaving.kill();
      else await leaving.close();
      await Promise.all(calls);
      // The one that just joined has work of its own in flight through whichever process owns the workspace now.
      await submit(joined);
    }
    const last = live[live.length - 1]!;
    const db = new Database(join(workspace, '.mcp-jupyter', 'state.db'), { readonly: true });
    const journaled = db.prepare("SELECT id, code FROM execution_queue WHERE code LIKE '%runs.append(%' ORDER BY seq").all() as Array<{ id: string; code: string }>;
    db.close();
    for (const id of accepted) assert.ok(journaled.some((row) => row.id === id), `accepted ${id} is journaled`);
    const statusOf = new Map<number, string>();
    for (const row of journaled) {
      const done = await last.ok<{ status: string }>('get_execution', { execution_id: row.id, wait_s: 60 });
      assert.ok(TERMINAL.includes(done.status), `${row.id} ended: ${done.status}`);
      statusOf.set(Number(/runs\.append\((\d+)\)/.exec(row.code)![1]), done.status);
      if (accepted.has(row.id)) assert.ok(done.status === 'succeeded' || /not observed/.test(done.__text), `accepted ${row.id}: ${done.__text}`);
    }
    const printed = await last.ok('execute_code', { notebook_path: 'churn.ipynb', code: "import json\nprint('RUNS=' + json.dumps(runs))" });
    const runs = JSON.parse(/RUNS=(\[[\d, ]*\])/.exec(printed.__text)![1]!) as number[];
    const tags = journaled.map((row) => Number(/runs\.append\((\d+)\)/.exec(row.code)![1]));
    assert.equal(new Set(runs).size, runs.length, 'no execution ran twice');
    // Everything that ran is journaled; everything journaled as succeeded ran. A request the owner marked running
    // but was killed before sending did not run, and is reported `lost` (not observed) rather than succeeded.
    for (const ran of runs) assert.ok(tags.includes(ran), `tag ${ran} ran and is journaled`);
    for (const tag of tags) {
      if (runs.includes(tag)) continue;
      assert.equal(statusOf.get(tag), 'lost', `tag ${tag} did not run, so it must not claim success`);
    }
    assert.ok(runs.length >= tags.length - 3, `nearly all journaled executions ran (${runs.length} of ${tags.length})`);
    assert.ok(ownersLeft >= 2, `the owner itself left in ${ownersLeft} of 8 cycles`);
    assert.ok(accepted.size >= 30, `the workload went on through the churn (${accepted.size} accepted)`);
    for (const pid of liveKernelPids(workspace)) kernels.add(pid);
    assert.equal(kernels.size, 1, 'one kernel throughout');
    await last.ok('shutdown_kernel', { notebook_path: 'churn.ipynb' });
    for (const peer of live.reverse()) await peer.close();
    await Promise.all(all.map((peer) => peer.exited));

    const check = new Database(join(workspace, '.mcp-jupyter', 'state.db'), { readonly: true });
    assert.equal(check.pragma('integrity_check', { simple: true }), 'ok');
    const unfinished = check.prepare("SELECT COUNT(*) FROM execution_queue WHERE state IN ('pending', 'running')").pluck().get() as number;
    check.close();
    assert.equal(unfinished, 0, 'nothing left pending or running');
  } finally {
    for (const peer of all) await peer.close().catch(() => undefined);
    killGroups(kernels);
    rmSync(workspace, { recursive: true, force: true });
  }
});

test('a client that quits does not take its work along: its waiting call goes on, the owner hands over on SIGTERM with the kernel kept', { timeout: 60_000 }, async () => {
  const workspace = makeWorkspace('mcpj-mp-quit-');
  const peers: Peer[] = [];
  const kernels = new Set<number>();
  try {
    const a = await startPeer(workspace, 'a');
    const b = await startPeer(workspace, 'b');
    peers.push(a, b);
    await a.ok('create_notebook', { notebook_path: 'q.ipynb' });
    await b.ok('execute_code', { notebook_path: 'q.ipynb', code: 'state = "kept"' });
    for (const pid of liveKernelPids(workspace)) kernels.add(pid);

    // b's client waits on a long execution, then quits (its process exits): the execution is not cancelled.
    const waiting = b.call('execute_code', { notebook_path: 'q.ipynb', code: "import time\ntime.sleep(1.5)\nstate += ' and finished'", timeout_s: 30 }).catch(() => null);
    await sleep(300);
    await b.close();
    await waiting;
    const listed = await a.ok<{ executions: Array<{ execution_id: string; code_first_line: string }> }>('list_executions', { notebook_path: 'q.ipynb' });
    const long = listed.executions.find((entry) => entry.code_first_line === 'import time')!;
    const done = await a.ok<{ status: string }>('get_execution', { execution_id: long.execution_id, wait_s: 30 });
    assert.equal(done.status, 'succeeded', done.__text);

    // A third process joins; then the owner's client quits the way the SDK does (stdin closed, SIGTERM two seconds
    // later): the owner hands the workspace over and keeps the kernel for the next owner.
    const c = await startPeer(workspace, 'c');
    peers.push(c);
    assert.equal(await ownerOf(c), a.pid);
    await a.close();
    await a.exited;
    assert.equal(await ownerOf(c), c.pid, 'the remaining process took the workspace over');
    const printed = await c.ok('execute_code', { notebook_path: 'q.ipynb', code: 'print(state)' });
    assert.match(printed.__text, /kept and finished/, 'same kernel, state intact');
    assert.deepEqual(liveKernelPids(workspace), [...kernels]);
    await c.ok('shutdown_kernel', { notebook_path: 'q.ipynb' });
  } finally {
    for (const peer of peers.reverse()) await peer.close().catch(() => undefined);
    killGroups(kernels);
    rmSync(workspace, { recursive: true, force: true });
  }
});
