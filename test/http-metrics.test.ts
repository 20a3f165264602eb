// The Prometheus registry: text format details (escaping, histogram buckets) checked against prometheus_client's parser.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { Registry, collectMetrics, formatValue, pathLabel } from '../src/server/metrics.js';
import type { ServerStatus } from '../src/server/workspace.js';
import { VENV_PYTHON } from './fixtures/kernel-helpers.js';

type Sample = [string, Record<string, string>, number];

/** The official Python client's parser: it raises on malformed text, so a clean parse is a real check. */
function parse(text: string): Record<string, { type: string; help: string; samples: Sample[] }> {
  const result = spawnSync(
    VENV_PYTHON,
    [
      '-c',
      'import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families as p\n' +
        'print(json.dumps({f.name: {"type": f.type, "help": f.documentation, "samples": [[s.name, s.labels, s.value] for s in f.samples]} for f in p(sys.stdin.read())}))',
    ],
    { input: text, encoding: 'utf8' },
  );
  assert.equal(result.status, 0, `prometheus_client could not parse:\n${text}\n${result.stderr}`);
  return JSON.parse(result.stdout) as Record<string, { type: string; help: string; samples: Sample[] }>;
}

test('counters, gauges and labels render and parse back, with awkward label values escaped', () => {
  const registry = new Registry();
  const calls = registry.counter('mcp_jupyter_tool_calls_total', 'Tool calls by tool and outcome\\ (help with a backslash)', ['tool', 'outcome']);
  calls.inc({ tool: 'execute_cell', outcome: 'ok' });
  calls.inc({ tool: 'execute_cell', outcome: 'ok' }, 2);
  const weird = 'a "quoted"\\path\nline two';
  calls.inc({ tool: weird, outcome: 'error' });
  const depth = registry.gauge('queue', 'Queue', ['notebook']);
  depth.set({ notebook: 'x.ipynb' }, 3);
  depth.set({ notebook: 'x.ipynb' }, 1);
  registry.gauge('plain', 'An unlabelled gauge starts at 0');

  const text = registry.render();
  assert.match(text, /^# HELP mcp_jupyter_tool_calls_total /m);
  assert.match(text, /^# TYPE mcp_jupyter_tool_calls_total counter$/m);
  assert.match(text, /tool="a \\"quoted\\"\\\\path\\nline two"/);
  const families = parse(text);
  const samples = families['mcp_jupyter_tool_calls']?.samples ?? [];
  assert.deepEqual(samples.find(([, labels]) => labels['tool'] === 'execute_cell'), ['mcp_jupyter_tool_calls_total', { tool: 'execute_cell', outcome: 'ok' }, 3]);
  assert.deepEqual(samples.find(([, labels]) => labels['outcome'] === 'error')?.[1]['tool'], weird);
  assert.deepEqual(families['queue']?.samples, [['queue', { notebook: 'x.ipynb' }, 1]]);
  assert.deepEqual(families['plain']?.samples, [['plain', {}, 0]]);
  assert.equal(calls.get({ tool: 'execute_cell', outcome: 'ok' }), 3);
});

test('histograms render cumulative buckets, +Inf, _sum and _count', () => {
  const registry = new Registry();
  const duration = registry.histogram('mcp_jupyter_tool_duration_seconds', 'Tool duration', ['tool'], [0.1, 1, 10]);
  for (const value of [0.05, 0.5, 0.5, 5, 50]) duration.observe({ tool: 'run_all_cells' }, value);
  const family = parse(registry.render())['mcp_jupyter_tool_duration_seconds'];
  assert.equal(family?.type, 'histogram');
  const byName = (name: string, le?: string): number | undefined =>
    family.samples.find(([sample, labels]) => sample === name && (le === undefined || labels['le'] === le))?.[2];
  assert.equal(byName('mcp_jupyter_tool_duration_seconds_bucket', '0.1'), 1);
  assert.equal(byName('mcp_jupyter_tool_duration_seconds_bucket', '1'), 3);
  assert.equal(byName('mcp_jupyter_tool_duration_seconds_bucket', '10'), 4);
  assert.equal(byName('mcp_jupyter_tool_duration_seconds_bucket', '+Inf'), 5);
  assert.equal(byName('mcp_jupyter_tool_duration_seconds_count'), 5);
  assert.equal(byName('mcp_jupyter_tool_duration_seconds_sum'), 56.05);
  assert.throws(() => registry.histogram('bad', 'le is reserved', ['le']), /le/);
});

test('registering again returns the same metric; a conflicting registration or a bad label throws', () => {
  const registry = new Registry();
  const a = registry.counter('mcp_jupyter_tool_calls_total', 'Tool calls', ['tool', 'outcome']);
  const b = registry.counter('mcp_jupyter_tool_calls_total', 'Tool calls', ['tool', 'outcome']);
  assert.equal(a, b);
  assert.throws(() => registry.gauge('mcp_jupyter_tool_calls_total', 'x', ['tool', 'outcome']), /already registered as a counter/);
  assert.throws(() => registry.counter('mcp_jupyter_tool_calls_total', 'x', ['tool']), /already registered/);
  assert.throws(() => registry.counter('bad-name', 'x'), /not a valid Prometheus metric name/);
  assert.throws(() => a.inc({ tool: 'x' } as never), /needs the label 'outcome'/);
  assert.throws(() => a.inc({ tool: 'x', outcome: 'ok', extra: 'y' } as never), /has no label 'extra'/);
  assert.throws(() => a.inc({ tool: 'x', outcome: 'ok' }, -1), /can only go up/);
});

test('special values and the path label', () => {
  assert.equal(formatValue(Infinity), '+Inf');
  assert.equal(formatValue(-Infinity), '-Inf');
  assert.equal(formatValue(Number.NaN), 'NaN');
  assert.equal(pathLabel('/mcp'), '/mcp');
  assert.equal(pathLabel('/wp-admin/login.php'), 'other');
});

test('collectMetrics renders the workspace snapshot, and drops notebooks that are gone', () => {
  const status: ServerStatus = {
    version: '1.2.3',
    uptimeS: 42,
    workspace: '/w',
    stateDir: '/w/.mcp-jupyter',
    kernels: [
      { notebookPath: 'a.ipynb', kernelId: 'k1', kernelName: 'python3', location: 'local', status: 'busy', instance: 1, queueLength: 2, running: 'e1' },
      { notebookPath: 'b "odd".ipynb', kernelId: 'k2', kernelName: 'python3', location: 'local', status: 'idle', instance: 1, queueLength: 0, running: null },
      { notebookPath: 'c.ipynb', kernelId: 'k3', kernelName: 'python3', location: 'local', status: 'idle', instance: 1, queueLength: 0, running: null },
    ],
    queueDepth: 2,
    executionsByState: { pending: 2, running: 1, awaiting_input: 0, succeeded: 7, failed: 1, cancelled: 0, interrupted: 0, timed_out: 0, lost: 0 },
    databaseBytes: 4096,
    eventClients: 3,
  };
  const registry = new Registry();
  const families = parse(collectMetrics({ status: () => status }, { registry, mcpSessions: 2 }));
  const value = (family: string, labels: Record<string, string> = {}): number | undefined =>
    families[family]?.samples.find(([, l]) => Object.entries(labels).every(([k, v]) => l[k] === v))?.[2];
  assert.equal(value('mcp_jupyter_executions', { state: 'succeeded' }), 7);
  assert.equal(value('mcp_jupyter_executions', { state: 'pending' }), 2);
  assert.equal(value('mcp_jupyter_queue_depth', { notebook: 'a.ipynb' }), 2);
  assert.equal(value('mcp_jupyter_queue_depth', { notebook: 'b "odd".ipynb' }), 0);
  assert.equal(value('mcp_jupyter_kernels', { status: 'idle' }), 2);
  assert.equal(value('mcp_jupyter_kernels', { status: 'busy' }), 1);
  assert.equal(value('mcp_jupyter_event_clients'), 3);
  assert.equal(value('mcp_jupyter_database_bytes'), 4096);
  assert.equal(value('mcp_jupyter_uptime_seconds'), 42);
  assert.equal(value('mcp_jupyter_mcp_sessions'), 2);

  status.kernels = status.kernels.slice(0, 1);
  const later = parse(collectMetrics({ status: () => status }, { registry }));
  assert.deepEqual(later['mcp_jupyter_queue_depth']?.samples.map(([, labels]) => labels['notebook']), ['a.ipynb']);
  assert.throws(() => collectMetrics({ status: () => { throw new Error('database closed'); } }), /database closed/);
});
