// Outputs → what an agent reads: MCP text and images under the workspace's budgets, originals kept as assets.
import type { NbOutput } from '../engine/output-model.js';
import { renderOutputs, summarizeOutputs, type NotebookOutput, type RenderedOutputs } from '../notebook/outputs.js';
import type { Workspace } from './workspace.js';

/** `maxChars` defaults to the workspace's budget; callers that add text of their own pass what is left of it. */
export function renderForAgent(workspace: Workspace, notebookPath: string, outputs: readonly NbOutput[], executionId?: string, maxChars?: number): Promise<RenderedOutputs> {
  return renderOutputs(outputs as unknown as NotebookOutput[], {
    maxOutputChars: maxChars ?? workspace.config.maxOutputChars,
    maxImageBytes: workspace.config.maxImageBytes,
    saveAsset: (data, _kind, ext) => workspace.assets.save(notebookPath, data, ext, executionId),
  });
}

export function summarize(outputs: readonly unknown[]): string {
  return summarizeOutputs(outputs as NotebookOutput[]);
}

/** Cuts `text` to `max` characters, saying how much was left out and where to read it whole. */
export function cutText(text: string, max: number, whereWhole: string): { text: string; truncated: boolean } {
  if (text.length <= max) return { text, truncated: false };
  return { text: `${text.slice(0, max)}\n[... ${text.length - max} more characters; ${whereWhole} ...]`, truncated: true };
}
