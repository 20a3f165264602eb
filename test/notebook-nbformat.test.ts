// Checks nbformat.ts against the real Python nbformat and json modules: byte-identical round trips, validation errors, ids.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import {
  changeCellType,
  InvalidEditError,
  joinText,
  newCell,
  newNotebook,
  NotebookFormatError,
  outputToDiskForm,
  parseJson,
  parseNotebook,
  serializeNotebook,
  setCellSource,
  splitLines,
  stringifyJson,
  type CodeCell,
  type JsonObject,
} from '../src/notebook/nbformat.js';

import { PythonOracle } from './helpers/python-oracle.js';


let python: PythonOracle;
before(() => {
  python = new PythonOracle();
});
after(() => python.close());

/** Python's canonical json.dumps of each text (None where json.loads refuses it). */
async function pythonCanonical(texts: string[], sortKeys = false): Promise<(string | null)[]> {
  const script = `
out = []
for t in json.loads(data):
    try:
        out.append(json.dumps(json.loads(t), indent=1, ensure_ascii=False, separators=(',', ': '), sort_keys=${sortKeys ? 'True' : 'False'}))
    except ValueError:
        out.append(None)
result = json.dumps(out)`;
  return JSON.parse(await python.run(script, JSON.stringify(texts))) as (string | null)[];
}

// A notebook written by Python nbformat with the content that trips naive writers.
const VARIED_NOTEBOOK_SCRIPT = `
from nbformat.v4 import new_notebook, new_code_cell, new_markdown_cell, new_raw_cell, new_output
nb = new_notebook(metadata={
  "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
  "language_info": {"name": "python", "version": "3.11.0", "codemirror_mode": {"name": "ipython", "version": 3}},
  "floats": {"one": 1.0, "tiny": 1e-7, "big": 1e22, "neg_zero": -0.0, "e5": 1e5, "third": 1/3, "huge_int": 12345678901234567890123},
  "int_keys": {"2": "b", "1": "a", "10": "c", "__proto__": {"x": 1}},
  "unicode": "héllo 😀 \\u2028 \\x7f",
})
nb.cells = [
  new_markdown_cell("# Tïtle 😀\\n\\nline\\twith tab \\x1b[31m red \\x00 nul \\x1f", attachments={"a.png": {"image/png": "iVBORw0KGgo=\\n"}}),
  new_code_cell("import numpy as np\\nx = 1.0\\r\\ny = 'a/b'\\u2028z = \\"q\\" \\\\\\\\ end", execution_count=3, metadata={"scrolled": True, "tags": ["a", "b"]}, outputs=[
    new_output("stream", name="stdout", text="hi\\nthere\\n"),
    new_output("stream", name="stderr", text="warn\\r\\n"),
    new_output("execute_result", execution_count=3,
      data={"text/plain": "1.0\\n2", "application/json": {"b": 1.5, "a": [1.0, 2, 1e-7], "2": None, "1": True}, "image/png": "iVBOR\\n"},
      metadata={"image/png": {"width": 640.0, "height": 480}}),
    new_output("display_data", data={"text/html": "<b>x</b>\\n<i>y</i>", "image/svg+xml": "<svg>\\n</svg>", "application/javascript": "a;\\nb;"}),
    new_output("error", ename="ValueError", evalue="bad é", traceback=["\\x1b[0;31mTraceback\\x1b[0m", "line 2"]),
  ]),
  new_code_cell(""),
  new_raw_cell("raw / slash \\"quoted\\" \\\\\\\\ back", metadata={"format": "text/x-rst"}),
]
buf = io.StringIO()
nbformat.write(nb, buf)  # write() adds the final newline a file gets
result = buf.getvalue()
`;

