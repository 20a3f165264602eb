// An outside client: Python's official `mcp` SDK drives the real server over stdio through a whole small workflow.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { CLI, PROJECT_ROOT } from './helpers/mcp.js';

const PYTHON = join(PROJECT_ROOT, '.venv', 'bin', 'python');

// The script prints one JSON object on its last stdout line; everything it checks is reported, not asserted, so
// the test's failure messages say what the Python side saw.
const CLIENT_SCRIPT = String.raw`
import asyncio, json, os, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

node, cli, workspace = sys.argv[1:4]

def text_of(result):
    return '\n'.join(item.text for item in result.content if getattr(item, 'type', None) == 'text')

async def main():
    env = {'PATH': os.environ.get('PATH', ''), 'HOME': os.environ.get('HOME', ''), 'MCP_JUPYTER_LOG_LEVEL': 'warn'}
    params = StdioServerParameters(command=node, args=[cli, 'serve', '--workspace', workspace], env=env)
    report = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            report['protocol_version'] = init.protocol_version
            report['server_name'] = init.server_info.name
            tools = await session.list_tools()
            report['tool_names'] = sorted(tool.name for tool in tools.tools)
            created = await session.call_tool('create_notebook', {'notebook_path': 'py/outside.ipynb'})
            report['create_error'] = created.is_error
            inserted = await session.call_tool('insert_cell', {'notebook_path': 'py/outside.ipynb', 'cell_type': 'code', 'source': 'print("hello from", 6 * 7)'})
            cell_id = inserted.structured_content['cell_id']
            report['cell_id'] = cell_id
            ran = await session.call_tool('execute_cell', {'notebook_path': 'py/outside.ipynb', 'cell_id': cell_id})
            report['execute_status'] = ran.structured_content['status']
            report['execute_text'] = text_of(ran)
            read_back = await session.call_tool('read_notebook', {'notebook_path': 'py/outside.ipynb', 'include_outputs': True})
            report['read_text'] = text_of(read_back)
            report['read_cells'] = read_back.structured_content['cells']
            await session.call_tool('shutdown_kernel', {'notebook_path': 'py/outside.ipynb'})
    print(json.dumps(report))

asyncio.run(main())
`;

interface Report {
  protocol_version: string;
  server_name: string;
  tool_names: string[];
  create_error: boolean;
  cell_id: string;
  execute_status: string;
  execute_text: string;
  read_text: string;
  read_cells: Array<{ cell_id: string; execution_count: number | null; state?: string }>;
}

test('the Python mcp SDK drives the server over stdio', { timeout: 90_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-pyclient-'));
  const workspace = join(dir, 'ws');
  try {
    mkdirSync(workspace);
    const script = join(dir, 'client.py');
    writeFileSync(script, CLIENT_SCRIPT);
    const { stdout } = await promisify(execFile)(PYTHON, [script, process.execPath, CLI, workspace], {
      timeout: 80_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const report = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Report;
    console.log(`negotiated protocol version with Python mcp: ${report.protocol_version}`);
    // Our SDK (1.32) speaks 2025-11-25; the Python SDK offers a newer one and accepts ours.
    assert.equal(report.protocol_version, '2025-11-25');
    assert.equal(report.server_name, 'mcp-server-jupyter');
    assert.ok(report.tool_names.length >= 28, `at least 28 tools listed, got ${report.tool_names.length}`);
    for (const name of ['execute_cell', 'read_notebook', 'send_input', 'inspect_variable']) assert.ok(report.tool_names.includes(name), `${name} listed`);
    assert.equal(report.create_error, false);
    assert.equal(report.execute_status, 'succeeded');
    assert.match(report.execute_text, /hello from 42/);
    assert.match(report.read_text, /hello from 42/, 'read_notebook with outputs shows what the cell printed');
    const cell = report.read_cells.find((entry) => entry.cell_id === report.cell_id);
    assert.equal(cell?.execution_count, 1);
    assert.equal(cell?.state, 'fresh');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
