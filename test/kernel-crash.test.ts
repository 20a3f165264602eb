// Kernels outlive the server: a killed (or detached) Node process leaves its kernel running, and attach() finds it again.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LocalKernelProvider } from '../src/kernel/local-provider.js';
import { isProcessAlive, type LocalKernelSession } from '../src/kernel/session.js';
import type { StoredKernel } from '../src/kernel/types.js';
import { VENV_JUPYTER_DIR, execute, killGroup } from './fixtures/kernel-helpers.js';

process.env['JUPYTER_PATH'] = VENV_JUPYTER_DIR;
const root = mkdtempSync(path.join(tmpdir(), 'kernel-crash-test-'));
const runtimeDir = path.join(root, 'runtime');
const provider = new LocalKernelProvider({ runtimeDir, workspace: root });
const fixture = fileURLToPath(new URL('./fixtures/kernel-crash-child.js', import.meta.url));
const kernelPids = new Set<number>();
const sessions: LocalKernelSession[] = [];

after(async () => {
  for (const session of sessions) await session.shutdown().catch(() => undefined);
  for (const pid of kernelPids) killGroup(pid);
  rmSync(root, { recursive: true, force: true });
});

interface FixtureRun {
  stored: StoredKernel;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill: () => void;
}

/** Runs the stand-in server; resolves once it printed the stored kernel. */
function runFixture(mode: 'crash' | 'detach'): Promise<FixtureRun> {
  const child = spawn(process.execPath, [fixture, runtimeDir, root, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return new Promise<FixtureRun>((resolve, reject) => {
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      output += chunk;
      const newline = output.indexOf('\n');
      if (newline < 0) return;
      const stored = JSON.parse(output.slice(0, newline)) as StoredKernel;
      kernelPids.add(stored.details['pid'] as number);
      resolve({ stored, exit, kill: () => child.kill('SIGKILL') });
    });
    void exit.then(({ code, signal }) => reject(new Error(`fixture exited (${code ?? signal}) before printing the stored kernel; output: ${output}`)));
  });
}

function alive(stored: StoredKernel): boolean {
  return isProcessAlive(stored.details['pid'] as number, stored.details['startTime'] as string | null);
}

let survivor: StoredKernel | undefined;

test('a kernel survives SIGKILL of the server that started it, and attach() resumes it with its state', async () => {
  const run = await runFixture('crash');
  run.kill();
  assert.equal((await run.exit).signal, 'SIGKILL');
  assert.ok(alive(run.stored), 'the kernel is still running after its server was killed');

  const session = await provider.attach(run.stored);
  assert.ok(session, 'attach finds the kernel');
  sessions.push(session);
  assert.equal(session.id, run.stored.id);
  assert.equal(session.instance, 0);
  assert.equal(session.status, 'idle');
  const result = await execute(session, 'x + 1');
  assert.equal(result.result, '42');
  survivor = run.stored;
});

test('attach() refuses a kernel with the wrong key, and a pid now used by another process', async () => {
  assert.ok(survivor);
  const connection = survivor.details['connection'] as Record<string, unknown>;
  const wrongKey = { ...survivor, details: { ...survivor.details, connection: { ...connection, key: 'not-the-key' } } };
  assert.equal(await provider.attach(wrongKey), null);
  const reused = { ...survivor, details: { ...survivor.details, pid: process.pid, startTime: '1' } };
  assert.equal(await provider.attach(reused), null);
  assert.ok(alive(survivor), 'a refused attach leaves the kernel alone');
});

test('an attached kernel restarts in place: instance + 1, state lost', async () => {
  const session = sessions[0];
  assert.ok(session);
  await session.restart();
  kernelPids.add(session.pid);
  assert.equal(session.instance, 1);
  assert.ok(survivor && !alive(survivor), 'the old process is gone');
  assert.equal((await execute(session, 'x')).error?.ename, 'NameError');
});

test('after detach() the server exits on its own; a kernel killed later is noticed by heartbeat, then attach() returns null', async () => {
  const run = await runFixture('detach');
  const exited = await Promise.race([run.exit, new Promise<'stuck'>((resolve) => setTimeout(() => resolve('stuck'), 10_000).unref())]);
  assert.deepEqual(exited, { code: 0, signal: null }, 'nothing keeps Node alive after detach()');
  assert.ok(alive(run.stored));

  const session = await provider.attach(run.stored);
  assert.ok(session);
  sessions.push(session);
  assert.equal((await execute(session, 'x')).result, '41');

  const died = new Promise<string>((resolve) => session.onDeath(resolve));
  const killedAt = Date.now();
  killGroup(session.pid);
  const reason = await died;
  assert.ok(Date.now() - killedAt < 5_000, `death noticed after ${Date.now() - killedAt} ms`);
  assert.match(reason, /is gone/);
  assert.equal(session.status, 'dead');

  assert.equal(await provider.attach(run.stored), null, 'a stored kernel whose pid is gone cannot be attached');
});
