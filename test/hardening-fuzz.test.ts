// Property tests: random arguments to every tool and corrupted notebook files always get a clear answer, never a crash,
// and a call that fails never changes a file. Kernels are replaced by a provider that refuses to start them, so
// execution tools run their whole input path in milliseconds (their executions end `lost`).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { loadConfig } from '../src/config.js';
import { LocalKernelProvider } from '../src/kernel/local-provider.js';
import type { KernelProvider } from '../src/kernel/types.js';
import { silentLogger } from '../src/log.js';
import { createMcpServer } from '../src/server/mcp.js';
import { Workspace } from '../src/server/workspace.js';

let dir: string;
let workspace: Workspace;
let client: Client;
let tools: Tool[];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};

const VALID = {
  nbformat: 4,
  nbformat_minor: 5,
  metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' }, language_info: { name: 'python' } },
  cells: [
    { id: 'code-1', cell_type: 'code', source: ['x = 1\n', 'print(x)'], metadata: {}, outputs: [{ output_type: 'stream', name: 'stdout', text: ['1\n'] }], execution_count: 1 },
    { id: 'md-1', cell_type: 'markdown', source: '# Title', metadata: {} },
    { id: 'raw-1', cell_type: 'raw', source: '', metadata: {} },
  ],
};

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  dir = mkdtempSync(join(tmpdir(), 'mcpj-hardening-fuzz-'));
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'a.ipynb'), JSON.stringify(VALID, null, 1));
  writeFileSync(join(dir, 'sub', 'b.ipynb'), JSON.stringify(VALID, null, 1));
  const local = new LocalKernelProvider({ runtimeDir: join(dir, '.mcp-jupyter', 'kernels'), workspace: dir });
  const noKernels: KernelProvider = {
    kind: 'local',
    listSpecs: () => local.listSpecs(),
    start: () => Promise.reject(new Error('kernels are disabled in this test')),
    attach: () => Promise.resolve(null),
  };
  workspace = Workspace.open(loadConfig({ workspace: dir }, {}), silentLogger, noKernels);
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await createMcpServer(workspace).connect(serverSide);
  client = new Client({ name: 'hardening-fuzz', version: '1.0.0' });
  await client.connect(clientSide);
  tools = (await client.listTools()).tools;
});

after(async () => {
  process.off('unhandledRejection', onUnhandled);
  await client.close();
  await workspace.close({ shutdownKernels: true });
  rmSync(dir, { recursive: true, force: true });
});

/** Every file and folder under the workspace (the state directory aside), with a hash of each file's bytes. */
function snapshot(): Map<string, string> {
  const seen = new Map<string, string>();
  const walk = (folder: string): void => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const full = join(folder, entry.name);
      const name = relative(dir, full);
      if (name === '.mcp-jupyter') continue;
      if (entry.isDirectory()) {
        seen.set(name, 'dir');
        walk(full);
      } else {
        seen.set(name, createHash('sha256').update(readFileSync(full)).digest('hex'));
      }
    }
  };
  walk(dir);
  return seen;
}

function textOf(result: CallToolResult): string {
  return result.content.map((item) => (item.type === 'text' ? item.text : '')).join('');
}

/** A call must be answered (quickly) with a success or a tool error carrying text; a protocol error is a failure. */
async function callChecked(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  let result: CallToolResult;
  try {
    result = (await client.callTool({ name, arguments: args }, undefined, { timeout: 15_000 })) as CallToolResult;
  } catch (error) {
    assert.fail(`${name}(${JSON.stringify(args).slice(0, 300)}) was not answered with a result: ${String(error)}`);
  }
  assert.ok(Array.isArray(result.content), `${name} answered without content`);
  if (result.isError) assert.ok(textOf(result).trim().length > 0, `${name} failed without saying why`);
  return result;
}

const oddText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('', ' ', '\u0000', '\u202e', '\u200b', '\ufeff', '𝔘𝔫𝔦', '🧪📓', 'e\u0301', '\ud800', 'a'.repeat(70_000), '../'.repeat(50), '%2e%2e/x.ipynb'),
);

const pathLike = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('a.ipynb', 'sub/b.ipynb', 'new.ipynb') },
  fc.constantFrom(
    'a.ipynb',
    'sub/b.ipynb',
    'new.ipynb',
    'sub/new.ipynb',
    'missing.ipynb',
    '../outside.ipynb',
    '/etc/passwd',
    '．．/x.ipynb',
    'A.IPYNB',
    'sub',
    '.mcp-jupyter/state.db',
    'a.ipynb/x.ipynb',
    '',
  ),
  oddText.map((text) => `${text}.ipynb`),
  oddText,
);

const numberLike = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 3 }) },
  { weight: 2, arbitrary: fc.integer({ min: -3, max: 50 }) },
  { weight: 1, arbitrary: fc.constantFrom(1.5, -0.0, 1e308, -1e308, 2 ** 53, 86_401) },
  { weight: 1, arbitrary: fc.double({ noNaN: true }) },
);

