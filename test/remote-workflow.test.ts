// Remote kernels end to end: an agent's whole workflow through `serve --jupyter-url` on a real Jupyter Server, and clear start errors.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, realpathSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startJupyterServer, type JupyterServerFixture } from './helpers/jupyter-server.js';
import { CLI, makeWorkspace, startStdioServer, textOfResult } from './helpers/mcp.js';

let jupyter: JupyterServerFixture;

before(async () => {
  jupyter = await startJupyterServer();
});

after(async () => {
  await jupyter?.stop();
});

async function remoteKernelIds(): Promise<string[]> {
  const response = await fetch(`${jupyter.url}api/kernels`, { headers: { Authorization: `token ${jupyter.token}` } });
  return ((await response.json()) as Array<{ id: string }>).map((kernel) => kernel.id);
}

test('the agent workflow on a remote kernel: cells, a plot, an error, a variable, a restart; list_kernels shows the server', { timeout: 120_000 }, async () => {
  // The kernel's working directory is the notebook's folder on the server, when it exists there.
  mkdirSync(join(jupyter.rootDir, 'analysis'));
  const fx = await startStdioServer(makeWorkspace('mcpj-remote-ws-'), ['--jupyter-url', jupyter.url, '--jupyter-token', jupyter.token]);
  try {
    const specs = await fx.ok<{ kernelspecs: Array<{ name: string; source: string }> }>('list_kernelspecs');
    assert.deepEqual(
      specs.kernelspecs.map((spec) => [spec.name, spec.source]),
      [['python3', `remote: ${jupyter.url}`]],
    );

    await fx.ok('create_notebook', { notebook_path: 'analysis/work.ipynb' });
    const load = await fx.ok<{ cell_id: string }>('insert_cell', {
      notebook_path: 'analysis/work.ipynb',
      cell_type: 'code',
      source: "import os, pandas as pd\ndf = pd.DataFrame({'x': range(10), 'y': [v * v for v in range(10)]})\nprint(len(df), 'rows in', os.getcwd())",
    });
    const run = await fx.ok<{ status: string }>('execute_cell', { notebook_path: 'analysis/work.ipynb', cell_id: load.cell_id });
    assert.equal(run.status, 'succeeded');
    assert.match(run.__text, new RegExp(`10 rows in ${realpathSync(join(jupyter.rootDir, 'analysis'))}`));

    const kernels = await fx.ok<{ kernels: Array<{ kernel_id: string; location: string; status: string }> }>('list_kernels');
    assert.equal(kernels.kernels.length, 1);
    assert.equal(kernels.kernels[0]?.location, jupyter.url, 'the remote server is where the kernel runs');
    assert.match(kernels.__text, new RegExp(`at ${jupyter.url.replace(/[.]/g, '\\.')}`));
    assert.equal((await remoteKernelIds()).length, 1, 'the kernel really lives on the Jupyter server');

    const plot = await fx.ok<{ cell_id: string }>('insert_cell', {
      notebook_path: 'analysis/work.ipynb',
      cell_type: 'code',
      source: "import matplotlib.pyplot as plt\nplt.plot(df.x, df.y)\nplt.title('squares')\nplt.show()",
    });
    const plotted = await fx.ok<{ status: string }>('execute_cell', { notebook_path: 'analysis/work.ipynb', cell_id: plot.cell_id });
    assert.equal(plotted.status, 'succeeded');
    const image = plotted.__result.content.find((item) => item.type === 'image');
    assert.ok(image && image.type === 'image' && image.mimeType === 'image/png', 'the plot comes back as image content');
    assert.equal(Buffer.from(image.data, 'base64').subarray(1, 4).toString(), 'PNG');

    const broken = await fx.ok<{ cell_id: string }>('insert_cell', { notebook_path: 'analysis/work.ipynb', cell_type: 'code', source: 'df["z"] = df.x / undefined_name' });
    const failed = await fx.ok<{ status: string; error: { ename: string } }>('execute_cell', { notebook_path: 'analysis/work.ipynb', cell_id: broken.cell_id });
    assert.equal(failed.status, 'failed');
    assert.equal(failed.error.ename, 'NameError');
    assert.match(textOfResult(failed.__result), /undefined_name/);

    await fx.ok('edit_cell', { notebook_path: 'analysis/work.ipynb', cell_id: broken.cell_id, source: 'df["z"] = df.x + df.y\ndf.z.sum()' });
    const fixed = await fx.ok<{ status: string }>('execute_cell', { notebook_path: 'analysis/work.ipynb', cell_id: broken.cell_id });
    assert.equal(fixed.status, 'succeeded');
    assert.match(fixed.__text, /330/);

    const inspected = await fx.ok<{ shape: number[]; columns: string[] }>('inspect_variable', { notebook_path: 'analysis/work.ipynb', name: 'df' });
    assert.deepEqual(inspected.shape, [10, 3]);
    assert.deepEqual(inspected.columns, ['x', 'y', 'z']);

    const interrupted = await fx.ok<{ status: string; execution_id: string }>('execute_code', { notebook_path: 'analysis/work.ipynb', code: 'import time\ntime.sleep(30)', timeout_s: 1 });
    assert.equal(interrupted.status, 'running');
    await fx.ok('interrupt_kernel', { notebook_path: 'analysis/work.ipynb' });
    const stopped = await fx.ok<{ status: string }>('get_execution', { execution_id: interrupted.execution_id, wait_s: 20 });
    assert.equal(stopped.status, 'interrupted');

    const before = await remoteKernelIds();
    const restarted = await fx.ok<{ state_reset: boolean; kernel_id: string }>('restart_kernel', { notebook_path: 'analysis/work.ipynb' });
    assert.equal(restarted.state_reset, true);
    const gone = await fx.ok<{ status: string }>('execute_code', { notebook_path: 'analysis/work.ipynb', code: "'df' in globals()" });
    assert.match(gone.__text, /False/);
    assert.deepEqual(await remoteKernelIds(), before, 'restarted in place: the same kernel on the server');

    await fx.ok('shutdown_kernel', { notebook_path: 'analysis/work.ipynb' });
    assert.deepEqual(await remoteKernelIds(), [], 'shutdown_kernel deletes the kernel on the server');
  } finally {
    await fx.close();
  }
});

