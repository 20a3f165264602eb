// Smart sync planning with dependencies from the real analyzer, run in a real ipykernel.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { KernelSession } from '../src/kernel/types.js';
import { analyzePythonCells, type CellDeps } from '../src/server/python-deps.js';
import { planIncremental, planSmart, planSync, type PlanCell, type SyncPlan } from '../src/server/sync-plan.js';
import { createEngineFixture, textOf, type EngineFixture } from './helpers/engine.js';

let fixture: EngineFixture;
let session: KernelSession;

before(async () => {
  fixture = createEngineFixture();
  session = await fixture.engine.startKernel('deps.ipynb', 'python3');
});

after(async () => {
  await fixture.close();
});

async function analyze(sources: string[], previous: Array<string | null> = []): Promise<CellDeps[]> {
  return analyzePythonCells(session, sources.map((source, position) => ({ source, previous: previous[position] ?? null })), 30_000);
}

type Override = Partial<Pick<PlanCell, 'state' | 'ranAt' | 'lastStatus' | 'lastError'>>;

/** Cells that all ran once, in order (cell i has run number i + 1), with some of them changed. */
function cellsOf(sources: string[], overrides: Record<number, Override> = {}): PlanCell[] {
  return sources.map((source, index) => ({ cellId: `c${index}`, index, source, state: 'fresh' as const, ranAt: index + 1, lastStatus: 'succeeded', ...overrides[index] }));
}

function indices(plan: SyncPlan): number[] {
  return plan.cells.map((cell) => cell.index);
}

function reasonOf(plan: SyncPlan, index: number): string {
  const cell = plan.cells.find((candidate) => candidate.index === index);
  assert.ok(cell, `cell ${index} is not in the plan: ${JSON.stringify(plan.cells)}`);
  return cell.reason;
}

const STALE: Override = { state: 'stale', ranAt: null };
const NEVER: Override = { state: 'never_run', ranAt: null };

