// sync_notebook and cell states through the real MCP server, on a 30-cell notebook with a real kernel.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { PROJECT_ROOT, startStdioServer, textOfResult, type ServerFixture } from './helpers/mcp.js';

const PYTHON = join(PROJECT_ROOT, '.venv', 'bin', 'python');
const NB = 'sales.ipynb';

// Loading data, helpers, five independent branches (two with plots), an import used by one branch, a summary.
const CELLS: Array<{ cell_type: 'code' | 'markdown'; source: string }> = [
  { cell_type: 'markdown', source: '# Sales analysis' }, // 0
  { cell_type: 'code', source: '%matplotlib inline\nimport pandas as pd\nimport numpy as np\nimport matplotlib.pyplot as plt' }, // 1
  {
    cell_type: 'code',
    source: "rng = np.random.default_rng(0)\nsales = pd.DataFrame({'region': ['n', 's', 'e', 'w'] * 5, 'units': rng.integers(1, 10, 20), 'price': rng.integers(5, 50, 20).astype(float)})",
  }, // 2
  { cell_type: 'code', source: "sales['revenue'] = sales['units'] * sales['price']" }, // 3
  { cell_type: 'markdown', source: '## Helpers' }, // 4
  { cell_type: 'code', source: "def top_n(frame, n=3):\n    return frame.nlargest(n, 'revenue')" }, // 5
  { cell_type: 'code', source: 'def share(frame, col):\n    return frame[col] / frame[col].sum()' }, // 6
  { cell_type: 'code', source: 'TAX = 0.2' }, // 7
  { cell_type: 'code', source: 'def net(x):\n    return x * (1 - TAX)' }, // 8
  { cell_type: 'markdown', source: '## A: top sales' }, // 9
  { cell_type: 'code', source: "top = top_n(sales)\nprint('top revenue', top['revenue'].tolist())" }, // 10
  { cell_type: 'code', source: "top_regions = sorted(top['region'].unique())\nprint('top regions', top_regions)" }, // 11
  { cell_type: 'markdown', source: '## B: shares' }, // 12
  { cell_type: 'code', source: "shares = share(sales, 'units')\nprint('first share', round(float(shares.iloc[0]), 4))" }, // 13
  { cell_type: 'code', source: "by_region = sales.assign(share=shares).groupby('region')['share'].sum()\nby_region" }, // 14
  { cell_type: 'code', source: "fig, ax = plt.subplots()\nby_region.plot.bar(ax=ax)\nax.set_title('share by region')\nplt.show()" }, // 15
  { cell_type: 'markdown', source: '## C: net revenue' }, // 16
  { cell_type: 'code', source: "net_total = net(sales['revenue'].sum())\nprint('net total', net_total)" }, // 17
  { cell_type: 'code', source: "net_per_unit = net_total / sales['units'].sum()\nprint('net per unit', round(net_per_unit, 4))" }, // 18
  { cell_type: 'markdown', source: '## D: prices' }, // 19
  { cell_type: 'code', source: "price_stats = sales['price'].describe()\nprice_stats" }, // 20
  { cell_type: 'code', source: "fig, ax = plt.subplots()\nax.hist(sales['price'])\nax.set_title('prices')\nplt.show()" }, // 21
  { cell_type: 'code', source: 'import statistics' }, // 22
  { cell_type: 'code', source: "log_units = np.log(sales['units'])\nprint('mean log units', round(float(log_units.mean()), 4))" }, // 23
  { cell_type: 'code', source: "z = (sales['units'] - sales['units'].mean()) / sales['units'].std()" }, // 24
  { cell_type: 'code', source: "print('median z', round(statistics.median(z), 4))" }, // 25
  { cell_type: 'markdown', source: '## Notes' }, // 26
  { cell_type: 'code', source: "notes = ['independent cell']\nprint(len(notes))" }, // 27
  { cell_type: 'code', source: "summary = {'top': top_regions, 'net': round(net_total, 2)}\nprint(summary)" }, // 28
  { cell_type: 'code', source: "print('done')" }, // 29
];
const CODE = CELLS.flatMap((cell, index) => (cell.cell_type === 'code' ? [index] : []));

