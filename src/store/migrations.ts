// The journal's schema, one entry per version; never edit a shipped entry, append a new one.

export const MIGRATIONS: readonly string[] = [
  // 1: executions, their outputs, kernels to re-attach, asset leases.
  `
  CREATE TABLE kernels (
    id             TEXT PRIMARY KEY,
    notebook_path  TEXT NOT NULL,
    provider       TEXT NOT NULL,            -- 'local' | 'remote'
    kernel_name    TEXT NOT NULL,
    details        TEXT NOT NULL,            -- JSON: connection info / remote ids, pid, start time
    instance       INTEGER NOT NULL DEFAULT 1,
    state          TEXT NOT NULL,            -- 'live' | 'ended'
    created_at     INTEGER NOT NULL,
    ended_at       INTEGER,
    end_reason     TEXT
  );
  CREATE INDEX kernels_live ON kernels (notebook_path) WHERE state = 'live';

  CREATE TABLE execution_queue (
    seq                   INTEGER PRIMARY KEY AUTOINCREMENT,   -- acceptance order
    id                    TEXT NOT NULL UNIQUE,
    notebook_path         TEXT NOT NULL,
    cell_id               TEXT,
    kind                  TEXT NOT NULL,       -- 'cell' | 'code'
    code                  TEXT NOT NULL,
    source_sha256         TEXT NOT NULL,
    kernel_name           TEXT NOT NULL,
    state                 TEXT NOT NULL,
    batch_id              TEXT,
    stop_on_error         INTEGER NOT NULL DEFAULT 1,
    kernel_id             TEXT,
    kernel_instance       INTEGER,
    msg_id                TEXT,                -- set before the request is sent: the kernel may have seen it
    execution_count       INTEGER,
    created_at            INTEGER NOT NULL,
    started_at            INTEGER,
    finished_at           INTEGER,
    status_text           TEXT,
    error_name            TEXT,
    error_value           TEXT,
    outputs_dropped_chars INTEGER NOT NULL DEFAULT 0,
    outputs_note          TEXT
  );
  CREATE INDEX execution_by_notebook ON execution_queue (notebook_path, seq);
  CREATE INDEX execution_active ON execution_queue (state) WHERE state IN ('pending', 'running', 'awaiting_input');
  CREATE INDEX execution_by_batch ON execution_queue (batch_id) WHERE batch_id IS NOT NULL;

  CREATE TABLE execution_outputs (
    execution_id  TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    output        TEXT NOT NULL,              -- one nbformat 4 output as JSON
    PRIMARY KEY (execution_id, idx)
  ) WITHOUT ROWID;

  CREATE TABLE asset_leases (
    asset_path     TEXT PRIMARY KEY,          -- workspace-relative
    notebook_path  TEXT NOT NULL,
    execution_id   TEXT,
    bytes          INTEGER NOT NULL,
    sha256         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
  );
  CREATE INDEX asset_leases_by_notebook ON asset_leases (notebook_path);
  `,
  // 2: MCP tasks: a task id maps to the execution(s) it stands for, so tasks answer across restarts and sessions.
  `
  CREATE TABLE IF NOT EXISTS mcp_tasks (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id        TEXT NOT NULL UNIQUE,
    tool           TEXT NOT NULL,
    notebook_path  TEXT NOT NULL,
    execution_ids  TEXT NOT NULL,      -- JSON array of execution ids, in run order
    created_at     INTEGER NOT NULL,
    cancelled_at   INTEGER
  );
  `,
];
