// Writes each finished cell execution's outputs into its notebook, by cell id, whoever was waiting for it.
import type { Engine } from '../engine/engine.js';
import type { Logger } from '../log.js';
import { assetReference, type AssetStore } from '../notebook/assets.js';
import type { NbOutput } from '../engine/output-model.js';
import type { Output } from '../notebook/nbformat.js';
import type { NotebookStore } from '../notebook/notebooks.js';

/**
 * The engine knows nothing about notebook files; this listener closes the loop. It runs for every cell
 * execution, including those whose tool call stopped waiting, those of `run_all_cells`, and display updates
 * that change an already finished cell.
 */
/** Failed notebook writes remembered for the tool results that report them. */
const MAX_FAILURES_KEPT = 1_000;

export class NotebookOutputWriter {
  private pending = new Set<Promise<void>>();
  /** Why an execution's outputs are not in its notebook file (the latest failures; a later write that works clears it). */
  private readonly failures = new Map<string, string>();

  constructor(
    private readonly engine: Engine,
    private readonly notebooks: NotebookStore,
    private readonly assets: AssetStore,
    private readonly log: Logger,
  ) {
    engine.events.on('execution.finished', (event) => {
      if (event.kind === 'cell' && event.cellId) this.write(event.executionId);
    });
    engine.events.on('execution.outputs_replaced', (event) => {
      if (event.cellId) this.write(event.executionId);
    });
  }

  /** Why the execution's outputs could not be written into its notebook, if they could not. */
  failureFor(executionId: string): string | undefined {
    return this.failures.get(executionId);
  }

  /** Resolves when every write started so far has finished. */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  private write(executionId: string): void {
    const task = this.writeNow(executionId).finally(() => this.pending.delete(task));
    this.pending.add(task);
  }

  private async writeNow(executionId: string): Promise<void> {
    const snapshot = this.engine.get(executionId);
    // A cell that never started (cancelled in the queue) keeps what the notebook showed before.
    if (!snapshot.cellId || snapshot.startedAt === null) return;
    try {
      const outputs = await this.withAssetReferences(snapshot.notebookPath, structuredClone(snapshot.outputs), executionId);
      await this.notebooks.setCellOutputs(snapshot.notebookPath, snapshot.cellId, outputs as unknown as Output[], snapshot.executionCount, {
        executionId,
        finishedAt: new Date(snapshot.finishedAt ?? Date.now()).toISOString(),
        sourceSha256: snapshot.sourceSha256,
      });
      this.failures.delete(executionId);
    } catch (error) {
      // The outputs stay in the journal (get_execution answers with them); only the notebook copy is missing.
      this.log('warn', 'could not write outputs into the notebook', { executionId, notebook: snapshot.notebookPath, cellId: snapshot.cellId, error: (error as Error).message });
      this.failures.delete(executionId);
      this.failures.set(executionId, (error as Error).message);
      if (this.failures.size > MAX_FAILURES_KEPT) this.failures.delete(this.failures.keys().next().value as string);
    }
  }

  /**
   * Saves every image as an asset and records its path in the output's metadata, so the notebook on disk
   * references the asset and a prune keeps it for as long as the notebook shows the image.
   */
  private async withAssetReferences(notebookPath: string, outputs: NbOutput[], executionId: string): Promise<NbOutput[]> {
    for (const output of outputs) {
      if (output.output_type !== 'display_data' && output.output_type !== 'execute_result') continue;
      const data = output.data as Record<string, unknown> | undefined;
      for (const [mime, ext] of [['image/png', 'png'], ['image/jpeg', 'jpg']] as const) {
        const value = data?.[mime];
        if (typeof value !== 'string') continue;
        try {
          const assetPath = await this.assets.save(notebookPath, Buffer.from(value, 'base64'), ext, executionId);
          output.metadata = { ...((output.metadata as Record<string, unknown> | undefined) ?? {}), ...assetReference(assetPath) };
        } catch (error) {
          this.log('warn', 'could not save an image asset', { executionId, error: (error as Error).message });
        }
        break;
      }
    }
    return outputs;
  }
}