/** Runs `serve` over stdio with remote flags and returns how it ended (it must end, not hang). */
async function serveExit(args: string[]): Promise<{ code: number | null; stderr: string; ms: number }> {
  const workspace = makeWorkspace('mcpj-remote-err-');
  const started = Date.now();
  const child = spawn(process.execPath, [CLI, 'serve', '--workspace', workspace, ...args], { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, MCP_JUPYTER_LOG_LEVEL: 'warn' } });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
  clearTimeout(timer);
  rmSync(workspace, { recursive: true, force: true });
  return { code, stderr, ms: Date.now() - started };
}

test('a wrong token, an unreachable URL and a URL without the API prefix each stop `serve` at once with what to fix', { timeout: 60_000 }, async () => {
  const wrongToken = await serveExit(['--jupyter-url', jupyter.url, '--jupyter-token', 'not-the-token']);
  assert.equal(wrongToken.code, 2, wrongToken.stderr);
  assert.match(wrongToken.stderr, /refused our credentials \(HTTP 403 on GET api\/kernelspecs\)\. Check --jupyter-token/);
  assert.ok(wrongToken.ms < 10_000, `took ${wrongToken.ms} ms`);

  const port = await new Promise<number>((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const free = (probe.address() as AddressInfo).port;
      probe.close(() => resolve(free));
    });
  });
  const unreachable = await serveExit(['--jupyter-url', `http://127.0.0.1:${port}/`, '--jupyter-token', 'x']);
  assert.equal(unreachable.code, 2, unreachable.stderr);
  assert.match(unreachable.stderr, new RegExp(`Cannot reach the Jupyter server at http://127\\.0\\.0\\.1:${port}/ .*ECONNREFUSED.*is the Jupyter server running`));
  assert.ok(unreachable.ms < 10_000, `took ${unreachable.ms} ms`);

  const wrongPrefix = await serveExit(['--jupyter-url', `${jupyter.url}user/alice/`, '--jupyter-token', jupyter.token]);
  assert.equal(wrongPrefix.code, 2, wrongPrefix.stderr);
  assert.match(wrongPrefix.stderr, /answered 404 for api\/kernelspecs: it is not the base URL of a Jupyter Server API/);

  const headerWithoutUrl = await serveExit(['--jupyter-header', 'X-Team: a']);
  assert.equal(headerWithoutUrl.code, 2);
  assert.match(headerWithoutUrl.stderr, /add --jupyter-url/);
});
