// The package version, read once from package.json so it is never out of step with what was installed.
import { readFileSync } from 'node:fs';
import { packageRoot } from '../kernel/kernelspecs.js';

function readVersion(): string {
  const root = packageRoot();
  if (!root) return '0.0.0';
  try {
    return (JSON.parse(readFileSync(`${root}/package.json`, 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export const VERSION = readVersion();
