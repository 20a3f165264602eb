// Outputs made by a real ipykernel (a notebook run with nbconvert --execute) rendered as an agent reads them.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { imageSize } from '../src/notebook/images.js';
import { renderOutputs, type McpContent, type NotebookOutput, type SaveAsset } from '../src/notebook/outputs.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const jupyter = join(repoRoot, '.venv', 'bin', 'jupyter');

// One cell per situation; the tests below pick their cell by name.
const CELLS: Record<string, string> = {
  streams: "import sys\nprint('hello')\nprint('world')\nprint('three')\nprint('careful', file=sys.stderr)",
  frame:
    'import numpy as np, pandas as pd\n' +
    "df = pd.DataFrame(np.arange(400).reshape(50, 8), columns=[f'col_{i}' for i in range(8)])\ndf",
  error: 'def f(x):\n    return 1 / x\n\nf(0)',
  small_plot:
    "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\nimport matplotlib.pyplot as plt\n" +
    "plt.plot([1, 2, 3], [4, 1, 9])\nplt.title('small')\nplt.show()",
  big_plot:
    'rng = np.random.default_rng(0)\nfig = plt.figure(figsize=(16, 12), dpi=300)\nx = np.linspace(0, 20, 4000)\n' +
    "for k in range(12):\n    plt.plot(x, np.sin(x * (k + 1) / 5) + k * 0.5, label=f'series {k}')\n" +
    "plt.scatter(rng.uniform(0, 20, 3000), rng.uniform(-1, 7, 3000), s=4, c=rng.uniform(size=3000))\n" +
    "plt.legend()\nplt.title('big figure')\nplt.show()",
  long_text: "print('\\n'.join(f'line {i:05d} ' + 'x' * 89 for i in range(1000)))",
  progress: "for i in range(5):\n    print(f'\\rprogress {i * 25:3d}%', end='', flush=True)\nprint()\nprint('done')",
  rich:
    'from IPython.display import HTML, Markdown, JSON, display\n' +
    "display(HTML('<h2>Report</h2><p>All <b>good</b> &amp; done</p><ul><li>one</li><li>two</li></ul>'))\n" +
    "display(Markdown('**bold** text'))\n" +
    "display(JSON({'a': [1, 2, 3], 'b': {'c': 'd'}}))\n" +
    "display({'application/vnd.jupyter.widget-view+json': {'model_id': 'abc123', 'version_major': 2, 'version_minor': 0}," +
    " 'text/plain': 'IntSlider(value=3)'}, raw=True)",
};

let workDir = '';
const outputsByCell = new Map<string, NotebookOutput[]>();

function isOutput(value: unknown): value is NotebookOutput {
  if (value === null || typeof value !== 'object' || !('output_type' in value)) return false;
  return ['stream', 'display_data', 'execute_result', 'error'].includes(String(value.output_type));
}

/** Runs the command in its own process group and kills the whole group if it overruns. */
function run(command: string, args: string[], cwd: string, timeoutMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
      reject(new Error(`${command} took more than ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise();
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code}:\n${stderr}`));
    });
  });
}

before(async () => {
  assert.ok(existsSync(jupyter), `no jupyter at ${jupyter}: run "npm run setup:python" first`);
  workDir = await mkdtemp(join(tmpdir(), 'outputs-real-'));
  const names = Object.keys(CELLS);
  const notebook = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
    cells: names.map((name) => ({ cell_type: 'code', id: name.replace(/_/g, '-'), metadata: {}, execution_count: null, outputs: [], source: CELLS[name] })),
  };
  await writeFile(join(workDir, 'in.ipynb'), JSON.stringify(notebook));
  await run(jupyter, ['nbconvert', '--to', 'notebook', '--execute', '--allow-errors', '--output', 'out.ipynb', 'in.ipynb'], workDir, 90_000);
  const executed: unknown = JSON.parse(await readFile(join(workDir, 'out.ipynb'), 'utf8'));
  assert.ok(executed !== null && typeof executed === 'object' && 'cells' in executed && Array.isArray(executed.cells));
  executed.cells.forEach((cell: unknown, i: number) => {
    assert.ok(cell !== null && typeof cell === 'object' && 'outputs' in cell && Array.isArray(cell.outputs));
    const outputs: unknown[] = cell.outputs;
    assert.ok(outputs.every(isOutput), `cell ${names[i]} has an output of unknown shape`);
    outputsByCell.set(names[i] ?? '', outputs.filter(isOutput));
  });
});

