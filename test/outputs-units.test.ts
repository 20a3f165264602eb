// Edge cases of the output conversion pieces: ANSI stripping, HTML tables, image fitting, the text budget.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { stripAnsi } from '../src/notebook/ansi.js';
import { htmlTableShape, htmlTableToText, htmlToText } from '../src/notebook/html-table.js';
import { downscaleImage, imageSize } from '../src/notebook/images.js';
import { renderOutputs, summarizeOutputs, type McpContent, type NotebookOutput, type SaveAsset } from '../src/notebook/outputs.js';

// ---- stripAnsi

test('stripAnsi removes colours, cursor moves, hyperlinks, titles and 8-bit CSI, and nothing else', () => {
  assert.equal(stripAnsi('\x1b[31mred\x1b[39m and \x1b[1;4mbold\x1b[0m'), 'red and bold');
  assert.equal(stripAnsi('\x1b[38;2;255;0;0mtrue\x1b[38;5;208mcolour\x1b[m'), 'truecolour');
  assert.equal(stripAnsi('50%\x1b[2K\x1b[1G100%\x1b[?25h'), '50%100%');
  assert.equal(stripAnsi('see \x1b]8;;https://example.com\x1b\\the docs\x1b]8;;\x1b\\ now'), 'see the docs now');
  assert.equal(stripAnsi('\x1b]0;window title\x07text'), 'text');
  assert.equal(stripAnsi('\x9b32mgreen\x9b0m'), 'green');
  assert.equal(stripAnsi('\x1b(Bcharset \x1b7saved\x1b8'), 'charset saved');
  assert.equal(stripAnsi('cut at the end \x1b[3'), 'cut at the end ');
  assert.equal(stripAnsi('unterminated \x1b]8;;http://x\nnext line'), 'unterminated \nnext line');
  assert.equal(stripAnsi('lone \x1b\nescape'), 'lone \nescape');
  const plain = 'plain [31m text, ünïcödé ✓ 🎉, tabs\tand\r\nlines';
  assert.equal(stripAnsi(plain), plain);
});

test('stripAnsi never leaves an ESC behind and leaves escape-free text unchanged', () => {
  const pieces = fc.oneof(
    fc.string(),
    fc.constantFrom('\x1b[', '\x1b]', '\x1b', '\x07', '\x1b\\', 'm', ';', '31', '\x9b', '\x9d', '[', '\n'),
  );
  fc.assert(
    fc.property(fc.array(pieces, { maxLength: 20 }), (parts) => {
      const out = stripAnsi(parts.join(''));
      assert.ok(!out.includes('\x1b'), JSON.stringify(out));
    }),
  );
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme' }), (s) => {
      fc.pre(!/[\x1b\x9b\x9d]/.test(s));
      assert.equal(stripAnsi(s), s);
    }),
  );
});

// ---- htmlTableToText

// Real pandas HTML: columns with two levels, an index with two named levels.
const MULTI_INDEX_HTML =
  '<div>\n<style scoped>\n    .dataframe thead tr th {\n        text-align: left;\n    }\n</style>\n<table border="1" class="dataframe">\n' +
  '  <thead>\n    <tr>\n      <th></th>\n      <th></th>\n      <th colspan="2" halign="left">A</th>\n    </tr>\n' +
  '    <tr>\n      <th></th>\n      <th></th>\n      <th>a</th>\n      <th>b</th>\n    </tr>\n' +
  '    <tr>\n      <th>k1</th>\n      <th>k2</th>\n      <th></th>\n      <th></th>\n    </tr>\n  </thead>\n' +
  '  <tbody>\n    <tr>\n      <th>x</th>\n      <th>1</th>\n      <td>1</td>\n      <td>3</td>\n    </tr>\n' +
  '    <tr>\n      <th>y</th>\n      <th>2</th>\n      <td>2</td>\n      <td>4</td>\n    </tr>\n  </tbody>\n</table>\n</div>';

test('a multi-index header keeps every level, repeating a spanned label over each column it covers', () => {
  assert.equal(
    htmlTableToText(MULTI_INDEX_HTML),
    ['        A  A', '        a  b', 'k1  k2', '--  --  -  -', 'x    1  1  3', 'y    2  2  4'].join('\n'),
  );
  assert.deepEqual(htmlTableShape(MULTI_INDEX_HTML), { rows: 2, columns: 2 });
});