test('a notebook written by Python nbformat round-trips byte for byte', async () => {
  const text = await python.run(VARIED_NOTEBOOK_SCRIPT);
  // The fixture really holds the traps this test is about.
  for (const needle of ['1.0', '1e-07', '1e+22', '-0.0', '100000.0', '"2": "b"', '\\u0000', '\\u001b', '😀']) {
    assert.ok(text.includes(needle), `fixture should contain ${needle}`);
  }
  const parsed = parseNotebook(text, 'varied.ipynb');
  assert.equal(parsed.upgraded, false);
  assert.equal(serializeNotebook(parsed.notebook), text);
  const meta = parsed.notebook.metadata['floats'] as JsonObject;
  assert.equal(meta['one'], 1);
  assert.equal(meta['tiny'], 1e-7);
});

test('changing one cell source changes only that cell lines, and Python reads the result as nbformat writes it', async () => {
  const text = await python.run(VARIED_NOTEBOOK_SCRIPT);
  const { notebook } = parseNotebook(text, 'varied.ipynb');
  const cell = notebook.cells[2]!;
  setCellSource(cell, 'print("new")\nprint(2)');
  const out = serializeNotebook(notebook);
  const a = text.split('\n');
  const b = out.split('\n');
  let first = 0;
  while (a[first] === b[first]) first++;
  let lastA = a.length - 1;
  let lastB = b.length - 1;
  while (a[lastA] === b[lastB]) {
    lastA--;
    lastB--;
  }
  assert.deepEqual(b.slice(first, lastB + 1), ['   "source": [', '    "print(\\"new\\")\\n",', '    "print(2)"', '   ]']);
  assert.deepEqual(a.slice(first, lastA + 1), ['   "source": []']);
  // Setting the same text again keeps the on-disk form.
  const before = serializeNotebook(notebook);
  setCellSource(notebook.cells[1]!, joinText(notebook.cells[1]!.source));
  assert.equal(serializeNotebook(notebook), before);

  const rewritten = await python.run('buf = io.StringIO(); nbformat.write(nbformat.reads(data, 4), buf); result = buf.getvalue()', out);
  assert.equal(rewritten, out);
});

test('new notebooks and cells are exactly what nbformat writes, and validate', async () => {
  const nb = newNotebook({ kernelName: 'python3', displayName: 'Python 3 (ipykernel)', language: 'python' });
  nb.cells.push(newCell('markdown', '# Title\n\nSome *text*.\n', nb), newCell('code', 'x = 1\nx', nb), newCell('raw', '', nb));
  const code = nb.cells[1] as CodeCell;
  code.outputs.push(
    outputToDiskForm({ output_type: 'stream', name: 'stdout', text: 'a\nb\n' }),
    outputToDiskForm({ output_type: 'execute_result', execution_count: 1, data: { 'text/plain': '1\n2', 'image/png': 'AAA=' }, metadata: { w: 0.5 } }),
  );
  code.execution_count = 1;
  const text = serializeNotebook(nb);
  const script = `
nb = nbformat.reads(data, 4)
nbformat.validate(nb)
buf = io.StringIO()
nbformat.write(nb, buf)
result = buf.getvalue()`;
  assert.equal(await python.run(script, text), text);
  assert.equal(nb.nbformat_minor, 5);
  assert.deepEqual(nb.metadata['kernelspec'], { display_name: 'Python 3 (ipykernel)', language: 'python', name: 'python3' });
  const ids = nb.cells.map((c) => c.id);
  assert.equal(new Set(ids).size, 3);
  for (const id of ids) assert.match(id, /^[a-zA-Z0-9-_]{1,64}$/);
});