describe('the analyzer (real parse in the kernel)', () => {
  test('bindings, imports, definitions, mutations, deletion and global writes', async () => {
    const deps = await analyze([
      'import os.path\nfrom collections import OrderedDict as OD\nimport numpy as np',
      'a = 1\nb, (c, *d) = 2, (3, 4, 5)\nn: int = 3\ne = f = a + g',
      'def helper(v, w=DEFAULT):\n    local = v * FACTOR\n    return local\n\nclass Model(Base):\n    size = SIZE\n    def fit(self):\n        return coef',
      'x += 1\ncounter["n"] += step',
      'del tmp\ndel cache["k"]',
      "df['y'] = df['x'] * 2\nobj.attr = 3\ngrid[0][1] = 9\ndf['z'] = df['z'] + 1",
      'def setup():\n    global cfg, hits\n    cfg = {"a": 1}\n    hits.append(1)\nsetup()\nprint(cfg)',
      'lst.append(1)\ndf.drop(columns=["t"], inplace=True)\nmodel.fit(X, y)\nnp.random.seed(0)\nax.set_title("t")\nframe.plot()\nsales.plot.bar()\nsummary.head()',
      'total = 0\nfor item in items:\n    total = total + item\nif flag:\n    maybe = 1\nprint(maybe)',
      'df = df.dropna()\nclean = prepare(clean)',
      'squares = [i * i for i in range(k)]\npairs = {p: q for p, q in zip(keys, vals)}\nf = lambda v: v + offset\nif (m := len(squares)) > 2:\n    pass',
      'def outer():\n    inner_value = 1\n    def inner():\n        return inner_value + GLOBAL_G\n    return inner()',
      'with open(path) as fh:\n    text = fh.read()\ntry:\n    parsed = int(text)\nexcept ValueError as err:\n    parsed = None',
      'r = helper2(3)\ndef helper2(v):\n    return v + LATER\nr2 = helper2(4)',
    ]);
    const [imports, assigns, defs, aug, dels, subscripts, globals, methods, control, rebinds, scopes, nested, withTry, callOrder] = deps as [
      CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps,
    ];
    assert.deepEqual(imports.defines, ['OD', 'np', 'os']);
    assert.deepEqual(assigns.defines, ['a', 'b', 'c', 'd', 'e', 'f', 'n']);
    assert.deepEqual(assigns.reads, ['g', 'int'], 'a is bound before it is read, so it is not read from outside');

    // Parameters and function locals are not top-level names; a body's global reads happen at call time.
    assert.deepEqual(defs.defines, ['Model', 'helper']);
    assert.deepEqual(defs.reads, ['Base', 'DEFAULT', 'SIZE'], 'defaults, bases and the class body run at definition');
    assert.deepEqual(defs.functions, { helper: { reads: ['FACTOR'], writes: [] }, Model: { reads: ['coef'], writes: [] } });

    assert.deepEqual(aug.defines, ['counter', 'x']);
    assert.deepEqual(aug.reads, ['counter', 'step', 'x']);
    assert.deepEqual(aug.updates, ['counter', 'x']);
    assert.deepEqual(aug.mutates, ['counter']);

    assert.deepEqual(dels.defines, ['cache', 'tmp']);
    assert.deepEqual(dels.deletes, ['tmp']);
    assert.deepEqual(dels.reads, ['cache', 'tmp'], 'del needs the name to exist');
    assert.deepEqual(dels.updates, ['cache', 'tmp'], 'running a del twice fails');

    assert.deepEqual(subscripts.defines, ['df', 'grid', 'obj']);
    assert.deepEqual(subscripts.mutates, ['df', 'grid', 'obj']);
    assert.deepEqual(subscripts.reads, ['df', 'grid', 'obj']);
    assert.deepEqual(subscripts.updates, ['df'], "df['z'] = df['z'] + 1 cannot run twice; df['y'] = df['x'] * 2 can");

    assert.deepEqual(globals.defines, ['cfg', 'hits', 'setup'], 'calling setup() binds cfg and appends to hits');
    assert.deepEqual(globals.functions, { setup: { reads: ['hits'], writes: ['cfg', 'hits'] } });
    assert.deepEqual(globals.reads, ['hits', 'print'], 'cfg is bound by the call before print reads it');
    assert.deepEqual(globals.updates, ['hits']);

    // Method calls: known mutators, inplace=True and thrown-away results change the object; modules and the
    // cell's last expression (which IPython displays) do not; display/export methods do not.
    assert.deepEqual(methods.mutates, ['ax', 'df', 'lst', 'model']);
    assert.deepEqual(methods.defines, ['ax', 'df', 'lst', 'model'], 'np is a module; frame.plot(), sales.plot.bar() and the displayed summary.head() only look');

    assert.deepEqual(control.defines, ['item', 'maybe', 'total']);
    assert.deepEqual(control.reads, ['flag', 'items', 'maybe', 'print'], 'maybe is bound only under if, so it may come from above');

    assert.deepEqual(rebinds.updates, ['clean', 'df']);
    assert.deepEqual(rebinds.reads, ['clean', 'df', 'prepare']);

    assert.deepEqual(scopes.defines, ['f', 'm', 'pairs', 'squares'], 'comprehension and lambda variables are not definitions; := is');
    assert.deepEqual(scopes.reads, ['k', 'keys', 'len', 'offset', 'range', 'vals', 'zip']);

    assert.deepEqual(nested.defines, ['outer']);
    assert.deepEqual(nested.reads, []);
    assert.deepEqual(nested.functions, { outer: { reads: ['GLOBAL_G'], writes: [] } }, 'a closure variable is not a global read');

    assert.deepEqual(withTry.defines, ['err', 'fh', 'parsed', 'text']);
    assert.deepEqual(withTry.reads, ['ValueError', 'int', 'open', 'path']);

    assert.deepEqual(callOrder.reads, ['LATER', 'helper2'], 'the first call reads helper2 from above; the second reads what its body reads');
  });

  test('magics and shell lines: analysed where they run Python, conservative where they cannot be', async () => {
    const [mpl, timeCell, shell, shellAssign, run, capture, timeit, pip, bash, html, star, execCall] = (await analyze([
      '%matplotlib inline\n%config InlineBackend.figure_format = "png"\nimport math',
      '%%time\nresult = compute(data)\nprint(result)',
      '!ls {folder}/$pattern',
      'files = !ls',
      '%run -i helper_script.py',
      '%%capture captured\nprint(value)',
      '%timeit -n1 -r1 work(x)',
      '%pip install something',
      '%%bash\necho hi > out.txt',
      '%%html\n<b>hello</b>',
      'from os.path import *',
      'exec("z = 1")',
    ])) as CellDeps[] as [CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps, CellDeps];
    assert.deepEqual([mpl.defines, mpl.reads, mpl.opaqueReads, mpl.opaqueDefines], [['math'], [], null, null], '%matplotlib and %config change no names');
    assert.deepEqual([timeCell.defines, timeCell.reads, timeCell.opaqueDefines], [['result'], ['compute', 'data', 'print'], null], '%%time runs its body in the namespace');
    assert.deepEqual(shell.reads, ['folder', 'pattern'], 'IPython expands {folder} and $pattern with the user values');
    assert.match(shell.opaqueDefines ?? '', /shell command !ls/);
    assert.equal(shell.opaqueReads, null);
    assert.deepEqual(shellAssign.defines, ['files']);
    assert.ok(shellAssign.opaqueDefines);
    assert.match(run.opaqueReads ?? '', /%run -i helper_script\.py/);
    assert.match(run.opaqueDefines ?? '', /%run/);
    assert.deepEqual([capture.defines, capture.reads], [['captured'], ['print', 'value']]);
    assert.deepEqual([timeit.reads, timeit.opaqueReads], [['work', 'x'], null]);
    assert.match(pip.opaqueDefines ?? '', /%pip install something/);
    assert.match(bash.opaqueDefines ?? '', /%%bash/);
    assert.deepEqual([html.defines, html.reads, html.opaqueReads, html.opaqueDefines], [[], [], null, null]);
    assert.match(star.opaqueDefines ?? '', /from os\.path import \*/);
    assert.match(execCall.opaqueReads ?? '', /exec\(\)/);
  });

  test('syntax errors, top-level await, and comment-only changes', async () => {
    const [broken, awaiting, commented, changed] = (await analyze(
      ['def broken(:\n    pass', 'await asyncio.sleep(0)\nfinished = True', 'total = a + b  # the sum\n', 'total = a - b'],
      [null, null, 'total = a + b', 'total = a + b'],
    )) as [CellDeps, CellDeps, CellDeps, CellDeps];
    assert.match(broken.syntaxError ?? '', /invalid syntax \(line 1\)/);
    assert.deepEqual(broken.defines, []);
    assert.equal(awaiting.syntaxError, null, 'IPython runs top-level await, so it parses');
    assert.deepEqual(awaiting.defines, ['finished']);
    assert.equal(commented.sameAsPrevious, true);
    assert.equal(changed.sameAsPrevious, false);
  });

  test('runs out of band: no new user names and no execution count', async () => {
    const names = "print(get_ipython().execution_count, sorted(k for k in get_ipython().user_ns if not k.startswith('_')))";
    const first = textOf(await fixture.run('marker = 1\n' + names, 'deps.ipynb'));
    await analyze(['a = 1', 'import os', 'def f():\n    return 1']);
    const second = textOf(await fixture.run(names, 'deps.ipynb'));
    const [count1, ...rest1] = first.trim().split(' ');
    const [count2, ...rest2] = second.trim().split(' ');
    assert.equal(Number(count2), Number(count1) + 1, 'only our own two runs counted');
    assert.equal(rest2.join(' '), rest1.join(' '));
    assert.match(rest1.join(' '), /'marker'/);
  });
});