test('a row-spanning index label is repeated on each row it covers', () => {
  const html =
    '<table class="dataframe"><thead><tr><th></th><th></th><th>v</th></tr></thead><tbody>' +
    '<tr><th rowspan="2" valign="top">x</th><th>1</th><td>1</td></tr><tr><th>2</th><td>2</td></tr>' +
    '<tr><th>y</th><th>1</th><td>3</td></tr></tbody></table>';
  assert.equal(htmlTableToText(html), ['      v', '-  -  -', 'x  1  1', 'x  2  2', 'y  1  3'].join('\n'));
});

test('empty tables: no cells at all, or columns but no rows', () => {
  assert.equal(htmlTableToText('<table></table>'), '(empty table)');
  const noRows =
    '<table border="1" class="dataframe">\n  <thead>\n    <tr style="text-align: right;">\n      <th></th>\n      <th>a</th>\n' +
    '      <th>b</th>\n    </tr>\n  </thead>\n  <tbody>\n  </tbody>\n</table>';
  assert.equal(htmlTableToText(noRows), '   a  b\n-  -  -\n(no rows)');
  assert.deepEqual(htmlTableShape(noRows), { rows: 0, columns: 3 });
});

test('HTML that is not a table gives null, and so does a document that merely contains one', () => {
  assert.equal(htmlTableToText('<div><b>bold</b> text</div>'), null);
  assert.equal(htmlTableToText('plain text, no markup'), null);
  assert.equal(htmlTableToText(''), null);
  const article = `<h1>Report</h1><p>${'Long prose. '.repeat(40)}</p><table><tr><td>1</td></tr></table>`;
  assert.equal(htmlTableToText(article), null);
  assert.equal(htmlTableShape('<p>no</p>'), null);
});

test('rows past maxRows and cells past maxColWidth are cut and say so; short text around the table stays', () => {
  const rows = Array.from({ length: 45 }, (_, i) => `<tr><th>${i}</th><td>${'word '.repeat(i % 3 === 0 ? 20 : 1)}</td><td>${i * 1.5}</td></tr>`);
  const html = `<table><thead><tr><th></th><th>text</th><th>value</th></tr></thead><tbody>${rows.join('')}</tbody></table><p>45 rows × 2 columns</p>`;
  const text = htmlTableToText(html, { maxRows: 10, maxColWidth: 12 });
  assert.ok(text);
  const lines = text.split('\n');
  assert.equal(lines.length, 2 + 10 + 2);
  // The value column is as wide as its header "value" and right-aligned (all numbers).
  assert.equal(lines[0], '   text          value');
  assert.equal(lines[2], '0  word word w…      0');
  assert.equal(lines[3], '1  word            1.5');
  assert.equal(lines[12], '… 35 more rows (45 in all)');
  assert.equal(lines[13], '45 rows × 2 columns');
  assert.deepEqual(htmlTableShape(html), { rows: 45, columns: 2 });
});

test('a pandas Styler table (no thead class, &nbsp; corner, style block) reads like a data frame', () => {
  const html =
    '<style type="text/css">\n#T_0d34f_row0_col1 {\n  background-color: yellow;\n}\n</style>\n<table id="T_0d34f">\n  <thead>\n    <tr>\n' +
    '      <th class="blank level0" >&nbsp;</th>\n      <th class="col_heading level0 col0" >name</th>\n      <th class="col_heading level0 col1" >score</th>\n' +
    '    </tr>\n  </thead>\n  <tbody>\n    <tr>\n      <th class="row_heading level0 row0" >0</th>\n      <td class="data row0 col0" >Ann</td>\n' +
    '      <td class="data row0 col1" >1.500000</td>\n    </tr>\n    <tr>\n      <th class="row_heading level0 row1" >1</th>\n' +
    '      <td class="data row1 col0" >Bob</td>\n      <td class="data row1 col1" >nan</td>\n    </tr>\n  </tbody>\n</table>\n';
  assert.equal(htmlTableToText(html), ['   name     score', '-  ----  --------', '0  Ann   1.500000', '1  Bob        nan'].join('\n'));
});

