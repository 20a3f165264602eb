// Where the project's own Python environment is, wherever the repository was cloned (tests run from dist/test).
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: this file is compiled to <root>/<outDir>/test/helpers/paths.js. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const VENV_PYTHON = join(REPO_ROOT, '.venv', 'bin', 'python');
export const VENV_JUPYTER_DIR = join(REPO_ROOT, '.venv', 'share', 'jupyter');