// A small notebook: imports, a constant, data, two helpers, two branches, a mutation, a reader of it.
const CORE = [
  'import pandas as pd\nimport numpy as np', // 0
  'THRESH = 2', // 1
  "df = pd.DataFrame({'x': [1, 2, 3, 4], 'g': ['a', 'b', 'a', 'b']})", // 2
  'def clean(d):\n    return d[d.x > THRESH]', // 3
  'def scale(d, k=2):\n    return d.x * k', // 4
  'a = clean(df)\nlen(a)', // 5  branch A
  'a_sum = a.x.sum()', // 6
  'b = scale(df)', // 7  branch B
  'b_max = b.max()', // 8
  "df['y'] = df['x'] * 10", // 9  mutation
  "c = df.groupby('g').y.sum()", // 10
  'squares = [i * i for i in range(4)]\nf = lambda v: v + 1', // 11
];

describe('smart plans', () => {
  let core: CellDeps[];
  before(async () => {
    core = await analyze(CORE);
  });

  test('editing a helper plans the helper and the branch that calls it', () => {
    const plan = planSmart(cellsOf(CORE, { 3: STALE }), core);
    assert.deepEqual(indices(plan), [3, 5, 6]);
    assert.equal(reasonOf(plan, 3), 'source changed since it ran');
    assert.match(reasonOf(plan, 5), /reads clean, which cell 3 defines \(it re-runs\)/);
    assert.match(reasonOf(plan, 6), /reads a, which cell 5 defines/);
    assert.deepEqual(plan.cells[1]!.dependsOn, [{ name: 'clean', cellId: 'c3', index: 3 }]);
  });

  test("a global read inside a helper's body reaches the callers, not the definition", () => {
    const plan = planSmart(cellsOf(CORE, { 1: STALE }), core);
    assert.deepEqual(indices(plan), [1, 5, 6]);
    assert.match(reasonOf(plan, 5), /reads THRESH \(through clean\(\)\), which cell 1 defines/);
  });

  test('a cell nobody depends on is planned alone', () => {
    assert.deepEqual(indices(planSmart(cellsOf(CORE, { 8: STALE }), core)), [8]);
    assert.deepEqual(indices(planSmart(cellsOf(CORE, { 11: STALE }), core)), [11]);
  });

  test('a subscript mutation is a dependency for the later readers of the frame only', () => {
    const plan = planSmart(cellsOf(CORE, { 9: STALE }), core);
    assert.deepEqual(indices(plan), [9, 10]);
    assert.match(reasonOf(plan, 10), /reads df, which cell 9 changes/);
  });

  test('an import change reaches the cells that use the module, and what they feed', () => {
    const plan = planSmart(cellsOf(CORE, { 0: STALE }), core);
    assert.deepEqual(indices(plan), [0, 2, 5, 6, 7, 8, 9, 10]);
    assert.match(reasonOf(plan, 2), /reads pd, which cell 0 defines/);
  });

  test('a fresh cell below a stale definer re-runs; a cell that re-ran after its readers makes them re-run', () => {
    // The helper was edited and re-run with execute_cell: it is fresh, but its callers ran before it.
    const plan = planSmart(cellsOf(CORE, { 3: { ranAt: 100 } }), core);
    assert.deepEqual(indices(plan), [5, 6]);
    assert.match(reasonOf(plan, 5), /reads clean, which cell 3 defines \(it re-ran after this cell\)/);
    assert.deepEqual(indices(planSmart(cellsOf(CORE), core)), [], 'a notebook run top to bottom is in line');
  });

  test('after a restart every cell is planned', () => {
    const all = Object.fromEntries(CORE.map((_source, index) => [index, { state: 'from_old_kernel' as const, ranAt: null }]));
    const plan = planSmart(cellsOf(CORE, all), core);
    assert.deepEqual(indices(plan), CORE.map((_source, index) => index));
    assert.match(reasonOf(plan, 0), /earlier kernel/);
  });

  test('incremental plans the first changed cell and everything below', () => {
    const plan = planIncremental(cellsOf(CORE, { 3: STALE, 9: STALE }));
    assert.deepEqual(
      plan.map((cell) => cell.index),
      [3, 4, 5, 6, 7, 8, 9, 10, 11],
    );
    assert.match(plan[1]!.reason, /below cell 3, the first cell out of date/);
    assert.equal(plan.find((cell) => cell.index === 9)!.reason, 'source changed since it ran');
  });

  test('smart falls back to incremental for another language, and says so', () => {
    const plan = planSync({ strategy: 'smart', language: 'R', cells: cellsOf(CORE, { 9: STALE }), deps: null });
    assert.equal(plan.strategy, 'incremental');
    assert.deepEqual(indices(plan), [9, 10, 11]);
    assert.match(plan.notes.join('\n'), /Python only; this kernel runs R, so the plan is incremental/);
    const unanalysed = planSync({ strategy: 'smart', language: 'python', cells: cellsOf(CORE, { 9: STALE }), deps: null, analysisError: 'timed out' });
    assert.equal(unanalysed.strategy, 'incremental');
    assert.match(unanalysed.notes.join('\n'), /could not analyse the cells \(timed out\)/);
  });
});

