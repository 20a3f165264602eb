// Smoke test of `npm run bench`: the quick run completes, prints every benchmark's line, writes its JSON, leaves nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RUN = join(ROOT, 'dist', 'bench', 'run.js');
const BENCHMARKS = ['overhead', 'throughput', 'memory', 'mcp', 'accept', 'startup', 'multiprocess', 'remote', 'fanout', 'overload'];
/** The benchmarks that have a target print PASS or MISS for it. */
const WITH_TARGET = ['overhead', 'memory', 'mcp', 'accept', 'startup', 'multiprocess', 'remote', 'overload'];

interface ResultsFile {
  quick: boolean;
  benchmarks: Array<{ name: string; error?: string; rows?: Array<{ figure: string; value: number; baseline?: { value: number } }> }>;
}

/** Processes whose command line mentions `fragment` (kernels started under the bench's temp dir). */
function processesMentioning(fragment: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(fragment)) found.push(`${pid}: ${cmdline}`);
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

test('BENCH_QUICK=1 runs every benchmark, prints its line and the summary, writes the JSON and cleans up', { timeout: 120_000 }, async () => {
  // Its own TMPDIR: every temp dir and kernel connection file of the run lands here, so leftovers can be seen.
  const sandbox = mkdtempSync(join(tmpdir(), 'mcpj-bench-smoke-'));
  const results = join(sandbox, 'results.json');
  const scratch = join(sandbox, 'tmp');
  try {
    mkdirSync(scratch);
    const child = spawn(process.execPath, [RUN], {
      cwd: ROOT,
      env: { ...process.env, BENCH_QUICK: '1', BENCH_RESULTS: results, TMPDIR: scratch },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const code = await new Promise<number | null>((done) => child.once('close', done));
    assert.equal(code, 0, `bench exited ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);

    for (const name of BENCHMARKS) {
      const line = stdout.split('\n').find((text) => text.startsWith(`  => ${name}:`));
      assert.ok(line, `no result line for ${name} in:\n${stdout}`);
      assert.doesNotMatch(line, /FAILED/);
      if (WITH_TARGET.includes(name)) assert.match(line, /: (PASS|MISS)\)/, `${name} states no verdict against its target: ${line}`);
      assert.match(stdout, new RegExp(`^${name} +\\S`, 'm'), `${name} is missing from the summary table`);
    }
    assert.match(stdout, /^Summary/m);

    const written = JSON.parse(readFileSync(results, 'utf8')) as ResultsFile;
    assert.equal(written.quick, true);
    assert.deepEqual(written.benchmarks.map((b) => b.name), BENCHMARKS);
    for (const benchmark of written.benchmarks) {
      assert.equal(benchmark.error, undefined, `${benchmark.name} failed: ${benchmark.error}`);
      assert.ok(benchmark.rows && benchmark.rows.length > 0, `${benchmark.name} wrote no figures`);
      const first = benchmark.rows[0]!;
      assert.ok(Number.isFinite(first.value) && first.value > 0, `${benchmark.name}: ${first.figure} is ${first.value}`);
      assert.ok(first.baseline && Number.isFinite(first.baseline.value) && first.baseline.value > 0, `${benchmark.name}: ${first.figure} has no baseline`);
    }

    const leftovers = readdirSync(scratch).filter((name) => name.startsWith('mcpj-'));
    assert.deepEqual(leftovers, [], 'the bench left temp dirs behind');
    assert.deepEqual(processesMentioning(scratch), [], 'the bench left processes (kernels) running');
  } finally {
    for (const line of processesMentioning(scratch)) process.kill(Number(line.split(':')[0]), 'SIGKILL');
    rmSync(sandbox, { recursive: true, force: true });
  }
});

test('BENCH_ONLY with an unknown name says which names exist and exits non-zero', { timeout: 30_000 }, async () => {
  const child = spawn(process.execPath, [RUN], { cwd: ROOT, env: { ...process.env, BENCH_ONLY: 'overhead,nope' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((done) => child.once('close', done));
  assert.equal(code, 1);
  assert.match(stderr, /unknown benchmark\(s\) nope; the benchmarks are overhead, throughput, memory, mcp, accept/);
});
