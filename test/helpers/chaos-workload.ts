// One agent of the chaos test: drives one notebook over its own MCP client, riding out server and kernel deaths.
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChaosServer } from './chaos-server.js';
import type { Random } from './chaos-random.js';
import { connectHttpClient, textOfResult } from './mcp.js';

export const TERMINAL_STATES = new Set(['succeeded', 'failed', 'cancelled', 'interrupted', 'timed_out', 'lost']);
const ASSET_MENTION = /assets\/[0-9a-f]{16,64}\.[a-z0-9]{1,10}/g;
/** Code cells a notebook grows to before the agent edits existing ones instead of adding more. */
const MAX_CODE_CELLS = 6;
/** Accepted executions one agent leaves unfinished before it waits for the oldest (keeps each queue short). */
const MAX_OUTSTANDING = 6;

/** What every agent saw, shared by all of them: what was accepted, and what the server said about it. */
export class Ledger {
  /** Every execution id a tool call handed out, with who got it. */
  readonly accepted = new Map<string, { notebook: string; tool: string; generation: number }>();
  /** Terminal statuses tool results reported, per execution id. */
  readonly reported = new Map<string, Set<string>>();
  /** Asset paths (workspace-relative) that tool results named. */
  readonly assets = new Set<string>();
  /** Tool errors (isError results), by the start of their text. */
  readonly toolErrors = new Map<string, number>();
  /** Calls that threw while their server was being killed (allowed), and those that threw against a live server. */
  failedByKill = 0;
  readonly unexpectedFailures: string[] = [];
  /** Executions a tool result showed unfinished after an earlier one (of the same agent) showed them finished. */
  readonly regressions: string[] = [];
  /** Ids a tool result handed out that a later get_execution did not know. */
  readonly unknownIds: string[] = [];
  readonly actions = new Map<string, number>();
  /** Calls that took far longer than they asked to wait, with what they were. */
  readonly slowCalls: string[] = [];
  restartsRequested = 0;

  count(action: string): void {
    this.actions.set(action, (this.actions.get(action) ?? 0) + 1);
  }
}

interface ExecutionAnswer {
  execution_id?: string;
  execution_ids?: string[];
  status?: string;
  executions?: Array<{ execution_id: string; status: string }>;
  assets?: string[];
  cells?: Array<{ cell_id: string; cell_type: string }>;
  cell_id?: string;
}

export class NotebookAgent {
  private client: Client | null = null;
  private generation = 0;
  /** The server generation the next client must come from (one more than a server that died under us). */
  private minGeneration = 1;
  private counter = 0;
  /** Accepted here and not yet seen finished, oldest first. */
  private outstanding: string[] = [];
  private readonly mine: string[] = [];

  constructor(
    private readonly server: ChaosServer,
    readonly notebook: string,
    private readonly random: Random,
    private readonly ledger: Ledger,
    /** Every run appends its kernel request's msg_id here, so the test can tell what really ran, and how often. */
    private readonly runsLog: string,
    private readonly stopped: () => boolean,
  ) {}

  async run(): Promise<void> {
    const off = this.server.onKill((generation) => {
      if (generation !== this.generation || !this.client) return;
      // Closing the client rejects the calls the dead server will never answer; the next call waits for a new server.
      const dying = this.client;
      this.client = null;
      this.minGeneration = generation + 1;
      void dying.close().catch(() => undefined);
    });
    try {
      while (!this.stopped()) {
        await this.step();
        // Think time between an agent's moves; the waiting for work itself is done by the tools (wait / wait_s).
        await sleep(this.random.int(20, 250));
      }
    } finally {
      off();
      await this.client?.close().catch(() => undefined);
      this.client = null;
    }
  }

  private async step(): Promise<void> {
    if (this.outstanding.length >= MAX_OUTSTANDING) {
      const oldest = this.outstanding[0]!;
      this.ledger.count('wait-oldest');
      await this.call('get_execution', { execution_id: oldest, wait_s: 5 });
      return;
    }
    const action = this.random.weighted({ cell: 30, code: 30, all: 8, peek: 12, list: 6, cancel: 3, delete: 2 });
    this.ledger.count(action);
    switch (action) {
      case 'cell':
        return this.runCell();
      case 'code':
        await this.call('execute_code', { notebook_path: this.notebook, code: this.code('code'), ...this.waitArgs() });
        return;
      case 'all':
        await this.call('run_all_cells', {
          notebook_path: this.notebook,
          stop_on_error: this.random.chance(0.5),
          ...(this.random.chance(0.3) ? { wait: true, timeout_s: this.random.int(1, 4) } : {}),
        });
        return;
      case 'peek':
        if (this.mine.length > 0) await this.call('get_execution', { execution_id: this.random.pick(this.mine.slice(-20)), wait_s: this.random.int(0, 3) });
        return;
      case 'list':
        await this.call('list_executions', { notebook_path: this.notebook, limit: 30 });
        return;
      case 'cancel':
        if (this.outstanding.length > 0) await this.call('cancel_execution', { execution_id: this.random.pick(this.outstanding) });
        return;
      case 'delete': {
        const cells = await this.codeCells();
        if (cells && cells.length > 2) await this.call('delete_cell', { notebook_path: this.notebook, cell_id: this.random.pick(cells) });
        return;
      }
    }
  }