after(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

function outputsOf(name: string): NotebookOutput[] {
  const outputs = outputsByCell.get(name);
  assert.ok(outputs && outputs.length > 0, `cell ${name} produced no outputs`);
  return outputs;
}

/** An asset store on disk like the real one: a folder next to the notebook, paths relative to the workspace. */
function assetStore(): { saveAsset: SaveAsset; saved: Array<{ path: string; kind: string }>; read: (p: string) => Promise<Buffer> } {
  const saved: Array<{ path: string; kind: string }> = [];
  const folder = join(workDir, `assets-${Math.random().toString(36).slice(2, 8)}`);
  const saveAsset: SaveAsset = async (data, kind, ext) => {
    await mkdir(folder, { recursive: true });
    const path = `${folder.slice(workDir.length + 1)}/output-${saved.length + 1}.${ext}`;
    await writeFile(join(workDir, path), data);
    saved.push({ path, kind });
    return path;
  };
  return { saveAsset, saved, read: (p) => readFile(join(workDir, p)) };
}

function allText(content: McpContent[]): string {
  return content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

function textLength(content: McpContent[]): number {
  return content.reduce((n, c) => n + (c.type === 'text' ? c.text.length : 0), 0);
}

function rawImage(outputs: NotebookOutput[]): Buffer {
  for (const o of outputs) {
    if (o.output_type === 'display_data' && typeof o.data['image/png'] === 'string') return Buffer.from(o.data['image/png'], 'base64');
  }
  assert.fail('no image/png output');
}

function decodeImage(content: McpContent): { width: number; height: number; pixels: Uint8Array } {
  assert.equal(content.type, 'image');
  if (content.type !== 'image') throw new Error('unreachable');
  const bytes = Buffer.from(content.data, 'base64');
  if (content.mimeType === 'image/png') {
    const png = PNG.sync.read(bytes);
    return { width: png.width, height: png.height, pixels: png.data };
  }
  assert.equal(content.mimeType, 'image/jpeg');
  const img = jpeg.decode(bytes, { useTArray: true });
  return { width: img.width, height: img.height, pixels: img.data };
}

test('stdout and stderr come back as text, stderr labelled, with a line-count summary', async () => {
  const { saveAsset, saved } = assetStore();
  const r = await renderOutputs(outputsOf('streams'), { saveAsset });
  assert.equal(allText(r.content), 'hello\nworld\nthree\n[stderr]\ncareful');
  assert.equal(r.summary, 'stdout: 3 lines; stderr: 1 line');
  assert.equal(r.truncated, false);
  assert.deepEqual(saved, []);
});

test('a 50 x 8 pandas data frame comes back as an aligned text table with the first rows', async () => {
  const { saveAsset } = assetStore();
  const r = await renderOutputs(outputsOf('frame'), { saveAsset });
  assert.equal(r.content.length, 1);
  const text = allText(r.content);
  assert.doesNotMatch(text, /<t[dhr]|<table|<style/);
  const lines = text.split('\n');
  const header = lines[0] ?? '';
  assert.match(header, /^\s+col_0\s+col_1\s+col_2\s+col_3\s+col_4\s+col_5\s+col_6\s+col_7$/);
  assert.ok(lines.includes(' 0      0      1      2      3      4      5      6      7'), text);
  assert.ok(lines.some((l) => /^29\s+232\s+233\s+234\s+235\s+236\s+237\s+238\s+239$/.test(l)), 'row 29 is the last one shown');
  assert.ok(!lines.some((l) => /^30\s+240\b/.test(l)), 'row 30 is past the 30-row limit');
  assert.ok(lines.includes('… 20 more rows (50 in all)'));
  // Aligned: the header, the rule and every row end at the same column (all columns are right-aligned numbers).
  const tableLines = lines.filter((l) => !l.startsWith('…'));
  assert.equal(tableLines.length, 32);
  assert.ok(tableLines.every((l) => l.length === header.length), `ragged table:\n${text}`);
  assert.equal(r.summary, 'table 50 rows x 8 cols');
});

test('an ANSI-coloured traceback comes back plain, naming the error and the failing line', async () => {
  const outputs = outputsOf('error');
  const raw = outputs.find((o) => o.output_type === 'error');
  assert.ok(raw && raw.output_type === 'error' && raw.traceback.join('').includes('\x1b['), 'the kernel coloured its traceback');
  const { saveAsset } = assetStore();
  const r = await renderOutputs(outputs, { saveAsset });
  const text = allText(r.content);
  assert.doesNotMatch(text, /\x1b|\[\d+(;\d+)*m/);
  assert.ok(text.startsWith('ZeroDivisionError: division by zero\n'), text);
  assert.match(text, /return 1 \/ x/);
  assert.match(text, /f\(0\)/);
  assert.equal(r.summary, 'error ZeroDivisionError: division by zero');
});

test('a normal figure is returned as the original PNG and also saved as an asset', async () => {
  const outputs = outputsOf('small_plot');
  const original = rawImage(outputs);
  const png = PNG.sync.read(original);
  const { saveAsset, saved, read } = assetStore();
  const r = await renderOutputs(outputs, { saveAsset });
  const images = r.content.filter((c) => c.type === 'image');
  assert.equal(images.length, 1);
  assert.equal(images[0]?.type === 'image' && images[0].mimeType, 'image/png');
  assert.equal(images[0]?.type === 'image' && images[0].data, original.toString('base64'));
  assert.deepEqual(saved.map((s) => s.kind), ['image']);
  assert.deepEqual(await read(saved[0]?.path ?? ''), original);
  assert.deepEqual(r.assets, [saved[0]?.path]);
  assert.ok(allText(r.content).includes(`"${saved[0]?.path}"`), 'the text names the asset');
  assert.doesNotMatch(allText(r.content), /<Figure/);
  assert.equal(r.summary, `image/png ${png.width}x${png.height}`);
  assert.equal(r.truncated, false);
});

test('a 300-dpi 16x12 figure is downscaled under the image budget and the original kept as an asset', async () => {
  const outputs = outputsOf('big_plot');
  const original = rawImage(outputs);
  const size = imageSize(original, 'image/png');
  assert.ok(size && size.width > 3000, 'a 300-dpi figure is thousands of pixels wide');
  const budget = 400 * 1024;
  assert.ok(original.toString('base64').length > budget, `the figure is ${original.length} bytes, over the budget`);

  const { saveAsset, saved, read } = assetStore();
  const r = await renderOutputs(outputs, { saveAsset, maxImageBytes: budget });
  const images = r.content.filter((c) => c.type === 'image');
  assert.equal(images.length, 1);
  const image = images[0];
  assert.ok(image?.type === 'image');
  assert.ok(image.data.length <= budget, `image content is ${image.data.length} base64 characters`);

  const text = allText(r.content);
  const m = /downscaled from (\d+)x(\d+) to (\d+)x(\d+)/.exec(text);
  assert.ok(m, text);
  assert.deepEqual([Number(m[1]), Number(m[2])], [size.width, size.height]);
  const decoded = decodeImage(image);
  assert.deepEqual([decoded.width, decoded.height], [Number(m[3]), Number(m[4])]);
  assert.ok(decoded.width < size.width);
  assert.ok(Math.abs(decoded.width / decoded.height - size.width / size.height) < 0.01, 'aspect ratio kept');
  // Still a picture of the plot: white background and dark lines/markers both survive.
  let darkest = 255;
  let lightest = 0;
  for (let i = 0; i < decoded.pixels.length; i += 4) {
    const luma = (decoded.pixels[i]! + decoded.pixels[i + 1]! + decoded.pixels[i + 2]!) / 3;
    darkest = Math.min(darkest, luma);
    lightest = Math.max(lightest, luma);
  }
  assert.ok(darkest < 80 && lightest > 240, `contrast ${darkest}..${lightest}`);

  assert.deepEqual(saved.map((s) => s.kind), ['image']);
  assert.deepEqual(await read(saved[0]?.path ?? ''), original, 'the asset is the full-size original');
  assert.ok(text.includes(`"${saved[0]?.path}"`));
  assert.equal(r.truncated, true);
  assert.equal(r.summary, `image/png ${size.width}x${size.height}`);
});

test('an image that cannot fit even downscaled is replaced by text pointing at its asset', async () => {
  const outputs = outputsOf('big_plot');
  const { saveAsset, saved, read } = assetStore();
  const r = await renderOutputs(outputs, { saveAsset, maxImageBytes: 200 });
  assert.equal(r.content.filter((c) => c.type === 'image').length, 0);
  const text = allText(r.content);
  assert.match(text, /does not fit the 200 bytes image budget even downscaled/);
  assert.ok(text.includes(`"${saved[0]?.path}"`) && text.includes('read_asset'));
  assert.deepEqual(await read(saved[0]?.path ?? ''), rawImage(outputs));
});

test('100k characters of stdout are cut to the budget; the asset holds all of it and the marker says how to read it', async () => {
  const outputs = outputsOf('long_text');
  const raw = outputs.map((o) => (o.output_type === 'stream' ? (Array.isArray(o.text) ? o.text.join('') : o.text) : '')).join('');
  assert.ok(raw.length >= 100_000);
  for (const budget of [20_000, 5_000]) {
    const { saveAsset, saved, read } = assetStore();
    const r = await renderOutputs(outputs, { saveAsset, maxOutputChars: budget });
    assert.ok(textLength(r.content) <= budget, `${textLength(r.content)} > ${budget}`);
    assert.ok(textLength(r.content) > budget * 0.9, 'the budget is used, not wasted');
    assert.equal(r.truncated, true);
    const text = allText(r.content);
    assert.ok(text.startsWith('line 00000 xxx'));
    assert.ok(text.endsWith(`line 00999 ${'x'.repeat(89)}`));

    assert.deepEqual(saved.map((s) => s.kind), ['text']);
    const asset = (await read(saved[0]?.path ?? '')).toString('utf8');
    assert.equal(asset, raw.replace(/\n$/, ''), 'the asset holds the complete text');

    const marker = /\n\[… ([\d,]+) characters cut here \(offsets (\d+)–(\d+) of (\d+)\)\. The complete text is asset "([^"]+)": read the cut part with read_asset\(asset_path="[^"]+", offset=(\d+), length=(\d+)\)[^\n]*search=[^\n]*\]\n/.exec(text);
    assert.ok(marker, text.slice(0, 300));
    const [cutChars, from, to, total, path, offset, length] = marker.slice(1).map((g) => g ?? '');
    assert.ok(cutChars !== undefined && path !== undefined);
    assert.equal(path, saved[0]?.path);
    assert.equal(Number(total), asset.length);
    assert.equal(Number(offset), Number(from));
    assert.equal(Number(length), Number(to) - Number(from));
    assert.equal(Number(cutChars.replace(/,/g, '')), Number(length));
    // Head + the cut slice of the asset + tail is the whole output: nothing is lost or duplicated.
    const head = text.slice(0, marker.index);
    const tail = text.slice(marker.index + marker[0].length);
    assert.equal(head + asset.slice(Number(offset), Number(offset) + Number(length)) + tail, asset);
    assert.ok(Math.abs(head.length / (head.length + tail.length) - 0.6) < 0.05, 'about 60% head, 40% tail');
    assert.equal(r.summary, 'stdout: 1000 lines');
  }
});

test('carriage-return progress output reads as the terminal would show it', async () => {
  const { saveAsset } = assetStore();
  const r = await renderOutputs(outputsOf('progress'), { saveAsset });
  assert.equal(allText(r.content), 'progress 100%\ndone');
});

test('HTML, Markdown, JSON and widget displays each get a readable text form', async () => {
  const { saveAsset, saved } = assetStore();
  const r = await renderOutputs(outputsOf('rich'), { saveAsset });
  assert.equal(r.content.length, 1);
  const lines = allText(r.content).split('\n');
  assert.deepEqual(lines.slice(0, 5), ['## Report', 'All good & done', '- one', '- two', '**bold** text']);
  assert.deepEqual(JSON.parse(lines[5] ?? ''), { a: [1, 2, 3], b: { c: 'd' } });
  assert.match(lines[6] ?? '', /^\[Interactive Jupyter widget \(model abc123\): .*cannot be shown here\.\]$/);
  assert.equal(lines[7], 'IntSlider(value=3)');
  assert.equal(lines.length, 8);
  assert.equal(r.summary, 'html: 4 lines; markdown: **bold** text; json; widget');
  assert.deepEqual(saved, []);
});

test('the summary of a whole notebook stays one bounded line', async () => {
  const everything = [...outputsByCell.values()].flat();
  const { saveAsset } = assetStore();
  const r = await renderOutputs(everything, { saveAsset, maxOutputChars: 20_000 });
  assert.ok(r.summary.length <= 200, r.summary);
  assert.ok(!r.summary.includes('\n'));
  assert.ok(r.summary.startsWith('stdout: 3 lines; stderr: 1 line; table 50 rows x 8 cols; error ZeroDivisionError: division by zero; image/png'), r.summary);
  assert.match(r.summary, /… \(\+\d+ more\)$/);
  assert.ok(textLength(r.content) <= 20_000);
  assert.equal(r.content.filter((c) => c.type === 'image').length, 2, 'images are not cut by the text budget');
});
