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
}

/** A problem with the input found before anything ran: nothing was written. */
export class RunInputError extends Error {}

export interface RunResult {
  exitCode: number;
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
  try {
    const info = await stat(path);
    if (info.isDirectory()) throw new RunInputError(`the output path ${path} is a directory; give a file name ending in .ipynb.`);
    await access(path, constants.W_OK);
    return;
  } catch (error) {
    if (error instanceof RunInputError) throw error;
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new RunInputError(`cannot write the output ${path}: ${(error as Error).message}`);
  }
  try {
    await access(dirname(path), constants.W_OK);
  } catch (error) {
    throw new RunInputError(`cannot write the output ${path}: its folder is missing or not writable (${(error as NodeJS.ErrnoException).code ?? 'error'}).`);
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
  try {
    const accepted = engine.submit(
      codeCells.map(({ cell }) => ({ notebookPath, code: joinText(cell.source), kind: 'cell' as const, cellId: cell.id ?? null, kernelName })),
      { stopOnError: !options.allowErrors },
    );
    accepted.forEach((snapshot, position) => {
      const entry = codeCells[position];
      if (entry) labels.set(snapshot.id, cellLabel(entry.index, entry.cell.id ?? null));
    });
    snapshots = await engine.waitAll(accepted.map((snapshot) => snapshot.id));
    languageInfo = await kernelLanguageInfo(engine, notebookPath);
  } finally {
    progress.end();
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
  stderr.write(`ran ${succeeded}/${codeCells.length} code cells in ${(progress.elapsedMs() / 1000).toFixed(1)}s; wrote ${outputPath}\n`);
  return { exitCode: fatal.length > 0 ? 1 : 0, snapshots, outputPath };
}