  /** Adds a code cell (or rewrites one, once the notebook is big enough) and runs it. */
  private async runCell(): Promise<void> {
    const cells = await this.codeCells();
    if (!cells) return;
    let cellId: string | undefined;
    if (cells.length < MAX_CODE_CELLS || this.random.chance(0.2)) {
      if (this.random.chance(0.15)) await this.call('insert_cell', { notebook_path: this.notebook, cell_type: 'markdown', source: `## step ${this.counter}` });
      cellId = (await this.call('insert_cell', { notebook_path: this.notebook, cell_type: 'code', source: this.code('cell') }))?.cell_id;
    } else {
      cellId = this.random.pick(cells);
      if (!(await this.call('edit_cell', { notebook_path: this.notebook, cell_id: cellId, source: this.code('cell') }))) return;
    }
    if (cellId) await this.call('execute_cell', { notebook_path: this.notebook, cell_id: cellId, ...this.waitArgs() });
  }

  private async codeCells(): Promise<string[] | null> {
    const outline = await this.call('read_notebook', { notebook_path: this.notebook, include_outputs: this.random.chance(0.1) });
    return outline?.cells ? outline.cells.filter((cell) => cell.cell_type === 'code').map((cell) => cell.cell_id) : null;
  }

  /** Waits for the result now and then, often with a timeout too short for it (the answer is then `running`). */
  private waitArgs(): Record<string, unknown> {
    const roll = this.random.next();
    if (roll < 0.4) return { wait: false };
    if (roll < 0.75) return { wait: true, timeout_s: this.random.int(1, 2) };
    return { wait: true, timeout_s: 5 };
  }

  /** Fresh code for each run: logs the kernel request it runs under, then prints, sleeps, plots or raises. */
  private code(kind: 'cell' | 'code'): string {
    this.counter += 1;
    const tag = `${this.notebook.replace('.ipynb', '')}-${kind}-${this.counter}`;
    const nap = (this.random.int(100, 1000) / 1000).toFixed(2);
    const lines = [
      `# chaos ${tag}`,
      'import time',
      `with open(${JSON.stringify(this.runsLog)}, 'a') as _chaos_log: _chaos_log.write(get_ipython().parent_header['header']['msg_id'] + ' ${tag}\\n')`,
    ];
    const flavour = this.random.weighted({ print: 12, error: 2, plot: 2, big: 1 });
    if (flavour === 'print') lines.push(`print('${tag}', sum(range(${this.random.int(10, 100_000)})))`, `time.sleep(${nap})`, `'${tag} done'`);
    if (flavour === 'error') lines.push(`time.sleep(${nap})`, `raise RuntimeError('chaos error in ${tag}')`);
    if (flavour === 'plot') {
      const ys = [0, this.random.int(1, 9), this.random.int(1, 9), this.random.int(1, 9), this.counter % 10];
      lines.push('import matplotlib.pyplot as plt', 'fig, ax = plt.subplots(figsize=(2, 1.5))', `ax.plot(${JSON.stringify(ys)})`, `ax.set_title('${tag}')`, 'plt.show()', `time.sleep(${nap})`);
    }
    // Longer than a tool result may carry: the rest is kept in a text asset.
    if (flavour === 'big') lines.push(`print('${tag} ' + 'x' * 30000)`, `time.sleep(${nap})`);
    return lines.join('\n');
  }

