// `mcp-server-jupyter doctor`: lists what it found, and on a machine without a Python kernel says exactly how to get one.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { packageRoot } from '../src/kernel/kernelspecs.js';

const ROOT = packageRoot() ?? fileURLToPath(new URL('../..', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const VENV_PYTHON = join(ROOT, '.venv', 'bin', 'python');

const work = mkdtempSync(join(tmpdir(), 'cli-doctor-test-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

function doctor(cli: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, 'doctor', ...args], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function folder(name: string): string {
  const path = join(work, name);
  mkdirSync(path, { recursive: true });
  return path;
}

test('with the project environment it lists the python3 kernelspec and exits 0', async () => {
  const workspace = folder('workspace');
  const result = await doctor(CLI, ['--workspace', workspace, '--state-dir', join(workspace, 'state')]);
  assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout, /^ok {3}kernelspec python3: .*\(python\) — /m);
  assert.match(result.stdout, /^ok {3}Python: Python 3\.\d+/m);
  assert.match(result.stdout, /^ok {3}native module zeromq: loads$/m);
  assert.doesNotMatch(result.stdout, /^MISS/m);
  assert.match(result.stdout, /Everything needed was found\.\n$/);
});

test('installed where no kernel can be found, it names the missing kernel and the exact fix, and exits 1', async (t) => {
  // Jupyter's system data dirs are always searched; a machine with a kernel installed there cannot show this case.
  const systemKernels = ['/usr/local/share/jupyter/kernels', '/usr/share/jupyter/kernels'].filter((dir) => existsSync(dir) && readdirSync(dir).length > 0);
  if (systemKernels.length > 0) {
    t.skip(`kernels are installed system-wide in ${systemKernels.join(', ')}`);
    return;
  }

  // The package as `npm install -g` leaves it before `npm run setup:python`: its code, scripts and dependencies, no .venv.
  const installed = folder('installed/mcp-server-jupyter');
  cpSync(join(ROOT, 'package.json'), join(installed, 'package.json'));
  cpSync(join(ROOT, 'dist', 'src'), join(installed, 'dist', 'src'), { recursive: true });
  cpSync(join(ROOT, 'scripts'), join(installed, 'scripts'), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(installed, 'node_modules'), 'dir');

  // A user whose only Python is a plain one without ipykernel, and with no Jupyter configuration at all.
  const plainVenv = join(work, 'plain-python');
  const created = spawnSync(VENV_PYTHON, ['-m', 'venv', '--without-pip', plainVenv], { encoding: 'utf8' });
  assert.equal(created.status, 0, created.stderr);
  assert.notEqual(spawnSync(join(plainVenv, 'bin', 'python3'), ['-c', 'import ipykernel']).status, 0, 'the plain Python has no ipykernel');
  const env: NodeJS.ProcessEnv = {
    HOME: folder('home'),
    JUPYTER_PATH: folder('jupyter-path'),
    JUPYTER_DATA_DIR: folder('jupyter-data'),
    PATH: join(plainVenv, 'bin'),
    LANG: 'C.UTF-8',
  };
  const workspace = folder('empty-workspace');
  const args = ['--workspace', workspace, '--state-dir', join(workspace, 'state')];
  const cli = join(installed, 'dist', 'src', 'cli.js');

  const result = await doctor(cli, args, env);
  assert.equal(result.code, 1, `${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout, /^ok {3}Python: Python 3\.\d+/m, 'the plain Python itself is found');
  assert.match(result.stdout, /^MISS kernelspec python3: no Python kernel found \(searched: .*jupyter-path.*\)$/m);
  assert.ok(
    result.stdout.includes(`\n     fix: cd ${installed} && npm run setup:python   (creates .venv with ipykernel)\n`),
    `the fix names the installed package's folder:\n${result.stdout}`,
  );
  assert.equal(result.stdout.match(/^MISS/gm)?.length, 1, 'nothing else is reported missing');
  assert.match(result.stdout, /1 problem\(s\) found; run the fix commands above\.\n$/);

  // What the fix creates (a .venv with ipykernel in that folder; here the project's own, linked) is what doctor needs.
  symlinkSync(join(ROOT, '.venv'), join(installed, '.venv'), 'dir');
  const fixed = await doctor(cli, args, env);
  assert.equal(fixed.code, 0, fixed.stdout);
  assert.ok(fixed.stdout.includes(`ok   kernelspec python3: Python 3 (ipykernel) (python) — python: ${join(installed, '.venv', 'bin', 'python')}`), fixed.stdout);
});
