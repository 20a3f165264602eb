// Test fixture: a real, tiny tmpfs mounted for one test (root only), and a filler file that takes all of its space.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmdirSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export interface Tmpfs {
  /** The mount point. */
  dir: string;
  /** Writes a filler file until the file system answers ENOSPC; returns its path. */
  fill(): string;
  /** Deletes the filler: the space is back. */
  free(): void;
  /** Free bytes as the file system reports them (0 once filled). */
  available(): number;
  unmount(): void;
}

/**
 * Mounts a tmpfs of `size` (mount(8) syntax, e.g. `2m`) on a fresh temporary folder. Without root, or when the
 * mount fails (no privilege in a container), the test is skipped with the reason and null is returned: the caller
 * returns at once, so a test that cannot run never passes silently.
 */
export function mountTmpfs(t: TestContext, size = '2m'): Tmpfs | null {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to mount a tmpfs: this process is not root');
    return null;
  }
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-tmpfs-'));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (mounted.status !== 0) {
    rmdirSync(dir);
    t.skip(`needs root to mount a tmpfs: mount failed (${(mounted.stderr || mounted.error?.message || `exit ${mounted.status}`).trim()})`);
    return null;
  }
  const filler = join(dir, 'filler.bin');
  return {
    dir,
    fill() {
      const fd = openSync(filler, 'a');
      try {
        // Big chunks first, then smaller ones to take the last partial pages.
        for (const chunk of [1 << 20, 1 << 16, 1 << 12, 512, 1]) {
          const bytes = Buffer.alloc(chunk, 0x5a);
          for (;;) {
            try {
              if (writeSync(fd, bytes) < chunk) break;
            } catch (error) {
              if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
              throw error;
            }
          }
        }
      } finally {
        closeSync(fd);
      }
      return filler;
    },
    free() {
      rmSync(filler, { force: true });
    },
    available() {
      const stats = statfsSync(dir);
      return stats.bavail * stats.bsize;
    },
    unmount() {
      // A process still holding a file there (a kernel's cwd) makes a plain umount fail: detach it lazily then.
      if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir]);
      rmdirSync(dir);
    },
  };
}
