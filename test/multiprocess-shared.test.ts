// Several server processes on one workspace act as one: one kernel, one execution order, one notebook file.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, makeWorkspace, textOfResult } from './helpers/mcp.js';
import { killGroups, liveKernelPids, startPeer, type Peer } from './helpers/multiprocess.js';

interface NotebookFile {
  cells: Array<{ id: string; cell_type: string; source: string | string[]; execution_count?: number | null; outputs?: Array<{ output_type: string; text?: string | string[]; data?: Record<string, unknown> }> }>;
}

const join1 = (value: string | string[] | undefined): string => (Array.isArray(value) ? value.join('') : (value ?? ''));

async function status(peer: Peer): Promise<{ owner_pid: number; follower_pids: number[] }> {
  return peer.ok('server_status');
}

test('two processes, each with its own client, alternately running cells of one notebook: one kernel, shared state, one file, one count', { timeout: 90_000 }, async () => {
  const workspace = makeWorkspace('mcpj-mp-two-');
  const peers: Peer[] = [];
  const kernels = new Set<number>();
  try {
    const a = await startPeer(workspace, 'client-a');
    peers.push(a);
    const b = await startPeer(workspace, 'client-b');
    peers.push(b);
    const [statusA, statusB] = [await status(a), await status(b)];
    assert.equal(statusA.owner_pid, a.pid, 'the first process owns the workspace');
    assert.equal(statusB.owner_pid, a.pid, "the second process's client is answered by the owner");
    assert.deepEqual(statusA.follower_pids, [b.pid]);

    await a.ok('create_notebook', { notebook_path: 'shared.ipynb' });
    await b.ok('execute_code', { notebook_path: 'shared.ipynb', code: 'seen = []' });
    const counts: number[] = [];
    for (let turn = 0; turn < 8; turn += 1) {
      const peer = turn % 2 === 0 ? a : b;
      const inserted = await peer.ok<{ cell_id: string }>('insert_cell', { notebook_path: 'shared.ipynb', cell_type: 'code', source: `seen.append('${peer.name}-${turn}')\nprint('${peer.name} turn ${turn}', len(seen))` });
      const ran = await peer.ok<{ status: string; execution_count: number }>('execute_cell', { notebook_path: 'shared.ipynb', cell_id: inserted.cell_id });
      assert.equal(ran.status, 'succeeded');
      assert.match(ran.__text, new RegExp(`${peer.name} turn ${turn} ${turn + 1}`), 'the variable set through the other client is visible');
      counts.push(ran.execution_count);
    }
    for (let i = 1; i < counts.length; i += 1) assert.equal(counts[i], counts[0]! + i, `execution counts increase by one across clients: ${counts.join(', ')}`);

    const seen = await a.ok('execute_code', { notebook_path: 'shared.ipynb', code: 'print(seen)' });
    assert.match(seen.__text, /\['client-a-0', 'client-b-1', 'client-a-2', 'client-b-3', 'client-a-4', 'client-b-5', 'client-a-6', 'client-b-7'\]/);

    // One kernel for the notebook, whichever client asked.
    const [kernelsA, kernelsB] = [await a.ok<{ kernels: Array<{ kernel_id: string }> }>('list_kernels'), await b.ok<{ kernels: Array<{ kernel_id: string }> }>('list_kernels')];
    assert.equal(kernelsA.kernels.length, 1);
    assert.deepEqual(kernelsB.kernels.map((k) => k.kernel_id), kernelsA.kernels.map((k) => k.kernel_id));
    for (const pid of liveKernelPids(workspace)) kernels.add(pid);
    assert.equal(kernels.size, 1, 'one kernel process for the notebook');

    // The file on disk holds every cell of both clients, each with its output and its count.
    const file = JSON.parse(readFileSync(join(workspace, 'shared.ipynb'), 'utf8')) as NotebookFile;
    const code = file.cells.filter((cell) => cell.cell_type === 'code');
    assert.equal(code.length, 8);
    code.forEach((cell, turn) => {
      const name = turn % 2 === 0 ? 'client-a' : 'client-b';
      assert.match(join1(cell.source), new RegExp(`seen.append\\('${name}-${turn}'\\)`));
      assert.equal(cell.execution_count, counts[turn]);
      assert.equal(join1(cell.outputs?.[0]?.text), `${name} turn ${turn} ${turn + 1}\n`);
    });

    // Each client sees the other's executions.
    for (const peer of [a, b]) {
      const listed = await peer.ok<{ executions: Array<{ execution_id: string; status: string }> }>('list_executions', { notebook_path: 'shared.ipynb' });
      assert.equal(listed.executions.length, 10, `${peer.name} lists both clients' executions`);
    }
    await a.ok('shutdown_kernel', { notebook_path: 'shared.ipynb' });
  } finally {
    for (const peer of peers.reverse()) await peer.close().catch(() => undefined);
    killGroups(kernels);
    rmSync(workspace, { recursive: true, force: true });
  }
});