test('an nbformat 4.4 notebook gets unique ids and minor version 5, and says it was upgraded', async () => {
  const text = await python.run(`
from nbformat.v4 import new_notebook, new_code_cell, new_markdown_cell
nb = new_notebook(cells=[new_code_cell("a"), new_markdown_cell("b"), new_code_cell("c")])
d = json.loads(nbformat.writes(nb))
d["nbformat_minor"] = 4
for c in d["cells"]: del c["id"]
result = json.dumps(d, indent=1, sort_keys=True, ensure_ascii=False) + "\\n"`);
  const parsed = parseNotebook(text, 'old.ipynb');
  assert.equal(parsed.upgraded, true);
  assert.ok(parsed.upgrades.some((u) => u.includes('3 cell(s)')), parsed.upgrades.join('; '));
  assert.equal(parsed.notebook.nbformat_minor, 5);
  const ids = parsed.notebook.cells.map((c) => c.id);
  assert.equal(new Set(ids).size, 3);
  for (const id of ids) assert.match(id, /^[0-9a-f]{8}$/);
  const out = serializeNotebook(parsed.notebook);
  assert.notEqual(out, text);
  // What we would save validates as 4.5 (which requires ids).
  assert.equal(await python.run('nbformat.validate(nbformat.reads(data, 4)); result = "ok"', out), 'ok');
});

test('duplicate and invalid cell ids are replaced, valid ones kept', () => {
  const cell = (id: unknown) => ({ cell_type: 'markdown', id, metadata: {}, source: 'x' });
  const doc = { cells: [cell('same'), cell('same'), cell('bad id!'), cell('ok-1')], metadata: {}, nbformat: 4, nbformat_minor: 5 };
  const parsed = parseNotebook(JSON.stringify(doc), 'dups.ipynb');
  const ids = parsed.notebook.cells.map((c) => c.id);
  assert.equal(ids[0], 'same');
  assert.equal(ids[3], 'ok-1');
  assert.notEqual(ids[1], 'same');
  assert.match(ids[2]!, /^[0-9a-f]{8}$/);
  assert.equal(new Set(ids).size, 4);
  assert.equal(parsed.upgraded, true);
  assert.ok(parsed.upgrades.some((u) => u.includes("'same'") && u.includes("'bad id!'")), parsed.upgrades.join('; '));
});

