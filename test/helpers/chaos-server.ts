// The chaos test's `serve --http` process on one workspace: started, SIGKILLed and started again, one generation at a time.
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { connectHttpClient, startHttpServerProcess } from './mcp.js';

export interface ServerGeneration {
  /** 1 for the first server, one more for each restart. */
  generation: number;
  url: string;
  token: string;
  child: ChildProcess;
  pid: number;
}

const TOKEN = 'chaos-token-0123456789abcdef';
const LOG_TAIL_CHARS = 6_000;

export class ChaosServer {
  private current: ServerGeneration | null = null;
  private generations = 0;
  private waiters: Array<() => void> = [];
  private logTail = '';
  /** Epoch ms of every SIGKILL of the server. */
  readonly kills: number[] = [];
  /** Servers that exited without being told to: each a line saying which and how. */
  readonly crashes: string[] = [];
  private readonly killListeners = new Set<(generation: number) => void>();

  constructor(readonly workspace: string) {}

  get live(): ServerGeneration | null {
    return this.current;
  }

  /** The last lines the server processes wrote to stderr (their logs), for failure messages. */
  log(): string {
    return this.logTail;
  }

  async start(): Promise<ServerGeneration> {
    if (this.current) throw new Error('a server is already running on the workspace');
    const started = await startHttpServerProcess(this.workspace, TOKEN);
    const generation = (this.generations += 1);
    started.child.stderr?.on('data', (chunk: Buffer) => this.appendLog(generation, chunk.toString()));
    started.child.once('exit', (code, signal) => {
      if (this.current?.child === started.child) {
        this.current = null;
        this.crashes.push(`server ${generation} (pid ${started.child.pid ?? '?'}) exited by itself (code ${code}, signal ${signal})`);
      }
    });
    const pid = started.child.pid;
    if (pid === undefined) throw new Error('the server process has no pid');
    this.current = { generation, url: started.url, token: started.token, child: started.child, pid };
    for (const wake of this.waiters.splice(0)) wake();
    return this.current;
  }

  /** SIGKILL: no chance to save anything, as a crash or an OOM kill. */
  async kill(): Promise<void> {
    const current = this.current;
    if (!current) return;
    this.current = null;
    this.kills.push(Date.now());
    await this.exit(current, 'SIGKILL');
    for (const listener of this.killListeners) listener(current.generation);
  }

  /**
   * Called after each SIGKILL with the dead server's generation. Clients close theirs then: the SDK would otherwise
   * keep a call to a dead server pending (it tries to resume the response stream) until the call's own timeout.
   */
  onKill(listener: (generation: number) => void): () => void {
    this.killListeners.add(listener);
    return () => this.killListeners.delete(listener);
  }

  /** SIGTERM, the clean stop: idle kernels are shut down, busy ones are kept for the next start. */
  async stop(): Promise<void> {
    const current = this.current;
    if (!current) return;
    this.current = null;
    await this.exit(current, 'SIGTERM');
  }

  /** Resolves with a server of at least `minGeneration` once one is up (or at once if it already is). */
  async ready(minGeneration = 1): Promise<ServerGeneration> {
    for (;;) {
      const current = this.current;
      if (current && current.generation >= minGeneration) return current;
      await new Promise<void>((wake) => this.waiters.push(wake));
    }
  }

  /** An MCP client of the current server (waiting for one of at least `minGeneration`). */
  async connect(minGeneration = 1): Promise<{ client: Client; generation: number }> {
    const server = await this.ready(minGeneration);
    return { client: await connectHttpClient(server.url, server.token), generation: server.generation };
  }

  private appendLog(generation: number, text: string): void {
    const lines = text.split('\n').filter((line) => line !== '');
    this.logTail = (this.logTail + lines.map((line) => `[server ${generation}] ${line}\n`).join('')).slice(-LOG_TAIL_CHARS);
  }

  private async exit(server: ServerGeneration, signal: NodeJS.Signals): Promise<void> {
    if (server.child.exitCode !== null || server.child.signalCode !== null) return;
    const exited = new Promise((resolve) => server.child.once('exit', resolve));
    server.child.kill(signal);
    await exited;
  }
}

/** The state letter of /proc/<pid>/stat, or null when there is no such process. */
function processState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

/** Whether `pid` is a running (not zombie) process. */
export function isRunning(pid: number): boolean {
  const state = processState(pid);
  return state !== null && state !== 'Z' && state !== 'X';
}

/**
 * Kernel processes of this workspace, found by their connection file (under `<workspace>/.mcp-jupyter/kernels/`)
 * on their command line: also the ones no journal row names (a server killed between spawning a kernel and
 * recording it), which nothing else would ever stop.
 */
export function workspaceKernelPids(workspace: string): number[] {
  const marker = `${workspace}/.mcp-jupyter/kernels/kernel-`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmdline.includes(marker) && isRunning(pid)) pids.push(pid);
  }
  return pids;
}

/** SIGKILLs a kernel's whole process group (kernels are started detached, each leading its own group). */
export function killKernelGroup(pid: number): boolean {
  try {
    process.kill(-pid, 'SIGKILL');
    return true;
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
      return true;
    } catch {
      return false;
    }
  }
}
