// What the journal keeps about kernels: enough to re-attach to them after this process dies.
import type { StoredKernel } from '../kernel/types.js';
import type { Db } from './db.js';

export interface KernelRow {
  stored: StoredKernel;
  notebookPath: string;
  instance: number;
  state: 'live' | 'ended';
  createdAt: number;
  endedAt: number | null;
  endReason: string | null;
}

interface RawKernel {
  id: string;
  notebook_path: string;
  provider: string;
  kernel_name: string;
  details: string;
  instance: number;
  state: string;
  created_at: number;
  ended_at: number | null;
  end_reason: string | null;
}

function fromRaw(raw: RawKernel): KernelRow {
  return {
    stored: {
      id: raw.id,
      provider: raw.provider === 'remote' ? 'remote' : 'local',
      kernelName: raw.kernel_name,
      details: JSON.parse(raw.details) as Record<string, unknown>,
    },
    notebookPath: raw.notebook_path,
    instance: raw.instance,
    state: raw.state === 'live' ? 'live' : 'ended',
    createdAt: raw.created_at,
    endedAt: raw.ended_at,
    endReason: raw.end_reason,
  };
}

export class KernelJournal {
  private readonly upsertStatement;
  private readonly endStatement;
  private readonly liveStatement;
  private readonly getStatement;

  constructor(db: Db) {
    this.upsertStatement = db.prepare(`INSERT INTO kernels (id, notebook_path, provider, kernel_name, details, instance, state, created_at)
      VALUES (@id, @notebookPath, @provider, @kernelName, @details, @instance, 'live', @createdAt)
      ON CONFLICT (id) DO UPDATE SET details = excluded.details, instance = excluded.instance, state = 'live', ended_at = NULL, end_reason = NULL`);
    this.endStatement = db.prepare(`UPDATE kernels SET state = 'ended', ended_at = ?, end_reason = ? WHERE id = ?`);
    this.liveStatement = db.prepare(`SELECT * FROM kernels WHERE state = 'live' ORDER BY created_at`);
    this.getStatement = db.prepare('SELECT * FROM kernels WHERE id = ?');
  }

  recordLive(stored: StoredKernel, notebookPath: string, instance: number): void {
    this.upsertStatement.run({
      id: stored.id,
      notebookPath,
      provider: stored.provider,
      kernelName: stored.kernelName,
      details: JSON.stringify(stored.details),
      instance,
      createdAt: Date.now(),
    });
  }

  recordEnded(id: string, reason: string): void {
    this.endStatement.run(Date.now(), reason, id);
  }

  live(): KernelRow[] {
    return (this.liveStatement.all() as RawKernel[]).map(fromRaw);
  }

  get(id: string): KernelRow | undefined {
    const raw = this.getStatement.get(id) as RawKernel | undefined;
    return raw ? fromRaw(raw) : undefined;
  }
}
