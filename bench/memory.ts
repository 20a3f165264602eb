// Benchmark 3: peak RSS of an engine process while one cell prints 200 MB, measured in a fresh child process.
// The child (this file run with --child) holds only the engine, so earlier benchmarks do not inflate its figures.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalKernelProvider } from '../src/kernel/local-provider.js';
import { isProcessAlive, processStartTime, signalGroup } from '../src/kernel/session.js';
import { droppedMarker } from '../src/engine/stream-text.js';
import type { Db } from '../src/store/db.js';
import { KernelJournal } from '../src/store/kernels.js';
import { Cleanup, NOTEBOOK, connectionOf, now, openEngine, reapKernels, round, runCell, tempDir, type Benchmark } from './common.js';
import { RawClient } from './raw-client.js';

const TARGET_MB = 300;
const LINE = `${'x'.repeat(99)}\n`;
/** Decimal megabytes throughout: 2,000,000 lines of 100 bytes are the brief's 200 MB. */
const MB = 1_000_000;
const CHILD_TIMEOUT_MS = 280_000;

interface ChildReport {
  lines: number;
  idleRss: number;
  sampledPeakRss: number;
  /** Linux's own high-water mark of RSS (VmHWM) since the cell was submitted: catches peaks between samples. */
  hwmRss: number | null;
  samples: number;
  seconds: number;
  /** The same cell through the raw client on a kernel the engine is not connected to. */
  rawSeconds: number;
  state: string;
  keptChars: number;
  droppedChars: number;
  headKept: boolean;
  tailKept: boolean;
  /** Kept characters (without the marker) plus dropped characters add up to everything printed. */
  accounted: boolean;
}

const code = (lines: number): string => `import sys\nfor i in range(${lines}):\n    sys.stdout.write('x' * 99 + '\\n')`;

export const memory: Benchmark = {
  name: 'memory',
  title: 'Peak RSS of the engine process while a cell prints 200 MB (fresh child process)',
  async run({ quick, log }) {
    const lines = quick ? 200_000 : 2_000_000;
    const cleanup = new Cleanup();
    try {
      const dir = tempDir(cleanup, 'mcpj-bench-memory-');
      cleanup.defer('reap kernels the child left', () => reapKernels(join(dir, '.mcp-jupyter', 'state.db')));
      const report = await runChild(cleanup, dir, lines);
      const printedMb = (lines * LINE.length) / MB;
      const size = `${printedMb.toFixed(0)} MB`;
      if (report.state !== 'succeeded') throw new Error(`the ${size} cell ended ${report.state}, not succeeded`);
      if (!report.headKept || !report.tailKept) throw new Error(`the ${size} cell's output lost its ${report.headKept ? 'tail' : 'head'} (kept ${report.keptChars} chars, dropped ${report.droppedChars})`);
      if (!report.accounted) throw new Error(`the ${size} cell's kept (${report.keptChars}) and dropped (${report.droppedChars}) characters do not add up to the ${lines * LINE.length} printed`);
      const peak = Math.max(report.sampledPeakRss, report.hwmRss ?? 0);
      const peakMb = peak / MB;
      const idleMb = report.idleRss / MB;
      const pass = peakMb < TARGET_MB;
      log(
        `  printed ${size} in ${report.seconds.toFixed(2)} s (raw client: ${report.rawSeconds.toFixed(2)} s); idle ${idleMb.toFixed(1)} MB, peak ${peakMb.toFixed(1)} MB ` +
          `(sampled ${(report.sampledPeakRss / MB).toFixed(1)} MB over ${report.samples} samples, VmHWM ${report.hwmRss === null ? 'n/a' : `${(report.hwmRss / MB).toFixed(1)} MB`}); ` +
          `kept ${report.keptChars} chars, dropped ${report.droppedChars}`,
      );
      return {
        line: `memory: peak RSS ${peakMb.toFixed(1)} MB while printing ${size} (target < ${TARGET_MB} MB: ${pass ? 'PASS' : 'MISS'}), idle ${idleMb.toFixed(1)} MB, ${report.seconds.toFixed(2)} s`,
        rows: [
          { figure: `peak RSS, ${size} printed`, value: peakMb, unit: 'MB', baseline: { label: 'idle RSS', value: idleMb }, ratio: peakMb / idleMb, target: { text: `< ${TARGET_MB} MB`, pass } },
          { figure: `time to print ${size}, engine`, value: report.seconds, unit: 's', baseline: { label: 'raw client', value: report.rawSeconds }, ratio: report.seconds / report.rawSeconds },
        ],
        details: { ...report, printedMb: round(printedMb, 1), peakMb: round(peakMb, 1), idleMb: round(idleMb, 1) },
      };
    } finally {
      await cleanup.run();
    }
  },
};

