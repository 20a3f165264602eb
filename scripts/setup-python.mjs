#!/usr/bin/env node
// Provides a Python kernel: a project-local virtual environment (.venv) with ipykernel, plus test packages on request.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const withTestDeps = process.argv.includes('--with-test-deps');
const venv = join(root, '.venv');
const venvPython = join(venv, process.platform === 'win32' ? 'Scripts/python.exe' : 'bin/python');

// What each need imports, and the pip names that provide it.
const RUNTIME = { imports: ['ipykernel'], packages: ['ipykernel'] };
const TESTS = {
  imports: ['matplotlib', 'pandas', 'nbformat', 'nbclient', 'nbconvert', 'jupyter_server', 'mcp'],
  packages: ['matplotlib', 'pandas', 'nbformat', 'nbclient', 'nbconvert', 'jupyter_server', 'mcp'],
};

function run(command, args, options = {}) {
  return spawnSync(command, args, { stdio: options.quiet ? 'pipe' : 'inherit', encoding: 'utf8', ...options });
}

function canImport(python, modules) {
  const result = run(python, ['-c', `import ${modules.join(', ')}`], { quiet: true });
  return result.status === 0;
}

function findBasePython() {
  for (const candidate of [process.env.MCP_JUPYTER_BASE_PYTHON, 'python3', 'python'].filter(Boolean)) {
    const result = run(candidate, ['-c', 'import sys; print(sys.version_info >= (3, 9))'], { quiet: true });
    if (result.status === 0 && result.stdout.trim() === 'True') return candidate;
  }
  return null;
}

function fail(message) {
  console.error(`\nsetup-python: ${message}`);
  process.exit(1);
}

const needs = withTestDeps ? [RUNTIME, TESTS] : [RUNTIME];
const imports = needs.flatMap((need) => need.imports);

if (existsSync(venvPython) && canImport(venvPython, imports)) {
  console.error(`setup-python: ${venvPython} has ${imports.join(', ')}`);
  process.exit(0);
}

if (!existsSync(venvPython)) {
  const base = findBasePython();
  if (!base) fail('no Python 3.9+ found. Install Python 3 (e.g. `apt-get install python3 python3-venv`) and run this again.');
  console.error(`setup-python: creating ${venv} with ${base}`);
  const created = run(base, ['-m', 'venv', venv]);
  if (created.status !== 0) fail(`could not create a virtual environment. On Debian/Ubuntu install the venv module: \`apt-get install python3-venv\`, then run \`npm run setup:python\`.`);
}

// One attempt per request by default: an unreachable index then fails in seconds instead of minutes.
// Set PIP_RETRIES for flaky networks.
const retries = process.env.PIP_RETRIES ?? '0';
const packages = needs.flatMap((need) => need.packages);
console.error(`setup-python: installing ${packages.join(' ')}`);
const installed = run(venvPython, ['-m', 'pip', 'install', '--disable-pip-version-check', '--retries', retries, '-q', ...packages]);
if (installed.status !== 0) fail(`pip could not install ${packages.join(' ')}. Check your network or pip configuration, then run \`npm run setup:python\` again.`);
if (!canImport(venvPython, imports)) fail(`${imports.join(', ')} still cannot be imported by ${venvPython}.`);
console.error(`setup-python: ready (${venvPython})`);