function formatError(text: string): NotebookFormatError {
  try {
    parseNotebook(text, 'nb.ipynb');
  } catch (e) {
    assert.ok(e instanceof NotebookFormatError, `expected NotebookFormatError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a NotebookFormatError');
}

test('bad documents give errors that say what, where and what to do', () => {
  const garbage = formatError('{\n "cells": [\n  }\n');
  assert.equal(garbage.line, 3);
  assert.equal(garbage.column, 3);
  assert.match(garbage.message, /nb\.ipynb is not valid JSON: .* at line 3, column 3\. The file was not changed/);

  assert.match(formatError('{"cells": [], "metadata": {}, "nbf').message, /truncated/);
  assert.match(formatError('[1, 2]').message, /top level is a list, not a JSON object/);
  assert.match(formatError('{"cells": []}').message, /no "nbformat" field/);

  const v3 = formatError(JSON.stringify({ nbformat: 3, nbformat_minor: 0, metadata: {}, worksheets: [] }));
  assert.match(v3.message, /nbformat 3/);
  assert.match(v3.message, /jupyter nbconvert --to notebook --nbformat 4/);

  assert.match(formatError(JSON.stringify({ nbformat: 5, nbformat_minor: 0, metadata: {}, cells: [] })).message, /major version .* reads nbformat 4/);
  const base = { nbformat: 4, nbformat_minor: 5, metadata: {} };
  assert.match(formatError(JSON.stringify(base)).message, /no "cells" list/);
  assert.match(formatError(JSON.stringify({ ...base, cells: {} })).message, /"cells" is an object, not a list/);
  assert.match(formatError(JSON.stringify({ ...base, cells: [{ source: 'x', metadata: {} }] })).message, /cells\[0\] has no "cell_type"/);
  assert.match(formatError(JSON.stringify({ ...base, cells: [{ cell_type: 'sql', source: 'x' }] })).message, /cells\[0\] has cell_type the string "sql"/);
  assert.match(formatError(JSON.stringify({ ...base, cells: [{ cell_type: 'code', source: 5 }] })).message, /cells\[0\]\.source is number 5/);
  assert.match(
    formatError(JSON.stringify({ ...base, cells: [{ cell_type: 'code', source: '', outputs: [{ output_type: 'weird' }] }] })).message,
    /cells\[0\]\.outputs\[0\] has output_type the string "weird"/,
  );
  assert.match(
    formatError(JSON.stringify({ ...base, cells: [{ cell_type: 'code', source: '', outputs: [{ output_type: 'error', ename: 'E', evalue: '' }] }] }))
      .message,
    /traceback is not a list of strings/,
  );
});

test('missing empty fields are filled in, unknown keys kept', () => {
  const doc = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { custom: { z: 1, a: 2 } },
    cells: [{ cell_type: 'code', id: 'c1', source: 'x', extra_key: true, outputs: [{ output_type: 'display_data', data: { 'text/plain': 'x' } }] }],
  };
  const parsed = parseNotebook(JSON.stringify(doc), 'nb.ipynb');
  assert.equal(parsed.upgraded, true);
  const cell = parsed.notebook.cells[0] as CodeCell & { extra_key?: boolean };
  assert.deepEqual(cell.metadata, {});
  assert.equal(cell.execution_count, null);
  assert.equal(cell.extra_key, true);
  const out = serializeNotebook(parsed.notebook);
  // Unsorted keys keep the file's order; added ones follow it.
  assert.ok(out.indexOf('"z": 1') < out.indexOf('"a": 2'));
});

test('integer-like keys keep their order; keys added to sorted objects stay sorted', () => {
  const v = parseJson('{"b": 1, "2": 2, "1": 3, "a": {"x": 1, "z": 2}}') as JsonObject;
  assert.deepEqual(Object.keys(v), ['1', '2', 'b', 'a']); // what JS does on its own
  (v['a'] as JsonObject)['y'] = 0;
  v['0'] = 'new';
  assert.equal(stringifyJson(v), '{\n "b": 1,\n "2": 2,\n "1": 3,\n "a": {\n  "x": 1,\n  "y": 0,\n  "z": 2\n },\n "0": "new"\n}');
  // Objects we create get Python's sorted order (by code point, not integer order).
  assert.equal(stringifyJson({ '2': 1, '10': 2, b: 3, '\u{1F600}': 4, '\uFF01': 5 }), '{\n "10": 2,\n "2": 1,\n "b": 3,\n "\uFF01": 5,\n "\u{1F600}": 4\n}');
});

test('escaping matches json.dumps(ensure_ascii=False); lone surrogates survive', async () => {
  const s = '\x00\x01\x1f\x7f"\\/\b\f\n\r\t é😀\u2028';
  const [canon] = await pythonCanonical([JSON.stringify(s)]);
  assert.equal(stringifyJson(s), canon);
  assert.equal(stringifyJson(s), '"\\u0000\\u0001\\u001f\x7f\\"\\\\/\\b\\f\\n\\r\\t é😀\u2028"');
  assert.equal(stringifyJson(parseJson('"\\ud800x\\udc00"')), '"\\ud800x\\udc00"');
  assert.equal(parseJson('"\\ud83d\\ude00"'), '😀');
});

test('splitLines matches Python splitlines(True)', async () => {
  const samples = ['', 'a', 'a\n', 'a\nb', 'a\r\nb\rc\n\n', 'x\vy\fz\x1c1\x1d2\x1e3\x854\u20285\u20296', '\n\n', 'tail\r'];
  const expected = JSON.parse(await python.run('result = json.dumps([s.splitlines(True) for s in json.loads(data)])', JSON.stringify(samples))) as string[][];
  assert.deepEqual(
    samples.map((s) => splitLines(s)),
    expected,
  );
  for (const s of samples) assert.equal(joinText(splitLines(s)), s);
});

// ---- property tests against Python's json module ----

/** JSON text with the spellings other writers use: odd number forms, escapes, integer-like and duplicate keys. */
const jsonText: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom('null', 'true', 'false', 'NaN', 'Infinity', '-Infinity'),
    fc.oneof(
      fc.integer().map(String),
      fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => JSON.stringify(x)),
      fc.constantFrom('1.0', '1e5', '1E+2', '-0', '-0.0', '0.0', '1e-7', '1e-07', '2.50', '1.5e300', '1e400', '123456789012345678901234', '0.1', '1e16', '1e+16'),
    ),
    fc
      .tuple(
        fc.string({
          unit: fc.oneof(
            fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
            fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }),
            fc.constantFrom('\u2028', '\x7f', '\x85', '/', '😀', 'é'),
          ),
          maxLength: 12,
        }),
        fc.boolean(),
      )
      // Either ensure_ascii style (every non-ASCII UTF-16 unit as \uXXXX) or raw with escaped slashes.
      .map(([s, ascii]) =>
        ascii
          ? JSON.stringify(s).replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
          : JSON.stringify(s).replace(/\//g, '\\/'),
      ),
    fc.array(tie('value'), { maxLength: 4 }).map((xs) => `[${xs.join(', ')}]`),
    fc
      .array(fc.tuple(fc.oneof(fc.constantFrom('0', '1', '2', '10', '01', 'a', 'b', '__proto__', 'é', ''), fc.string({ maxLength: 3 })), tie('value')), { maxLength: 5 })
      .map((kvs) => `{${kvs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',\n ')}}`),
  ),
})).value;

test('property: text written by Python json.dumps is reproduced byte for byte; other spellings keep their meaning', async () => {
  // Documents are containers (a bare top-level number has nowhere to keep its spelling).
  const texts = fc.sample(jsonText, { numRuns: 400, seed: 4242 }).map((t) => `[${t}]`);
  const canon = await pythonCanonical(texts);
  const ours = texts.map((t) => stringifyJson(parseJson(t)));
  const oursCanon = await pythonCanonical(ours);
  texts.forEach((t, i) => {
    const c = canon[i];
    assert.ok(c !== null && c !== undefined, `python should accept ${t}`);
    assert.equal(stringifyJson(parseJson(c)), c, `python's own output must round-trip: ${c}`);
    assert.equal(oursCanon[i], c, `our rewrite of ${t} must mean the same to Python`);
  });
});