interface PlanEntry {
  cell_id: string;
  index: number;
  kind: string;
  reason: string;
  depends_on: Array<{ name: string; cell_id: string; index: number }>;
}
interface SyncResult {
  strategy: string;
  requested_strategy: string;
  plan: PlanEntry[];
  notes: string[];
  execution_ids: string[];
  executions?: Array<{ execution_id: string; status: string; cell_id: string }>;
}
interface Outline {
  cells: Array<{ cell_id: string; index: number; cell_type: string; state?: string; execution_count?: number | null }>;
  __text: string;
}

let fx: ServerFixture;
let ids: string[] = [];

async function plan(strategy?: string): Promise<SyncResult & { __text: string }> {
  return fx.ok<SyncResult>('sync_notebook', { notebook_path: NB, dry_run: true, ...(strategy ? { strategy } : {}) });
}

async function states(): Promise<Record<number, string | undefined>> {
  const outline = await fx.ok<Outline>('read_notebook', { notebook_path: NB });
  return Object.fromEntries(outline.cells.filter((cell) => cell.cell_type === 'code').map((cell) => [cell.index, cell.state]));
}

async function edit(index: number, source: string): Promise<void> {
  await fx.ok('edit_cell', { notebook_path: NB, cell_id: ids[index], source });
}

/** Edits a cell, checks the smart plan, and puts the original source back (the cell is fresh again). */
async function planFor(index: number, source: string): Promise<SyncResult> {
  await edit(index, source);
  try {
    return await plan();
  } finally {
    await edit(index, CELLS[index]!.source);
  }
}

async function cellText(index: number): Promise<string> {
  const read = await fx.call('read_cell', { notebook_path: NB, cell_id: ids[index] });
  assert.ok(!read.isError, textOfResult(read));
  return textOfResult(read);
}

async function kernelValue(code: string): Promise<string> {
  const ran = await fx.ok<{ status: string }>('execute_code', { notebook_path: NB, code });
  assert.equal(ran.status, 'succeeded', ran.__text);
  // The first text item is the status line; the outputs follow.
  return textOfResult({ content: ran.__result.content.slice(1) });
}

function indices(result: SyncResult): number[] {
  return result.plan.map((entry) => entry.index);
}

function entry(result: SyncResult, index: number): PlanEntry {
  const found = result.plan.find((candidate) => candidate.index === index);
  assert.ok(found, `cell ${index} is not in the plan ${JSON.stringify(indices(result))}`);
  return found;
}

