// How an execution is reported to an agent, and how a tool call waits for one (progress, cancellation).
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Snapshot } from '../engine/engine.js';
import { renderOutputs, type NotebookOutput } from '../notebook/outputs.js';
import { result, type ToolExtra } from './tools/common.js';
import type { Workspace } from './workspace.js';

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;
}

export function statusLine(snapshot: Snapshot, waitedMs?: number): string {
  const id = snapshot.id;
  const count = snapshot.executionCount !== null ? ` [${snapshot.executionCount}]` : '';
  const took = snapshot.startedAt !== null && snapshot.finishedAt !== null ? ` in ${seconds(snapshot.finishedAt - snapshot.startedAt)}` : '';
  switch (snapshot.state) {
    case 'pending':
      return `execution ${id}: pending, ${snapshot.queuePosition ?? 0} ahead of it in the queue${waitedMs ? ` after waiting ${seconds(waitedMs)}` : ''}. Call get_execution with this execution_id (and wait_s) to pick it up.`;
    case 'running':
      if (snapshot.interruptIgnored) return `execution ${id}: still running — ${interruptIgnoredText(snapshot.interruptIgnored)}`;
      return `execution ${id}: still running${waitedMs ? ` after ${seconds(waitedMs)}` : ''}; it goes on in the kernel. Call get_execution with this execution_id (and wait_s) to pick it up, or cancel_execution to stop it.`;
    case 'awaiting_input':
      return `execution ${id}: waiting for input — the code called input(${JSON.stringify(snapshot.awaitingInput?.prompt ?? '')})${snapshot.awaitingInput?.password ? ' (a password prompt)' : ''}. Answer with send_input.`;
    case 'succeeded':
      return `execution ${id}: succeeded${count}${took}`;
    case 'failed':
      return `execution ${id}: failed${count}${took} — ${snapshot.statusText ?? 'the code raised an error'}`;
    default:
      return `execution ${id}: ${snapshot.state}${count}${took}${snapshot.statusText ? ` — ${snapshot.statusText}` : ''}`;
  }
}

/** What to tell a caller whose interrupt the running code outlived. */
export function interruptIgnoredText(ignored: { sentAt: number; graceMs: number }): string {
  const ago = Math.round((Date.now() - ignored.sentAt) / 1000);
  return (
    `the kernel ignored the interrupt sent ${ago} s ago (grace ${ignored.graceMs / 1000} s): the code may catch KeyboardInterrupt or be stuck in native code. ` +
    `It goes on running. Call restart_kernel to stop it (kernel state will be reset), or keep waiting with get_execution.`
  );
}

export function structuredExecution(snapshot: Snapshot): Record<string, unknown> {
  return {
    execution_id: snapshot.id,
    status: snapshot.state,
    notebook_path: snapshot.notebookPath,
    cell_id: snapshot.cellId,
    execution_count: snapshot.executionCount,
    status_text: snapshot.statusText,
    error: snapshot.error,
    queue_position: snapshot.queuePosition ?? null,
    awaiting_input: snapshot.awaitingInput,
    created_at: new Date(snapshot.createdAt).toISOString(),
    started_at: snapshot.startedAt !== null ? new Date(snapshot.startedAt).toISOString() : null,
    finished_at: snapshot.finishedAt !== null ? new Date(snapshot.finishedAt).toISOString() : null,
    output_count: snapshot.outputs.length,
    outputs_dropped_chars: snapshot.droppedChars,
    interrupt_ignored: snapshot.interruptIgnored !== undefined,
  };
}

/** The tool result for one execution: a status line, then its outputs from `outputOffset` under the budget. */
export async function executionResult(workspace: Workspace, snapshot: Snapshot, options: { outputOffset?: number; waitedMs?: number } = {}): Promise<CallToolResult> {
  const offset = Math.min(options.outputOffset ?? 0, snapshot.outputs.length);
  const notes: string[] = [];
  if (snapshot.droppedChars > 0) notes.push(`note: ${snapshot.droppedChars} characters of output were dropped while it ran (the head and tail are kept)`);
  if (snapshot.outputsNote) notes.push(`note: ${snapshot.outputsNote}`);
  const writeFailure = snapshot.kind === 'cell' ? workspace.notebookWriteFailure(snapshot.id) : undefined;
  if (writeFailure) notes.push(`note: the outputs could not be written into ${snapshot.notebookPath} when it finished (${writeFailure}); they go in with the notebook's next save`);
  if (offset > 0) notes.push(`(outputs from index ${offset})`);
  const header = [statusLine(snapshot, options.waitedMs), ...notes].join('\n');
  // The budget bounds the whole result, so the outputs get what the status text leaves.
  const rendered = await renderOutputs(snapshot.outputs.slice(offset) as unknown as NotebookOutput[], {
    maxOutputChars: Math.max(0, workspace.config.maxOutputChars - header.length),
    maxImageBytes: workspace.config.maxImageBytes,
    saveAsset: (data, _kind, ext) => workspace.assets.save(snapshot.notebookPath, data, ext, snapshot.id),
  });
  return result({
    text: header,
    structured: {
      ...structuredExecution(snapshot),
      output_offset: offset,
      next_output_offset: snapshot.outputs.length,
      outputs_summary: rendered.summary,
      outputs_truncated: rendered.truncated,
      assets: rendered.assets,
    },
    extra: rendered.content,
  });
}

