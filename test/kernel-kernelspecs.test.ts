// Kernelspec discovery: Jupyter's search order, malformed specs reported, the python3 fallback, the not-found error.

import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { discoverKernelspecs, findKernelspec, type DiscoverOptions } from '../src/kernel/kernelspecs.js';
import { VENV_JUPYTER_DIR, VENV_PYTHON } from './fixtures/kernel-helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'kernelspecs-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

function dir(...parts: string[]): string {
  const full = path.join(root, ...parts);
  mkdirSync(full, { recursive: true });
  return full;
}

function writeSpec(dataDir: string, name: string, body: string): string {
  const file = path.join(dir(path.relative(root, dataDir), 'kernels', name), 'kernel.json');
  writeFileSync(file, body);
  return file;
}

/** Isolated from this machine: no PATH python, no home-dir specs, no package .venv. */
function isolated(env: NodeJS.ProcessEnv): DiscoverOptions {
  return { env: { PATH: '', JUPYTER_DATA_DIR: dir('empty-user'), ...env }, homeDir: dir('home'), packageRoot: null };
}

test("finds the venv's python3 spec via JUPYTER_PATH, runs it with the venv's python, and reports malformed kernel.json", async () => {
  const extra = dir('extra', 'share', 'jupyter');
  const broken = writeSpec(extra, 'broken', '{ "argv": ["x", ');
  const noArgv = writeSpec(extra, 'noargv', JSON.stringify({ display_name: 'No argv', language: 'x' }));
  writeSpec(extra, 'rkernel', JSON.stringify({ argv: ['R', '--slave', '-f', '{connection_file}'], display_name: 'R', language: 'R', interrupt_mode: 'message' }));

  const specs = await discoverKernelspecs(isolated({ JUPYTER_PATH: [extra, VENV_JUPYTER_DIR].join(path.delimiter) }));

  const python = specs.find((s) => s.name === 'python3');
  assert.ok(python, 'python3 found');
  assert.equal(python.display_name, 'Python 3 (ipykernel)');
  assert.equal(python.language, 'python');
  assert.equal(python.resource_dir, path.join(VENV_JUPYTER_DIR, 'kernels', 'python3'));
  assert.deepEqual(python.argv, [VENV_PYTHON, '-m', 'ipykernel_launcher', '-f', '{connection_file}']);
  assert.match(python.source, /^JUPYTER_PATH/);
  assert.equal(python.interrupt_mode, 'signal');

  const r = specs.find((s) => s.name === 'rkernel');
  assert.equal(r?.interrupt_mode, 'message');
  assert.deepEqual(r?.argv[0], 'R', 'a non-python argv is left alone');

  assert.deepEqual(
    specs.problems.map((p) => p.path).sort(),
    [broken, noArgv].sort(),
  );
  assert.match(specs.problems.find((p) => p.path === broken)?.message ?? '', /not valid JSON/);
  assert.match(specs.problems.find((p) => p.path === noArgv)?.message ?? '', /argv/);
  assert.ok(!specs.some((s) => s.name === 'broken' || s.name === 'noargv'));
  assert.ok(specs.searched.includes(extra));
});

test('an earlier location wins for the same name; the user data dir comes after JUPYTER_PATH and before system dirs', async () => {
  const first = dir('first', 'share', 'jupyter');
  const user = dir('user-data');
  writeSpec(first, 'python3', JSON.stringify({ argv: ['/opt/custom/python', '-m', 'ipykernel_launcher', '-f', '{connection_file}'], display_name: 'Custom', language: 'python' }));
  writeSpec(user, 'python3', JSON.stringify({ argv: ['python3'], display_name: 'User one', language: 'python' }));
  writeSpec(user, 'julia', JSON.stringify({ argv: ['julia', '{connection_file}'], display_name: 'Julia', language: 'julia' }));

  const specs = await discoverKernelspecs(isolated({ JUPYTER_PATH: [first, VENV_JUPYTER_DIR].join(path.delimiter), JUPYTER_DATA_DIR: user }));
  assert.equal(specs.find((s) => s.name === 'python3')?.display_name, 'Custom');
  assert.equal(specs.find((s) => s.name === 'julia')?.source, 'user data dir');
  assert.deepEqual(specs.searched.slice(0, 3), [first, VENV_JUPYTER_DIR, user]);

  const viaXdg = await discoverKernelspecs({ env: { PATH: '', XDG_DATA_HOME: dir('xdg') }, homeDir: dir('home'), packageRoot: null });
  assert.ok(viaXdg.searched.includes(path.join(root, 'xdg', 'jupyter')), 'XDG_DATA_HOME is honored');
});

test('with no python3 spec anywhere, one is made from a Python candidate that can import ipykernel', async () => {
  // A wrapper outside any environment that has a kernelspec: the only way to python3 is the fallback.
  const bin = dir('bare-env', 'bin');
  const wrapper = path.join(bin, 'python');
  writeFileSync(wrapper, `#!/bin/sh\nexec ${VENV_PYTHON} "$@"\n`);
  chmodSync(wrapper, 0o755);
  const noIpykernel = path.join(dir('no-ipykernel', 'bin'), 'python');
  writeFileSync(noIpykernel, '#!/bin/sh\nexit 1\n');
  chmodSync(noIpykernel, 0o755);

  const withFallback = await discoverKernelspecs(isolated({ MCP_JUPYTER_PYTHON: wrapper }));
  const python = withFallback.find((s) => s.name === 'python3');
  assert.ok(python);
  assert.deepEqual(python.argv, [wrapper, '-m', 'ipykernel_launcher', '-f', '{connection_file}']);
  assert.match(python.source, new RegExp(`python: ${wrapper}`));

  const without = await discoverKernelspecs(isolated({ MCP_JUPYTER_PYTHON: noIpykernel }));
  assert.equal(without.find((s) => s.name === 'python3'), undefined, 'an interpreter without ipykernel gives no spec');
});

test('an unknown kernel name fails with the available specs and how to install one', async () => {
  const opts = isolated({ JUPYTER_PATH: VENV_JUPYTER_DIR });
  await assert.rejects(findKernelspec('nope', opts), (error: Error) => {
    assert.match(error.message, /No kernelspec named "nope"/);
    assert.match(error.message, /Available kernelspecs: python3 \("Python 3 \(ipykernel\)"/);
    assert.match(error.message, /python3 -m pip install ipykernel/);
    assert.match(error.message, /npm run setup:python/);
    return true;
  });
  assert.equal((await findKernelspec('Python3', opts)).name, 'python3', 'names are case-insensitive, as in Jupyter');
});
