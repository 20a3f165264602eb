// Test fixture: a real engine (real SQLite file, real local kernels) in a temporary workspace.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, type Snapshot } from '../../src/engine/engine.js';
import { LocalKernelProvider } from '../../src/kernel/local-provider.js';
import { openDatabase, type Db } from '../../src/store/db.js';

export interface EngineFixture {
  dir: string;
  db: Db;
  engine: Engine;
  /** Submits code to a notebook's kernel and waits for it to finish. */
  run(code: string, notebookPath?: string, timeoutMs?: number): Promise<Snapshot>;
  close(): Promise<void>;
}

export function createEngineFixture(options: { outputBudgetChars?: number } = {}): EngineFixture {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-engine-'));
  const db = openDatabase(join(dir, '.mcp-jupyter', 'state.db'));
  const provider = new LocalKernelProvider({ runtimeDir: join(dir, '.mcp-jupyter', 'kernels'), workspace: dir });
  const engine = new Engine({ db, provider, workspaceRoot: dir, ...(options.outputBudgetChars ? { outputBudgetChars: options.outputBudgetChars } : {}) });
  return {
    dir,
    db,
    engine,
    async run(code, notebookPath = 'test.ipynb', timeoutMs = 60_000) {
      const [accepted] = engine.submit([{ notebookPath, code, kind: 'code', kernelName: 'python3' }]);
      return engine.wait(accepted!.id, timeoutMs);
    },
    async close() {
      await engine.close({ kernels: 'shutdown' });
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function textOf(snapshot: Snapshot): string {
  return snapshot.outputs
    .map((output) => {
      if (output.output_type === 'stream') return String(output.text);
      if (output.output_type === 'error') return `${String(output.ename)}: ${String(output.evalue)}`;
      const data = output.data as Record<string, unknown> | undefined;
      return String(data?.['text/plain'] ?? '');
    })
    .join('');
}
