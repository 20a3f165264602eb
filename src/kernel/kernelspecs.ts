// Finds installed kernelspecs where Jupyter looks for them, plus a python3 fallback from an interpreter with ipykernel.

import { execFile } from 'node:child_process';
import { constants as fsConstants, existsSync } from 'node:fs';
import { access, readFile, readdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KernelSpec } from './types.js';

export interface DiscoverOptions {
  /** The workspace root: `<workspace>/.venv/bin/python` is a Python candidate. */
  workspace?: string;
  /** Defaults to `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Defaults to `os.homedir()`. */
  homeDir?: string;
  /** Whose `.venv` is a Python candidate; defaults to this package's root, null for none. */
  packageRoot?: string | null;
}

export interface KernelspecProblem {
  /** The kernel.json (or kernel directory) that could not be used. */
  path: string;
  message: string;
}

/** The specs found (earlier locations win per name), plus what was skipped and where we looked, for `doctor`. */
export type KernelspecList = KernelSpec[] & { problems: KernelspecProblem[]; searched: string[] };

interface DataDir {
  dir: string;
  source: string;
  /** Set when the dir is `<prefix>/share/jupyter` of a Python environment: bare `python` in argv means this one. */
  python?: string;
}

const BARE_PYTHON = /^python(\d+(\.\d+)?)?$/;
const VALID_NAME = /^[a-z0-9._-]+$/i;

export async function discoverKernelspecs(opts: DiscoverOptions = {}): Promise<KernelspecList> {
  return withPythonFallback(await scanDataDirs(opts), opts);
}

/** Checking for ipykernel spawns Python, so it happens only when no python3 spec is installed. */
async function withPythonFallback(list: KernelspecList, opts: DiscoverOptions): Promise<KernelspecList> {
  if (!list.some((spec) => spec.name === 'python3')) {
    const fallback = await pythonFallbackSpec(opts);
    if (fallback) list.push(fallback);
  }
  return list;
}

/** The spec called `name` (case-insensitive, as in Jupyter); throws an error that says what exists and how to install. */
export async function findKernelspec(name: string, opts: DiscoverOptions = {}): Promise<KernelSpec> {
  const wanted = name.toLowerCase();
  const scanned = await scanDataDirs(opts);
  const direct = scanned.find((spec) => spec.name === wanted);
  if (direct) return direct;
  const all = await withPythonFallback(scanned, opts);
  const found = all.find((spec) => spec.name === wanted);
  if (found) return found;

  const available = all.length
    ? `Available kernelspecs: ${all.map((spec) => `${spec.name} ("${spec.display_name}", from ${spec.source})`).join(', ')}.`
    : 'No kernelspecs are installed and no Python interpreter with ipykernel was found.';
  const problems = all.problems.length
    ? ` These kernel.json files were skipped: ${all.problems.map((p) => `${p.path} (${p.message})`).join('; ')}.`
    : '';
  throw new Error(
    `No kernelspec named "${name}". ${available}${problems} ` +
      'To get a Python kernel, run `python3 -m pip install ipykernel` in the environment you want to use ' +
      '(or `npm run setup:python` in the mcp-server-jupyter folder to create one); a kernel for another language ' +
      `must install a kernelspec into one of: ${all.searched.map((dir) => path.join(dir, 'kernels')).join(', ')}.`,
  );
}