/** A value for a named parameter: usually plausible for its name, sometimes anything at all. */
function valueFor(name: string, schema: Record<string, unknown>): fc.Arbitrary<unknown> {
  const wrong = fc.jsonValue({ maxDepth: 3 });
  let plausible: fc.Arbitrary<unknown>;
  if (name === 'notebook_path' || name === 'asset_path' || name === 'directory') plausible = pathLike;
  else if (name === 'cell_id' || name === 'after_cell_id') plausible = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('code-1', 'md-1', 'raw-1', 'nope') }, { weight: 1, arbitrary: oddText });
  else if (name === 'execution_id') plausible = fc.oneof(fc.constant('00000000-0000-0000-0000-000000000000'), oddText);
  else if (name === 'cell_type') plausible = fc.constantFrom('code', 'markdown', 'raw', 'python', '');
  else if (name === 'cells') plausible = fc.array(fc.record({ cell_type: fc.constantFrom('code', 'markdown', 'raw', 'x'), source: oddText }, { requiredKeys: [] }), { maxLength: 3 });
  else if (name === 'code' || name === 'source' || name === 'value' || name === 'search' || name === 'name') plausible = oddText;
  else if (schema['type'] === 'number' || schema['type'] === 'integer' || /index|offset|length|limit|_s$/.test(name)) plausible = numberLike;
  else if (schema['type'] === 'boolean') plausible = fc.boolean();
  else if (Array.isArray(schema['enum'])) plausible = fc.constantFrom(...(schema['enum'] as unknown[]));
  else plausible = oddText;
  return fc.oneof({ weight: 8, arbitrary: plausible }, { weight: 1, arbitrary: wrong });
}

function argumentsFor(tool: Tool): fc.Arbitrary<Record<string, unknown>> {
  const properties = (tool.inputSchema.properties ?? {}) as Record<string, Record<string, unknown>>;
  const required = new Set(tool.inputSchema.required ?? []);
  // Required parameters are nearly always given (else almost every call stops at the schema); optional ones half the time.
  const shape: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [name, schema] of Object.entries(properties)) {
    const value = valueFor(name, schema);
    shape[name] = required.has(name) ? fc.oneof({ weight: 15, arbitrary: value }, { weight: 1, arbitrary: fc.constant(undefined) }) : fc.option(value, { nil: undefined });
  }
  const guided = fc.record(shape).map((args) => Object.fromEntries(Object.entries(args).filter(([, value]) => value !== undefined)));
  const withExtra = fc.tuple(guided, fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 2 })).map(([known, extra]) => ({ ...extra, ...known }));
  return fc.oneof({ weight: 6, arbitrary: guided }, { weight: 1, arbitrary: withExtra }, { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 4 }), { maxKeys: 4 }) });
}

test('property: random arguments to every tool get a result or a clear tool error, and failed calls change no file', async () => {
  assert.ok(tools.length >= 25, `expected every tool to be listed, got ${tools.length}`);
  const call = fc.oneof(...tools.map((tool) => argumentsFor(tool).map((args) => ({ name: tool.name, args }))));
  const seenErrors = new Set<string>();
  const seenSuccesses = new Set<string>();
  await fc.assert(
    fc.asyncProperty(call, async ({ name, args }) => {
      await workspace.settled();
      const before = snapshot();
      const result = await callChecked(name, args);
      await workspace.settled();
      if (result.isError) {
        seenErrors.add(name);
        assert.deepEqual(snapshot(), before, `${name}(${JSON.stringify(args).slice(0, 300)}) failed (${textOf(result).slice(0, 200)}) but changed files`);
      } else {
        seenSuccesses.add(name);
      }
    }),
    // A fixed seed keeps CI repeatable (the coverage thresholds below depend on what was generated); FUZZ_SEED varies it.
    { numRuns: Number(process.env.FUZZ_RUNS ?? 600), seed: Number(process.env.FUZZ_SEED ?? 20261204) },
  );
  // The run reached both outcomes for most tools (a generator that only ever produced rejected input tests little).
  assert.ok(seenErrors.size >= 20, `tools that failed at least once: ${[...seenErrors].join(', ')}`);
  assert.ok(seenSuccesses.size >= 10, `tools that succeeded at least once: ${[...seenSuccesses].join(', ')}`);
  const status = await callChecked('server_status', {});
  assert.ok(!status.isError, 'the server still answers');
  assert.deepEqual(unhandled, [], 'no promise was left to reject unhandled');
});

