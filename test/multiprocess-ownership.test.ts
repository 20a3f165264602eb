// The election on a workspace's socket: one owner, followers that prove the workspace key, release on close.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { acquireOrFollow, followerHandshake, ownerAddress, ownerHandshake, OwnershipError, readLine, workspaceKey, type OwnerListener } from '../src/server/ownership.js';

function serveHandshakes(listener: OwnerListener, workspace: string): { refused: string[] } {
  const refused: string[] = [];
  listener.accept((socket) => {
    socket.on('error', () => undefined);
    ownerHandshake(socket, listener.key, { pid: process.pid, workspace, version: 'test' }).catch((error: Error) => {
      refused.push(error.message);
      socket.destroy();
    });
  });
  return { refused };
}

test('the first process to bind owns the state directory; the next follows it; closing releases it at once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-own-'));
  try {
    const first = await acquireOrFollow(dir, { workspace: '/ws' });
    assert.equal(first.role, 'owner');
    if (first.role !== 'owner') return;
    serveHandshakes(first.listener, '/ws');
    const second = await acquireOrFollow(dir, { workspace: '/ws' });
    assert.equal(second.role, 'follower');
    if (second.role !== 'follower') return;
    assert.equal(second.owner.pid, process.pid);
    assert.equal(second.owner.workspace, '/ws');
    second.socket.destroy();

    await first.listener.close();
    const third = await acquireOrFollow(dir, { workspace: '/ws' });
    assert.equal(third.role, 'owner', 'no stale lock: the released address can be won at once');
    if (third.role === 'owner') await third.listener.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the key file is private, made once and shared; a peer without it gets nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-own-'));
  try {
    const key = workspaceKey(dir);
    assert.deepEqual(workspaceKey(dir), key, 'every process reads the same key');
    assert.equal(statSync(join(dir, 'owner.key')).mode & 0o077, 0, 'only its user can read it');

    const owner = await acquireOrFollow(dir, { workspace: '/ws' });
    if (owner.role !== 'owner') throw new Error('expected to own the fresh directory');
    const { refused } = serveHandshakes(owner.listener, '/ws');
    // An intruder on the same machine knows the address (it derives from the path) but not the key.
    const intruder = net.connect(ownerAddress(dir));
    await new Promise((resolve) => intruder.once('connect', resolve));
    await assert.rejects(followerHandshake(intruder, Buffer.alloc(32, 7), '/ws'), OwnershipError);
    intruder.destroy();
    // A peer that skips the handshake and speaks MCP at once is dropped without an answer.
    const rude = net.connect(ownerAddress(dir));
    rude.on('error', () => undefined);
    await new Promise((resolve) => rude.once('connect', resolve));
    const hello = await readLine(rude);
    assert.match(hello, /"mcpJupyter":"owner"/);
    rude.write('{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}\n');
    await new Promise((resolve) => rude.once('close', resolve));
    assert.equal(refused.length, 2, refused.join('; '));
    await owner.listener.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a state directory owned for another workspace root is refused with the way out', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-own-'));
  try {
    const owner = await acquireOrFollow(dir, { workspace: '/ws-one' });
    if (owner.role !== 'owner') throw new Error('expected to own the fresh directory');
    serveHandshakes(owner.listener, '/ws-one');
    await assert.rejects(acquireOrFollow(dir, { workspace: '/ws-two' }), /already used by process \d+ for the workspace \/ws-one, not \/ws-two.*--state-dir/);
    await owner.listener.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an owner that is still starting (bound, not yet serving) is waited for, not treated as gone', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-own-'));
  try {
    const owner = await acquireOrFollow(dir, { workspace: '/ws' });
    if (owner.role !== 'owner') throw new Error('expected to own the fresh directory');
    const following = acquireOrFollow(dir, { workspace: '/ws' });
    // The connection waits in the listener until the owner has opened its workspace and accepts.
    setTimeout(() => serveHandshakes(owner.listener, '/ws'), 300);
    const follower = await following;
    assert.equal(follower.role, 'follower');
    if (follower.role === 'follower') follower.socket.destroy();
    await owner.listener.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
