// The four asset tools through a real MCP client and server, on a real Workspace, files and notebooks.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { PNG } from 'pngjs';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { AssetStore } from '../src/notebook/assets.js';
import { registerAssetTools } from '../src/server/tools/assets.js';
import { serveTools } from '../src/server/tools/registry.js';
import { Workspace } from '../src/server/workspace.js';

const DAY = 24 * 3600_000;

let root: string;
let workspace: Workspace;
let assets: AssetStore;
let client: Client;
let server: McpServer;
const clock = { now: Date.parse('2031-06-01T12:00:00Z') };

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'assets-tools-'));
  workspace = Workspace.open(loadConfig({ workspace: root, stateDir: join(root, '.mcp-jupyter') }, {}), silentLogger);
  assets = new AssetStore({ workspaceRoot: workspace.config.workspace, db: workspace.db, now: () => clock.now });
  server = new McpServer({ name: 'assets-test', version: '0.0.0' });
  registerAssetTools(server, workspace, assets);
  serveTools(server);
  client = new Client({ name: 'assets-test-client', version: '0.0.0' });
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  await Promise.all([server.connect(serverTransport), client.connect(clientTransport)]);
});

after(async () => {
  await client.close();
  await server.close();
  await workspace.close({ shutdownKernels: true });
  await rm(root, { recursive: true, force: true });
});

