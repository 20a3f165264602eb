// The overload benchmark's fixtures: a real `serve --http` process, many real MCP HTTP clients, timed tool calls, and
// the server's memory and descriptors as the kernel (Linux /proc) reports them.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, Cleanup, now, reapKernels } from './common.js';

const TOKEN = 'bench-overload-token-0123456789';
/** USER_HZ: what /proc reports CPU times in (100 on every Linux Node.js supports). */
const CLOCK_TICKS_PER_SECOND = 100;

export interface ServeProcess {
  url: string;
  pid: number;
  /** The last few KB of what the server wrote to stderr, for error messages. */
  logTail(): string;
  /** Whether the process is still running. */
  alive(): boolean;
}

/** `serve --http` on a free port in `workspace`, with extra environment; stopped (and its kernels reaped) by `cleanup`. */
export async function startServe(cleanup: Cleanup, workspace: string, env: Record<string, string> = {}): Promise<ServeProcess> {
  const child: ChildProcess = spawn(process.execPath, [CLI, 'serve', '--workspace', workspace, '--http', '127.0.0.1:0', '--token', TOKEN], {
    env: { ...process.env, MCP_JUPYTER_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let tail = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Registered first, so they run after the server stopped: kernels a crashed or killed server left behind.
  cleanup.defer('reap kernels the server left', () => reapKernels(join(workspace, '.mcp-jupyter', 'state.db')));
  cleanup.defer('stop the server', async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    // A server stuck on 500 sockets must not hang the bench: it gets 15 s to stop cleanly.
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-8_000);
      const match = /listening on (http:\/\/[^/\s]+)\/mcp/.exec(tail);
      if (match?.[1]) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code} before listening: ${tail}`)));
  });
  return {
    url,
    pid: child.pid!,
    logTail: () => tail.slice(-2_000),
    alive: () => child.exitCode === null && child.signalCode === null,
  };
}

export interface Memory {
  /** Resident set size now. */
  rssMb: number;
  /** The highest resident set size the process ever had. */
  peakMb: number;
}

/** The process's memory from /proc/<pid>/status (VmRSS, VmHWM). */
export function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!match?.[1]) throw new Error(`/proc/${pid}/status has no ${field} line`);
    return Number(match[1]);
  };
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

/** CPU time (user + system) the process has used so far, from /proc/<pid>/stat. */
export function cpuMsOf(pid: number): number {
  // The fields after the command name (which may hold spaces) start at the state, field 3; utime and stime are 14 and 15.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** Open file descriptors (sockets included) of the process. */
export function openDescriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

export interface BenchClient {
  client: Client;
  /** Settles with whether the server accepted the client's standalone SSE stream (the GET the SDK opens after initialize). */
  sseOpen: Promise<boolean>;
  /** Ends the session on the server (DELETE) and closes the client. */
  close(): Promise<void>;
  /** Closes the client without ending its session, as an agent that quits or crashes does. */
  abandon(): Promise<void>;
}

/** A real MCP client over Streamable HTTP: initialize, then the SDK's own GET stream, like any agent's client. */
export async function connectClient(url: string, name: string, timeoutMs: number): Promise<BenchClient> {
  let sseSeen: (ok: boolean) => void = () => undefined;
  const sseOpen = new Promise<boolean>((resolve) => (sseSeen = resolve));
  const tracking: FetchLike = async (target, init) => {
    const response = await fetch(target, init);
    if ((init?.method ?? 'GET') === 'GET') sseSeen(response.ok);
    return response;
  };
  const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${TOKEN}` } },
    fetch: tracking,
  });
  const client = new Client({ name, version: '1.0.0' });
  await client.connect(transport, { timeout: timeoutMs });
  return {
    client,
    sseOpen,
    async close() {
      try {
        await transport.terminateSession();
      } finally {
        await client.close();
      }
    },
    abandon: () => client.close(),
  };
}

export type Outcome =
  | { kind: 'ok'; ms: number; result: CallToolResult }
  | { kind: 'tool-error'; ms: number; text: string }
  | { kind: 'failed'; ms: number; error: string };

export function textOf(result: CallToolResult): string {
  return result.content.map((item) => (item.type === 'text' ? item.text : '')).join('\n');
}

/** One tool call, timed from the client's side; a call not answered within `timeoutMs` is a failure, never a hang. */
export async function timedCall(client: Client, name: string, args: Record<string, unknown>, timeoutMs: number): Promise<Outcome> {
  const start = now();
  try {
    const result = (await client.callTool({ name, arguments: args }, undefined, { timeout: timeoutMs })) as CallToolResult;
    const ms = now() - start;
    return result.isError ? { kind: 'tool-error', ms, text: textOf(result) } : { kind: 'ok', ms, result };
  } catch (error) {
    return { kind: 'failed', ms: now() - start, error: (error as Error).message };
  }
}

/** A call that must succeed; returns its structured content. */
export async function mustCall(client: Client, name: string, args: Record<string, unknown>, timeoutMs = 120_000): Promise<Record<string, unknown>> {
  const outcome = await timedCall(client, name, args, timeoutMs);
  if (outcome.kind === 'ok') return (outcome.result.structuredContent ?? {}) as Record<string, unknown>;
  throw new Error(`${name} ${outcome.kind === 'failed' ? `failed: ${outcome.error}` : `answered a tool error: ${outcome.text}`}`);
}

/** A value of the server's Prometheus /metrics (a gauge without labels), or null when it is not there. */
export async function metric(url: string, name: string): Promise<number | null> {
  const response = await fetch(`${url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  const text = await response.text();
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return match?.[1] !== undefined ? Number(match[1]) : null;
}

/** `promise`, or `fallback` once `ms` have passed without it settling. */
export async function within<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