test('property: values built in JS are written in Python sort_keys canonical form', async () => {
  const values = fc.sample(
    fc.jsonValue({ maxDepth: 4, stringUnit: fc.oneof(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }), fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 })) }),
    { numRuns: 300, seed: 7 },
  );
  const ours = values.map((v) => stringifyJson(v));
  const canon = await pythonCanonical(ours, true);
  ours.forEach((s, i) => {
    assert.equal(canon[i], s);
    assert.deepEqual(JSON.parse(s), JSON.parse(JSON.stringify(values[i])));
  });
});

test('changing a cell type follows Jupyter: code gains/loses outputs; attachments are not silently dropped', () => {
  const nb = newNotebook();
  const md = newCell('markdown', 'text', nb);
  changeCellType(md, 'code');
  assert.deepEqual((md as CodeCell).outputs, []);
  assert.equal((md as CodeCell).execution_count, null);
  (md as CodeCell).outputs.push({ output_type: 'stream', name: 'stdout', text: ['x'] });
  md.metadata['mcp_jupyter'] = { execution_id: 'e1' };
  changeCellType(md, 'markdown');
  assert.equal('outputs' in md, false);
  assert.equal('execution_count' in md, false);
  assert.equal(md.metadata['mcp_jupyter'], undefined);
  const withAttachment = newCell('markdown', '![x](attachment:a.png)', nb);
  (withAttachment as { attachments?: JsonObject }).attachments = { 'a.png': { 'image/png': 'AAA=' } };
  assert.throws(() => changeCellType(withAttachment, 'code'), (e: unknown) => e instanceof InvalidEditError && /a\.png/.test(e.message));
});
