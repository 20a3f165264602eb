// `mcp-server-jupyter run` as a user runs it: same outputs as `jupyter nbconvert --execute`, errors, timeouts, Ctrl-C, bad input.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { packageRoot } from '../src/kernel/kernelspecs.js';
import { isProcessAlive } from '../src/kernel/session.js';

const ROOT = packageRoot() ?? fileURLToPath(new URL('../..', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const VENV_BIN = join(ROOT, '.venv', 'bin');
const EXAMPLES = join(ROOT, 'examples');

const work = mkdtempSync(join(tmpdir(), 'cli-run-test-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function runProcess(command: string, args: string[], options: { cwd?: string; onSpawn?: (pid: number) => void } = {}): Promise<Finished> {
  const startedAt = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd ?? work, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('spawn', () => options.onSpawn?.(child.pid ?? -1));
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - startedAt }));
  });
}

function cli(args: string[], options: { cwd?: string; onSpawn?: (pid: number) => void } = {}): Promise<Finished> {
  return runProcess(process.execPath, [CLI, ...args], options);
}

// --- notebooks as JSON -------------------------------------------------------------------------------------------

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface CellSpec {
  id: string;
  source: string;
  type?: 'code' | 'markdown';
  outputs?: JsonObject[];
  execution_count?: number | null;
}

function notebookText(cells: CellSpec[]): string {
  const notebook = {
    cells: cells.map((cell) =>
      cell.type === 'markdown'
        ? { cell_type: 'markdown', id: cell.id, metadata: {}, source: cell.source }
        : { cell_type: 'code', execution_count: cell.execution_count ?? null, id: cell.id, metadata: {}, outputs: cell.outputs ?? [], source: cell.source },
    ),
    metadata: { kernelspec: { display_name: 'Python 3 (ipykernel)', language: 'python', name: 'python3' }, language_info: { name: 'python' } },
    nbformat: 4,
    nbformat_minor: 5,
  };
  return `${JSON.stringify(notebook, null, 1)}\n`;
}

function readNotebook(path: string): JsonObject {
  return JSON.parse(readFileSync(path, 'utf8')) as JsonObject;
}

function cellsOf(notebook: JsonObject): JsonObject[] {
  return notebook['cells'] as JsonObject[];
}

function cellById(notebook: JsonObject, id: string): JsonObject {
  const cell = cellsOf(notebook).find((candidate) => candidate['id'] === id);
  assert.ok(cell, `cell ${id} is in the notebook`);
  return cell;
}

function text(value: Json | undefined): string {
  return Array.isArray(value) ? value.join('') : String(value ?? '');
}

/** Runs nbformat.validate (the reference validator) on each file; rejects with its message on the first invalid one. */
async function validateWithNbformat(paths: string[]): Promise<void> {
  const script = 'import sys, nbformat\nfor p in sys.argv[1:]:\n    nbformat.validate(nbformat.read(p, as_version=nbformat.NO_CONVERT))\nprint("valid")';
  const result = await runProcess(join(VENV_BIN, 'python'), ['-c', script, ...paths]);
  assert.equal(result.code, 0, `nbformat.validate failed:\n${result.stderr}`);
  assert.equal(result.stdout.trim(), 'valid');
}

// --- comparison with nbconvert -----------------------------------------------------------------------------------

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** nbconvert's own CoalesceStreamsPreprocessor rule: text up to a `\r` that is not a line end is overwritten. */
const CR_OVERWRITTEN = /.*\r(?=[^\n])/g;

/**
 * One output in the form both tools must agree on. Deliberately not compared:
 * - stream message boundaries: nbclient keeps one output per stream message, while our engine merges consecutive
 *   chunks of the same stream as they arrive (as Jupyter front ends do), and where ipykernel splits a stream depends
 *   on its flush timer. Both sides are coalesced the way nbconvert's CoalesceStreamsPreprocessor does it.
 * - image bytes: only that each image is there and is a PNG (renderers may differ in bytes without differing for a user).
 */
