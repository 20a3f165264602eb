// Output accumulation as Jupyter front ends do it: stream merging, \r and \b, clear_output, displays, the budget.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OutputModel } from '../src/engine/output-model.js';
import { StreamText, resolveLine } from '../src/engine/stream-text.js';

test('carriage return overwrites the line and backspace deletes, as JupyterLab shows it', () => {
  assert.equal(resolveLine('abc\rX'), 'Xbc');
  assert.equal(resolveLine('10%\r20%\r30%'), '30%');
  assert.equal(resolveLine('abc\b\bZ'), 'aZ');
  assert.equal(resolveLine('done\r'), 'done\r');
  const stream = new StreamText(1_000_000);
  for (let i = 0; i <= 100; i += 1) stream.append(`\rprogress ${String(i).padStart(3)}%`);
  stream.append('\nfinished\n');
  assert.equal(stream.text(), 'progress 100%\nfinished\n');
});

test('\\r\\n is a plain newline and a pending \\r is not shown', () => {
  const stream = new StreamText(1000);
  stream.append('line one\r\nline two\r');
  assert.equal(stream.text(), 'line one\nline two');
  stream.append('LINE\n');
  assert.equal(stream.text(), 'line one\nLINE two\n');
});

test('consecutive streams of one name merge; a different name starts a new output', () => {
  const model = new OutputModel(1_000_000);
  model.apply('stream', { name: 'stdout', text: 'a\n' }, null);
  model.apply('stream', { name: 'stdout', text: 'b\n' }, null);
  model.apply('stream', { name: 'stderr', text: 'oops\n' }, null);
  model.apply('stream', { name: 'stdout', text: 'c\n' }, null);
  assert.deepEqual(
    model.outputs().map((output) => [output.name, output.text]),
    [
      ['stdout', 'a\nb\n'],
      ['stderr', 'oops\n'],
      ['stdout', 'c\n'],
    ],
  );
});

test('clear_output(wait=True) clears only when the next output arrives', () => {
  const model = new OutputModel(1_000_000);
  model.apply('stream', { name: 'stdout', text: 'step 1\n' }, null);
  model.apply('clear_output', { wait: true }, null);
  assert.equal(model.length, 1);
  model.apply('stream', { name: 'stdout', text: 'step 2\n' }, null);
  assert.deepEqual(model.outputs(), [{ output_type: 'stream', name: 'stdout', text: 'step 2\n' }]);
  model.apply('clear_output', { wait: false }, null);
  assert.equal(model.length, 0);
});

test('update_display_data replaces every output that shows the display id', () => {
  const model = new OutputModel(1_000_000);
  model.apply('display_data', { data: { 'text/plain': 'v1' }, metadata: {}, transient: { display_id: 'd' } }, null);
  model.apply('display_data', { data: { 'text/plain': 'other' }, metadata: {} }, null);
  assert.equal(model.updateDisplay('d', { data: { 'text/plain': 'v2' }, metadata: {} }), true);
  assert.equal(model.updateDisplay('missing', { data: {}, metadata: {} }), false);
  assert.deepEqual(
    model.outputs().map((output) => (output.data as Record<string, string>)['text/plain']),
    ['v2', 'other'],
  );
  // The transient display id is ours to know, never written into the notebook output.
  assert.equal('transient' in (model.outputs()[0] ?? {}), false);
});

test('takeChanges reports exactly the changed indexes and the count', () => {
  const model = new OutputModel(1_000_000);
  model.apply('stream', { name: 'stdout', text: 'x' }, null);
  model.apply('execute_result', { data: { 'text/plain': '2' }, metadata: {} }, 3);
  const first = model.takeChanges();
  assert.deepEqual(first.upserts.map(([index]) => index), [0, 1]);
  assert.equal(first.count, 2);
  assert.equal(first.upserts[1]?.[1].execution_count, 3);
  assert.equal(model.hasChanges(), false);
  model.apply('clear_output', {}, null);
  assert.deepEqual(model.takeChanges(), { upserts: [], count: 0 });
});

test('a stream far over the budget keeps its head and tail and counts what was dropped', () => {
  const budget = 100_000;
  const model = new OutputModel(budget);
  let printed = 0;
  for (let i = 0; i < 200_000; i += 1) {
    const line = `line ${i}\n`;
    printed += line.length;
    model.apply('stream', { name: 'stdout', text: line }, null);
  }
  const [output] = model.outputs();
  const text = String(output?.text);
  assert.ok(text.length <= budget, `kept ${text.length} chars, budget ${budget}`);
  assert.ok(text.startsWith('line 0\nline 1\n'));
  assert.ok(text.endsWith('line 199999\n'));
  assert.match(text, /\[\.\.\. \d+ characters dropped to stay within the output budget \.\.\.\]/);
  assert.equal(model.droppedChars, printed - (text.length - text.match(/\n\[\.\.\. .*\.\.\.\]\n/)![0].length));
});

test('many outputs over the budget: first and newest kept, a marker says how many were dropped', () => {
  const model = new OutputModel(50_000);
  for (let i = 0; i < 500; i += 1) {
    model.apply('display_data', { data: { 'text/plain': `display ${i} ${'x'.repeat(500)}` }, metadata: {} }, null);
  }
  const outputs = model.outputs();
  const texts = outputs.map((output) => (output.output_type === 'stream' ? String(output.text) : String((output.data as Record<string, string>)['text/plain']).split(' ').slice(0, 2).join(' ')));
  assert.equal(texts[0], 'display 0');
  assert.equal(texts[texts.length - 1], 'display 499');
  const marker = texts.find((text) => text.includes('outputs dropped'));
  assert.ok(marker, 'a marker output says outputs were dropped');
  assert.ok(JSON.stringify(outputs).length < 60_000);
  assert.equal(Number(/\d+/.exec(marker)![0]) + outputs.length - 1, 500);
});
