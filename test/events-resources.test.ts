// Notebooks as MCP resources: list, read, and resources/updated for subscribers when a cell runs or the file changes on disk.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { McpError, ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { startHttpServer, startStdioServer, type ServerFixture } from './helpers/mcp.js';

const fixtures: ServerFixture[] = [];

after(async () => {
  for (const fx of fixtures) await fx.close();
});

/** Collects resources/updated notifications and lets a test wait for the next one of a URI. */
function updates(fx: ServerFixture): { seen: string[]; next(uri: string, timeoutMs?: number): Promise<void> } {
  const seen: string[] = [];
  let waiters: Array<{ uri: string; resolve: () => void }> = [];
  fx.client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
    seen.push(notification.params.uri);
    waiters = waiters.filter((waiter) => {
      if (waiter.uri !== notification.params.uri) return true;
      waiter.resolve();
      return false;
    });
  });
  return {
    seen,
    next(uri, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no resources/updated for ${uri} within ${timeoutMs} ms (got: ${seen.join(', ')})`)), timeoutMs);
        waiters.push({
          uri,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
  };
}

async function exercise(fx: ServerFixture): Promise<void> {
  await fx.ok('create_notebook', { notebook_path: 'a.ipynb', cells: [{ cell_type: 'code', source: 'print("from a")' }] });
  await fx.ok('create_notebook', { notebook_path: 'sub dir/b c.ipynb' });
  assert.equal(fx.client.getServerCapabilities()?.resources?.subscribe, true);

  const { resources } = await fx.client.listResources();
  const byName = new Map(resources.map((r) => [r.name, r]));
  assert.equal(byName.get('a.ipynb')?.uri, 'notebook://a.ipynb');
  assert.equal(byName.get('sub dir/b c.ipynb')?.uri, 'notebook://sub%20dir/b%20c.ipynb');
  assert.equal(byName.get('a.ipynb')?.mimeType, 'application/x-ipynb+json');
  assert.match(byName.get('a.ipynb')?.description ?? '', /1 cell/);

  const read = await fx.client.readResource({ uri: 'notebook://sub%20dir/b%20c.ipynb' });
  const content = read.contents[0] as { uri: string; mimeType?: string; text: string };
  assert.equal(content.uri, 'notebook://sub%20dir/b%20c.ipynb');
  assert.equal((JSON.parse(content.text) as { nbformat: number }).nbformat, 4);
  const a = JSON.parse(((await fx.client.readResource({ uri: 'notebook://a.ipynb' })).contents[0] as { text: string }).text) as {
    cells: Array<{ source: string | string[] }>;
  };
  assert.equal([a.cells[0]!.source].flat().join(''), 'print("from a")');

  await assert.rejects(fx.client.readResource({ uri: 'notebook://missing.ipynb' }), (error: McpError) => {
    assert.equal(error.code, -32002);
    assert.match(error.message, /does not exist/);
    return true;
  });
  await assert.rejects(fx.client.readResource({ uri: 'notebook://../outside.ipynb' }), McpError);

  const notes = updates(fx);
  await fx.client.subscribeResource({ uri: 'notebook://a.ipynb' });

  // Running a cell saves its outputs into the notebook: subscribers are told.
  const ran = notes.next('notebook://a.ipynb');
  await fx.ok('execute_cell', { notebook_path: 'a.ipynb', index: 0 });
  await ran;
  const after = JSON.parse(((await fx.client.readResource({ uri: 'notebook://a.ipynb' })).contents[0] as { text: string }).text) as {
    cells: Array<{ outputs: Array<{ text?: string | string[] }> }>;
  };
  assert.equal([after.cells[0]!.outputs[0]?.text ?? ''].flat().join(''), 'from a\n');

  // Someone else edits the file on disk: subscribers are told as well.
  const file = path.join(fx.workspace, 'a.ipynb');
  const onDisk = notes.next('notebook://a.ipynb');
  const nb = JSON.parse(readFileSync(file, 'utf8')) as { cells: unknown[] };
  nb.cells.push({ cell_type: 'markdown', id: 'from-outside', metadata: {}, source: 'added in another editor' });
  writeFileSync(file, JSON.stringify(nb, null, 1));
  await onDisk;

  // Only subscribed notebooks are announced; after unsubscribing, nothing more.
  await fx.ok('insert_cell', { notebook_path: 'sub dir/b c.ipynb', cell_type: 'code', source: 'x = 1' });
  await fx.client.unsubscribeResource({ uri: 'notebook://a.ipynb' });
  const count = notes.seen.length;
  await fx.ok('insert_cell', { notebook_path: 'a.ipynb', cell_type: 'code', source: 'y = 2' });
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(notes.seen.length, count, 'no update after unsubscribing');
  assert.ok(notes.seen.every((uri) => uri === 'notebook://a.ipynb'), `unexpected updates: ${notes.seen.join(', ')}`);
}

let http: ServerFixture;
let stdio: ServerFixture;

before(async () => {
  [http, stdio] = await Promise.all([startHttpServer(), startStdioServer()]);
  fixtures.push(http, stdio);
});

test('over Streamable HTTP: notebooks are listed, read and their subscribers told of runs and edits on disk', async () => {
  await exercise(http);
});

test('over stdio: the same', async () => {
  await exercise(stdio);
});