/**
 * Waits for an execution to finish, to ask for input, or for `timeoutMs` — whichever comes first. Sends MCP
 * progress notifications as it starts and produces output (when the client gave a progress token), and an MCP
 * cancellation of the call cancels the execution (interrupting it if it runs). Answers the snapshots of the
 * executions seen finished, so callers need not read them again (a finished execution no longer changes).
 */
export async function waitForExecution(workspace: Workspace, ids: string[], timeoutMs: number, extra: ToolExtra): Promise<Map<string, Snapshot>> {
  const ended = new Map<string, Snapshot>();
  const engine = workspace.engine;
  const watched = new Set(ids);
  const progressToken = extra._meta?.progressToken;
  let progress = 0;
  const offs: Array<() => void> = [];
  const notify = (message: string): void => {
    if (progressToken === undefined) return;
    progress += 1;
    extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress, message } }).catch(() => undefined);
  };
  let wakeOnInput: () => void = () => undefined;
  const inputRequested = new Promise<void>((resolve) => {
    wakeOnInput = resolve;
  });
  offs.push(
    engine.events.on('execution.started', (event) => {
      if (watched.has(event.executionId)) notify(`started ${event.cellId ? `cell ${event.cellId}` : event.executionId}`);
    }),
    engine.events.on('execution.output', (event) => {
      if (watched.has(event.executionId)) notify(`output (${event.msgType})`);
    }),
    engine.events.on('execution.state', (event) => {
      if (!watched.has(event.executionId) || event.state !== 'awaiting_input') return;
      notify('waiting for input');
      wakeOnInput();
    }),
    engine.events.on('execution.finished', (event) => {
      if (watched.has(event.executionId)) notify(`${event.cellId ? `cell ${event.cellId}` : event.executionId}: ${event.state}`);
    }),
  );
  // Watchers subscribe after submit, which on an idle kernel has already started the work (and may have
  // reached an input() prompt when an agent picks an execution up later): what has happened is reported now.
  const current = ids.map((id) => engine.get(id));
  const prompting = current.find((snapshot) => snapshot.state === 'awaiting_input');
  const active = current.find((snapshot) => snapshot.finishedAt === null);
  if (prompting) {
    notify(`waiting for input: ${JSON.stringify(prompting.awaitingInput?.prompt ?? '')}`);
    wakeOnInput();
  } else if (active) {
    notify(active.state === 'pending' ? `pending, ${active.queuePosition ?? 0} ahead in the queue` : `${active.state} ${active.cellId ? `cell ${active.cellId}` : active.id}`);
  }
  // The SDK aborts the same signal for an MCP cancellation and for a closed connection. Only the first cancels
  // the work: a client that went away must not take its accepted executions with it. Once the connection has
  // closed, sending fails ("Not connected"), which tells the two apart.
  const onAbort = (): void => {
    setImmediate(() => {
      extra
        .sendNotification({ method: 'notifications/message', params: { level: 'info', logger: 'mcp-server-jupyter', data: `cancelling ${ids.join(', ')} as requested` } })
        .then(
          () => ids.forEach((id) => engine.cancel(id)),
          () => undefined,
        );
    });
  };
  extra.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const deadline = Date.now() + timeoutMs;
    for (const id of ids) {
      const left = deadline - Date.now();
      if (left <= 0 || extra.signal.aborted || prompting) break;
      const waited = engine.wait(id, left, extra.signal);
      const outcome = await Promise.race([waited, inputRequested.then(() => 'input' as const)]);
      if (outcome === 'input') break;
      if (outcome.finishedAt !== null) ended.set(id, outcome);
    }
  } finally {
    extra.signal.removeEventListener('abort', onAbort);
    for (const off of offs) off();
  }
  return ended;
}
