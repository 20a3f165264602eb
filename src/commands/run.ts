// `run`: executes a notebook top to bottom on a real kernel, like `jupyter nbconvert --execute`, through the engine.
import { constants } from 'node:fs';
import { access, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { Engine, type Snapshot } from '../engine/engine.js';
import { findKernelspec } from '../kernel/kernelspecs.js';
import { LocalKernelProvider } from '../kernel/local-provider.js';
import { writeFileAtomic } from '../notebook/atomic-write.js';
import { joinText, kernelspecOf, outputToDiskForm, parseNotebook, serializeNotebook, type CodeCell, type JsonObject, type Output } from '../notebook/nbformat.js';
import { stripAnsi } from '../notebook/ansi.js';
import { openDatabase } from '../store/db.js';
import { RunProgress, type ProgressStream } from './progress.js';

export interface RunOptions {
  notebook: string;
  output?: string | undefined;
  kernel?: string | undefined;
  /** Per-cell limit in seconds: a cell running longer is interrupted and the run fails. */
  timeoutS?: number | undefined;
  allowErrors: boolean;
  /** Keep the journal here instead of a temporary directory. */
  stateDir?: string | undefined;
  /**
   * Aborting it (Ctrl-C) stops the run: cells not started are not run, the running one is interrupted, the kernel is
   * shut down and what ran is written. Without this the detached kernel would outlive the process.
   */
  signal?: AbortSignal | undefined;
}

/** How long an interrupted cell may take to stop after an abort before its kernel is shut down under it. */
const ABORT_GRACE_MS = 5_000;

/** A problem with the input found before anything ran: nothing was written. */
export class RunInputError extends Error {}

export interface RunResult {
  exitCode: number;
  /** True when `signal` stopped the run. */
  aborted: boolean;
  snapshots: Snapshot[];
  outputPath: string;
}

async function readInput(path: string): Promise<string> {
  let info;
  try {
    info = await stat(path);
  } catch {
    throw new RunInputError(`${path} does not exist. Check the notebook path.`);
  }
  if (info.isDirectory()) throw new RunInputError(`${path} is a directory, not a notebook file.`);
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new RunInputError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

/** Checks before running that the result can be written, so a long run never ends with nowhere to put it. */
async function checkWritable(path: string): Promise<void> {
  const cannot = `cannot write the output ${path}`;
  const folder = dirname(path);
  let exists = true;
  try {
    const info = await stat(path);
    if (info.isDirectory()) throw new RunInputError(`the output path ${path} is a directory; give a file name ending in .ipynb.`);
  } catch (error) {
    if (error instanceof RunInputError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new RunInputError(`${cannot}: part of ${folder} is a file, not a folder. Choose an output path in an existing folder.`);
    if (code !== 'ENOENT') throw new RunInputError(`${cannot}: ${(error as Error).message}`);
    exists = false;
  }
  try {
    await access(exists ? path : folder, constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'ENOENT') throw new RunInputError(`${cannot}: its folder ${folder} does not exist. Create it first or choose another output path.`);
    throw new RunInputError(`${cannot}: ${exists ? 'the file' : `its folder ${folder}`} is not writable (${code}).`);
  }
}

/**
 * The kernel's own `language_info` (version, lexer, file extension), which nbconvert and Jupyter front ends write
 * into the notebook's metadata. Best effort: a dead or wedged kernel leaves the metadata as it was.
 */
async function kernelLanguageInfo(engine: Engine, notebookPath: string): Promise<JsonObject | undefined> {
  const session = engine.existingKernel(notebookPath)?.session;
  if (!session || session.status === 'dead') return undefined;
  try {
    // On control: it answers even if the last cell left the shell busy.
    const reply = await session.request('control', 'kernel_info_request', {}, 5_000);
    const info = reply.content['language_info'];
    return typeof info === 'object' && info !== null && !Array.isArray(info) ? (info as JsonObject) : undefined;
  } catch {
    return undefined;
  }
}

function cellLabel(index: number, cellId: string | null): string {
  return `cell ${index + 1}${cellId ? ` (${cellId})` : ''}`;
}

export async function runNotebook(options: RunOptions, stderr: ProgressStream): Promise<RunResult> {
  const inputPath = resolve(options.notebook);
  const outputPath = resolve(options.output ?? inputPath);
  const text = await readInput(inputPath);
  const { notebook } = parseNotebook(text, inputPath);
  await checkWritable(outputPath);
  const kernelName = options.kernel ?? kernelspecOf(notebook)?.name ?? 'python3';
  const workspace = dirname(inputPath);
  await findKernelspec(kernelName, { workspace }).catch((error: Error) => {
    throw new RunInputError(error.message);
  });

  const stateDir = options.stateDir ? resolve(options.stateDir) : await mkdtemp(join(tmpdir(), 'mcp-jupyter-run-'));
  const db = openDatabase(join(stateDir, 'state.db'));
  const engine = new Engine({ db, provider: new LocalKernelProvider({ runtimeDir: join(stateDir, 'kernels'), workspace }), workspaceRoot: workspace });
  const notebookPath = basename(inputPath);

  const codeCells = notebook.cells
    .map((cell, index) => ({ cell, index }))
    .filter((entry): entry is { cell: CodeCell; index: number } => entry.cell.cell_type === 'code' && joinText(entry.cell.source).trim() !== '');
  const progress = new RunProgress(stderr, codeCells.length);
  const labels = new Map<string, string>();
  const timers = new Map<string, NodeJS.Timeout>();
  engine.events.on('execution.started', ({ executionId }) => {
    progress.started(labels.get(executionId) ?? executionId);
    if (options.timeoutS !== undefined) {
      timers.set(executionId, setTimeout(() => void engine.stop(executionId, 'timed_out'), options.timeoutS * 1000));
    }
  });
  engine.events.on('execution.finished', ({ executionId, state, durationMs }) => {
    clearTimeout(timers.get(executionId));
    timers.delete(executionId);
    progress.finished(labels.get(executionId) ?? executionId, state, durationMs);
  });

  let snapshots: Snapshot[] = [];
  let languageInfo: JsonObject | undefined;
  let abortGrace: NodeJS.Timeout | undefined;
  let aborted = false;
  try {
    const accepted = engine.submit(
      codeCells.map(({ cell }) => ({ notebookPath, code: joinText(cell.source), kind: 'cell' as const, cellId: cell.id ?? null, kernelName })),
      { stopOnError: !options.allowErrors },
    );
    accepted.forEach((snapshot, position) => {
      const entry = codeCells[position];
      if (entry) labels.set(snapshot.id, cellLabel(entry.index, entry.cell.id ?? null));
    });
    const ids = accepted.map((snapshot) => snapshot.id);
    const onAbort = (): void => {
      aborted = true;
      // The waiting ones first: interrupting the running one would otherwise hand the kernel to the next.
      for (const id of ids) if (engine.get(id).state === 'pending') engine.cancel(id);
      for (const id of ids) void engine.stop(id, 'interrupted');
      // A cell that ignores the interrupt (stuck in native code) ends when its kernel is shut down.
      abortGrace = setTimeout(() => void engine.shutdownKernel(notebookPath), ABORT_GRACE_MS);
    };
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      snapshots = await engine.waitAll(ids);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    languageInfo = await kernelLanguageInfo(engine, notebookPath);
  } finally {
    progress.end();
    clearTimeout(abortGrace);
    for (const timer of timers.values()) clearTimeout(timer);
    await engine.close({ kernels: 'shutdown' });
    db.close();
    if (!options.stateDir) await rm(stateDir, { recursive: true, force: true });
  }

  snapshots.forEach((snapshot, position) => {
    const entry = codeCells[position];
    if (!entry || snapshot.state === 'cancelled' || snapshot.state === 'pending') return;
    entry.cell.outputs = snapshot.outputs.map((output) => outputToDiskForm(structuredClone(output) as unknown as Output));
    entry.cell.execution_count = snapshot.executionCount;
  });
  if (languageInfo) notebook.metadata['language_info'] = languageInfo;
  await writeFileAtomic(outputPath, serializeNotebook(notebook));

  const problems = snapshots
    .map((snapshot, position) => ({ snapshot, entry: codeCells[position] }))
    .filter(({ snapshot }) => snapshot.state !== 'succeeded' && snapshot.state !== 'cancelled');
  for (const { snapshot, entry } of problems) {
    const label = entry ? cellLabel(entry.index, entry.cell.id ?? null) : snapshot.id;
    stderr.write(`${label} ${snapshot.state}: ${snapshot.statusText ?? ''}\n`);
    const error = snapshot.outputs.find((output) => output.output_type === 'error');
    if (error && Array.isArray(error.traceback)) stderr.write(`${stripAnsi((error.traceback as string[]).join('\n'))}\n`);
  }
  const fatal = problems.filter(({ snapshot }) => !(options.allowErrors && snapshot.state === 'failed'));
  const succeeded = snapshots.filter((snapshot) => snapshot.state === 'succeeded').length;
  if (aborted) stderr.write(`stopped (${String(options.signal?.reason ?? 'aborted')}): the cells after the interrupted one were not run.\n`);
  stderr.write(`ran ${succeeded}/${codeCells.length} code cells in ${(progress.elapsedMs() / 1000).toFixed(1)}s; wrote ${outputPath}\n`);
  return { exitCode: fatal.length > 0 || aborted ? 1 : 0, aborted, snapshots, outputPath };
}
