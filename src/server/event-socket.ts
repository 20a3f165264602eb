// The `/events` WebSocket endpoint: a `hello` snapshot, then the live events of the bus (optionally one notebook's).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Execution } from '../engine/execution.js';
import type { Logger } from '../log.js';
import { TERMINAL_STATES } from '../store/executions.js';
import type { EventBus } from './events.js';
import { redactOutput, redactText } from './redact.js';
import { VERSION } from './version.js';
import type { Workspace } from './workspace.js';

export interface EventSocketOptions {
  workspace: Workspace;
  log: Logger;
  /** Default: the workspace's bus. */
  bus?: EventBus;
  /** How often a ping checks that each client is still there (default 30 s; two missed pongs end it). */
  heartbeatMs?: number;
}

export interface EventSocketHandle {
  /** For `startHttpServer({ onUpgrade })`: called once token, Host and Origin have been checked. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  clients(): number;
  /** Closes every connection (1001) and stops accepting new ones. */
  close(): Promise<void>;
}

/** Finished executions the `hello` carries so a page that reconnects sees what happened while it was away. */
const HELLO_RECENT = 20;
/** Characters of outputs (as JSON) the `hello` carries in all; past it executions come without their outputs. */
const HELLO_OUTPUT_BUDGET = 2 * 1024 * 1024;
const MAX_CODE_CHARS = 20_000;

interface Budget {
  left: number;
  /** Replace secrets in code and outputs, as the live events that follow do. */
  redact: boolean;
}

function within(raw: unknown[], budget: Budget): { outputs: unknown[] } | { outputs_omitted: true } {
  // Outputs already over the budget are left out before paying for their redaction.
  if (budget.redact && JSON.stringify(raw).length > budget.left) return { outputs_omitted: true };
  const outputs = budget.redact ? raw.map((output) => redactOutput(output)) : raw;
  const size = JSON.stringify(outputs).length;
  if (size > budget.left) return { outputs_omitted: true };
  budget.left -= size;
  return { outputs };
}

function codeFields(code: string, budget: Budget): { code: string; code_truncated?: true } {
  const fields: { code: string; code_truncated?: true } = code.length > MAX_CODE_CHARS ? { code: code.slice(0, MAX_CODE_CHARS), code_truncated: true } : { code };
  if (budget.redact) fields.code = redactText(fields.code);
  return fields;
}

function queuedEntry(execution: Execution, position: number, budget: Budget): Record<string, unknown> {
  return { execution_id: execution.id, cell_id: execution.row.cellId, kind: execution.row.kind, ...codeFields(execution.row.code, budget), position };
}

/**
 * What a client needs to draw the current state before events arrive: kernels, and per notebook the running
 * execution (with its outputs so far) and the queue; plus the most recent finished executions. Built
 * synchronously, in the same tick the client joins the bus, so the events that follow continue exactly from it.
 */
export function helloSnapshot(workspace: Workspace, notebook: string | null): Record<string, unknown> {
  const budget: Budget = { left: HELLO_OUTPUT_BUDGET, redact: workspace.config.redact };
  const notebooks: Record<string, unknown>[] = [];
  const kernels: Record<string, unknown>[] = [];
  for (const kernel of workspace.engine.kernels()) {
    if (notebook !== null && kernel.notebookPath !== notebook) continue;
    const session = kernel.session;
    kernels.push({
      notebook_path: kernel.notebookPath,
      kernel_id: session?.id ?? null,
      kernel_name: session?.kernelName ?? null,
      location: session?.location ?? null,
      status: session?.status ?? 'not started',
      queue_length: kernel.queueLength,
    });
    const running = kernel.running;
    const offset = running ? 1 : 0;
    notebooks.push({
      notebook_path: kernel.notebookPath,
      running: running
        ? {
            execution_id: running.id,
            cell_id: running.row.cellId,
            kind: running.row.kind,
            ...codeFields(running.row.code, budget),
            state: running.state,
            started_at: running.startedAt !== null ? new Date(running.startedAt).toISOString() : null,
            execution_count: running.executionCount,
            ...within(running.snapshot().outputs, budget),
          }
        : null,
      queued: kernel.pending().map((execution, index) => queuedEntry(execution, index + offset, budget)),
    });
  }
  const recent = workspace.engine
    .list({ ...(notebook !== null ? { notebookPath: notebook } : {}), limit: HELLO_RECENT * 2 })
    .filter((row) => TERMINAL_STATES.has(row.state))
    .slice(0, HELLO_RECENT)
    .map((row) => ({
      execution_id: row.id,
      notebook_path: row.notebookPath,
      cell_id: row.cellId,
      kind: row.kind,
      ...codeFields(row.code, budget),
      state: row.state,
      execution_count: row.executionCount,
      status_text: row.statusText !== null && budget.redact ? redactText(row.statusText) : row.statusText,
      duration_ms: row.startedAt !== null && row.finishedAt !== null ? row.finishedAt - row.startedAt : null,
      finished_at: row.finishedAt !== null ? new Date(row.finishedAt).toISOString() : null,
      ...within(workspace.engine.journal.outputs(row.id), budget),
    }));
  return { version: VERSION, notebook, kernels, notebooks, recent };
}

