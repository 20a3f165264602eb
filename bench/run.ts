// `npm run bench`: runs each benchmark in turn, prints figures next to same-run baselines, writes them as JSON.
// BENCH_QUICK=1: a smoke run with fewer iterations; BENCH_ONLY=overhead,accept: a subset; BENCH_RESULTS=FILE: where
// the JSON goes (default dist/bench-results.json, so a run changes nothing in the repository).
//
// Each benchmark runs in a process of its own: one that ran after the 200 MB print of `memory` in the same process
// measured its client side on a heap hundreds of megabytes large (the MCP figure read 1.1 ms there, 0.75 alone).
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { accept } from './accept.js';
import { PROJECT_ROOT, now, round, type Benchmark, type BenchResult, type Row } from './common.js';
import { mcpStdio } from './mcp-stdio.js';
import { memory } from './memory.js';
import { multiprocess } from './multiprocess.js';
import { fanout } from './fanout.js';
import { overhead } from './overhead.js';
import { overload } from './overload.js';
import { remote } from './remote.js';
import { startup } from './startup.js';
import { throughput } from './throughput.js';

const BENCHMARKS: readonly Benchmark[] = [overhead, throughput, memory, mcpStdio, accept, startup, multiprocess, remote, fanout, overload];

interface Outcome {
  benchmark: Benchmark;
  seconds: number;
  result?: BenchResult;
  error?: string;
}

function selected(only: string | undefined): Benchmark[] {
  if (!only?.trim()) return [...BENCHMARKS];
  const names = only.split(',').map((name) => name.trim()).filter(Boolean);
  const unknown = names.filter((name) => !BENCHMARKS.some((benchmark) => benchmark.name === name));
  if (unknown.length > 0) {
    throw new Error(`BENCH_ONLY names unknown benchmark(s) ${unknown.join(', ')}; the benchmarks are ${BENCHMARKS.map((benchmark) => benchmark.name).join(', ')}.`);
  }
  return BENCHMARKS.filter((benchmark) => names.includes(benchmark.name));
}

function formatValue(value: number, unit: string): string {
  if (!Number.isFinite(value)) return String(value);
  if (unit === '/s' || unit === 'exec/s') return `${Math.round(value).toLocaleString('en-US')} ${unit}`;
  if (unit === 'MB') return `${value.toFixed(1)} MB`;
  if (unit === 'KB') return `${Math.round(value).toLocaleString('en-US')} KB`;
  if (unit === 'calls') return `${Math.round(value).toLocaleString('en-US')} calls`;
  if (unit === 's') return `${value.toFixed(2)} s`;
  return `${value.toFixed(3)} ${unit}`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return [line(header), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)].join('\n');
}

function summaryRows(outcomes: Outcome[]): string[][] {
  const rows: string[][] = [];
  for (const { benchmark, result, error } of outcomes) {
    if (!result) {
      rows.push([benchmark.name, 'FAILED', '', '', '', '', (error ?? '').split('\n')[0]!.slice(0, 80)]);
      continue;
    }
    for (const row of result.rows) rows.push(summaryRow(benchmark.name, row));
  }
  return rows;
}

function summaryRow(name: string, row: Row): string[] {
  return [
    name,
    row.figure,
    formatValue(row.value, row.unit),
    row.baseline ? `${formatValue(row.baseline.value, row.unit)} (${row.baseline.label})` : '',
    row.ratio !== undefined ? row.ratio.toFixed(3) : '',
    row.target?.text ?? '',
    row.target ? (row.target.pass ? 'PASS' : 'MISS') : '',
  ];
}

function isQuick(): boolean {
  return process.env['BENCH_QUICK'] === '1' || process.env['BENCH_QUICK'] === 'true';
}