function normalizeOutputs(outputs: JsonObject[]): JsonObject[] {
  const merged: JsonObject[] = [];
  for (const output of outputs) {
    const last = merged[merged.length - 1];
    if (output['output_type'] === 'stream' && last?.['output_type'] === 'stream' && last['name'] === output['name']) {
      last['text'] = text(last['text']) + text(output['text']);
    } else {
      merged.push(output['output_type'] === 'stream' ? { output_type: 'stream', name: output['name'] ?? null, text: text(output['text']) } : output);
    }
  }
  return merged.map((output) => {
    switch (output['output_type']) {
      case 'stream':
        return { ...output, text: text(output['text']).replace(CR_OVERWRITTEN, '') };
      case 'display_data':
      case 'execute_result': {
        const data: JsonObject = {};
        for (const [mime, value] of Object.entries((output['data'] ?? {}) as JsonObject)) {
          if (mime === 'image/png') data[mime] = Buffer.from(text(value), 'base64').subarray(0, 8).equals(PNG_SIGNATURE) ? 'a PNG image' : 'not a PNG';
          else data[mime] = typeof value === 'string' || Array.isArray(value) ? text(value) : value;
        }
        return { ...output, data };
      }
      default:
        return output;
    }
  });
}

/**
 * The notebook in the form both tools must agree on. Ignored, as timing or provenance rather than results:
 * each cell's `metadata.execution` (nbclient's timestamps of when the cell was busy, started and replied).
 */
function comparable(notebook: JsonObject): JsonObject {
  return {
    nbformat: notebook['nbformat'] ?? null,
    nbformat_minor: notebook['nbformat_minor'] ?? null,
    metadata: notebook['metadata'] ?? null,
    cells: cellsOf(notebook).map((cell) => {
      const { execution: _timing, ...metadata } = (cell['metadata'] ?? {}) as JsonObject;
      const base: JsonObject = { id: cell['id'] ?? null, cell_type: cell['cell_type'] ?? null, source: text(cell['source']), metadata };
      if (cell['cell_type'] !== 'code') return base;
      return { ...base, execution_count: cell['execution_count'] ?? null, outputs: normalizeOutputs((cell['outputs'] ?? []) as JsonObject[]) };
    }),
  };
}

