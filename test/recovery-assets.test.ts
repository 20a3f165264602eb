// Assets survive a server crash; only prune deletes them, and only when unreferenced and past their lease.
import assert from 'node:assert/strict';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import Database from 'better-sqlite3';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectHttpClient, makeWorkspace, startHttpServerProcess, textOfResult } from './helpers/mcp.js';

// Short leases so expiry can be watched in a test; the child servers inherit this.
process.env.MCP_JUPYTER_ASSET_TTL_S = '3';

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<Record<string, unknown> & { __text: string }> {
  const result = (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
  if (result.isError) throw new Error(`${name}: ${textOfResult(result)}`);
  return { ...(result.structuredContent as Record<string, unknown>), __text: textOfResult(result) };
}

function paths(deleted: unknown): string[] {
  return (deleted as Array<{ path: string }>).map((item) => item.path);
}

const PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.show()";

test('an asset made before a crash survives it; prune keeps it while leased or referenced, deletes it after', { timeout: 120_000 }, async () => {
  const workspace = makeWorkspace('mcpj-assets-');
  let pids: number[] = [];
  try {
    const first = await startHttpServerProcess(workspace);
    const client1 = await connectHttpClient(first.url, first.token);
    await call(client1, 'create_notebook', { notebook_path: 'figs.ipynb' });
    const plotted = await call(client1, 'execute_code', { notebook_path: 'figs.ipynb', code: PLOT });
    const [unreferenced] = plotted.assets as string[];
    assert.ok(unreferenced && unreferenced.startsWith('assets/'), `an image asset was saved: ${String(unreferenced)}`);
    // Killed before any client saved the notebook (execute_code never writes it).
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));

    const second = await startHttpServerProcess(workspace);
    const client = await connectHttpClient(second.url, second.token);
    try {
      assert.ok(existsSync(join(workspace, unreferenced)), 'the asset file survived the crash');
      const listed = await call(client, 'list_assets', { notebook_path: 'figs.ipynb' });
      const entry = (listed.assets as Array<{ path: string; referenced: boolean; lease_expires_at: string | null }>).find((asset) => asset.path === unreferenced);
      assert.ok(entry, 'listed');
      assert.equal(entry.referenced, false);

      const early = await call(client, 'prune_unused_assets', { notebook_path: 'figs.ipynb' });
      assert.deepEqual(paths(early.deleted), []);
      assert.match(early.__text, /lease/);
      assert.ok(existsSync(join(workspace, unreferenced)));

      // A second image, this time written into the notebook by execute_cell: the notebook references it.
      const cell = await call(client, 'insert_cell', { notebook_path: 'figs.ipynb', cell_type: 'code', source: PLOT.replace('[3, 1, 2]', '[1, 1, 5]') });
      const ran = await call(client, 'execute_cell', { notebook_path: 'figs.ipynb', cell_id: cell.cell_id });
      const [referenced] = ran.assets as string[];
      assert.ok(referenced && referenced !== unreferenced);

      await sleep(3_500);
      const dry = await call(client, 'prune_unused_assets', { notebook_path: 'figs.ipynb', dry_run: true });
      assert.deepEqual(paths(dry.deleted), [unreferenced]);
      assert.ok(existsSync(join(workspace, unreferenced)), 'a dry run deletes nothing');
      const pruned = await call(client, 'prune_unused_assets', { notebook_path: 'figs.ipynb' });
      assert.deepEqual(paths(pruned.deleted), [unreferenced]);
      assert.equal(existsSync(join(workspace, unreferenced)), false);
      assert.ok(existsSync(join(workspace, referenced)), 'the expired asset the notebook references is kept');
      assert.match(pruned.__text, /figs\.ipynb/);
      const db = new Database(join(workspace, '.mcp-jupyter', 'state.db'), { readonly: true });
      pids = (db.prepare("SELECT details FROM kernels WHERE state = 'live'").pluck().all() as string[]).map((details) => (JSON.parse(details) as { pid: number }).pid);
      db.close();
      await call(client, 'shutdown_kernel', { notebook_path: 'figs.ipynb' });
    } finally {
      await client.close();
      await second.stop();
    }
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