test('cells decode entities, turn <br> into spaces, and flatten a nested table', () => {
  const html = '<table><tr><th>k</th><th>v</th></tr><tr><td>a &amp; b&#33; &lt;x&gt;</td><td>one<br>two</td></tr>' +
    '<tr><td>nested</td><td><table><tr><td>i</td><td>j</td></tr></table></td></tr></table>';
  assert.equal(htmlTableToText(html), ['k           v', '----------  -------', 'a & b! <x>  one two', 'nested      i j'].join('\n'));
});

test('htmlToText keeps structure: headings, list items, links, <pre> whitespace; drops scripts', () => {
  const html =
    '<script>alert("x < y")</script><h3>Title</h3><p>Some   <i>spaced</i>\n text</p><ul><li>first</li><li>second</li></ul>' +
    '<p>See <a href="https://example.com/docs">the docs</a>.</p><pre>  indented\n\n    code</pre><table><tr><th>a</th></tr><tr><td>1</td></tr></table>';
  assert.equal(
    htmlToText(html),
    ['### Title', 'Some spaced text', '- first', '- second', 'See the docs (https://example.com/docs).', '  indented', '', '    code', 'a', '-', '1'].join('\n'),
  );
});

// ---- images

function noisePng(width: number, height: number, transparentLeft = false): { bytes: Buffer; png: PNG } {
  const png = new PNG({ width, height });
  let seed = 12345;
  for (let i = 0; i < png.data.length; i += 4) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const x = (i / 4) % width;
    png.data[i] = seed & 0xff;
    png.data[i + 1] = (seed >> 8) & 0xff;
    png.data[i + 2] = (seed >> 16) & 0xff;
    png.data[i + 3] = transparentLeft && x < width / 2 ? 0 : 255;
  }
  return { bytes: PNG.sync.write(png), png };
}

function decodeAny(data: Buffer, mime: string): { width: number; height: number; data: Uint8Array } {
  return mime === 'image/png' ? PNG.sync.read(data) : jpeg.decode(data, { useTArray: true });
}

function meanRgb(pixels: Uint8Array, x0 = 0, x1 = Infinity, width = Infinity): number[] {
  const sum = [0, 0, 0];
  let n = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const x = (i / 4) % width;
    if (x < x0 || x >= x1) continue;
    for (let c = 0; c < 3; c++) sum[c]! += pixels[i + c]!;
    n++;
  }
  return sum.map((s) => s / n);
}

test('imageSize reads PNG and JPEG headers and refuses other bytes', () => {
  assert.deepEqual(imageSize(noisePng(37, 21).bytes, 'image/png'), { width: 37, height: 21 });
  const jpg = jpeg.encode({ width: 50, height: 30, data: new Uint8Array(50 * 30 * 4).fill(128) }, 80).data;
  assert.deepEqual(imageSize(jpg, 'image/jpeg'), { width: 50, height: 30 });
  assert.equal(imageSize(Buffer.from('not an image at all, really'), 'image/png'), null);
  assert.equal(imageSize(jpg, 'image/png'), null);
  assert.equal(imageSize(jpg, 'image/gif'), null);
});

test('downscaleImage returns a fitting image untouched, and shrinks a big one under the limit keeping its look', () => {
  const { bytes, png } = noisePng(600, 400);
  const same = downscaleImage(bytes, 'image/png', bytes.length);
  assert.ok(same && !same.downscaled && same.data === bytes);

  const limit = 60_000;
  const fitted = downscaleImage(bytes, 'image/png', limit);
  assert.ok(fitted && fitted.downscaled);
  assert.ok(fitted.data.length <= limit, `${fitted.data.length} bytes`);
  assert.deepEqual([fitted.originalWidth, fitted.originalHeight], [600, 400]);
  const decoded = decodeAny(fitted.data, fitted.mime);
  assert.deepEqual([decoded.width, decoded.height], [fitted.width, fitted.height]);
  assert.ok(Math.abs(fitted.width / fitted.height - 1.5) < 0.02);
  // Area averaging keeps the mean colour (noise averages out, it does not shift).
  const before = meanRgb(png.data);
  const after = meanRgb(decoded.data);
  before.forEach((v, c) => assert.ok(Math.abs(v - after[c]!) < 4, `channel ${c}: ${v} vs ${after[c]}`));
});

