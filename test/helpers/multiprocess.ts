// Test fixture: several real `serve` processes on one workspace, each with its own MCP SDK client over stdio.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, textOfResult } from './mcp.js';

export interface Peer {
  name: string;
  client: Client;
  /** The pid of this client's own server process. */
  pid: number;
  call(name: string, args?: Record<string, unknown>): Promise<CallToolResult>;
  /** A tool call that must succeed: its structured content. */
  ok<T = Record<string, unknown>>(name: string, args?: Record<string, unknown>): Promise<T & { __text: string }>;
  /** What the server process wrote to stderr (its logs), for failure messages. */
  log(): string;
  /** Resolves when the server process has exited. */
  exited: Promise<void>;
  close(): Promise<void>;
  kill(): Promise<void>;
}

export async function startPeer(workspace: string, name: string): Promise<Peer> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'serve', '--workspace', workspace],
    env: { ...(process.env as Record<string, string>), MCP_JUPYTER_LOG_LEVEL: 'info' },
    stderr: 'pipe',
  });
  let log = '';
  // Read it, or a chatty server would block once the pipe fills.
  transport.stderr?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-20_000)));
  const client = new Client({ name, version: '1.0.0' });
  await client.connect(transport);
  const pid = transport.pid;
  if (pid === null) throw new Error('the server process has no pid');
  // The transport reports its child's exit through the client's close (also after a SIGKILL).
  const exited = new Promise<void>((resolve) => {
    client.onclose = resolve;
  });
  const call = async (tool: string, args: Record<string, unknown> = {}): Promise<CallToolResult> =>
    (await client.callTool({ name: tool, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
  return {
    name,
    client,
    pid,
    call,
    async ok(tool, args = {}) {
      const result = await call(tool, args);
      if (result.isError) throw new Error(`${name}: ${tool} failed: ${textOfResult(result)}\n--- server log of ${name} (pid ${pid}):\n${log.slice(-3_000)}`);
      return { ...(result.structuredContent as object), __text: textOfResult(result) } as never;
    },
    log: () => log,
    exited,
    close: () => client.close(),
    async kill() {
      process.kill(pid, 'SIGKILL');
      await client.close().catch(() => undefined);
      await exited;
    },
  };
}

/** Pids of the kernels the workspace's journal lists as live (for clean-up and for "one kernel" checks). */
export function liveKernelPids(workspace: string): number[] {
  const file = join(workspace, '.mcp-jupyter', 'state.db');
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare("SELECT details FROM kernels WHERE state = 'live'").pluck().all() as string[];
    return rows.map((details) => (JSON.parse(details) as { pid: number }).pid);
  } finally {
    db.close();
  }
}

export function killGroups(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