async function runChild(cleanup: Cleanup, dir: string, lines: number): Promise<ChildReport> {
  const child = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', dir, String(lines)], { stdio: ['ignore', 'pipe', 'pipe'] });
  cleanup.defer('stop the memory child', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4_000)));
  const watchdog = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS + 20_000);
  const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (codeOut, signalOut) => resolve([codeOut, signalOut]));
  }).finally(() => clearTimeout(watchdog));
  if (exitCode !== 0) throw new Error(`the memory child process ${signal ? `was killed by ${signal}` : `exited with ${exitCode}`}: ${stderr.trim() || '(no stderr)'}`);
  const last = stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(last) as ChildReport;
  } catch {
    throw new Error(`the memory child printed no report: ${stdout.slice(-500)} ${stderr.slice(-500)}`);
  }
}

/** Peak RSS since the last reset, as Linux tracks it (VmHWM). */
function highWaterMark(): number | null {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return match?.[1] ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function resetHighWaterMark(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * The same print drained by the raw client, on a kernel of its own that no engine session listens to (a session
 * would parse the same 200 MB in this process and slow the baseline down).
 */
async function rawBaseline(cleanup: Cleanup, db: Db, dir: string, lines: number): Promise<number> {
  const provider = new LocalKernelProvider({ runtimeDir: join(dir, '.mcp-jupyter', 'baseline-kernels'), workspace: dir });
  const session = await provider.start({ kernelName: 'python3', cwd: dir, id: randomUUID() });
  const pid = session.pid;
  const startTime = processStartTime(pid);
  // Journaled like the engine's kernels, so the parent's reaper finds it if this process is killed.
  new KernelJournal(db).recordLive(session.toStored(), 'raw-baseline', session.instance);
  cleanup.defer('kill the baseline kernel', () => {
    if (isProcessAlive(pid, startTime)) signalGroup(pid, 'SIGKILL');
  });
  const connection = connectionOf(session);
  await session.detach();
  const raw = new RawClient(connection);
  cleanup.defer('close the raw client', () => raw.close());
  await raw.ready();
  await raw.execute('1+1');
  const start = now();
  await raw.execute(code(lines));
  return (now() - start) / 1000;
}

async function childMain(dir: string, lines: number): Promise<void> {
  const cleanup = new Cleanup();
  try {
    const { engine, db } = openEngine(cleanup, dir);
    await runCell(engine, '1+1');
    (globalThis as { gc?: () => void }).gc?.();
    const idleRss = process.memoryUsage().rss;
    const hwmReset = resetHighWaterMark();
    let sampledPeakRss = idleRss;
    let samples = 0;
    // A measuring instrument, not a wait: it only records RSS while the engine works.
    const sampler = setInterval(() => {
      samples += 1;
      sampledPeakRss = Math.max(sampledPeakRss, process.memoryUsage().rss);
    }, 5);
    const start = now();
    const [accepted] = engine.submit([{ notebookPath: NOTEBOOK, code: code(lines), kind: 'code', kernelName: 'python3' }]);
    const done = await engine.wait(accepted!.id, CHILD_TIMEOUT_MS);
    const seconds = (now() - start) / 1000;
    clearInterval(sampler);
    sampledPeakRss = Math.max(sampledPeakRss, process.memoryUsage().rss);
    const hwmRss = hwmReset ? highWaterMark() : null;
    // Read back from the journal: what a client would get after the fact.
    const stored = engine.get(accepted!.id);
    const text = stored.outputs
      .filter((output) => output.output_type === 'stream')
      .map((output) => (Array.isArray(output['text']) ? output['text'].join('') : String(output['text'])))
      .join('');
    const marker = droppedMarker(stored.droppedChars);
    const withoutMarker = text.includes(marker) ? text.length - marker.length : text.length;
    const rawSeconds = await rawBaseline(cleanup, db, dir, lines);
    const report: ChildReport = {
      lines,
      idleRss,
      sampledPeakRss,
      hwmRss,
      samples,
      seconds,
      rawSeconds,
      state: stored.state,
      keptChars: text.length,
      droppedChars: stored.droppedChars,
      headKept: text.startsWith(LINE.repeat(100)),
      tailKept: text.endsWith(LINE.repeat(100)),
      accounted: withoutMarker + stored.droppedChars === lines * LINE.length,
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await cleanup.run();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--child') {
  const [dir, lines] = process.argv.slice(3);
  if (!dir || !lines || !Number.isInteger(Number(lines))) {
    process.stderr.write('usage: node dist/bench/memory.js --child DIR LINES (run by bench/run.js)\n');
    process.exit(2);
  }
  childMain(dir, Number(lines)).then(
    () => process.exit(0),
    (error: Error) => {
      process.stderr.write(`${error.stack ?? error.message}\n`);
      process.exit(1);
    },
  );
}
