// Keeps every notebook path a user gives inside the workspace root (no `..`, no foreign absolute paths, no symlinks out).
import { lstat, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';

export class PathError extends Error {
  override readonly name = 'PathError';
  constructor(
    message: string,
    readonly userPath: string,
  ) {
    super(message);
  }
}

export interface ResolvedPath {
  /** The path inside the (realpath-ed) workspace root, as the user named it. */
  absolute: string;
  /** Relative to the workspace root, with `/` separators: the name to show users. */
  relative: string;
  /** Where the bytes really are (symlinks resolved, all inside the root): the path to read and write. */
  real: string;
}

export interface ResolveOptions {
  /** Require the `.ipynb` extension (default true). */
  notebook?: boolean;
}

const realRoots = new Map<string, Promise<string>>();

/** The workspace root with symlinks resolved, computed once per root. */
export function realWorkspaceRoot(workspaceRoot: string): Promise<string> {
  const key = path.resolve(workspaceRoot);
  let p = realRoots.get(key);
  if (!p) {
    p = realpath(key).catch((e: NodeJS.ErrnoException) => {
      realRoots.delete(key);
      throw new PathError(`the workspace root ${key} cannot be used (${e.code ?? e.message}); check the --workspace setting`, workspaceRoot);
    });
    realRoots.set(key, p);
  }
  return p;
}

function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..' + path.sep) && rel !== '..' && !path.isAbsolute(rel));
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return false;
    throw e;
  }
}

/**
 * A name that Unicode compatibility folding (NFKC) turns into `.`, `..` or something holding `/`, such as the
 * fullwidth `．．` or the leader `‥`: harmless on this filesystem, but any tool that normalizes names (an editor,
 * an archive, a sync client) would see a traversal, so such names are refused rather than passed on.
 */
function lookAlikeComponent(userPath: string): string | undefined {
  return userPath.split('/').find((part) => {
    const folded = part.normalize('NFKC');
    return folded !== part && (folded === '.' || folded === '..' || folded.includes('/') || folded.includes('\\'));
  });
}

/**
 * Resolves a user-supplied path against the workspace root, refusing anything that would read or write
 * outside it. Symlinks are judged by where they lead: the deepest existing ancestor is realpath-ed, so a
 * link anywhere in the path (a directory or the file itself) that points out of the root is refused.
 *
 * Paths are taken literally: nothing is URL-decoded (`%2e%2e` is a folder named that, inside the root) and case
 * is significant (`.IPYNB` is not a notebook). Control characters and Unicode look-alikes of `.`/`..`/`/` are
 * refused. Hard links cannot be told from ordinary files by path: a hard link inside the root to a file elsewhere
 * reads that file's bytes, as anyone who could create the link already could. Writes never go through it:
 * every save writes a new file and renames it over the name, which replaces the link inside the workspace and
 * leaves the other name's bytes untouched.
 */
export async function resolveWorkspacePath(workspaceRoot: string, userPath: string, opts: ResolveOptions = {}): Promise<ResolvedPath> {
  const requireNotebook = opts.notebook ?? true;
  if (typeof userPath !== 'string' || userPath.trim() === '') {
    throw new PathError('the path is empty; give a path relative to the workspace root, e.g. "analysis.ipynb"', String(userPath));
  }
  if (userPath.includes('\0')) {
    throw new PathError('the path contains a NUL byte, which no file name can hold; remove it', userPath);
  }
  const control = /[\u0001-\u001f\u007f]/.exec(userPath);
  if (control) {
    throw new PathError(
      `the path contains a control character (U+${control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}); file names used here must be printable. Rename the file or fix the path`,
      userPath,
    );
  }
  const lookAlike = lookAlikeComponent(userPath);
  if (lookAlike !== undefined) {
    throw new PathError(
      `the path component "${lookAlike}" is a Unicode look-alike of "${lookAlike.normalize('NFKC')}"; such names are refused because tools that normalize Unicode would read them as a path traversal. Use plain ASCII "." and "/" (and rename the folder if it really exists)`,
      userPath,
    );
  }
  const root = await realWorkspaceRoot(workspaceRoot);
  const givenRoot = path.resolve(workspaceRoot);

  let absolute: string;
  if (path.isAbsolute(userPath)) {
    const p = path.resolve(userPath);
    // Accept the root both as configured and as realpath-ed (e.g. /tmp vs /private/tmp on macOS).
    if (isInside(root, p)) absolute = p;
    else if (isInside(givenRoot, p)) absolute = path.join(root, path.relative(givenRoot, p));
    else {
      throw new PathError(
        `${userPath} is outside the workspace (${root}); give a path relative to the workspace root or an absolute path inside it`,
        userPath,
      );
    }
  } else {
    absolute = path.resolve(root, userPath);
    if (!isInside(root, absolute)) {
      throw new PathError(
        `${userPath} leaves the workspace through '..' (the workspace root is ${root}); give a path inside the workspace`,
        userPath,
      );
    }
  }

  const relative = path.relative(root, absolute).split(path.sep).join('/');
  if (requireNotebook && !absolute.endsWith('.ipynb') && absolute.toLowerCase().endsWith('.ipynb')) {
    throw new PathError(
      `${userPath} has the extension "${absolute.slice(-6)}"; notebook files end in lower-case ".ipynb" (Jupyter does not recognise other spellings). Rename it to "${relative.slice(0, -6)}.ipynb"`,
      userPath,
    );
  }
  if (requireNotebook && !absolute.endsWith('.ipynb')) {
    throw new PathError(`${userPath} is not a notebook path: notebook files must end in ".ipynb" (e.g. "${relative || 'notebook'}.ipynb")`, userPath);
  }

  // Find the deepest existing ancestor; what lies below it does not exist yet and so holds no symlinks.
  let existing = absolute;
  const missing: string[] = [];
  while (!(await exists(existing))) {
    missing.unshift(path.basename(existing));
    const parent = path.dirname(existing);
    if (parent === existing) break;
    existing = parent;
  }
  let realExisting: string;
  try {
    realExisting = await realpath(existing);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    // lstat saw it but realpath cannot follow it: a symlink whose target is missing.
    const target = await readlink(existing).catch(() => '?');
    const link = path.relative(root, existing).split(path.sep).join('/');
    throw new PathError(
      `${userPath} goes through the symlink ${link} → ${target}, whose target does not exist; remove the link or point it inside the workspace`,
      userPath,
    );
  }
  const real = path.join(realExisting, ...missing);
  if (!isInside(root, real)) {
    throw new PathError(
      `${userPath} goes through a symlink that points outside the workspace (to ${realExisting}); only files inside ${root} can be used`,
      userPath,
    );
  }
  return { absolute, relative, real };
}

/** resolveWorkspacePath for a notebook file (requires `.ipynb`). */
export function resolveNotebookPath(workspaceRoot: string, userPath: string): Promise<ResolvedPath> {
  return resolveWorkspacePath(workspaceRoot, userPath, { notebook: true });
}
