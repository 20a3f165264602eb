// A whole agent workflow through a real MCP client, over stdio and over Streamable HTTP, against the real server.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { PROJECT_ROOT, startHttpServer, startStdioServer, textOfResult, type ServerFixture } from './helpers/mcp.js';

const PYTHON = join(PROJECT_ROOT, '.venv', 'bin', 'python');

function validateWithNbformat(path: string): void {
  execFileSync(PYTHON, ['-c', 'import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))', path]);
}

async function agentWorkflow(fx: ServerFixture): Promise<void> {
  const tools = await fx.client.listTools();
  const names = tools.tools.map((tool) => tool.name);
  for (const name of ['create_notebook', 'execute_cell', 'get_execution', 'inspect_variable', 'restart_kernel', 'prune_unused_assets', 'server_status', 'sync_notebook']) {
    assert.ok(names.includes(name), `tool ${name} listed`);
  }

  const created = await fx.ok<{ cells: Array<{ cell_id: string }> }>('create_notebook', {
    notebook_path: 'analysis/work.ipynb',
    cells: [{ cell_type: 'markdown', source: '# Analysis' }],
  });
  assert.equal(created.cells.length, 1);

  const load = await fx.ok<{ cell_id: string }>('insert_cell', {
    notebook_path: 'analysis/work.ipynb',
    cell_type: 'code',
    source: "import pandas as pd\ndf = pd.DataFrame({'x': range(10), 'y': [v * v for v in range(10)]})\nprint(len(df), 'rows')",
  });
  const run = await fx.ok<{ status: string; execution_id: string; execution_count: number }>('execute_cell', { notebook_path: 'analysis/work.ipynb', cell_id: load.cell_id });
  assert.equal(run.status, 'succeeded');
  assert.match(run.__text, /10 rows/);

  const plot = await fx.ok<{ cell_id: string }>('insert_cell', {
    notebook_path: 'analysis/work.ipynb',
    cell_type: 'code',
    source: "import matplotlib.pyplot as plt\nplt.plot(df.x, df.y)\nplt.title('squares')\nplt.show()",
  });
  const plotted = await fx.ok<{ status: string; assets: string[] }>('execute_cell', { notebook_path: 'analysis/work.ipynb', cell_id: plot.cell_id });
  assert.equal(plotted.status, 'succeeded');
  const image = plotted.__result.content.find((item) => item.type === 'image');
  assert.ok(image && image.type === 'image' && image.mimeType === 'image/png', 'the plot comes back as image content');
  assert.equal(Buffer.from(image.data, 'base64').subarray(1, 4).toString(), 'PNG');

  const broken = await fx.ok<{ cell_id: string }>('insert_cell', { notebook_path: 'analysis/work.ipynb', cell_type: 'code', source: 'df["z"] = df.x / undefined_name' });
  const failed = await fx.ok<{ status: string; error: { ename: string } }>('execute_cell', { notebook_path: 'analysis/work.ipynb', cell_id: broken.cell_id });
  assert.equal(failed.status, 'failed');
  assert.equal(failed.error.ename, 'NameError');
  assert.doesNotMatch(textOfResult(failed.__result), /\x1b\[/, 'no ANSI escapes in the traceback an agent reads');

  await fx.ok('edit_cell', { notebook_path: 'analysis/work.ipynb', cell_id: broken.cell_id, source: 'df["z"] = df.x + df.y\ndf.z.sum()' });
  const fixed = await fx.ok<{ status: string }>('execute_cell', { notebook_path: 'analysis/work.ipynb', cell_id: broken.cell_id });
  assert.equal(fixed.status, 'succeeded');
  assert.match(fixed.__text + textOfResult(fixed.__result), /330/);

  const inspected = await fx.ok<{ shape: number[]; columns: string[] }>('inspect_variable', { notebook_path: 'analysis/work.ipynb', name: 'df' });
  assert.deepEqual(inspected.shape, [10, 3]);
  assert.deepEqual(inspected.columns, ['x', 'y', 'z']);

  const outline = await fx.ok<{ cells: Array<{ cell_id: string; state?: string; execution_count?: number }> }>('read_notebook', { notebook_path: 'analysis/work.ipynb' });
  assert.equal(outline.cells.length, 4);
  assert.deepEqual(outline.cells.slice(1).map((cell) => cell.state), ['fresh', 'fresh', 'fresh']);

  // The file on disk holds the outputs, by cell id, and is valid nbformat.
  const file = join(fx.workspace, 'analysis', 'work.ipynb');
  validateWithNbformat(file);
  const onDisk = JSON.parse(readFileSync(file, 'utf8')) as { cells: Array<{ id: string; outputs?: unknown[]; metadata: Record<string, unknown> }> };
  const plotCell = onDisk.cells.find((cell) => cell.id === plot.cell_id);
  assert.ok(plotCell?.outputs?.length, 'plot outputs written into the notebook');
  assert.ok((plotCell.metadata.mcp_jupyter as { execution_id?: string }).execution_id, 'provenance recorded');

  const restarted = await fx.ok<{ state_reset: boolean }>('restart_kernel', { notebook_path: 'analysis/work.ipynb' });
  assert.equal(restarted.state_reset, true);
  const after = await fx.ok<{ variables: unknown[] }>('list_variables', { notebook_path: 'analysis/work.ipynb' });
  assert.deepEqual(after.variables, []);
  const stale = await fx.ok<{ cells: Array<{ state?: string }> }>('read_notebook', { notebook_path: 'analysis/work.ipynb' });
  assert.deepEqual(stale.cells.slice(1).map((cell) => cell.state), ['from_old_kernel', 'from_old_kernel', 'from_old_kernel']);

  const status = await fx.ok<{ executions_by_state: Record<string, number> }>('server_status');
  assert.ok((status.executions_by_state.succeeded ?? 0) >= 3);
  await fx.ok('shutdown_kernel', { notebook_path: 'analysis/work.ipynb' });
}

test('agent workflow over stdio', { timeout: 180_000 }, async () => {
  const fx = await startStdioServer();
  try {
    await agentWorkflow(fx);
  } finally {
    await fx.close();
  }
});

test('agent workflow over Streamable HTTP', { timeout: 180_000 }, async () => {
  const fx = await startHttpServer();
  try {
    await agentWorkflow(fx);
  } finally {
    await fx.close();
  }
});