async function main(): Promise<number> {
  const quick = isQuick();
  const benchmarks = selected(process.env['BENCH_ONLY']);
  const resultsFile = resolve(process.env['BENCH_RESULTS'] ?? join(PROJECT_ROOT, 'dist', 'bench-results.json'));
  const log = (line: string): void => void process.stdout.write(`${line}\n`);

  log(`mcp-server-jupyter bench${quick ? ' (quick: a smoke run, not a measurement)' : ''}: ${benchmarks.map((b) => b.name).join(', ')}`);
  log(`node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown cpu'})`);
  const started = new Date();
  const outcomes: Outcome[] = [];
  for (const [index, benchmark] of benchmarks.entries()) {
    log(`\n[${index + 1}/${benchmarks.length}] ${benchmark.name}: ${benchmark.title}`);
    const start = now();
    const report = await runInChild(benchmark.name);
    const seconds = (now() - start) / 1000;
    if (report.result) {
      outcomes.push({ benchmark, seconds, result: report.result });
      log(`  => ${report.result.line} [${seconds.toFixed(1)} s]`);
    } else {
      const message = report.error ?? 'no result';
      outcomes.push({ benchmark, seconds, error: message });
      log(`  => ${benchmark.name}: FAILED: ${message}`);
    }
  }

  log('\nSummary (each figure next to a baseline measured in this run; PASS/MISS is information, not an exit code)');
  log(table(['bench', 'figure', 'value', 'baseline', 'ratio', 'target', ''], summaryRows(outcomes)));

  const failed = outcomes.filter((outcome) => outcome.error !== undefined);
  mkdirSync(dirname(resultsFile), { recursive: true });
  writeFileSync(
    resultsFile,
    `${JSON.stringify(
      {
        startedAt: started.toISOString(),
        quick,
        node: process.version,
        cpus: cpus().length,
        benchmarks: outcomes.map(({ benchmark, seconds, result, error }) => ({
          name: benchmark.name,
          title: benchmark.title,
          seconds: round(seconds, 2),
          ...(result ? { line: result.line, rows: result.rows, details: result.details } : { error }),
        })),
      },
      null,
      2,
    )}\n`,
  );
  log(`\nfigures written to ${resultsFile}`);
  if (failed.length > 0) log(`${failed.length} benchmark(s) failed: ${failed.map((outcome) => outcome.benchmark.name).join(', ')}`);
  return failed.length > 0 ? 1 : 0;
}

/** What a benchmark's process sends back. */
interface ChildReport {
  result?: BenchResult;
  error?: string;
}

/** Runs one benchmark in a fresh process (its lines go straight to this stdout) and answers its result. */
function runInChild(name: string): Promise<ChildReport> {
  return new Promise((resolveReport) => {
    let report: ChildReport | undefined;
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
      env: { ...process.env, BENCH_CHILD: name },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.on('message', (message) => (report = message as ChildReport));
    child.on('error', (error) => resolveReport({ error: `could not start the benchmark process: ${error.message}` }));
    child.on('exit', (code, signal) => resolveReport(report ?? { error: `the benchmark process ended (${signal ?? `exit code ${String(code)}`}) without a result` }));
  });
}

/** The child side: one benchmark, its result sent to the parent, then exit. */
async function child(name: string): Promise<void> {
  const quick = isQuick();
  const benchmark = selected(name)[0]!;
  let report: ChildReport;
  try {
    report = { result: await benchmark.run({ quick, log: (line) => void process.stdout.write(`${line}\n`) }) };
  } catch (error) {
    report = { error: (error as Error).stack ?? String(error) };
  }
  process.send!(report, () => {
    process.disconnect();
    // A benchmark that left a handle open must not hold the whole run: its result is in.
    setTimeout(() => process.exit(0), 5_000).unref();
  });
}

function runAll(): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: Error) => {
      process.stderr.write(`bench: ${error.message}\n`);
      process.exitCode = 1;
    },
  );
}

const childName = process.env['BENCH_CHILD'];
if (childName) void child(childName);
else runAll();
