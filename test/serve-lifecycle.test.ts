// How `serve` ends: a stdio client going away stops the server cleanly and leaves no idle kernel behind.
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startStdioServer } from './helpers/mcp.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('closing the stdio client stops the server and shuts down its idle kernel', { timeout: 60_000 }, async () => {
  const fx = await startStdioServer();
  await fx.ok('create_notebook', { notebook_path: 'life.ipynb' });
  await fx.ok('execute_code', { notebook_path: 'life.ipynb', code: 'x = 1' });
  const db = new Database(join(fx.workspace, '.mcp-jupyter', 'state.db'), { readonly: true });
  const [details] = db.prepare("SELECT details FROM kernels WHERE state = 'live'").pluck().all() as string[];
  db.close();
  const kernelPid = (JSON.parse(details!) as { pid: number }).pid;
  assert.ok(alive(kernelPid));
  // Closing the client closes the server's stdin, as an editor does when it quits.
  await fx.client.close();
  let waited = 0;
  while (alive(kernelPid) && waited < 15_000) {
    await sleep(100);
    waited += 100;
  }
  const stillAlive = alive(kernelPid);
  if (stillAlive) process.kill(-kernelPid, 'SIGKILL');
  assert.equal(stillAlive, false, 'the idle kernel was shut down when the client went away');
  await fx.close();
});
