// Test fixture: the real server process (`serve`) with a real MCP SDK client over stdio or Streamable HTTP.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const PROJECT_ROOT = resolve(HERE, '..', '..', '..');
/** The CLI compiled next to these tests (whatever the output folder is called). */
export const CLI = resolve(HERE, '..', '..', 'src', 'cli.js');

export interface ServerFixture {
  workspace: string;
  client: Client;
  /** Calls a tool and returns its result (tool errors included: check `isError`). */
  call(name: string, args?: Record<string, unknown>): Promise<CallToolResult>;
  /** Calls a tool that must succeed; returns its structured content. */
  ok<T = Record<string, unknown>>(name: string, args?: Record<string, unknown>): Promise<T & { __text: string; __result: CallToolResult }>;
  close(): Promise<void>;
  url?: string;
  token?: string;
  process?: ChildProcess;
}

export function makeWorkspace(prefix = 'mcpj-ws-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function textOfResult(result: CallToolResult): string {
  return result.content
    .filter((item): item is { type: 'text'; text: string } => item.type === 'text')
    .map((item) => item.text)
    .join('\n');
}

function wrap(client: Client, workspace: string, close: () => Promise<void>): ServerFixture {
  const call = async (name: string, args: Record<string, unknown> = {}) => (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
  return {
    workspace,
    client,
    call,
    async ok(name, args = {}) {
      const result = await call(name, args);
      if (result.isError) throw new Error(`${name} failed: ${textOfResult(result)}`);
      return { ...(result.structuredContent as object), __text: textOfResult(result), __result: result } as never;
    },
    close,
  };
}

/** `serve` over stdio, as Claude Desktop or VS Code would start it. */
export async function startStdioServer(workspace = makeWorkspace(), extraArgs: string[] = []): Promise<ServerFixture> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'serve', '--workspace', workspace, ...extraArgs],
    env: { ...(process.env as Record<string, string>), MCP_JUPYTER_LOG_LEVEL: 'warn' },
    stderr: 'pipe',
  });
  const client = new Client({ name: 'test-client', version: '1.0.0' });
  await client.connect(transport);
  return wrap(client, workspace, async () => {
    await client.close();
    rmSync(workspace, { recursive: true, force: true });
  });
}

/** `serve --http` on a free port; resolves once it prints where it listens. */
export async function startHttpServerProcess(
  workspace = makeWorkspace(),
  token = 'test-token-0123456789',
  extraArgs: string[] = [],
): Promise<{ url: string; token: string; child: ChildProcess; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--workspace', workspace, '--http', '127.0.0.1:0', '--token', token, ...extraArgs], {
    env: { ...process.env, MCP_JUPYTER_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const url = await new Promise<string>((resolveUrl, reject) => {
    let seen = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const match = /listening on (http:\/\/[^/\s]+)\/mcp/.exec(seen);
      if (match?.[1]) resolveUrl(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${seen}`)));
  });
  return {
    url,
    token,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((done) => child.once('exit', done));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export async function connectHttpClient(url: string, token: string): Promise<Client> {
  const client = new Client({ name: 'test-http-client', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  return client;
}

export async function startHttpServer(workspace = makeWorkspace()): Promise<ServerFixture> {
  const server = await startHttpServerProcess(workspace);
  const client = await connectHttpClient(server.url, server.token);
  const fixture = wrap(client, workspace, async () => {
    await client.close();
    await server.stop();
    rmSync(workspace, { recursive: true, force: true });
  });
  fixture.url = server.url;
  fixture.token = server.token;
  fixture.process = server.child;
  return fixture;
}
