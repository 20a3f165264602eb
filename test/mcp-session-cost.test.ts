// What one MCP session costs to set up (tool definitions are built once per process), and that the shared tools/list answer is the SDK's own.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { createMcpServer } from '../src/server/mcp.js';
import { registeredSpecs } from '../src/server/tools/registry.js';
import { Workspace } from '../src/server/workspace.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let dir: string;
let workspace: Workspace;
const clients: Client[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'mcpj-session-cost-'));
  workspace = Workspace.open(loadConfig({ workspace: dir }, {}), silentLogger);
});

after(async () => {
  for (const client of clients) await client.close();
  await workspace.close({ shutdownKernels: true });
  rmSync(dir, { recursive: true, force: true });
});

async function listTools(server: McpServer): Promise<Tool[]> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: 'session-cost-test', version: '1.0.0' });
  clients.push(client);
  await client.connect(clientSide);
  // What travels over a real transport: JSON.
  return JSON.parse(JSON.stringify((await client.listTools()).tools)) as Tool[];
}

test("a session's tools/list answer is exactly what McpServer itself builds from the same tools", async () => {
  // McpServer's own tools/list handler, converting the zod schemas on the request, given the same specs.
  const reference = new McpServer({ name: 'reference', version: '0.0.0' }, { capabilities: { tools: {} } });
  const session = createMcpServer(workspace);
  for (const spec of registeredSpecs(session)) {
    const { name, title, description, inputSchema, outputSchema, annotations } = spec;
    reference.registerTool(name, { title, description, inputSchema, outputSchema, ...(annotations ? { annotations } : {}) }, () => ({ content: [] }));
  }
  const expected = await listTools(reference);
  const first = await listTools(session);
  const second = await listTools(createMcpServer(workspace));

  assert.ok(expected.length >= 30, `only ${expected.length} tools listed`);
  assert.deepEqual(second, first, 'two sessions list the same tools');
  assert.deepEqual(
    first.map((tool) => tool.name),
    expected.map((tool) => tool.name),
  );
  for (const [i, tool] of first.entries()) {
    // The execution tools can also run as MCP tasks (src/server/tasks.ts); the rest is the SDK's answer verbatim.
    const taskTool = ['execute_cell', 'execute_code', 'run_all_cells'].includes(tool.name);
    assert.deepEqual(tool, { ...expected[i], ...(taskTool ? { execution: { taskSupport: 'optional' } } : {}) }, `${tool.name} is listed as the SDK lists it`);
  }
  const executeCode = first.find((tool) => tool.name === 'execute_code');
  assert.equal(executeCode?.inputSchema.additionalProperties, false, 'unknown parameters are refused (strict input)');
  assert.deepEqual(executeCode?.inputSchema.required, ['notebook_path', 'code']);
});

test('building a session costs a fraction of a millisecond and a few tens of kilobytes', () => {
  const count = 200;
  for (let i = 0; i < 20; i++) createMcpServer(workspace);
  gc();
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const cpuBefore = process.cpuUsage();
  const servers: McpServer[] = [];
  for (let i = 0; i < count; i++) servers.push(createMcpServer(workspace));
  const cpu = process.cpuUsage(cpuBefore);
  gc();
  gc();
  const retainedKiB = (process.memoryUsage().heapUsed - heapBefore) / count / 1024;
  const cpuMs = (cpu.user + cpu.system) / 1000 / count;
  assert.equal(servers.length, count);
  // Built per session, the tool definitions cost about 625 KiB and 3.5-4 ms of CPU per server.
  assert.ok(retainedKiB < 100, `each session retains ${retainedKiB.toFixed(1)} KiB`);
  assert.ok(cpuMs < 2, `each session costs ${cpuMs.toFixed(2)} ms of CPU`);
});