/** Jupyter's data path, in priority order (jupyter_core.paths.jupyter_path plus our Python candidates' prefixes). */
export function jupyterDataDirs(opts: DiscoverOptions = {}): DataDir[] {
  const env = opts.env ?? process.env;
  const home = opts.homeDir ?? homedir();
  const dirs: DataDir[] = [];
  // `owner`: the interpreter of the environment owning this dir, if known; 'infer' when it may be `<prefix>/share/jupyter`.
  const add = (dir: string | undefined, source: string, owner?: string | 'infer'): void => {
    if (!dir) return;
    const resolved = path.resolve(dir);
    if (dirs.some((d) => d.dir === resolved)) return;
    const python = owner === 'infer' ? pythonOfDataDir(resolved) : owner;
    dirs.push(python && existsSync(python) ? { dir: resolved, source, python } : { dir: resolved, source });
  };

  for (const entry of (env['JUPYTER_PATH'] ?? '').split(path.delimiter)) add(entry || undefined, 'JUPYTER_PATH', 'infer');

  const userDir = userDataDir(env, home);
  const envPrefixes = [env['VIRTUAL_ENV'], env['CONDA_PREFIX']].filter((p): p is string => !!p);
  // jupyter_core lets JUPYTER_PREFER_ENV_PATH put the active environment before the user dir.
  const preferEnv = /^(1|true|yes|on)$/i.test(env['JUPYTER_PREFER_ENV_PATH'] ?? '');
  if (!preferEnv) add(userDir, 'user data dir');
  for (const prefix of envPrefixes) add(path.join(prefix, 'share', 'jupyter'), `environment: ${prefix}`, venvPython(prefix));
  if (preferEnv) add(userDir, 'user data dir');

  if (process.platform === 'win32') {
    add(env['PROGRAMDATA'] ? path.join(env['PROGRAMDATA'], 'jupyter') : undefined, 'system');
  } else {
    add('/usr/local/share/jupyter', 'system');
    add('/usr/share/jupyter', 'system');
  }

  for (const python of pythonCandidates(opts)) {
    add(path.join(path.dirname(path.dirname(python)), 'share', 'jupyter'), `python: ${python}`, python);
  }
  return dirs;
}

function userDataDir(env: NodeJS.ProcessEnv, home: string): string {
  if (env['JUPYTER_DATA_DIR']) return env['JUPYTER_DATA_DIR'];
  if (process.platform === 'darwin') return path.join(home, 'Library', 'Jupyter');
  if (process.platform === 'win32') return path.join(env['APPDATA'] ?? path.join(home, 'AppData', 'Roaming'), 'jupyter');
  return path.join(env['XDG_DATA_HOME'] || path.join(home, '.local', 'share'), 'jupyter');
}

function venvPython(prefix: string): string {
  return process.platform === 'win32' ? path.join(prefix, 'Scripts', 'python.exe') : path.join(prefix, 'bin', 'python');
}

/** `<prefix>/share/jupyter` → `<prefix>/bin/python`, when the dir has that shape. */
function pythonOfDataDir(dir: string): string | undefined {
  if (path.basename(dir) !== 'jupyter' || path.basename(path.dirname(dir)) !== 'share') return undefined;
  return venvPython(path.dirname(path.dirname(dir)));
}

/** Interpreters we may run kernels with, best first; paths only, nothing is spawned here. */
export function pythonCandidates(opts: DiscoverOptions = {}): string[] {
  const env = opts.env ?? process.env;
  const candidates: string[] = [];
  const add = (p: string | undefined): void => {
    if (!p) return;
    const resolved = path.resolve(p);
    if (!candidates.includes(resolved) && existsSync(resolved)) candidates.push(resolved);
  };
  add(env['MCP_JUPYTER_PYTHON']);
  if (opts.workspace) add(venvPython(path.join(opts.workspace, '.venv')));
  const root = opts.packageRoot === undefined ? packageRoot() : opts.packageRoot;
  if (root) add(venvPython(path.join(root, '.venv')));
  if (env['VIRTUAL_ENV']) add(venvPython(env['VIRTUAL_ENV']));
  add(findOnPath(process.platform === 'win32' ? 'python.exe' : 'python3', env));
  return candidates;
}

function findOnPath(command: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env['PATH'] ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, command);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

