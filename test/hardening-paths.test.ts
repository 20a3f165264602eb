// Path confinement against hard links, `..` in its look-alike and encoded forms, case tricks and control characters.
import assert from 'node:assert/strict';
import { linkSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { PathError, resolveNotebookPath } from '../src/notebook/paths.js';
import { createMcpServer } from '../src/server/mcp.js';
import { Workspace } from '../src/server/workspace.js';

let base: string;
let root: string;
let outside: string;
let workspace: Workspace;
let client: Client;

const NOTEBOOK = JSON.stringify({
  nbformat: 4,
  nbformat_minor: 5,
  metadata: {},
  cells: [{ id: 'c1', cell_type: 'code', source: 'secret = "outside"', metadata: {}, outputs: [], execution_count: null }],
});

before(async () => {
  base = realpathSync(mkdtempSync(join(tmpdir(), 'mcpj-hardening-paths-')));
  root = join(base, 'ws');
  outside = join(base, 'outside');
  mkdirSync(root);
  mkdirSync(outside);
  writeFileSync(join(outside, 'private.ipynb'), NOTEBOOK);
  linkSync(join(outside, 'private.ipynb'), join(root, 'linked.ipynb'));
  writeFileSync(join(outside, 'escape.ipynb'), NOTEBOOK);
  symlinkSync(outside, join(root, 'door'));
  mkdirSync(join(root, '%2e%2e'));
  workspace = Workspace.open(loadConfig({ workspace: root }, {}), silentLogger);
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await createMcpServer(workspace).connect(serverSide);
  client = new Client({ name: 'hardening-paths', version: '1.0.0' });
  await client.connect(clientSide);
});

after(async () => {
  await client.close();
  await workspace.close({ shutdownKernels: true });
  rmSync(base, { recursive: true, force: true });
});

async function call(name: string, args: Record<string, unknown>): Promise<{ isError: boolean; text: string }> {
  const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
  return { isError: result.isError === true, text: result.content.map((item) => (item.type === 'text' ? item.text : '')).join('') };
}

async function refusedPath(userPath: string, pattern: RegExp): Promise<void> {
  await assert.rejects(resolveNotebookPath(root, userPath), (error: unknown) => {
    assert.ok(error instanceof PathError, `expected a PathError for ${JSON.stringify(userPath)}, got ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  });
}

test('`..` in look-alike Unicode forms is refused; encoded forms are literal names that stay inside', async () => {
  await refusedPath('．．/outside/private.ipynb', /"．．" is a Unicode look-alike of "\.\."/);
  await refusedPath('sub/‥/x.ipynb', /look-alike of "\.\."/);
  await refusedPath('﹒﹒/x.ipynb', /look-alike/);
  await refusedPath('a／..／..／x.ipynb', /look-alike of "a\/\.\.\/\.\.\/x\.ipynb"/);
  // Percent-encoding is never decoded: this is the folder named "%2e%2e" inside the workspace.
  const encoded = await resolveNotebookPath(root, '%2e%2e/%2e%2e/x.ipynb');
  assert.equal(encoded.real, join(root, '%2e%2e', '%2e%2e', 'x.ipynb'));
  const backslashes = await resolveNotebookPath(root, '..\\..\\x.ipynb');
  assert.equal(backslashes.relative, '..\\..\\x.ipynb', 'a backslash is a character of the name on POSIX, not a separator');
  assert.ok(backslashes.real.startsWith(root + '/'));
  await refusedPath('a/../../outside/private.ipynb', /leaves the workspace/);
  await refusedPath('door/escape.ipynb', /symlink that points outside/);
});

test('case and control-character tricks get a clear refusal', async () => {
  await refusedPath('Report.IPYNB', /extension "\.IPYNB".*lower-case "\.ipynb".*"Report\.ipynb"/);
  await refusedPath('x.Ipynb', /lower-case/);
  await refusedPath('evil\n.ipynb', /control character \(U\+000A\)/);
  await refusedPath('bell\u0007.ipynb', /control character \(U\+0007\)/);
  const odd = await resolveNotebookPath(root, 'naïve Ünïcödé 📓.ipynb');
  assert.equal(odd.relative, 'naïve Ünïcödé 📓.ipynb', 'ordinary non-ASCII names are fine');
});

test('a hard link to an outside file: readable as a workspace file, and writes never reach the outside file', async () => {
  const outsideBytes = readFileSync(join(outside, 'private.ipynb'));
  assert.equal(statSync(join(root, 'linked.ipynb')).nlink, 2);
  const read = await call('read_notebook', { notebook_path: 'linked.ipynb' });
  assert.ok(!read.isError, read.text);
  const edited = await call('edit_cell', { notebook_path: 'linked.ipynb', cell_id: 'c1', source: 'secret = "changed inside"' });
  assert.ok(!edited.isError, edited.text);
  // The save replaced the name inside the workspace (new file, rename), so the other name kept its bytes.
  assert.deepEqual(readFileSync(join(outside, 'private.ipynb')), outsideBytes);
  assert.equal(statSync(join(outside, 'private.ipynb')).nlink, 1, 'the link was replaced, not written through');
  assert.match(readFileSync(join(root, 'linked.ipynb'), 'utf8'), /changed inside/);
});

test('over MCP, refused paths are tool errors and no file changes', async () => {
  const before = readFileSync(join(outside, 'escape.ipynb'));
  for (const [path, pattern] of [
    ['．．/outside/escape.ipynb', /look-alike/],
    ['door/escape.ipynb', /outside/],
    ['ESCAPE.IPYNB', /lower-case/],
  ] as const) {
    const result = await call('edit_cell', { notebook_path: path, index: 0, source: 'pwned = True' });
    assert.ok(result.isError, path);
    assert.match(result.text, pattern);
  }
  assert.deepEqual(readFileSync(join(outside, 'escape.ipynb')), before);
});