test('three processes started together each submit 50 executions at once: each runs exactly once, in each client\'s order', { timeout: 90_000 }, async () => {
  const workspace = makeWorkspace('mcpj-mp-three-');
  const peers: Peer[] = [];
  const kernels = new Set<number>();
  try {
    // Started at the same moment: the election has exactly one winner.
    peers.push(...(await Promise.all(['p0', 'p1', 'p2'].map((name) => startPeer(workspace, name)))));
    const statuses = await Promise.all(peers.map(status));
    const owner = statuses[0]!.owner_pid;
    assert.ok(peers.some((peer) => peer.pid === owner), 'one of them owns the workspace');
    for (const s of statuses) assert.equal(s.owner_pid, owner, 'every client is answered by the same owner');
    assert.deepEqual(
      [...statuses[0]!.follower_pids].sort(),
      peers
        .map((peer) => peer.pid)
        .filter((pid) => pid !== owner)
        .sort(),
    );

    await peers[0]!.ok('create_notebook', { notebook_path: 'load.ipynb' });
    await peers[0]!.ok('execute_code', { notebook_path: 'load.ipynb', code: 'runs = []' });
    const ids = await Promise.all(
      peers.map(async (peer, p) => {
        const mine: string[] = [];
        for (let k = 0; k < 50; k += 1) {
          const accepted = await peer.ok<{ execution_id: string }>('execute_code', { notebook_path: 'load.ipynb', code: `runs.append((${p}, ${k}))`, wait: false });
          mine.push(accepted.execution_id);
        }
        return mine;
      }),
    );
    const all = ids.flat();
    assert.equal(new Set(all).size, 150);
    // Any process answers for any id.
    for (const [index, id] of all.entries()) {
      const done = await peers[index % 3]!.ok<{ status: string }>('get_execution', { execution_id: id, wait_s: 60 });
      assert.equal(done.status, 'succeeded', `${id}: ${done.__text}`);
    }
    const printed = await peers[1]!.ok('execute_code', { notebook_path: 'load.ipynb', code: "import json\nprint('RUNS=' + json.dumps(runs))" });
    const runs = JSON.parse(/RUNS=(\[.*\])/.exec(printed.__text)![1]!) as Array<[number, number]>;
    assert.equal(runs.length, 150, 'every execution ran');
    assert.equal(new Set(runs.map(([p, k]) => `${p}:${k}`)).size, 150, 'none ran twice');
    for (let p = 0; p < 3; p += 1) {
      assert.deepEqual(
        runs.filter(([client]) => client === p).map(([, k]) => k),
        Array.from({ length: 50 }, (_, k) => k),
        `client ${p}'s executions ran in the order it submitted them`,
      );
    }
    // Clients interleave: the kernel saw one queue, not three batches one after another.
    const switches = runs.slice(1).filter(([p], i) => p !== runs[i]![0]).length;
    assert.ok(switches >= 3, `executions of different clients interleave (${switches} switches)`);
    const listed = await peers[2]!.ok<{ executions: Array<{ status: string }> }>('list_executions', { notebook_path: 'load.ipynb', limit: 1000 });
    assert.equal(listed.executions.length, 152);
    for (const pid of liveKernelPids(workspace)) kernels.add(pid);
    assert.equal(kernels.size, 1);
    await peers[0]!.ok('shutdown_kernel', { notebook_path: 'load.ipynb' });
  } finally {
    for (const peer of peers.reverse()) await peer.close().catch(() => undefined);
    killGroups(kernels);
    rmSync(workspace, { recursive: true, force: true });
  }
});

test('serve --http on a workspace another process owns refuses to start and names that process', { timeout: 30_000 }, async () => {
  const workspace = makeWorkspace('mcpj-mp-http-');
  let peer: Peer | null = null;
  try {
    peer = await startPeer(workspace, 'stdio-owner');
    const child = spawn(process.execPath, [CLI, 'serve', '--workspace', workspace, '--http', '127.0.0.1:0', '--token', 'test-token-0123456789'], {
      env: { ...process.env, MCP_JUPYTER_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    assert.equal(code, 2, stderr);
    assert.match(stderr, new RegExp(`process ${peer.pid} already serves the workspace`));
    assert.doesNotMatch(stderr, /listening on/);
    // The owner is unharmed.
    const still = await peer.ok('server_status');
    assert.equal(still['owner_pid'], peer.pid);
    assert.ok(textOfResult(await peer.call('list_notebooks')).length > 0);
  } finally {
    await peer?.close();
    rmSync(workspace, { recursive: true, force: true });
  }
});