async function call(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

function text(res: CallToolResult): string {
  return res.content
    .filter((block): block is { type: 'text'; text: string } => block.type === 'text')
    .map((block) => block.text)
    .join('\n');
}

function ok(res: CallToolResult): Record<string, unknown> {
  assert.notEqual(res.isError, true, text(res));
  assert.ok(res.structuredContent, 'a successful call carries structured content');
  return res.structuredContent;
}

function png(width: number, height: number): Buffer {
  const image = new PNG({ width, height });
  for (let i = 0; i < image.data.length; i++) image.data[i] = (i * 13) & 0xff;
  return PNG.sync.write(image);
}

async function notebook(path: string, markdown: string): Promise<void> {
  await workspace.notebooks.create(path, { cells: [{ cellType: 'markdown', source: markdown }] });
}

test('the asset tools are listed under their API names', async () => {
  const { tools } = await client.listTools();
  const names = tools.map((tool) => tool.name).sort();
  assert.deepEqual(names, ['list_assets', 'prune_unused_assets', 'read_asset', 'renew_asset_leases']);
});

test('list_assets, read_asset, renew_asset_leases and prune_unused_assets work end to end', async () => {
  const long = Array.from({ length: 3000 }, (_, i) => `line ${i + 1}${i === 2499 ? ' NEEDLE here' : ''} ${'-'.repeat(30)}`).join('\n');
  const textAsset = await assets.save('proj/report.ipynb', long, 'txt', 'exec-1');
  const imageAsset = await assets.save('proj/report.ipynb', png(12, 9), 'png');
  const oldAsset = await assets.save('proj/scratch.ipynb', 'stale output', 'txt');
  await notebook('proj/report.ipynb', `![chart](${imageAsset.slice('proj/'.length)})`);
  await writeFile(join(root, 'proj', 'assets', 'user.dat'), 'mine');

  const listed = ok(await call('list_assets', { notebook_path: 'proj/report.ipynb' }));
  assert.equal(listed.asset_count, 4);
  const rows = new Map((listed.assets as Array<Record<string, unknown>>).map((row) => [row.path, row]));
  assert.deepEqual(rows.get(imageAsset)?.referenced_by, ['proj/report.ipynb']);
  assert.equal(rows.get(oldAsset)?.referenced, false);
  assert.equal(rows.get(oldAsset)?.lease_expires_at, new Date(clock.now + DAY).toISOString());
  assert.equal(rows.get('proj/assets/user.dat')?.created_by_server, false);
  const listText = text(await call('list_assets', { notebook_path: 'proj/report.ipynb' }));
  assert.match(listText, new RegExp(`${imageAsset.replace(/\./g, '\\.')} .*referenced by proj/report\\.ipynb`));
  assert.match(listText, /proj\/assets\/user\.dat .*not created by this server/);

  // A text read stays within the 20,000-character budget; following next_offset gives back the whole asset.
  let whole = '';
  let offset: number | null = 0;
  let reads = 0;
  while (offset !== null) {
    const res = await call('read_asset', { asset_path: textAsset, offset });
    assert.ok(text(res).length <= 20_000, `result text is ${text(res).length} characters`);
    const slice = ok(res);
    assert.equal(slice.total_chars, long.length);
    whole += slice.text as string;
    offset = slice.next_offset as number | null;
    reads += 1;
  }
  assert.equal(whole, long);
  assert.ok(reads >= 6);
  const first = await call('read_asset', { asset_path: textAsset, length: 50 });
  assert.match(text(first), /characters 0–50 of \d+; more from next_offset 50/);

  const searched = await call('read_asset', { asset_path: textAsset, search: 'needle' });
  const found = ok(searched);
  assert.equal(found.match_count, 1);
  assert.deepEqual((found.matches as Array<{ line: number }>).map((m) => m.line), [2500]);
  assert.match(text(searched), /^1 line\(s\).*\n2500 \(offset \d+\): line 2500 NEEDLE here/);

  const image = await call('read_asset', { asset_path: imageAsset });
  ok(image);
  const imageBlock = image.content.find((block) => block.type === 'image');
  assert.ok(imageBlock && imageBlock.type === 'image');
  assert.equal(imageBlock.mimeType, 'image/png');
  assert.deepEqual(Buffer.from(imageBlock.data, 'base64'), await readFile(join(root, imageAsset)));

  clock.now += 2 * DAY;
  const dry = ok(await call('prune_unused_assets', { notebook_path: 'proj/report.ipynb', dry_run: true }));
  assert.deepEqual(dry.deleted, [
    { path: oldAsset, bytes: 'stale output'.length },
    { path: textAsset, bytes: long.length },
  ].sort((a, b) => (a.path < b.path ? -1 : 1)));
  assert.ok(existsSync(join(root, oldAsset)));

  // The client saved the notebook (now naming the long text) and renews its assets; the scratch output is no one's.
  await workspace.notebooks.update('proj/report.ipynb', (nb) => {
    nb.cells[0]!.source = `![chart](${imageAsset.slice('proj/'.length)}) and [log](${textAsset.slice('proj/'.length)})`;
  });
  const renewed = ok(await call('renew_asset_leases', { notebook_path: 'proj/report.ipynb', ttl_s: 3600 }));
  assert.deepEqual((renewed.renewed as Array<{ path: string }>).map((lease) => lease.path), [textAsset, imageAsset].sort());
  assert.ok((renewed.renewed as Array<{ expires_at: string }>).every((lease) => lease.expires_at === new Date(clock.now + 3600_000).toISOString()));

  const prunedRes = await call('prune_unused_assets', { notebook_path: 'proj/report.ipynb' });
  const pruned = ok(prunedRes);
  assert.deepEqual(pruned.deleted, [{ path: oldAsset, bytes: 'stale output'.length }]);
  assert.equal(existsSync(join(root, oldAsset)), false);
  assert.ok(existsSync(join(root, textAsset)) && existsSync(join(root, imageAsset)) && existsSync(join(root, 'proj', 'assets', 'user.dat')));
  assert.match(text(prunedRes), /deleted 1 asset\(s\) in proj\/assets\//);
  assert.match(text(prunedRes), /kept: proj\/assets\/user\.dat: not created by this server/);
  assert.match(text(prunedRes), /lease holds until/);
});

test('a large image is returned downscaled within the image budget, the asset unchanged', async () => {
  const big = new PNG({ width: 800, height: 800 });
  for (let i = 0; i < big.data.length; i++) big.data[i] = (i * 2654435761) >>> 24; // noise: compresses badly
  const bytes = PNG.sync.write(big);
  assert.ok(bytes.length * 4 / 3 > workspace.config.maxImageBytes);
  const path = await assets.save('big.ipynb', bytes, 'png');
  const res = await call('read_asset', { asset_path: path });
  const info = ok(res);
  assert.equal(info.downscaled, true);
  const block = res.content.find((item) => item.type === 'image');
  assert.ok(block && block.type === 'image');
  assert.ok(block.data.length <= workspace.config.maxImageBytes);
  assert.match(text(res), /shown downscaled to \d+x\d+ \(the asset keeps the original 800x800\)/);
  assert.deepEqual(await readFile(join(root, path)), bytes);
});

test('bad calls come back as tool errors that say what to fix', async () => {
  await writeFile(join(root, 'plain.txt'), 'not an asset');
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['list_assets', {}, /notebook_path is required/],
    ['list_assets', { notebook_path: 'a.ipynb', folder: 'x' }, /unknown parameter 'folder'; list_assets takes notebook_path/],
    ['list_assets', { notebook_path: '../up.ipynb' }, /leaves the workspace/],
    ['list_assets', { notebook_path: 'plain.txt' }, /not a notebook path/],
    ['read_asset', { asset_path: '../x.txt' }, /leaves the workspace/],
    ['read_asset', { asset_path: '/etc/passwd' }, /outside the workspace/],
    ['read_asset', { asset_path: 'plain.txt' }, /only files directly inside an assets\/ folder/],
    ['read_asset', { asset_path: 'assets/nothing.txt' }, /does not exist; list_assets shows/],
    ['read_asset', { asset_path: 'proj/assets/user.dat', offset: -1 }, /offset must be at least 0/],
    ['read_asset', { asset_path: 'proj/assets/user.dat', offset: 5, search: 'x' }, /either search or offset\/length/],
    ['read_asset', { asset_path: 'proj/assets/user.dat', offset: 99 }, /past the end/],
    ['renew_asset_leases', { notebook_path: 'proj/report.ipynb', ttl_s: 0 }, /ttl_s must be at least 1/],
    ['renew_asset_leases', { notebook_path: 'proj/report.ipynb', ttl_s: 'long' }, /ttl_s must be a number/],
    ['prune_unused_assets', { notebook_path: 'proj/report.ipynb', dry_run: 'yes' }, /dry_run must be true or false/],
  ];
  for (const [name, args, expected] of cases) {
    const res = await call(name, args);
    assert.equal(res.isError, true, `${name} ${JSON.stringify(args)} should fail`);
    assert.match(text(res), expected, `${name} ${JSON.stringify(args)}`);
  }
  // The server is still serving after all of that.
  ok(await call('list_assets', { notebook_path: 'proj/report.ipynb' }));
});
