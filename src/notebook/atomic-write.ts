// Atomic file replacement: a crash mid-write leaves the old file or the new one, never a truncated mix.
import { randomBytes } from 'node:crypto';
import { open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Writes `data` to a temporary file in the same directory (so the rename stays on one file system), fsyncs it,
 * renames it over `target` and fsyncs the directory so the rename itself survives a power cut. The target's
 * permission bits are kept. On any failure before the rename (a full disk fails the write, the fsync or even the
 * close) the temporary file is removed and `target` is untouched.
 */
export async function writeFileAtomic(target: string, data: string | Buffer): Promise<void> {
  const directory = dirname(target);
  const temporary = join(directory, `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  let mode = 0o644;
  try {
    mode = (await stat(target)).mode & 0o777;
  } catch {
    // A new file gets the default mode.
  }
  const handle = await open(temporary, 'wx', mode);
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      // Some file systems report a deferred write error (ENOSPC, EIO) only here; it fails the write like any other.
      await handle.close();
    }
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  const directoryHandle = await open(directory, 'r');
  try {
    await directoryHandle.sync();
  } finally {
    await directoryHandle.close();
  }
}
