// Checks that notebook paths stay inside the workspace: `..`, foreign absolute paths, symlinks out and NUL are refused.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { PathError, resolveNotebookPath, resolveWorkspacePath } from '../src/notebook/paths.js';

let base: string; // holds the workspace and an "outside" folder next to it
let root: string;
let outside: string;

before(async () => {
  base = await realpath(await mkdtemp(path.join(os.tmpdir(), 'nb-paths-')));
  root = path.join(base, 'ws');
  outside = path.join(base, 'outside');
  await mkdir(path.join(root, 'sub', 'deeper'), { recursive: true });
  await mkdir(outside);
  await writeFile(path.join(root, 'a.ipynb'), '{}');
  await writeFile(path.join(outside, 'secret.ipynb'), '{}');
  await symlink(outside, path.join(root, 'out-dir')); // a directory link leading out
  await symlink(path.join(outside, 'secret.ipynb'), path.join(root, 'out-file.ipynb')); // a file link leading out
  await symlink(path.join(root, 'a.ipynb'), path.join(root, 'sub', 'in-file.ipynb')); // a link that stays inside
  await symlink(path.join(root, 'sub'), path.join(root, 'in-dir'));
  await symlink(path.join(base, 'missing-target'), path.join(root, 'dangling.ipynb'));
  await symlink(root, path.join(base, 'ws-link')); // the workspace reached through a link
});

after(async () => {
  await rm(base, { recursive: true, force: true });
});

async function refused(userPath: string, pattern: RegExp, workspace = root): Promise<void> {
  await assert.rejects(resolveNotebookPath(workspace, userPath), (e: unknown) => {
    assert.ok(e instanceof PathError, `expected PathError for ${JSON.stringify(userPath)}, got ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  });
}

test('relative and absolute paths inside the root are accepted', async () => {
  assert.deepEqual(await resolveNotebookPath(root, 'a.ipynb'), { absolute: path.join(root, 'a.ipynb'), relative: 'a.ipynb', real: path.join(root, 'a.ipynb') });
  const nested = await resolveNotebookPath(root, 'sub/deeper/../new.ipynb');
  assert.equal(nested.relative, 'sub/new.ipynb');
  assert.equal(nested.real, path.join(root, 'sub', 'new.ipynb'));
  assert.equal((await resolveNotebookPath(root, path.join(root, 'sub', 'x.ipynb'))).relative, 'sub/x.ipynb');
  // Folders that do not exist yet are fine (create makes them).
  assert.equal((await resolveNotebookPath(root, 'new/dir/x.ipynb')).real, path.join(root, 'new', 'dir', 'x.ipynb'));
});

test('symlinks that stay inside the root are followed to their real location', async () => {
  const linkedFile = await resolveNotebookPath(root, 'sub/in-file.ipynb');
  assert.equal(linkedFile.relative, 'sub/in-file.ipynb');
  assert.equal(linkedFile.real, path.join(root, 'a.ipynb'));
  assert.equal((await resolveNotebookPath(root, 'in-dir/deeper/n.ipynb')).real, path.join(root, 'sub', 'deeper', 'n.ipynb'));
});

test('a workspace configured through a symlink works with both spellings of absolute paths', async () => {
  const viaLink = path.join(base, 'ws-link');
  const r1 = await resolveNotebookPath(viaLink, path.join(viaLink, 'a.ipynb'));
  assert.equal(r1.relative, 'a.ipynb');
  assert.equal(r1.real, path.join(root, 'a.ipynb'));
  assert.equal((await resolveNotebookPath(viaLink, path.join(root, 'a.ipynb'))).relative, 'a.ipynb');
});

test('`..` that escapes the root is refused', async () => {
  await refused('../outside/secret.ipynb', /leaves the workspace through '\.\.'/);
  await refused('sub/../../outside/secret.ipynb', /leaves the workspace/);
  await refused('..', /leaves the workspace/);
});

test('absolute paths elsewhere are refused', async () => {
  await refused(path.join(outside, 'secret.ipynb'), /is outside the workspace/);
  await refused('/etc/passwd.ipynb', /is outside the workspace/);
  // A sibling whose name merely starts with the root's name is not inside it.
  await refused(`${root}2/x.ipynb`, /is outside the workspace/);
});

test('symlinks pointing out of the root are refused, wherever they are in the path', async () => {
  await refused('out-file.ipynb', /symlink that points outside the workspace/);
  await refused('out-dir/secret.ipynb', /symlink that points outside the workspace/);
  await refused('out-dir/new.ipynb', /symlink that points outside the workspace/); // creating through it too
  await refused('out-dir/a/b/new.ipynb', /symlink that points outside the workspace/);
  await refused('dangling.ipynb', /symlink dangling\.ipynb → .*missing-target, whose target does not exist/);
});

test('NUL bytes, empty paths and non-notebook names are refused with a reason', async () => {
  await refused('a.ipynb\0.txt', /NUL byte/);
  await refused('', /the path is empty/);
  await refused('   ', /the path is empty/);
  await refused('notes.txt', /must end in "\.ipynb"/);
  await refused('sub', /must end in "\.ipynb" \(e\.g\. "sub\.ipynb"\)/);
  // Directories are fine where a directory is asked for.
  assert.equal((await resolveWorkspacePath(root, 'sub', { notebook: false })).relative, 'sub');
  await assert.rejects(resolveWorkspacePath(root, 'out-dir', { notebook: false }), PathError);
});

test('a workspace root that does not exist is reported as such', async () => {
  await assert.rejects(resolveNotebookPath(path.join(base, 'nope'), 'a.ipynb'), /workspace root .*nope cannot be used \(ENOENT\)/);
});