function refuseBadRequest(socket: Duplex, message: string): void {
  const body = `${message}\n`;
  socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

export function createEventSocket(options: EventSocketOptions): EventSocketHandle {
  const { workspace, log } = options;
  const bus = options.bus ?? workspace.events;
  // No compression: it would cost CPU per client per message and hide the real send buffer from bufferedAmount.
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 4096, clientTracking: true });
  const alive = new WeakMap<WebSocket, boolean>();
  let closing = false;
  workspace.eventClientCount = () => bus.clientCount;
  // What goes out on /events is what an HTTP client can read, so it follows the same rule as tool results.
  bus.redact = workspace.config.redact;

  const heartbeat = setInterval(() => {
    for (const ws of wss.clients) {
      if (alive.get(ws) === false) {
        log('info', 'event client stopped answering pings; closing it', {});
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  }, options.heartbeatMs ?? 30_000);
  heartbeat.unref();

  function attach(ws: WebSocket, notebook: string | null): void {
    const client = bus.connect(ws, { notebook, hello: helloSnapshot(workspace, notebook) });
    if (notebook !== null) workspace.notebookWatch.touch(notebook);
    alive.set(ws, true);
    ws.on('pong', () => alive.set(ws, true));
    ws.on('close', () => client.detach());
    ws.on('error', (error) => {
      log('debug', 'event client socket error', { error: error.message });
      client.detach();
    });
    // Clients have nothing to say; messages are read (so the socket drains) and ignored.
    ws.on('message', () => undefined);
  }

  return {
    handleUpgrade(req, socket, head) {
      socket.on('error', () => undefined);
      if (closing) {
        socket.destroy();
        return;
      }
      const queryAt = (req.url ?? '').indexOf('?');
      const raw = queryAt >= 0 ? new URLSearchParams((req.url ?? '').slice(queryAt + 1)).get('notebook') : null;
      const filter = raw === null || raw === '' ? Promise.resolve(null) : workspace.notebooks.resolve(raw).then((resolved) => resolved.relative);
      filter.then(
        (notebook) => {
          if (closing || socket.destroyed) {
            socket.destroy();
            return;
          }
          wss.handleUpgrade(req, socket, head, (ws) => attach(ws, notebook));
        },
        (error: Error) => refuseBadRequest(socket, `The notebook filter is not a notebook of this workspace: ${error.message}`),
      );
    },
    clients: () => bus.clientCount,
    async close() {
      closing = true;
      clearInterval(heartbeat);
      const sockets = [...wss.clients];
      await Promise.all(
        sockets.map(
          (ws) =>
            new Promise<void>((resolveClosed) => {
              if (ws.readyState === ws.CLOSED) return resolveClosed();
              ws.once('close', () => resolveClosed());
              ws.close(1001, 'the server is shutting down; reconnect when it is back');
              // A client that does not answer the close handshake (or cannot, being stalled) is cut off.
              setTimeout(() => ws.terminate(), 1000).unref();
            }),
        ),
      );
      await new Promise<void>((resolveClosed) => wss.close(() => resolveClosed()));
    },
  };
}