  /** A tool call that rides out the server dying under it; null when it failed (tool error or lost call). */
  private async call(tool: string, args: Record<string, unknown>): Promise<ExecutionAnswer | null> {
    const client = await this.ensureClient();
    let result: CallToolResult;
    const startedAt = Date.now();
    try {
      result = (await client.callTool({ name: tool, arguments: args }, undefined, { timeout: 30_000 })) as CallToolResult;
    } catch (error) {
      this.noteSlow(tool, args, startedAt, 'threw');
      const live = this.server.live;
      if (!live || live.generation !== this.generation) {
        // The server died under the call; whether it was accepted, the journal says.
        this.ledger.failedByKill += 1;
        this.minGeneration = Math.max(this.minGeneration, this.generation + 1);
      } else {
        this.ledger.unexpectedFailures.push(`${this.notebook}: ${tool} against the live server ${this.generation}: ${(error as Error).message}`);
      }
      if (this.client === client) this.client = null;
      await client.close().catch(() => undefined);
      return null;
    }
    this.noteSlow(tool, args, startedAt, result.isError ? 'error' : 'ok');
    const text = textOfResult(result);
    if (result.isError) {
      this.noteToolError(tool, args, text);
      if (/restart_kernel/.test(text) && /not restarted automatically|died \d+ times/.test(text)) {
        // The breaker opened after repeated kernel deaths: do what the message says.
        this.ledger.restartsRequested += 1;
        await this.call('restart_kernel', { notebook_path: this.notebook });
      }
      return null;
    }
    const answer = (result.structuredContent ?? {}) as ExecutionAnswer;
    this.noteAnswer(tool, answer, text);
    return answer;
  }

  /** A call slower than its own wait by this much is worth a line in the summary. */
  private noteSlow(tool: string, args: Record<string, unknown>, startedAt: number, outcome: string): void {
    const asked = Number(args['wait_s'] ?? args['timeout_s'] ?? 0);
    const took = Date.now() - startedAt;
    if (took > asked * 1000 + 5_000) this.ledger.slowCalls.push(`${this.notebook}: ${tool} (${outcome}, server ${this.generation}) took ${(took / 1000).toFixed(1)} s${asked ? ` waiting ${asked} s` : ''}`);
  }

  private noteToolError(tool: string, args: Record<string, unknown>, text: string): void {
    if (tool === 'get_execution' && /no execution with id/.test(text)) {
      const id = String(args['execution_id']);
      if (this.ledger.accepted.has(id)) this.ledger.unknownIds.push(id);
      this.outstanding = this.outstanding.filter((entry) => entry !== id);
    }
    const key = `${tool}: ${text.slice(0, 90)}`;
    this.ledger.toolErrors.set(key, (this.ledger.toolErrors.get(key) ?? 0) + 1);
  }

  private noteAnswer(tool: string, answer: ExecutionAnswer, text: string): void {
    const ids = tool === 'run_all_cells' ? (answer.execution_ids ?? []) : ['execute_cell', 'execute_code'].includes(tool) && answer.execution_id ? [answer.execution_id] : [];
    for (const id of ids) {
      if (this.ledger.accepted.has(id)) continue;
      this.ledger.accepted.set(id, { notebook: this.notebook, tool, generation: this.generation });
      this.outstanding.push(id);
      this.mine.push(id);
    }
    const statuses: Array<{ id: string; status: string }> = [];
    if (answer.execution_id && answer.status) statuses.push({ id: answer.execution_id, status: answer.status });
    for (const entry of answer.executions ?? []) statuses.push({ id: entry.execution_id, status: entry.status });
    for (const { id, status } of statuses) {
      if (!TERMINAL_STATES.has(status)) {
        const before = this.ledger.reported.get(id);
        if (before) this.ledger.regressions.push(`${id}: ${tool} said ${status} after a tool result said ${[...before].join(', ')}`);
        continue;
      }
      let seen = this.ledger.reported.get(id);
      if (!seen) this.ledger.reported.set(id, (seen = new Set()));
      seen.add(status);
      this.outstanding = this.outstanding.filter((entry) => entry !== id);
    }
    for (const asset of answer.assets ?? []) this.ledger.assets.add(asset);
    for (const match of text.matchAll(ASSET_MENTION)) this.ledger.assets.add(match[0]);
  }

  /** A client of the current server, waiting for a new server when the last one died. */
  private async ensureClient(): Promise<Client> {
    for (;;) {
      if (this.client) return this.client;
      const server = await this.server.ready(this.minGeneration);
      try {
        this.client = await connectHttpClient(server.url, server.token);
        this.generation = server.generation;
        return this.client;
      } catch (error) {
        if (this.server.live?.generation !== server.generation) {
          // Killed while we connected: the next server is the one to talk to.
          this.minGeneration = server.generation + 1;
          continue;
        }
        this.ledger.unexpectedFailures.push(`${this.notebook}: connecting to the live server ${server.generation}: ${(error as Error).message}`);
        // A back-off before trying the same live server again, not a wait for work.
        await sleep(200);
      }
    }
  }
}