test('a transparent PNG that must become JPEG is composited over white, not black', () => {
  const { bytes } = noisePng(400, 300, true);
  const fitted = downscaleImage(bytes, 'image/png', 20_000);
  assert.ok(fitted && fitted.data.length <= 20_000);
  const decoded = decodeAny(fitted.data, fitted.mime);
  const leftQuarter = meanRgb(decoded.data, 0, Math.floor(decoded.width / 4), decoded.width);
  if (fitted.mime === 'image/jpeg') leftQuarter.forEach((v) => assert.ok(v > 245, `left side is ${leftQuarter}`));
  else {
    for (let i = 3; i < decoded.data.length; i += 4) if (((i - 3) / 4) % decoded.width < decoded.width / 4) assert.equal(decoded.data[i], 0);
  }
});

test('a JPEG input comes back as a smaller JPEG; an impossible budget gives null; garbage throws a clear error', () => {
  const { png } = noisePng(300, 200);
  const jpg = jpeg.encode({ width: 300, height: 200, data: png.data }, 95).data;
  const fitted = downscaleImage(jpg, 'image/jpeg', Math.floor(jpg.length / 3));
  assert.ok(fitted && fitted.mime === 'image/jpeg' && fitted.data.length <= jpg.length / 3);
  assert.ok(fitted.width < 300);
  assert.equal(downscaleImage(jpg, 'image/jpeg', 50), null);
  assert.throws(() => downscaleImage(Buffer.from('garbage'.repeat(100)), 'image/png', 10), /not a valid image\/png file/);
  assert.throws(() => downscaleImage(jpg, 'image/gif', 10), /only image\/png and image\/jpeg/);
});

// ---- renderOutputs: budget and representations

function memoryAssets(): { saveAsset: SaveAsset; files: Map<string, Buffer | string> } {
  const files = new Map<string, Buffer | string>();
  return {
    files,
    saveAsset: async (data, kind, ext) => {
      const path = `nb.assets/${kind}-${files.size + 1}.${ext}`;
      files.set(path, data);
      return path;
    },
  };
}

function textOf(content: McpContent[]): string {
  return content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

function textLength(content: McpContent[]): number {
  return content.reduce((n, c) => n + (c.type === 'text' ? c.text.length : 0), 0);
}

const SMALL_PNG = noisePng(8, 8).bytes.toString('base64');

const outputArb: fc.Arbitrary<NotebookOutput> = fc.oneof(
  fc.record({
    output_type: fc.constant('stream' as const),
    name: fc.constantFrom('stdout' as const, 'stderr' as const),
    text: fc.oneof(fc.string({ maxLength: 3000 }), fc.array(fc.string({ maxLength: 300 }), { maxLength: 20 })),
  }),
  fc.record({
    output_type: fc.constant('error' as const),
    ename: fc.constantFrom('ValueError', 'KeyError'),
    evalue: fc.string({ maxLength: 100 }),
    traceback: fc.array(fc.string({ maxLength: 400 }).map((s) => `\x1b[31m${s}\x1b[0m`), { maxLength: 8 }),
  }),
  fc.record({
    output_type: fc.constantFrom('execute_result' as const, 'display_data' as const),
    data: fc.record({ 'text/plain': fc.string({ maxLength: 2000 }) }),
    metadata: fc.constant({}),
  }),
  fc.constant<NotebookOutput>({ output_type: 'display_data', data: { 'image/png': SMALL_PNG, 'text/plain': '<Figure>' }, metadata: {} }),
);

test('whatever the outputs and budget, the text fits; when cut, the asset equals the uncut text', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(outputArb, { maxLength: 12 }), fc.integer({ min: 0, max: 6000 }), async (outputs, budget) => {
      const unlimited = await renderOutputs(outputs, { saveAsset: memoryAssets().saveAsset, maxOutputChars: 10_000_000 });
      const { saveAsset, files } = memoryAssets();
      const r = await renderOutputs(outputs, { saveAsset, maxOutputChars: budget });
      assert.ok(textLength(r.content) <= budget, `${textLength(r.content)} > ${budget}`);
      const images = outputs.filter((o) => o.output_type === 'display_data' && 'image/png' in o.data).length;
      assert.equal(r.content.filter((c) => c.type === 'image').length, images, 'the text budget never drops an image');
      const full = textOf(unlimited.content);
      // With images, the text asset holds only the cuttable text (image notes are kept in the result instead).
      if (images > 0) return;
      if (full.length <= budget) {
        assert.deepEqual(r.content, unlimited.content);
        assert.equal(r.truncated, false);
        assert.equal(files.size, 0);
      } else {
        assert.equal(r.truncated, true);
        assert.deepEqual([...files.values()], [full]);
        if (budget >= 1000) {
          const text = textOf(r.content);
          const at = text.indexOf('\n[… ');
          const head = at >= 0 ? text.slice(0, at) : '';
          assert.ok(full.startsWith(head), 'the kept head is the start of the text');
          assert.match(text, /read_asset\(asset_path="nb\.assets\/text-1\.txt", offset=\d+, length=\d+\)/);
        }
      }
    }),
    { numRuns: 150 },
  );
});

