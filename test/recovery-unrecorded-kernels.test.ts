// A server killed while a kernel was starting never journaled it: the next server finds that kernel and stops it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalKernelProvider } from '../src/kernel/local-provider.js';
import { isProcessAlive } from '../src/kernel/session.js';
import { CLI, makeWorkspace } from './helpers/mcp.js';
import { VENV_JUPYTER_DIR } from './helpers/paths.js';

test('a kernel process that no journal row names is stopped by the next server, and its connection file removed', { timeout: 60_000 }, async () => {
  const workspace = makeWorkspace('mcpj-unrecorded-');
  process.env['JUPYTER_PATH'] = VENV_JUPYTER_DIR;
  const runtimeDir = join(workspace, '.mcp-jupyter', 'kernels');
  // What a server that died between launching a kernel and journaling it leaves behind: the process and its file.
  const ghost = await new LocalKernelProvider({ runtimeDir, workspace }).start({ kernelName: 'python3', cwd: workspace, id: 'never-recorded' });
  await ghost.detach();
  const { pid, startTime } = ghost.toStored().details as { pid: number; startTime: string | null };
  assert.ok(isProcessAlive(pid, startTime));
  const server = spawn(process.execPath, [CLI, 'serve', '--workspace', workspace, '--http', '127.0.0.1:0', '--token', 'test-token-0123456789'], {
    env: { ...process.env, MCP_JUPYTER_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  try {
    const log = await new Promise<string>((resolve, reject) => {
      let seen = '';
      server.stderr.on('data', (chunk: Buffer) => {
        seen += chunk.toString();
        if (/never recorded/.test(seen)) resolve(seen);
      });
      server.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${seen}`)));
    });
    assert.match(log, /"count":1/);
    assert.ok(!existsSync(join(runtimeDir, 'kernel-never-recorded.json')), 'its connection file is gone');
    // SIGKILL of the group is done by the time the line is logged; the process is reaped by init soon after.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(isProcessAlive(pid, startTime), false, 'the unrecorded kernel no longer runs');
  } finally {
    server.kill('SIGTERM');
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Stopped by the server, as it should be.
    }
    rmSync(workspace, { recursive: true, force: true });
  }
});
