// A crash loop: the server is SIGKILLed 50 times at random moments of a busy workload; nothing is lost or doubled.
import assert from 'node:assert/strict';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectHttpClient, makeWorkspace, PROJECT_ROOT, startHttpServerProcess, textOfResult } from './helpers/mcp.js';

const CYCLES = Number(process.env.CRASH_LOOP_CYCLES ?? 50);

/** A small deterministic PRNG, so a failing run can be replayed with the same kill moments. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

async function tryCall(client: Client, name: string, args: Record<string, unknown>): Promise<Record<string, unknown> | null> {
  try {
    const result = (await client.callTool({ name, arguments: args }, undefined, { timeout: 30_000 })) as CallToolResult;
    return result.isError ? null : (result.structuredContent as Record<string, unknown>);
  } catch {
    return null; // The server died under this call.
  }
}

test(`${CYCLES} SIGKILLs during a busy workload: journal intact, no execution lost or run twice, notebooks valid`, { timeout: 600_000 }, async () => {
  const workspace = makeWorkspace('mcpj-crashloop-');
  const random = prng(Number(process.env.CRASH_LOOP_SEED ?? 20261204));
  const pids = new Set<number>();
  try {
    // Setup on a first server: a notebook with a cell, and a kernel-side record of every run.
    let server = await startHttpServerProcess(workspace);
    let client = await connectHttpClient(server.url, server.token);
    const created = await tryCall(client, 'create_notebook', { notebook_path: 'busy.ipynb', cells: [{ cell_type: 'code', source: 'import time\ntime.sleep(0.05)\n"cell"' }] });
    const cellId = (created?.cells as Array<{ cell_id: string }>)[0]!.cell_id;
    await tryCall(client, 'execute_code', { notebook_path: 'busy.ipynb', code: 'runs = []' });
    let tag = 0;
    for (let cycle = 0; cycle < CYCLES; cycle += 1) {
      // Work that overlaps the kill: executions that record their tag, cell runs that rewrite the notebook, edits.
      const calls: Promise<unknown>[] = [];
      for (let i = 0; i < 3; i += 1) {
        tag += 1;
        calls.push(tryCall(client, 'execute_code', { notebook_path: 'busy.ipynb', code: `import time\ntime.sleep(${(random() * 0.05).toFixed(3)})\nruns.append(${tag})`, wait: false }));
      }
      calls.push(tryCall(client, 'execute_cell', { notebook_path: 'busy.ipynb', cell_id: cellId, wait: false }));
      calls.push(tryCall(client, 'insert_cell', { notebook_path: 'busy.ipynb', cell_type: 'markdown', source: `cycle ${cycle}` }));
      await sleep(Math.floor(random() * 150));
      server.child.kill('SIGKILL');
      await new Promise((resolve) => server.child.once('exit', resolve));
      // Closing the client rejects the calls the dead server will never answer.
      await client.close().catch(() => undefined);
      await Promise.allSettled(calls);
      const restartedAt = Date.now();
      server = await startHttpServerProcess(workspace);
      client = await connectHttpClient(server.url, server.token);
      if (process.env.CRASH_LOOP_DEBUG) console.log(`cycle ${cycle}: restart ${Date.now() - restartedAt} ms`);
    }

    // Let the last server finish everything that was accepted.
    const db = new Database(join(workspace, '.mcp-jupyter', 'state.db'), { readonly: true });
    const ids = db.prepare('SELECT id FROM execution_queue ORDER BY seq').pluck().all() as string[];
    db.close();
    for (const id of ids) {
      const done = await tryCall(client, 'get_execution', { execution_id: id, wait_s: 60 });
      assert.ok(done, `execution ${id} answers`);
      assert.ok(['succeeded', 'failed', 'cancelled', 'interrupted', 'timed_out', 'lost'].includes(String(done.status)), `${id} ended: ${String(done.status)}`);
    }
    const printed = await client.callTool({ name: 'execute_code', arguments: { notebook_path: 'busy.ipynb', code: "import json\nprint('RUNS=' + json.dumps(runs))" } });
    const tags = JSON.parse(/RUNS=(\[[\d, ]*\])/.exec(textOfResult(printed as CallToolResult))![1]!) as number[];
    assert.equal(new Set(tags).size, tags.length, 'no execution ran twice');

    const check = new Database(join(workspace, '.mcp-jupyter', 'state.db'), { readonly: true });
    assert.equal(check.pragma('integrity_check', { simple: true }), 'ok');
    // Every execution that succeeded in the journal ran exactly once in the kernel.
    const succeededTags = (check.prepare("SELECT code FROM execution_queue WHERE state = 'succeeded' AND code LIKE '%runs.append(%'").pluck().all() as string[]).map(
      (code) => Number(/runs\.append\((\d+)\)/.exec(code)![1]),
    );
    for (const succeeded of succeededTags) assert.ok(tags.includes(succeeded), `tag ${succeeded} succeeded and is in the kernel's record`);
    // Nothing the kernel ran is unknown to the journal.
    const journaled = new Set((check.prepare("SELECT code FROM execution_queue WHERE code LIKE '%runs.append(%'").pluck().all() as string[]).map((code) => Number(/runs\.append\((\d+)\)/.exec(code)![1])));
    for (const ran of tags) assert.ok(journaled.has(ran), `tag ${ran} is journaled`);
    for (const details of check.prepare("SELECT details FROM kernels WHERE state = 'live'").pluck().all() as string[]) pids.add((JSON.parse(details) as { pid: number }).pid);
    check.close();

    execFileSync(join(PROJECT_ROOT, '.venv', 'bin', 'python'), ['-c', 'import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))', join(workspace, 'busy.ipynb')]);
    await tryCall(client, 'shutdown_kernel', { notebook_path: 'busy.ipynb' });
    await client.close();
    await server.stop();
  } finally {
    for (const pid of pids) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    rmSync(workspace, { recursive: true, force: true });
  }
});