/** Ways a notebook file goes wrong in the wild: torn writes, hand edits, wrong types, huge or exotic content. */
const corruptions = fc.oneof(
  fc.nat({ max: 2000 }).map((cut) => JSON.stringify(VALID).slice(0, cut)),
  fc.tuple(fc.nat({ max: 2000 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 4 })).map(([at, junk]) => {
    const text = JSON.stringify(VALID);
    const i = at % text.length;
    return text.slice(0, i) + junk + text.slice(i + 1);
  }),
  fc
    .tuple(
      fc.constantFrom(
        ['cells'],
        ['metadata'],
        ['nbformat'],
        ['nbformat_minor'],
        ['cells', 0],
        ['cells', 0, 'source'],
        ['cells', 0, 'cell_type'],
        ['cells', 0, 'id'],
        ['cells', 0, 'outputs'],
        ['cells', 0, 'outputs', 0],
        ['cells', 0, 'outputs', 0, 'output_type'],
        ['cells', 0, 'outputs', 0, 'text'],
        ['cells', 0, 'execution_count'],
        ['cells', 1, 'source'],
        ['metadata', 'kernelspec'],
        ['metadata', 'kernelspec', 'name'],
      ),
      fc.jsonValue({ maxDepth: 3 }),
    )
    .map(([path, value]) => {
      const copy = structuredClone(VALID) as unknown as Record<string, unknown>;
      let target: Record<string | number, unknown> = copy;
      for (const key of path.slice(0, -1)) target = target[key] as Record<string | number, unknown>;
      target[path[path.length - 1]!] = value;
      return JSON.stringify(copy);
    }),
  fc.constantFrom(...['\ud800', '\udfff\ud800', '\u0000', '\u202e\u2066', '\ufeff', 'e\u0301\u0301\u0301', '𝕏'.repeat(1000)]).map((odd) => {
    const copy = structuredClone(VALID);
    copy.cells[0]!.source = [odd, odd];
    copy.cells[0]!.id = odd.slice(0, 10);
    return JSON.stringify(copy);
  }),
  fc.constantFrom('\ufeff', '\u0000', ' \n\t').map((prefix) => prefix + JSON.stringify(VALID)),
  fc.constantFrom('', 'null', '[]', '"notebook"', '42', '{}', '{"nbformat": 5}', '{"nbformat": 4, "cells": {}}'),
  fc.integer({ min: 1, max: 2_000 }).map((depth) => JSON.stringify({ ...VALID, metadata: { deep: '__DEEP__' } }).replace('"__DEEP__"', '['.repeat(depth) + ']'.repeat(depth))),
);

/** The expensive shapes, once each (a random choice among them would cost seconds per run). */
function heavyNotebooks(): string[] {
  const huge = structuredClone(VALID);
  huge.cells[0]!.source = ['y'.repeat(3_000_000)];
  const deep = (depth: number): string => JSON.stringify({ ...VALID, metadata: { deep: '__DEEP__' } }).replace('"__DEEP__"', '['.repeat(depth) + ']'.repeat(depth));
  return [
    JSON.stringify(huge),
    deep(100_000),
    `{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}]}`,
    JSON.stringify({ ...VALID, cells: Array.from({ length: 5_000 }, (_, i) => ({ id: `c${i}`, cell_type: 'markdown', source: `cell ${i}`, metadata: {} })) }),
    JSON.stringify(VALID).slice(0, -1) + ' '.repeat(1_000_000),
  ];
}

test('property: a corrupted notebook file gives a clear error or a valid outline, and its bytes never change', async () => {
  let errors = 0;
  let outlines = 0;
  const check = async (content: string): Promise<void> => {
    const file = join(dir, 'corrupt.ipynb');
    writeFileSync(file, content);
    const bytes = readFileSync(file);
    for (const [name, args] of [
      ['read_notebook', { notebook_path: 'corrupt.ipynb', include_outputs: true }],
      ['read_cell', { notebook_path: 'corrupt.ipynb', index: 0 }],
      ['list_notebooks', {}],
    ] as const) {
      const result = await callChecked(name, args);
      if (name === 'read_notebook') {
        if (result.isError) {
          errors += 1;
          assert.match(textOf(result), /corrupt\.ipynb|notebook|JSON|cell|nbformat/i, `unclear error: ${textOf(result).slice(0, 300)}`);
          assert.doesNotMatch(textOf(result), /Maximum call stack|Cannot read properties|is not a function|undefined is not/, 'an internal error leaked');
        } else {
          outlines += 1;
          assert.ok(Array.isArray((result.structuredContent as { cells?: unknown }).cells), 'a success is a valid outline with cells');
        }
      }
    }
    await workspace.settled();
    assert.deepEqual(readFileSync(file), bytes, 'reading never changes the file');
    // Writes: one that fails leaves the file as it was (after a success the file has legitimately changed).
    for (const [name, args] of [
      ['edit_cell', { notebook_path: 'corrupt.ipynb', index: 0, source: 'z = 1' }],
      ['clear_outputs', { notebook_path: 'corrupt.ipynb' }],
    ] as const) {
      const result = await callChecked(name, args);
      await workspace.settled();
      if (!result.isError) break;
      assert.deepEqual(readFileSync(file), bytes, `${name} failed (${textOf(result).slice(0, 200)}) but changed the file`);
    }
  };
  for (const content of heavyNotebooks()) await check(content);
  await fc.assert(fc.asyncProperty(corruptions, check), { numRuns: Number(process.env.FUZZ_RUNS ?? 250), seed: Number(process.env.FUZZ_SEED ?? 20261204) });
  assert.ok(errors > 0 && outlines > 0, `both outcomes seen (errors ${errors}, outlines ${outlines})`);
  assert.ok(!(await callChecked('server_status', {})).isError);
  assert.deepEqual(unhandled, []);
});