test('a failing asset store does not fail the render: the text still fits and says what happened', async () => {
  const saveAsset: SaveAsset = async () => {
    throw new Error('disk full');
  };
  const r = await renderOutputs([{ output_type: 'stream', name: 'stdout', text: 'y'.repeat(50_000) }], { saveAsset, maxOutputChars: 2000 });
  assert.ok(textLength(r.content) <= 2000);
  assert.match(textOf(r.content), /could not be saved as an asset \(disk full\)/);
  assert.deepEqual(r.assets, []);
});

test('SVG is shown as text only when there is nothing else, and is saved as an image asset', async () => {
  const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>';
  const { saveAsset, files } = memoryAssets();
  const r = await renderOutputs([{ output_type: 'display_data', data: { 'image/svg+xml': svg, 'text/plain': '<Figure size 640x480 with 1 Axes>' }, metadata: {} }], { saveAsset });
  assert.deepEqual([...files.entries()], [['nb.assets/image-1.svg', svg]]);
  assert.equal(textOf(r.content), `[image/svg+xml; it is saved as asset "nb.assets/image-1.svg"]\n${svg}`);
  assert.equal(r.summary, 'image/svg+xml');
  const withPlain = await renderOutputs([{ output_type: 'execute_result', data: { 'image/svg+xml': svg, 'text/plain': 'Drawing(10x10)' }, metadata: {} }], { saveAsset });
  assert.equal(textOf(withPlain.content), 'Drawing(10x10)');
});

test('an HTML-only display with a placeholder text/plain shows the HTML as text; a real text/plain wins over plain HTML', async () => {
  const { saveAsset } = memoryAssets();
  const htmlOnly = await renderOutputs(
    [{ output_type: 'display_data', data: { 'text/html': '<p>Hello <b>there</b></p>', 'text/plain': '<IPython.core.display.HTML object>' }, metadata: {} }],
    { saveAsset },
  );
  assert.equal(textOf(htmlOnly.content), 'Hello there');
  const both = await renderOutputs(
    [{ output_type: 'execute_result', data: { 'text/html': '<p>rich</p>', 'text/plain': ['Point(', 'x=1)'] }, metadata: {}, execution_count: 3 }],
    { saveAsset },
  );
  assert.equal(textOf(both.content), 'Point(x=1)');
  assert.equal(both.summary, 'result: Point(x=1)');
});

test('the summary is one line of at most 200 characters however many outputs there are', () => {
  const many: NotebookOutput[] = Array.from({ length: 60 }, (_, i) => ({ output_type: 'error', ename: `Error${i}`, evalue: 'x'.repeat(i), traceback: [] }));
  const summary = summarizeOutputs(many);
  assert.ok(summary.length <= 200, `${summary.length}`);
  assert.match(summary, /^error Error0; error Error1: x; .*… \(\+\d+ more\)$/);
  assert.equal(summarizeOutputs([]), 'no output');
  const long = summarizeOutputs([{ output_type: 'error', ename: 'E'.repeat(500), evalue: '', traceback: [] }]);
  assert.ok(long.length <= 200 && long.endsWith('…'));
});
