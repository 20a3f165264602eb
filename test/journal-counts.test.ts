// Executions by state (server_status, /metrics) are kept without scanning the journal, and always equal a full count.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { openDatabase, type Db } from '../src/store/db.js';
import { ALL_STATES, ExecutionJournal, type ExecutionState, type FinishFields } from '../src/store/executions.js';

const dir = mkdtempSync(join(tmpdir(), 'mcpj-journal-counts-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The truth: a full scan of the table. */
function fullCount(db: Db): Record<ExecutionState, number> {
  const counts = Object.fromEntries(ALL_STATES.map((state) => [state, 0])) as Record<ExecutionState, number>;
  for (const { state, n } of db.prepare('SELECT state, COUNT(*) AS n FROM execution_queue GROUP BY state').all() as Array<{ state: ExecutionState; n: number }>) counts[state] = n;
  return counts;
}

function insert(journal: ExecutionJournal, id: string): void {
  journal.insert([{ id, notebookPath: 'a.ipynb', cellId: null, kind: 'code', code: '1', sourceSha256: 'x', kernelName: 'python3', batchId: null, stopOnError: true, createdAt: Date.now() }]);
}

function finishFields(state: ExecutionState): FinishFields {
  return { state, finishedAt: Date.now(), statusText: null, errorName: null, errorValue: null, executionCount: 1, outputsDroppedChars: 0, outputsNote: null };
}

const TERMINAL: ExecutionState[] = ['succeeded', 'failed', 'cancelled', 'interrupted', 'timed_out', 'lost'];

test('property: after any sequence of starts, state changes and ends, the kept counts equal a full count', () => {
  let run = 0;
  const step = fc.oneof(
    fc.record({ kind: fc.constant('insert' as const) }),
    fc.record({ kind: fc.constant('start' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('input' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('finish' as const), pick: fc.nat(), state: fc.constantFrom(...TERMINAL) }),
    fc.record({ kind: fc.constant('count' as const) }),
  );
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
      run += 1;
      const db = openDatabase(join(dir, `property-${run}.db`));
      try {
        const journal = new ExecutionJournal(db);
        const ids: string[] = [];
        // Rows that exist before the first count, like a journal from earlier runs.
        for (let i = 0; i < 3; i += 1) insert(journal, `old-${i}`);
        journal.finish('old-0', finishFields('succeeded'), null);
        ids.push('old-0', 'old-1', 'old-2');
        assert.deepEqual(journal.countsByState(), fullCount(db));
        for (const [i, change] of steps.entries()) {
          const id = ids.length > 0 && change.kind !== 'insert' && change.kind !== 'count' ? ids[change.pick % ids.length]! : '';
          if (change.kind === 'insert') {
            insert(journal, `new-${i}`);
            ids.push(`new-${i}`);
          } else if (change.kind === 'start') journal.markRunning(id, 'k', 0, `m-${i}`, Date.now());
          else if (change.kind === 'input') journal.setState(id, 'awaiting_input');
          // Finishing a row that already ended (with the same or another state) must not count it twice.
          else if (change.kind === 'finish') journal.finish(id, finishFields(change.state), null);
          else assert.deepEqual(journal.countsByState(), fullCount(db));
        }
        assert.deepEqual(journal.countsByState(), fullCount(db));
      } finally {
        db.close();
      }
    }),
    { numRuns: 150 },
  );
});

test('a write that fails moves no count, and writes by another process are noticed', () => {
  const file = join(dir, 'shared.db');
  const db = openDatabase(file);
  const other = openDatabase(file);
  try {
    const journal = new ExecutionJournal(db);
    for (const id of ['a', 'b', 'c', 'd']) insert(journal, id);
    journal.finish('a', finishFields('failed'), null);
    assert.deepEqual(journal.countsByState(), fullCount(db));

    // A real SQLite failure inside the finishing transaction (as a full disk would give): nothing committed, no count moved.
    db.exec(`CREATE TRIGGER refuse_b BEFORE UPDATE ON execution_queue WHEN NEW.id = 'b' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`);
    assert.throws(() => journal.finish('b', finishFields('succeeded'), null), /refused by the test/);
    assert.deepEqual(journal.countsByState(), fullCount(db));
    assert.equal(journal.countsByState().pending, 3);
    db.exec('DROP TRIGGER refuse_b');

    // Another connection (another server process taking over, or `run` beside it) ends an execution.
    new ExecutionJournal(other).finish('c', finishFields('lost'), null);
    const afterOther = journal.countsByState();
    assert.deepEqual(afterOther, fullCount(db));
    assert.equal(afterOther.lost, 1);
    journal.finish('d', finishFields('succeeded'), null);
    assert.deepEqual(journal.countsByState(), fullCount(db));
  } finally {
    other.close();
    db.close();
  }
});