describe('sync_notebook on a 30-cell notebook', () => {
  before(async () => {
    fx = await startStdioServer();
    const created = await fx.ok<{ cells: Array<{ cell_id: string }> }>('create_notebook', { notebook_path: NB, cells: CELLS });
    ids = created.cells.map((cell) => cell.cell_id);
    assert.equal(ids.length, 30);
    const ran = await fx.ok<{ execution_ids: string[] }>('run_all_cells', { notebook_path: NB, wait: true, timeout_s: 120 });
    assert.equal(ran.execution_ids.length, CODE.length);
    for (const id of ran.execution_ids) {
      const status = await fx.ok<{ status: string }>('get_execution', { execution_id: id });
      assert.equal(status.status, 'succeeded', status.__text);
    }
  });

  after(async () => {
    await fx?.close();
  });

  test('after a run top to bottom every code cell is fresh and there is nothing to sync', async () => {
    const now = await states();
    assert.deepEqual(Object.keys(now).map(Number), CODE);
    assert.ok(Object.values(now).every((state) => state === 'fresh'), JSON.stringify(now));
    const nothing = await plan();
    assert.deepEqual(nothing.plan, []);
    assert.match(nothing.__text, /nothing to run: every code cell is fresh/);
  });

  test('editing a helper used by one branch plans exactly that helper and that branch', async () => {
    const result = await planFor(6, 'def share(frame, col):\n    return frame[col] / frame[col].max()');
    assert.equal(result.strategy, 'smart');
    assert.deepEqual(indices(result), [6, 13, 14, 15]);
    assert.deepEqual(
      result.plan.map((item) => item.cell_id),
      [ids[6], ids[13], ids[14], ids[15]],
    );
    assert.equal(entry(result, 6).reason, 'source changed since it ran');
    assert.equal(entry(result, 6).kind, 'source_changed');
    assert.match(entry(result, 13).reason, /^reads share, which cell 6 defines \(it re-runs\)$/);
    assert.deepEqual(entry(result, 13).depends_on, [{ name: 'share', cell_id: ids[6], index: 6 }]);
    assert.match(entry(result, 14).reason, /reads shares, which cell 13 defines/);
    assert.match(entry(result, 15).reason, /reads by_region, which cell 14 defines/);
    assert.equal((await states())[6], 'fresh', 'putting the source back makes the cell fresh again');
  });

  test("a constant read inside a helper's body reaches the branch that calls the helper", async () => {
    const result = await planFor(7, 'TAX = 0.25');
    assert.deepEqual(indices(result), [7, 17, 18, 28]);
    assert.match(entry(result, 17).reason, /reads TAX \(through net\(\)\), which cell 7 defines/);
  });

  test('editing a cell nobody depends on plans that cell alone (plots included)', async () => {
    assert.deepEqual(indices(await planFor(27, "notes = ['edited']\nprint(len(notes))")), [27]);
    assert.deepEqual(indices(await planFor(15, "fig, ax = plt.subplots()\nby_region.plot.bar(ax=ax)\nax.set_title('shares')\nplt.show()")), [15]);
    assert.deepEqual(indices(await planFor(20, "price_stats = sales['price'].describe()\nprice_stats.round(1)")), [20]);
  });

  test("a mutation (sales['revenue'] = …) is a dependency for the later readers of sales", async () => {
    const result = await planFor(3, "sales['revenue'] = sales['units'] * sales['price'] * 2");
    assert.deepEqual(indices(result), [3, 10, 11, 13, 14, 15, 17, 18, 20, 21, 23, 24, 25, 28]);
    assert.match(entry(result, 10).reason, /reads sales, which cell 3 changes/);
    assert.ok(!indices(result).includes(2), 'the cell that created sales is above the mutation');
  });

  test('an import change reaches the cells that use the module', async () => {
    const statistics = await planFor(22, 'import statistics  # for the median');
    assert.deepEqual(indices(statistics), [22, 25]);
    assert.match(entry(statistics, 22).reason, /only comments or whitespace differ/);
    assert.match(entry(statistics, 25).reason, /reads statistics, which cell 22 defines/);
    const imports = await planFor(1, '%matplotlib inline\nimport pandas as pd\nimport numpy as np\nimport matplotlib.pyplot as plt\nimport math');
    assert.deepEqual(indices(imports), [1, 2, 3, 10, 11, 13, 14, 15, 17, 18, 20, 21, 23, 24, 25, 28]);
    assert.match(entry(imports, 21).reason, /reads plt, which cell 1 defines \(it re-runs\)/);
  });

  test('incremental and full plans', async () => {
    await edit(20, "price_stats = sales['price'].describe()\nprice_stats.round(1)");
    try {
      const incremental = await plan('incremental');
      assert.equal(incremental.strategy, 'incremental');
      assert.deepEqual(indices(incremental), CODE.filter((index) => index >= 20));
      assert.match(entry(incremental, 21).reason, /below cell 20, the first cell out of date/);
      const full = await plan('full');
      assert.deepEqual(indices(full), CODE);
      assert.ok(full.plan.every((item) => item.kind === 'full'));
    } finally {
      await edit(20, CELLS[20]!.source);
    }
  });

  test('a helper edited and re-run by the agent: its callers re-run, with the new outputs', async () => {
    await edit(5, "def top_n(frame, n=2):\n    return frame.nlargest(n, 'revenue')");
    const reran = await fx.ok<{ status: string }>('execute_cell', { notebook_path: NB, cell_id: ids[5] });
    assert.equal(reran.status, 'succeeded');
    assert.equal((await states())[5], 'fresh');
    const dry = await plan();
    assert.deepEqual(indices(dry), [10, 11, 28]);
    assert.match(entry(dry, 10).reason, /reads top_n, which cell 5 defines \(it re-ran after this cell\)/);

    const before10 = await cellText(10);
    const synced = await fx.ok<SyncResult>('sync_notebook', { notebook_path: NB, wait: true });
    assert.equal(synced.execution_ids.length, 3);
    assert.deepEqual(
      synced.executions?.map((execution) => [execution.cell_id, execution.status]),
      [ids[10], ids[11], ids[28]].map((id) => [id, 'succeeded']),
    );
    const after10 = await cellText(10);
    const expected = (await kernelValue("print('top revenue', sales.nlargest(2, 'revenue')['revenue'].tolist())")).trim();
    assert.ok(after10.includes(expected), `${after10}\nshould show ${expected}`);
    assert.ok(!before10.includes(expected), 'the output changed from three values to two');
    assert.deepEqual((await plan()).plan, [], 'after the sync the notebook is in line');
  });

  test('a person edits a cell on disk: read_notebook shows it stale, sync re-runs it and its dependents', async () => {
    const path = join(fx.workspace, NB);
    const newSource = "shares = share(sales, 'revenue')\nprint('first share', round(float(shares.iloc[0]), 4))";
    await promisify(execFile)(PYTHON, [
      '-c',
      'import sys, nbformat\nnb = nbformat.read(sys.argv[1], as_version=4)\nnb.cells[int(sys.argv[2])].source = sys.argv[3]\nnbformat.write(nb, sys.argv[1])',
      path,
      '13',
      newSource,
    ]);
    const outline = await fx.ok<Outline>('read_notebook', { notebook_path: NB });
    const now = Object.fromEntries(outline.cells.filter((cell) => cell.cell_type === 'code').map((cell) => [cell.index, cell.state]));
    assert.equal(now[13], 'stale');
    assert.deepEqual(
      Object.entries(now).filter(([, state]) => state !== 'fresh'),
      [['13', 'stale']],
    );

    const synced = await fx.ok<SyncResult>('sync_notebook', { notebook_path: NB, wait: true });
    assert.deepEqual(indices(synced), [13, 14, 15]);
    assert.equal(entry(synced, 13).reason, 'source changed since it ran');
    assert.deepEqual(
      synced.executions?.map((execution) => execution.status),
      ['succeeded', 'succeeded', 'succeeded'],
    );
    const expected = (await kernelValue("print('first share', round(float((sales['revenue'] / sales['revenue'].sum()).iloc[0]), 4))")).trim();
    assert.ok((await cellText(13)).includes(expected), `cell 13 shows ${expected}`);
    assert.ok(Object.values(await states()).every((state) => state === 'fresh'));
  });

  test('the plan stops at the first error; fixing the cell and syncing again finishes it', async () => {
    await edit(24, 'z = undefined_name');
    const failed = await fx.ok<SyncResult>('sync_notebook', { notebook_path: NB, wait: true });
    assert.deepEqual(indices(failed), [24, 25]);
    assert.deepEqual(
      failed.executions?.map((execution) => execution.status),
      ['failed', 'cancelled'],
    );
    await edit(24, CELLS[24]!.source);
    const now = await states();
    assert.equal(now[24], 'stale', 'it ran with other code than it has now');
    const fixed = await fx.ok<SyncResult>('sync_notebook', { notebook_path: NB, wait: true });
    assert.deepEqual(indices(fixed), [24, 25]);
    assert.deepEqual(
      fixed.executions?.map((execution) => execution.status),
      ['succeeded', 'succeeded'],
    );
  });

  test('after restart_kernel every executed cell is from_old_kernel, and smart rebuilds all of them', async () => {
    await fx.ok('restart_kernel', { notebook_path: NB });
    const now = await states();
    assert.deepEqual(Object.keys(now).map(Number), CODE);
    assert.ok(Object.values(now).every((state) => state === 'from_old_kernel'), JSON.stringify(now));
    const dry = await plan();
    assert.deepEqual(indices(dry), CODE);
    assert.ok(dry.plan.every((item) => item.kind === 'from_old_kernel'));
    const synced = await fx.ok<SyncResult>('sync_notebook', { notebook_path: NB, wait: true, timeout_s: 120 });
    assert.ok(synced.executions?.every((execution) => execution.status === 'succeeded'));
    assert.ok(Object.values(await states()).every((state) => state === 'fresh'));
    assert.match(await kernelValue("print(summary['top'])"), /\[/, 'the rebuilt kernel has the summary again');
  });

  test('full restarts the kernel and runs every code cell', async () => {
    await kernelValue('scratch_only = 1');
    const full = await fx.ok<SyncResult & { executions: Array<{ status: string; execution_count: number | null }> }>('sync_notebook', {
      notebook_path: NB,
      strategy: 'full',
      wait: true,
      timeout_s: 120,
    });
    assert.deepEqual(indices(full), CODE);
    assert.ok(full.executions.every((execution) => execution.status === 'succeeded'));
    assert.equal(full.executions[0]!.execution_count, 1, 'a new kernel counts from 1');
    assert.match(await kernelValue("print('scratch_only' in globals())"), /False/, 'what only the old kernel had is gone');
  });
});