describe('run gives the outputs jupyter nbconvert --execute gives', () => {
  const examples = readdirSync(EXAMPLES)
    .filter((name) => name.endsWith('.ipynb') && !name.includes('.out.'))
    .sort();
  const dir = join(work, 'compare');
  const inputs = join(dir, 'inputs');
  const ourDir = join(dir, 'ours');
  const theirDir = join(dir, 'nbconvert');
  const runs = new Map<string, Finished>();
  let nbconvert: Finished | undefined;

  // nbconvert takes every notebook in one process (its start-up is the slow part) while ours run one after another.
  before(async () => {
    for (const folder of [inputs, ourDir, theirDir]) mkdirSync(folder, { recursive: true });
    for (const name of examples) copyFileSync(join(EXAMPLES, name), join(inputs, name));
    const paths = examples.map((name) => join(inputs, name));
    const runOurs = async (): Promise<void> => {
      for (const name of examples) runs.set(name, await cli(['run', join(inputs, name), '--output', join(ourDir, name)]));
    };
    [nbconvert] = await Promise.all([
      runProcess(join(VENV_BIN, 'jupyter'), ['nbconvert', '--to', 'notebook', '--execute', ...paths, '--output-dir', theirDir]),
      runOurs(),
    ]);
  });

  test('the examples folder has the notebooks to compare', () => {
    for (const name of ['data-analysis.ipynb', 'quickstart.ipynb', 'rich-outputs.ipynb', 'text-processing.ipynb']) assert.ok(examples.includes(name), name);
  });

  test('nbconvert and run both succeed, and both results pass nbformat.validate', async () => {
    assert.equal(nbconvert?.code, 0, `nbconvert failed:\n${nbconvert?.stderr}`);
    for (const name of examples) {
      const run = runs.get(name);
      assert.equal(run?.code, 0, `run ${name} failed:\n${run?.stderr}`);
      assert.equal(run.stdout, '', 'run prints nothing on stdout');
    }
    await validateWithNbformat(examples.flatMap((name) => [join(ourDir, name), join(theirDir, name)]));
  });

  for (const name of examples) {
    test(name, () => {
      const input = join(inputs, name);
      assert.deepEqual(readFileSync(input), readFileSync(join(EXAMPLES, name)), '--output leaves the input byte-identical');
      const run = runs.get(name);
      const codeCells = cellsOf(readNotebook(input)).filter((cell) => cell['cell_type'] === 'code');
      const n = codeCells.length;
      // Progress on stderr, one line per cell when stderr is not a terminal.
      assert.match(run?.stderr ?? '', new RegExp(`^\\[1/${n}\\] cell \\d+ \\(${String(codeCells[0]?.['id'])}\\): succeeded in \\d+\\.\\d+s$`, 'm'));
      assert.match(run?.stderr ?? '', new RegExp(`^\\[${n}/${n}\\] cell \\d+ \\(${String(codeCells.at(-1)?.['id'])}\\): succeeded in \\d+\\.\\d+s$`, 'm'));
      assert.match(run?.stderr ?? '', new RegExp(`^ran ${n}/${n} code cells in \\d+\\.\\ds; wrote ${join(ourDir, name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));

      const expected = comparable(readNotebook(join(theirDir, name)));
      const actual = comparable(readNotebook(join(ourDir, name)));
      // Cell by cell first, for a readable failure; then the whole (notebook metadata included).
      const expectedCells = expected['cells'] as JsonObject[];
      const actualCells = actual['cells'] as JsonObject[];
      assert.equal(actualCells.length, expectedCells.length);
      expectedCells.forEach((cell, index) => assert.deepEqual(actualCells[index], cell, `cell ${String(cell['id'])}`));
      assert.deepEqual(actual, expected);
      const counts = actualCells.filter((cell) => cell['cell_type'] === 'code').map((cell) => cell['execution_count']);
      assert.deepEqual(counts, codeCells.map((_cell, index) => index + 1), 'every code cell ran, in order');
    });
  }

  test('the examples hold a plot, HTML tables, JSON and stderr, so the comparison covers them', () => {
    const outputs = examples.flatMap((name) => cellsOf(readNotebook(join(ourDir, name))).flatMap((cell) => (cell['outputs'] ?? []) as JsonObject[]));
    const mimes = new Set(outputs.flatMap((output) => Object.keys((output['data'] ?? {}) as JsonObject)));
    for (const mime of ['image/png', 'text/html', 'text/markdown', 'application/json', 'text/latex', 'image/svg+xml']) assert.ok(mimes.has(mime), mime);
    assert.ok(outputs.some((output) => output['name'] === 'stderr'), 'a stderr stream');
  });
});

describe('run on a notebook with problems', () => {
  const FAILING: CellSpec[] = [
    { id: 'intro', type: 'markdown', source: '# A notebook that fails half-way' },
    { id: 'first', source: "print('before')" },
    { id: 'boom', source: "values = {'a': 1}\nraise ValueError('bad value 42')" },
    {
      id: 'later',
      source: "open('later-ran.txt', 'w').write('yes')\nprint('after')",
      outputs: [{ output_type: 'stream', name: 'stdout', text: 'output of an earlier run\n' }],
      execution_count: 7,
    },
  ];

  test('in place: outputs are written into the notebook itself', async () => {
    const dir = join(work, 'in-place');
    mkdirSync(dir);
    const path = join(dir, 'notebook.ipynb');
    writeFileSync(path, notebookText([{ id: 'sum', source: 'sum(range(10))' }, { id: 'hello', source: "print('hello', 'world')" }]));
    const result = await cli(['run', path]);
    assert.equal(result.code, 0, result.stderr);
    const notebook = readNotebook(path);
    assert.equal(cellById(notebook, 'sum')['execution_count'], 1);
    assert.deepEqual(cellById(notebook, 'sum')['outputs'], [{ data: { 'text/plain': ['45'] }, execution_count: 1, metadata: {}, output_type: 'execute_result' }]);
    assert.deepEqual(cellById(notebook, 'hello')['outputs'], [{ name: 'stdout', output_type: 'stream', text: ['hello world\n'] }]);
    assert.match(result.stderr, /^\[1\/2\] cell 1 \(sum\): succeeded in \d+\.\d+s$/m);
    assert.match(result.stderr, /^\[2\/2\] cell 2 \(hello\): succeeded in \d+\.\d+s$/m);
    await validateWithNbformat([path]);
  });

  test('a cell error stops the run: non-zero exit, the cell and error named, later cells untouched', async () => {
    const dir = join(work, 'stop-on-error');
    mkdirSync(dir);
    const path = join(dir, 'failing.ipynb');
    writeFileSync(path, notebookText(FAILING));
    const result = await cli(['run', path]);

    assert.equal(result.code, 1);
    assert.match(result.stderr, /^cell 3 \(boom\) failed: ValueError: bad value 42$/m);
    assert.match(result.stderr, /raise ValueError\('bad value 42'\)/, 'the traceback is shown');
    assert.doesNotMatch(result.stderr, /\x1b\[/, 'without terminal colour codes');
    assert.match(result.stderr, /^\[1\/3\] cell 2 \(first\): succeeded/m);
    assert.match(result.stderr, /^\[2\/3\] cell 3 \(boom\): failed/m);
    assert.match(result.stderr, /^\[3\/3\] cell 4 \(later\): cancelled$/m);

    const notebook = readNotebook(path);
    assert.deepEqual(cellById(notebook, 'first')['outputs'], [{ name: 'stdout', output_type: 'stream', text: ['before\n'] }]);
    const boom = cellById(notebook, 'boom');
    assert.equal(boom['execution_count'], 2);
    const [error] = boom['outputs'] as JsonObject[];
    assert.equal(error?.['output_type'], 'error');
    assert.equal(error?.['ename'], 'ValueError');
    assert.equal(error?.['evalue'], 'bad value 42');
    assert.ok(Array.isArray(error?.['traceback']) && error['traceback'].length > 0);
    const later = cellById(notebook, 'later');
    assert.equal(later['execution_count'], 7, 'the cell after the error keeps its old count');
    assert.deepEqual(later['outputs'], FAILING[3]?.outputs, 'and its old outputs');
    assert.throws(() => statSync(join(dir, 'later-ran.txt')), /ENOENT/, 'the cell after the error did not run');
    await validateWithNbformat([path]);
  });

  test('--allow-errors: exit 0, the error is recorded and later cells run', async () => {
    const dir = join(work, 'allow-errors');
    mkdirSync(dir);
    const path = join(dir, 'failing.ipynb');
    writeFileSync(path, notebookText(FAILING));
    const output = join(dir, 'out.ipynb');
    const result = await cli(['run', path, '--output', output, '--allow-errors']);

    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /^cell 3 \(boom\) failed: ValueError: bad value 42$/m, 'the error is still reported');
    assert.match(result.stderr, /^\[3\/3\] cell 4 \(later\): succeeded/m);
    const notebook = readNotebook(output);
    assert.equal(((cellById(notebook, 'boom')['outputs'] as JsonObject[])[0])?.['ename'], 'ValueError');
    assert.equal(cellById(notebook, 'later')['execution_count'], 3);
    assert.deepEqual(cellById(notebook, 'later')['outputs'], [{ name: 'stdout', output_type: 'stream', text: ['after\n'] }]);
    assert.equal(readFileSync(join(dir, 'later-ran.txt'), 'utf8'), 'yes');
    assert.equal(readFileSync(path, 'utf8'), notebookText(FAILING), 'the input is untouched');
  });

  test('--timeout 1 interrupts a cell that sleeps 30 s: non-zero exit within seconds, the cell timed_out', async () => {
    const dir = join(work, 'timeout');
    mkdirSync(dir);
    const path = join(dir, 'slow.ipynb');
    writeFileSync(path, notebookText([{ id: 'sleepy', source: 'import time; time.sleep(30)' }, { id: 'next', source: "print('after')" }]));
    const result = await cli(['run', path, '--timeout', '1']);

    assert.notEqual(result.code, 0);
    assert.ok(result.ms < 15_000, `it took ${result.ms} ms`);
    assert.match(result.stderr, /^\[1\/2\] cell 1 \(sleepy\): timed_out in 1\.\d+s$/m);
    assert.match(result.stderr, /^cell 1 \(sleepy\) timed_out: /m);
    const notebook = readNotebook(path);
    assert.equal(((cellById(notebook, 'sleepy')['outputs'] as JsonObject[])[0])?.['ename'], 'KeyboardInterrupt');
    assert.deepEqual(cellById(notebook, 'next')['outputs'], [], 'the next cell did not run');
    assert.equal(cellById(notebook, 'next')['execution_count'], null);
  });

  test('Ctrl-C stops the run, writes what ran and shuts the kernel down', { timeout: 30_000 }, async () => {
    const dir = join(work, 'sigint');
    mkdirSync(dir);
    const path = join(dir, 'long.ipynb');
    const started = "import os, time\nopen('pid.tmp', 'w').write(str(os.getpid()))\nos.replace('pid.tmp', 'kernel.pid')\ntime.sleep(30)";
    writeFileSync(path, notebookText([{ id: 'long', source: started }, { id: 'next', source: "print('after')" }]));

    // The cell announces that it runs by renaming a file into place; the watcher is armed before anything starts.
    let cliPid = -1;
    const watcher = watch(dir);
    const kernelRunning = new Promise<void>((resolve) => {
      watcher.on('change', (_event, file) => {
        if (file === 'kernel.pid') resolve();
      });
    });
    try {
      const finished = cli(['run', path], { cwd: dir, onSpawn: (pid) => (cliPid = pid) });
      await kernelRunning;
      const kernelPid = Number(readFileSync(join(dir, 'kernel.pid'), 'utf8'));
      process.kill(cliPid, 'SIGINT');
      const result = await finished;

      assert.equal(result.code, 130, result.stderr);
      assert.match(result.stderr, /SIGINT: interrupting the running cell/);
      assert.equal(isProcessAlive(kernelPid, null), false, 'the kernel process is gone');
      const notebook = readNotebook(path);
      assert.equal(((cellById(notebook, 'long')['outputs'] as JsonObject[])[0])?.['ename'], 'KeyboardInterrupt');
      assert.equal(cellById(notebook, 'next')['execution_count'], null, 'the next cell did not run');
    } finally {
      watcher.close();
    }
  });
});

describe('run refuses bad input with exit status 2 and touches no file', () => {
  const dir = join(work, 'bad-input');
  mkdirSync(dir);
  mkdirSync(join(dir, 'a-folder.ipynb'));
  writeFileSync(join(dir, 'ok.ipynb'), notebookText([{ id: 'x', source: "open('ran.txt', 'w').write('ran')" }]));
  writeFileSync(join(dir, 'truncated.ipynb'), '{\n "cells": [\n  {"cell_type": "code",');
  writeFileSync(join(dir, 'v3.ipynb'), JSON.stringify({ metadata: {}, nbformat: 3, nbformat_minor: 0, worksheets: [{ cells: [], metadata: {} }] }));
  writeFileSync(join(dir, 'v5.ipynb'), JSON.stringify({ cells: [], metadata: {}, nbformat: 5, nbformat_minor: 0 }));

  /** Every file under `dir` with its bytes, to show a refused run changed nothing and created nothing. */
  function snapshot(): Map<string, string> {
    const files = new Map<string, string>();
    for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      const path = join(entry.parentPath, entry.name);
      files.set(path, entry.isFile() ? readFileSync(path).toString('base64') : 'folder');
    }
    return files;
  }

  const cases: Array<{ name: string; args: string[]; message: RegExp }> = [
    { name: 'a missing file', args: ['nope.ipynb'], message: /nope\.ipynb does not exist\. Check the notebook path\./ },
    { name: 'a directory', args: ['a-folder.ipynb'], message: /a-folder\.ipynb is a directory, not a notebook file\./ },
    { name: 'invalid JSON', args: ['truncated.ipynb'], message: /truncated\.ipynb is not valid JSON: .* at line \d+, column \d+\. The file was not changed/ },
    { name: 'an nbformat 3 notebook', args: ['v3.ipynb'], message: /uses nbformat 3.*jupyter nbconvert --to notebook --nbformat 4/ },
    { name: 'an unknown nbformat version', args: ['v5.ipynb'], message: /uses nbformat 5, a major version this server does not know/ },
    { name: 'an unknown kernel', args: ['ok.ipynb', '--kernel', 'nosuchkernel'], message: /No kernelspec named "nosuchkernel"\. Available kernelspecs: (.*, )?python3 \(/ },
    {
      name: 'an output in a missing folder',
      args: ['ok.ipynb', '--output', 'missing-folder/out.ipynb'],
      message: /cannot write the output .*missing-folder\/out\.ipynb: its folder .*missing-folder does not exist/,
    },
    {
      name: 'an output "folder" that is a regular file',
      args: ['ok.ipynb', '--output', 'v5.ipynb/out.ipynb'],
      message: /cannot write the output .*v5\.ipynb\/out\.ipynb: part of .*v5\.ipynb is a file, not a folder/,
    },
    { name: '--timeout abc', args: ['ok.ipynb', '--timeout', 'abc'], message: /--timeout takes a number of seconds greater than 0, got 'abc'/ },
    { name: 'two notebooks', args: ['ok.ipynb', 'v5.ipynb'], message: /run takes exactly one notebook/ },
  ];

  for (const { name, args, message } of cases) {
    test(name, async () => {
      const before = snapshot();
      const result = await cli(['run', ...args], { cwd: dir });
      assert.equal(result.code, 2, `exit status (stderr: ${result.stderr})`);
      assert.match(result.stderr, /^mcp-server-jupyter: /);
      assert.match(result.stderr, message);
      assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(result.stdout, '');
      assert.deepEqual(snapshot(), before, 'no file was changed or created');
    });
  }
});
