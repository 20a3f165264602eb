// AssetStore on a real SQLite file, real asset files and real notebooks: saving, leases, listing, reading and pruning.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PNG } from 'pngjs';
import { AssetStore, assetReference } from '../src/notebook/assets.js';
import type { Output } from '../src/notebook/nbformat.js';
import { NotebookStore } from '../src/notebook/notebooks.js';
import { openDatabase, type Db } from '../src/store/db.js';

const HOUR = 3600_000;
const DAY = 24 * HOUR;

interface Fixture {
  root: string;
  dbFile: string;
  db: Db;
  clock: { now: number };
  assets: AssetStore;
  notebooks: NotebookStore;
  close(): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const root = await mkdtemp(join(tmpdir(), 'assets-store-'));
  const dbFile = join(root, '.mcp-jupyter', 'state.db');
  const db = openDatabase(dbFile);
  const clock = { now: Date.parse('2030-01-01T00:00:00Z') };
  const assets = new AssetStore({ workspaceRoot: root, db, now: () => clock.now });
  const notebooks = new NotebookStore({ workspaceRoot: root });
  return {
    root,
    dbFile,
    db,
    clock,
    assets,
    notebooks,
    async close() {
      db.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

function hex16(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 16);
}

function png(width: number, height: number, seed = 0): Buffer {
  const image = new PNG({ width, height });
  for (let i = 0; i < image.data.length; i++) image.data[i] = (i * 7 + seed) & 0xff;
  return PNG.sync.write(image);
}

async function filesIn(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

/** Writes a notebook with a markdown cell (and optionally an output whose metadata references an asset). */
async function notebookWith(f: Fixture, path: string, markdown: string, outputAsset?: string): Promise<void> {
  await f.notebooks.create(path, { cells: [{ cellType: 'markdown', source: markdown }, { cellType: 'code', source: 'plot()' }] });
  if (outputAsset !== undefined) {
    await f.notebooks.update(path, (nb) => {
      const cell = nb.cells[1];
      assert.ok(cell && cell.cell_type === 'code');
      const output: Output = { output_type: 'display_data', data: { 'text/plain': '<Figure size 640x480 with 1 Axes>' }, metadata: assetReference(outputAsset) };
      cell.outputs.push(output);
    });
  }
}

test('saving the same content twice writes one file under its content name and renews the lease', async () => {
  const f = await fixture();
  try {
    const image = png(8, 8);
    const first = await f.assets.save('sub/plot.ipynb', image, 'png', 'exec-1');
    assert.equal(first, `sub/assets/${hex16(image)}.png`);
    assert.deepEqual(await readFile(join(f.root, first)), image);
    const [listed] = await f.assets.list('sub/plot.ipynb');
    assert.equal(listed?.leaseExpiresAt, new Date(f.clock.now + DAY).toISOString());

    f.clock.now += 5 * HOUR;
    const second = await f.assets.save('sub/plot.ipynb', image, '.PNG');
    assert.equal(second, first);
    assert.deepEqual(await filesIn(join(f.root, 'sub', 'assets')), [`${hex16(image)}.png`]);
    const [renewed] = await f.assets.list('sub/plot.ipynb');
    assert.equal(renewed?.leaseExpiresAt, new Date(f.clock.now + DAY).toISOString());
    assert.equal(renewed?.bytes, image.length);
    assert.equal(renewed?.createdByServer, true);

    // Text is stored as UTF-8; a notebook at the root gets the root's assets/ folder.
    const text = 'héllo\n'.repeat(3);
    const textPath = await f.assets.save('top.ipynb', text, 'txt');
    assert.equal(textPath, `assets/${hex16(Buffer.from(text, 'utf8'))}.txt`);
    assert.equal(await readFile(join(f.root, textPath), 'utf8'), text);

    await assert.rejects(f.assets.save('top.ipynb', 'x', 'p/ng'), /not a usable asset file extension/);

    // Saves racing each other (and a prune) still leave one file and one lease.
    const same = png(6, 6, 9);
    const racing = await Promise.all([
      ...Array.from({ length: 5 }, () => f.assets.save('race.ipynb', same, 'png')),
      f.assets.prune('race.ipynb').then(() => ''),
    ]);
    assert.deepEqual(new Set(racing.filter(Boolean)), new Set([`assets/${hex16(same)}.png`]));
    assert.equal((await filesIn(join(f.root, 'assets'))).filter((name) => name.startsWith(hex16(same))).length, 1);
    assert.equal((await f.assets.list('race.ipynb')).filter((asset) => asset.createdByServer).length, 2);
  } finally {
    await f.close();
  }
});

test('leases survive reopening the database, and a custom default TTL is used', async () => {
  const f = await fixture();
  try {
    const path = await f.assets.save('a.ipynb', 'kept text', 'txt');
    f.db.close();
    const db = openDatabase(f.dbFile);
    f.db = db;
    const store = new AssetStore({ workspaceRoot: f.root, db, defaultTtlS: 60, now: () => f.clock.now });
    const [listed] = await store.list('a.ipynb');
    assert.equal(listed?.path, path);
    assert.equal(listed?.createdByServer, true);
    assert.equal(listed?.leaseExpiresAt, new Date(f.clock.now + DAY).toISOString());
    const short = await store.save('a.ipynb', 'other text', 'txt');
    const entry = (await store.list('a.ipynb')).find((asset) => asset.path === short);
    assert.equal(entry?.leaseExpiresAt, new Date(f.clock.now + 60_000).toISOString());
  } finally {
    await f.close();
  }
});

test('list shows which notebook in the folder references each asset, its expiry, and files the server did not create', async () => {
  const f = await fixture();
  try {
    const used = await f.assets.save('nb/a.ipynb', png(4, 4, 1), 'png');
    const inOutput = await f.assets.save('nb/a.ipynb', png(4, 4, 2), 'png');
    const unused = await f.assets.save('nb/a.ipynb', 'long output', 'txt');
    await notebookWith(f, 'nb/a.ipynb', `![plot](${used.slice('nb/'.length)})`, inOutput);
    await notebookWith(f, 'nb/b.ipynb', `see ${used.split('/').pop()}`);
    // A notebook elsewhere naming the file does not count: only notebooks in the asset's own folder do.
    await notebookWith(f, 'other.ipynb', `nb/${unused}`);
    await writeFile(join(f.root, 'nb', 'assets', 'mine.csv'), 'a,b\n1,2\n');

    const listed = await f.assets.list('nb/a.ipynb');
    const byPath = new Map(listed.map((asset) => [asset.path, asset]));
    assert.deepEqual(byPath.get(used)?.referencedBy, ['nb/a.ipynb', 'nb/b.ipynb']);
    assert.equal(byPath.get(used)?.referenced, true);
    assert.deepEqual(byPath.get(inOutput)?.referencedBy, ['nb/a.ipynb']);
    assert.equal(byPath.get(unused)?.referenced, false);
    assert.equal(byPath.get(unused)?.leaseExpiresAt, new Date(f.clock.now + DAY).toISOString());
    const foreign = byPath.get('nb/assets/mine.csv');
    assert.deepEqual(foreign && { created: foreign.createdByServer, lease: foreign.leaseExpiresAt, bytes: foreign.bytes }, { created: false, lease: null, bytes: 8 });
    assert.equal(listed.length, 4);

    // The same answer through another notebook of the folder, and an empty list for a folder without assets.
    assert.deepEqual((await f.assets.list('nb/b.ipynb')).map((asset) => asset.path), listed.map((asset) => asset.path));
    assert.deepEqual(await f.assets.list('empty/x.ipynb'), []);
  } finally {
    await f.close();
  }
});

test('prune deletes only expired, unreferenced assets it created, and says why it kept the rest', async () => {
  const f = await fixture();
  try {
    const expiredUnused = await f.assets.save('work/n.ipynb', 'old unused', 'txt');
    const expiredUsed = await f.assets.save('work/n.ipynb', png(5, 5), 'png');
    await notebookWith(f, 'work/n.ipynb', 'nothing yet');
    const foreignPath = join(f.root, 'work', 'assets', 'keep-me.txt');
    await writeFile(foreignPath, 'the user put this here');
    f.clock.now += 2 * DAY;
    const fresh = await f.assets.save('work/n.ipynb', 'fresh unused', 'txt');
    // The reference is written straight to disk, behind the notebook store's back: prune must read the file as it is now.
    const file = join(f.root, 'work', 'n.ipynb');
    const nb = JSON.parse(await readFile(file, 'utf8')) as { cells: Array<{ source: string | string[] }> };
    nb.cells[0]!.source = `![](${expiredUsed.slice('work/'.length)})`;
    await writeFile(file, JSON.stringify(nb, null, 1));

    const pruned = await f.assets.prune('work/n.ipynb');
    assert.deepEqual(pruned.deleted, [{ path: expiredUnused, bytes: 'old unused'.length }]);
    assert.equal(pruned.freedBytes, 'old unused'.length);
    assert.equal(existsSync(join(f.root, expiredUnused)), false);
    const kept = new Map(pruned.kept.map((item) => [item.path, item.reason]));
    assert.match(kept.get(fresh) ?? '', new RegExp(`lease holds until ${new Date(f.clock.now + DAY).toISOString()}`));
    assert.match(kept.get(expiredUsed) ?? '', /referenced by work\/n\.ipynb/);
    assert.match(kept.get('work/assets/keep-me.txt') ?? '', /not created by this server/);
    assert.equal(await readFile(foreignPath, 'utf8'), 'the user put this here');
    assert.ok(existsSync(join(f.root, fresh)) && existsSync(join(f.root, expiredUsed)));
    assert.equal((await f.assets.list('work/n.ipynb')).some((asset) => asset.path === expiredUnused), false);

    // Far in the future, with the reference removed on disk, the old image goes too; the user's file never does.
    nb.cells[0]!.source = 'no more pictures';
    await writeFile(file, JSON.stringify(nb));
    f.clock.now += 30 * DAY;
    const later = await f.assets.prune('work/n.ipynb');
    assert.deepEqual(later.deleted.map((item) => item.path).sort(), [expiredUsed, fresh].sort());
    assert.deepEqual(await filesIn(join(f.root, 'work', 'assets')), ['keep-me.txt']);
  } finally {
    await f.close();
  }
});

test('a server-written file that someone changed on disk is no longer pruned', async () => {
  const f = await fixture();
  try {
    const path = await f.assets.save('n.ipynb', 'original bytes', 'txt');
    await writeFile(join(f.root, path), 'edited by hand!');
    f.clock.now += 2 * DAY;
    const pruned = await f.assets.prune('n.ipynb');
    assert.deepEqual(pruned.deleted, []);
    assert.match(pruned.kept[0]?.reason ?? '', /changed on disk/);
    assert.equal(await readFile(join(f.root, path), 'utf8'), 'edited by hand!');
  } finally {
    await f.close();
  }
});

test('a dry run deletes nothing and names exactly what the real prune then deletes', async () => {
  const f = await fixture();
  try {
    const a = await f.assets.save('d/n.ipynb', 'first', 'txt');
    const b = await f.assets.save('d/n.ipynb', png(3, 3), 'png');
    const c = await f.assets.save('d/n.ipynb', 'referenced', 'txt');
    await notebookWith(f, 'd/n.ipynb', `[data](${c.slice('d/'.length)})`);
    f.clock.now += 2 * DAY;
    const before = await filesIn(join(f.root, 'd', 'assets'));

    const dry = await f.assets.prune('d/n.ipynb', { dryRun: true });
    assert.equal(dry.dryRun, true);
    assert.deepEqual(dry.deleted.map((item) => item.path).sort(), [a, b].sort());
    assert.deepEqual(await filesIn(join(f.root, 'd', 'assets')), before);
    assert.equal((await f.assets.list('d/n.ipynb')).filter((asset) => asset.createdByServer).length, 3);

    const real = await f.assets.prune('d/n.ipynb');
    assert.deepEqual(real.deleted, dry.deleted);
    assert.deepEqual(real.kept, dry.kept);
    assert.deepEqual(await filesIn(join(f.root, 'd', 'assets')), [c.split('/').pop()]);
  } finally {
    await f.close();
  }
});

test('a notebook that cannot be read makes prune keep everything and say why', async () => {
  const f = await fixture();
  try {
    const path = await f.assets.save('c/good.ipynb', 'unused text', 'txt');
    await notebookWith(f, 'c/good.ipynb', 'no references');
    await writeFile(join(f.root, 'c', 'broken.ipynb'), '{"cells": [{"cell_type": "markdown", "source": "![](assets/');
    f.clock.now += 2 * DAY;

    const pruned = await f.assets.prune('c/good.ipynb');
    assert.deepEqual(pruned.deleted, []);
    assert.equal(existsSync(join(f.root, path)), true);
    assert.deepEqual(pruned.unreadableNotebooks.map((nb) => nb.path), ['c/broken.ipynb']);
    assert.match(pruned.unreadableNotebooks[0]?.reason ?? '', /not valid JSON/);
    assert.match(pruned.kept[0]?.reason ?? '', /c\/broken\.ipynb/);
    assert.deepEqual((await f.assets.inventory('c/good.ipynb')).unreadableNotebooks.map((nb) => nb.path), ['c/broken.ipynb']);

    // JSON that is no notebook is just as uncertain; once the folder is clean again, the asset goes.
    await writeFile(join(f.root, 'c', 'broken.ipynb'), '[1, 2, 3]');
    assert.match((await f.assets.prune('c/good.ipynb')).unreadableNotebooks[0]?.reason ?? '', /not a notebook/);
    assert.equal(existsSync(join(f.root, path)), true);
    await rm(join(f.root, 'c', 'broken.ipynb'));
    assert.deepEqual((await f.assets.prune('c/good.ipynb')).deleted.map((item) => item.path), [path]);
  } finally {
    await f.close();
  }
});

test('renewals: the server saving a notebook, and a client renewing with a TTL (never shortened)', async () => {
  const f = await fixture();
  try {
    const own = await f.assets.save('r/a.ipynb', 'written for a', 'txt');
    const other = await f.assets.save('r/b.ipynb', 'written for b', 'txt');
    const unrelated = await f.assets.save('r/b.ipynb', 'b only', 'txt');
    await notebookWith(f, 'r/a.ipynb', `uses ${other.split('/').pop()}`);
    f.clock.now += 2 * DAY;

    assert.equal(f.assets.renewForNotebook('r/a.ipynb'), 1);
    const afterSave = new Map((await f.assets.list('r/a.ipynb')).map((asset) => [asset.path, asset.leaseExpiresAt]));
    assert.equal(afterSave.get(own), new Date(f.clock.now + DAY).toISOString());
    assert.equal(afterSave.get(other), new Date(f.clock.now - DAY).toISOString());

    f.clock.now += HOUR;
    const renewed = await f.assets.renew('r/a.ipynb', 7 * 24 * 3600);
    const until = new Date(f.clock.now + 7 * DAY).toISOString();
    assert.deepEqual(renewed, [
      { path: other, expiresAt: until },
      { path: own, expiresAt: until },
    ].sort((x, y) => (x.path < y.path ? -1 : 1)));
    // A shorter renewal leaves the longer lease in place.
    const short = await f.assets.renew('r/a.ipynb', 60);
    assert.ok(short.every((lease) => lease.expiresAt === until));

    const pruned = await f.assets.prune('r/a.ipynb');
    assert.deepEqual(pruned.deleted.map((item) => item.path), [unrelated]);
    await assert.rejects(f.assets.renew('r/a.ipynb', 0), /ttl_s must be a positive number/);
  } finally {
    await f.close();
  }
});

test('read_asset: text slices by offset, search with line numbers, images as bytes', async () => {
  const f = await fixture();
  try {
    const lines = Array.from({ length: 2000 }, (_, i) => `row ${String(i + 1).padStart(5, '0')} ${i % 100 === 41 ? 'ERROR disk full' : 'ok'} ${'.'.repeat(20)}`);
    const text = `${lines.join('\n')}\n`;
    const path = await f.assets.save('t.ipynb', text, 'txt');

    const first = await f.assets.read(path);
    assert.ok(first.kind === 'text');
    assert.equal(first.text, text.slice(0, 20_000));
    assert.deepEqual([first.offset, first.totalChars, first.nextOffset], [0, text.length, 20_000]);
    // Following next_offset reassembles the whole text.
    let whole = '';
    for (let offset: number | null = 0; offset !== null; ) {
      const part = await f.assets.read(path, { offset, length: 7000 });
      assert.ok(part.kind === 'text');
      whole += part.text;
      offset = part.nextOffset;
    }
    assert.equal(whole, text);
    const tail = await f.assets.read(path, { offset: text.length - 10 });
    assert.ok(tail.kind === 'text' && tail.text === text.slice(-10) && tail.nextOffset === null);
    await assert.rejects(f.assets.read(path, { offset: text.length + 1 }), /past the end/);

    const found = await f.assets.read(path, { search: 'error DISK' });
    assert.ok(found.kind === 'search');
    assert.equal(found.matchCount, 20);
    assert.deepEqual(found.matches.slice(0, 2).map((m) => m.line), [42, 142]);
    assert.equal(found.matches[0]?.text, lines[41]);
    assert.equal(text.slice(found.matches[0]!.offset).split('\n')[0], lines[41]);
    assert.equal(found.truncated, false);
    const many = await f.assets.read(path, { search: 'row' });
    assert.ok(many.kind === 'search' && many.matchCount === 2000 && many.truncated && many.matches.length <= 200);
    assert.ok(many.matches.reduce((sum, m) => sum + m.text.length, 0) <= 20_000);

    // A slice never splits a character outside the basic plane.
    const emoji = await f.assets.save('t.ipynb', 'ab😀cd', 'txt');
    const cut = await f.assets.read(emoji, { length: 3 });
    assert.ok(cut.kind === 'text' && cut.text === 'ab' && cut.nextOffset === 2);

    const image = png(10, 6);
    const imagePath = await f.assets.save('t.ipynb', image, 'png');
    const read = await f.assets.read(imagePath);
    assert.ok(read.kind === 'image');
    assert.equal(read.mimeType, 'image/png');
    assert.deepEqual(read.data, image);

    await f.assets.save('t.ipynb', Buffer.from([0xff, 0xfe, 0x00, 0x81]), 'bin').then((p) => assert.rejects(f.assets.read(p), /is binary/));
  } finally {
    await f.close();
  }
});

test('asset paths are confined to the workspace and to assets/ folders', async () => {
  const f = await fixture();
  const outside = await mkdtemp(join(tmpdir(), 'assets-outside-'));
  try {
    await writeFile(join(outside, 'secret.txt'), 'do not read');
    await writeFile(join(f.root, 'notes.txt'), 'not an asset');
    await mkdir(join(f.root, 'assets'), { recursive: true });
    await symlink(join(outside, 'secret.txt'), join(f.root, 'assets', 'link.txt'));
    await writeFile(join(f.root, 'assets', 'real.txt'), 'fine');

    await assert.rejects(f.assets.read('../x'), /leaves the workspace/);
    await assert.rejects(f.assets.read('assets/../../x.txt'), /leaves the workspace/);
    await assert.rejects(f.assets.read(join(outside, 'secret.txt')), /outside the workspace/);
    await assert.rejects(f.assets.read('notes.txt'), /only files directly inside an assets\/ folder/);
    await assert.rejects(f.assets.read('assets/../notes.txt'), /only files directly inside an assets\/ folder/);
    await assert.rejects(f.assets.read('assets/link.txt'), /outside the workspace/);
    await assert.rejects(f.assets.read('assets/missing.txt'), /does not exist; list_assets/);
    const ok = await f.assets.read(join(f.root, 'assets', 'real.txt'));
    assert.ok(ok.kind === 'text' && ok.text === 'fine' && ok.path === 'assets/real.txt');

    await assert.rejects(f.assets.save('../x.ipynb', 'x', 'txt'), /leaves the workspace/);
    await assert.rejects(f.assets.prune(join(outside, 'x.ipynb')), /outside the workspace/);
    await assert.rejects(f.assets.list('notes.txt'), /not a notebook path/);
    // An assets/ folder that is a symlink out of the workspace is refused too, so nothing is written through it.
    await mkdir(join(f.root, 'leaky'));
    await symlink(outside, join(f.root, 'leaky', 'assets'));
    await assert.rejects(f.assets.save('leaky/n.ipynb', 'x', 'txt'), /outside the workspace/);
    assert.deepEqual(await filesIn(outside), ['secret.txt']);

    assert.deepEqual(assetReference('sub/dir/assets/0123456789abcdef.png'), { mcp_jupyter: { asset: 'assets/0123456789abcdef.png' } });
    assert.throws(() => assetReference('sub/0123456789abcdef.png'), /not an asset path/);
  } finally {
    await f.close();
    await rm(outside, { recursive: true, force: true });
  }
});
