// `doctor`: what was found, what is missing, and the exact command that fixes each missing piece.
import { spawnSync } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { discoverKernelspecs, packageRoot } from '../kernel/kernelspecs.js';
import type { Config } from '../config.js';

export interface Finding {
  ok: boolean;
  what: string;
  detail: string;
  fix?: string;
}

function pythonVersion(python: string): string | null {
  const result = spawnSync(python, ['--version'], { encoding: 'utf8' });
  return result.status === 0 ? (result.stdout || result.stderr).trim() : null;
}

export async function diagnose(config: Config): Promise<Finding[]> {
  const findings: Finding[] = [];
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  findings.push({
    ok: nodeMajor >= 20,
    what: 'Node.js',
    detail: process.version,
    ...(nodeMajor >= 20 ? {} : { fix: 'install Node.js 20 or newer' }),
  });

  const python = pythonVersion('python3');
  findings.push({
    ok: python !== null,
    what: 'Python',
    detail: python ?? 'python3 not found on PATH',
    ...(python ? {} : { fix: 'install Python 3 (e.g. `apt-get install python3 python3-venv`), then `npm run setup:python`' }),
  });

  const specs = await discoverKernelspecs({ workspace: config.workspace });
  for (const spec of specs) {
    findings.push({ ok: true, what: `kernelspec ${spec.name}`, detail: `${spec.display_name} (${spec.language}) — ${spec.source}` });
  }
  for (const problem of specs.problems) {
    findings.push({ ok: false, what: 'kernelspec problem', detail: `${problem.path}: ${problem.message}`, fix: 'fix or remove that kernel.json' });
  }
  if (!specs.some((spec) => spec.name === 'python3')) {
    const root = packageRoot();
    findings.push({
      ok: false,
      what: 'kernelspec python3',
      detail: `no Python kernel found (searched: ${specs.searched.join(', ')})`,
      fix: root ? `cd ${root} && npm run setup:python   (creates .venv with ipykernel)` : 'python3 -m pip install ipykernel && python3 -m ipykernel install --user',
    });
  }

  try {
    await mkdir(config.stateDir, { recursive: true });
    await access(config.stateDir, constants.W_OK);
    findings.push({ ok: true, what: 'state directory', detail: `${config.stateDir} (writable)` });
  } catch (error) {
    findings.push({ ok: false, what: 'state directory', detail: `${config.stateDir}: ${(error as Error).message}`, fix: 'pass a writable directory with --state-dir' });
  }

  for (const [name, load] of [
    ['better-sqlite3', () => import('better-sqlite3')],
    ['zeromq', () => import('zeromq')],
  ] as const) {
    try {
      await load();
      findings.push({ ok: true, what: `native module ${name}`, detail: 'loads' });
    } catch (error) {
      findings.push({ ok: false, what: `native module ${name}`, detail: (error as Error).message, fix: `npm rebuild ${name}` });
    }
  }
  return findings;
}

export function formatFindings(findings: Finding[]): string {
  const lines = findings.map((finding) => {
    const mark = finding.ok ? 'ok  ' : 'MISS';
    return `${mark} ${finding.what}: ${finding.detail}${finding.fix ? `\n     fix: ${finding.fix}` : ''}`;
  });
  const missing = findings.filter((finding) => !finding.ok).length;
  lines.push(missing === 0 ? '\nEverything needed was found.' : `\n${missing} problem(s) found; run the fix commands above.`);
  return `${lines.join('\n')}\n`;
}