let cachedPackageRoot: string | null | undefined;
/** The nearest ancestor of this module holding package.json (works from src/ and from dist/src/). */
export function packageRoot(): string | undefined {
  if (cachedPackageRoot === undefined) {
    cachedPackageRoot = null;
    let dir = path.dirname(fileURLToPath(import.meta.url));
    for (;;) {
      if (existsSync(path.join(dir, 'package.json'))) {
        cachedPackageRoot = dir;
        break;
      }
      const parent = path.dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  return cachedPackageRoot ?? undefined;
}

async function scanDataDirs(opts: DiscoverOptions): Promise<KernelspecList> {
  const dataDirs = jupyterDataDirs(opts);
  const list = Object.assign([] as KernelSpec[], { problems: [] as KernelspecProblem[], searched: dataDirs.map((d) => d.dir) });
  const seen = new Set<string>();
  for (const dataDir of dataDirs) {
    const kernelsDir = path.join(dataDir.dir, 'kernels');
    let entries: string[];
    try {
      entries = (await readdir(kernelsDir, { withFileTypes: true })).filter((e) => e.isDirectory() || e.isSymbolicLink()).map((e) => e.name);
    } catch {
      continue; // a missing data dir is normal
    }
    for (const entry of entries.sort()) {
      const resourceDir = path.join(kernelsDir, entry);
      const file = path.join(resourceDir, 'kernel.json');
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch {
        continue; // a directory without kernel.json is not a kernelspec (Jupyter ignores it too)
      }
      if (!VALID_NAME.test(entry)) {
        list.problems.push({ path: resourceDir, message: 'kernel names may contain only letters, digits, ".", "_" and "-"' });
        continue;
      }
      const name = entry.toLowerCase();
      if (seen.has(name)) continue;
      const parsed = parseKernelJson(text, { name, resourceDir, dataDir });
      if (typeof parsed === 'string') {
        list.problems.push({ path: file, message: parsed });
        continue;
      }
      seen.add(name);
      list.push(parsed);
    }
  }
  return list;
}

/** A KernelSpec, or why the kernel.json cannot be used. */
function parseKernelJson(text: string, where: { name: string; resourceDir: string; dataDir: DataDir }): KernelSpec | string {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return `not valid JSON: ${(error as Error).message}`;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not a JSON object';
  const json = raw as Record<string, unknown>;
  const argv = json['argv'];
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a): a is string => typeof a === 'string')) {
    return '"argv" must be a non-empty list of strings';
  }
  const displayName = json['display_name'] ?? where.name;
  if (typeof displayName !== 'string') return '"display_name" must be a string';
  const language = json['language'] ?? '';
  if (typeof language !== 'string') return '"language" must be a string';
  const env = json['env'] ?? {};
  if (typeof env !== 'object' || env === null || Array.isArray(env) || !Object.values(env).every((v) => typeof v === 'string')) {
    return '"env" must be an object of strings';
  }
  const interruptMode = json['interrupt_mode'] ?? 'signal';
  if (interruptMode !== 'signal' && interruptMode !== 'message') return '"interrupt_mode" must be "signal" or "message"';
  const metadata = json['metadata'] ?? {};
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) return '"metadata" must be an object';

  // Jupyter runs a bare `python` with its own interpreter; ours is the environment the spec was installed into.
  const resolvedArgv = [...argv];
  let source = where.dataDir.source;
  if (where.dataDir.python && BARE_PYTHON.test(resolvedArgv[0] ?? '')) {
    resolvedArgv[0] = where.dataDir.python;
    if (!source.startsWith('python: ')) source = `${source} (python: ${where.dataDir.python})`;
  }
  return {
    name: where.name,
    display_name: displayName,
    language,
    argv: resolvedArgv,
    env: env as Record<string, string>,
    interrupt_mode: interruptMode,
    resource_dir: where.resourceDir,
    source,
    metadata: metadata as Record<string, unknown>,
  };
}

// Only successes are cached: a failed check may pass after `pip install ipykernel`.
const pythonsWithIpykernel = new Set<string>();

async function pythonFallbackSpec(opts: DiscoverOptions): Promise<KernelSpec | undefined> {
  for (const python of pythonCandidates(opts)) {
    if (!(await hasIpykernel(python))) continue;
    return {
      name: 'python3',
      display_name: 'Python 3 (ipykernel)',
      language: 'python',
      argv: [python, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
      env: {},
      interrupt_mode: 'signal',
      resource_dir: path.dirname(python),
      source: `python: ${python} (has ipykernel, no kernelspec installed)`,
      metadata: {},
    };
  }
  return undefined;
}

async function hasIpykernel(python: string): Promise<boolean> {
  if (pythonsWithIpykernel.has(python)) return true;
  try {
    await access(python, fsConstants.X_OK);
  } catch {
    return false;
  }
  const ok = await new Promise<boolean>((resolve) => {
    execFile(python, ['-c', 'import ipykernel'], { timeout: 20_000 }, (error) => resolve(!error));
  });
  if (ok) pythonsWithIpykernel.add(python);
  return ok;
}