describe('semantic holes', () => {
  test('a cell that binds a name again after a re-run cell above overwrote it re-runs, so the later value wins', async () => {
    const sources = ['x = 1', 'x = 2', 'y = x + 1', 'fig = 1\nuse = fig'];
    const deps = await analyze(sources);
    const plan = planSmart(cellsOf(sources, { 0: STALE }), deps);
    assert.deepEqual(indices(plan), [0, 1, 2]);
    assert.match(reasonOf(plan, 1), /defines x again after cell 0, which re-runs and overwrites it; cell 2 below reads x/);
    assert.equal(plan.cells[1]!.kind, 'restores');
  });

  test('a stale cell that deletes a name: the name is rebuilt first, and its readers re-run (and fail, as top to bottom would)', async () => {
    const sources = ['tmp = 5', 'z = tmp * 2\ndel tmp', 'u = z + 1', 'v = tmp'];
    const deps = await analyze(sources);
    const plan = planSmart(cellsOf(sources, { 1: STALE }), deps);
    assert.deepEqual(indices(plan), [0, 1, 2, 3]);
    assert.equal(plan.cells[0]!.kind, 'rebuilds');
    assert.match(reasonOf(plan, 0), /cell 1 below changes tmp from its current value/);
    assert.match(reasonOf(plan, 3), /reads tmp, which cells 0 and 1 define or delete \(they re-run\)/);
  });

  test('in-place method calls: inplace=True and .append rebuild from the creating cell; a displayed .head() changes nothing', async () => {
    const sources = [
      'import pandas as pd',
      "df = pd.DataFrame({'x': [1, 2], 'tmp': [0, 0]})",
      'n_rows = len(df)',
      "df.drop(columns=['tmp'], inplace=True)",
      'cols = list(df.columns)',
      'lst = []',
      'lst.append(1)',
      'total = sum(lst)',
      'df.head()',
      'summary = df.describe()',
    ];
    const deps = await analyze(sources);
    const dropped = planSmart(cellsOf(sources, { 3: STALE }), deps);
    assert.deepEqual(indices(dropped), [1, 2, 3, 4, 8, 9]);
    assert.match(reasonOf(dropped, 1), /cell 3 below changes df from its current value/);
    assert.deepEqual(indices(planSmart(cellsOf(sources, { 6: STALE }), deps)), [5, 6, 7]);
    assert.deepEqual(indices(planSmart(cellsOf(sources, { 8: STALE }), deps)), [8], 'the last expression is displayed, not a mutation');
  });

  test('a read of a name that only a never-run cell below defines keeps notebook order and is reported', async () => {
    const sources = ['print(late)', 'late = 1', 'after = late + 1'];
    const deps = await analyze(sources);
    const plan = planSmart(cellsOf(sources, { 1: NEVER, 2: NEVER }), deps);
    assert.deepEqual(indices(plan), [1, 2]);
    assert.match(plan.notes.join('\n'), /cell 0 reads late before cell 1 below defines it/);
    // The same shape with everything fresh (the definer was moved below its reader): nothing to run, still reported.
    const moved = planSmart(cellsOf(sources), deps);
    assert.deepEqual(indices(moved), []);
    assert.match(moved.notes.join('\n'), /cell 0 reads late before cell 1 below defines it/);
  });

  test('a comment-only change is still a source change, and says so', async () => {
    const sources = ['base = 1  # one', 'more = base + 1'];
    const deps = await analyze(sources, ['base = 1']);
    const plan = planSmart(cellsOf(sources, { 0: STALE }), deps);
    assert.deepEqual(indices(plan), [0, 1]);
    assert.match(reasonOf(plan, 0), /source changed since it ran \(only comments or whitespace differ/);
  });

  test('a function that writes a global: the calling cell defines it', async () => {
    const sources = ['def setup():\n    global cfg\n    cfg = {"n": 3}', 'setup()', "n = cfg['n']"];
    const deps = await analyze(sources);
    assert.deepEqual(indices(planSmart(cellsOf(sources, { 1: STALE }), deps)), [1, 2]);
    const plan = planSmart(cellsOf(sources, { 0: STALE }), deps);
    assert.deepEqual(indices(plan), [0, 1, 2]);
    assert.match(reasonOf(plan, 2), /reads cfg, which cell 1 defines/);
  });

  test('comprehension, lambda and function-local names are not dependencies', async () => {
    const sources = ['squares = [i * i for i in range(3)]\nf = lambda v: v\ndef g(p):\n    loc = p\n    return loc', 'i = 10\nv = 2\nloc = 3', 'print(i, v, loc, p if False else 0)'];
    const deps = await analyze(sources);
    assert.deepEqual(indices(planSmart(cellsOf(sources, { 0: STALE }), deps)), [0]);
  });

  test('magics: %%time body is analysed, !ls and %run are treated as affecting everything they may', async () => {
    const sources = ['%matplotlib inline\nimport math', 'data = [1, 2, 3]', '%%time\nm = sum(data)', '!ls', 'q = m * 2', '%run -i helper_script.py', 'r = 1'];
    const deps = await analyze(sources);
    const dataPlan = planSmart(cellsOf(sources, { 1: STALE }), deps);
    assert.deepEqual(indices(dataPlan), [1, 2, 4, 5, 6]);
    assert.match(reasonOf(dataPlan, 5), /uses %run -i helper_script\.py, which may read any name, and cell 1 above re-runs/);
    assert.match(reasonOf(dataPlan, 6), /cell 5 above re-runs and uses %run -i helper_script\.py, whose effects cannot be analysed/);
    const shellPlan = planSmart(cellsOf(sources, { 3: STALE }), deps);
    assert.deepEqual(indices(shellPlan), [3, 4, 5, 6]);
    assert.match(reasonOf(shellPlan, 4), /cell 3 above re-runs and uses shell command !ls/);
    assert.deepEqual(indices(planSmart(cellsOf(sources, { 0: STALE }), deps)), [0, 5, 6], '%matplotlib alone changes no names');
  });

  test('a syntax error: planned when it changed (the run stops there), left alone when fresh', async () => {
    const sources = ['base = 10', 'def broken(:\n    pass', 'val = base + 1'];
    const deps = await analyze(sources);
    const plan = planSmart(cellsOf(sources, { 1: NEVER }), deps);
    assert.deepEqual(indices(plan), [1]);
    assert.match(reasonOf(plan, 1), /does not parse \(invalid syntax \(line 1\)\), so the run will stop there/);
    assert.match(plan.notes.join('\n'), /cell 1 does not parse/);
    const failedBefore = planSmart(cellsOf(sources, { 0: STALE, 1: { lastStatus: 'failed', lastError: 'SyntaxError: invalid syntax' } }), deps);
    assert.deepEqual(indices(failedBefore), [0, 2]);
  });

  test('a fresh cell whose run failed is retried when a re-running cell needs its names', async () => {
    const sources = ['k = 1', 'res = k / 0', 'out = res + 1'];
    const deps = await analyze(sources);
    const plan = planSmart(cellsOf(sources, { 1: { lastStatus: 'failed', lastError: 'ZeroDivisionError: division by zero' }, 2: NEVER }), deps);
    assert.deepEqual(indices(plan), [1, 2]);
    assert.match(reasonOf(plan, 1), /its last run did not succeed \(ZeroDivisionError: division by zero\), and cell 2, which re-runs, reads res from it/);
  });
});
