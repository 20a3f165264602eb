// A small Prometheus registry (counters, gauges, histograms) and the server's metrics in text format 0.0.4.
import type { ServerStatus } from './workspace.js';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

type MetricType = 'counter' | 'gauge' | 'histogram';
export type LabelValues<L extends string> = { readonly [K in L]: string | number };

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function labelText(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const pairs = names.map((name, i) => `${name}="${escapeLabelValue(values[i] ?? '')}"`);
  if (extra) pairs.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return pairs.length ? `{${pairs.join(',')}}` : '';
}

abstract class Metric<L extends string> {
  abstract readonly type: MetricType;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly L[],
  ) {}

  /** The label values in declared order; a missing or unknown label is a programming error, so it throws. */
  protected valuesOf(labels: LabelValues<L> | undefined): string[] {
    const given = (labels ?? {}) as Record<string, string | number>;
    for (const key of Object.keys(given)) {
      if (!(this.labelNames as readonly string[]).includes(key)) throw new Error(`metric ${this.name} has no label '${key}' (it has: ${this.labelNames.join(', ') || 'none'})`);
    }
    return this.labelNames.map((name) => {
      const value = given[name];
      if (value === undefined) throw new Error(`metric ${this.name} needs the label '${name}'`);
      return String(value);
    });
  }

  abstract samples(): string[];
}

interface ScalarSeries {
  values: string[];
  value: number;
}

abstract class ScalarMetric<L extends string> extends Metric<L> {
  protected readonly series = new Map<string, ScalarSeries>();

  constructor(name: string, help: string, labelNames: readonly L[]) {
    super(name, help, labelNames);
    // An unlabelled metric exists from the start, so a scrape shows 0 rather than nothing.
    if (labelNames.length === 0) this.series.set('[]', { values: [], value: 0 });
  }

  protected entry(labels: LabelValues<L> | undefined): ScalarSeries {
    const values = this.valuesOf(labels);
    const key = JSON.stringify(values);
    let entry = this.series.get(key);
    if (!entry) {
      entry = { values, value: 0 };
      this.series.set(key, entry);
    }
    return entry;
  }

  get(labels?: LabelValues<L>): number {
    return this.series.get(JSON.stringify(this.valuesOf(labels)))?.value ?? 0;
  }

  samples(): string[] {
    return [...this.series.values()].map((entry) => `${this.name}${labelText(this.labelNames, entry.values)} ${formatValue(entry.value)}`);
  }
}

export class Counter<L extends string = never> extends ScalarMetric<L> {
  readonly type = 'counter';

  inc(labels?: LabelValues<L>, by = 1): void {
    if (!(by >= 0)) throw new Error(`counter ${this.name} can only go up (got ${by})`);
    this.entry(labels).value += by;
  }
}

export class Gauge<L extends string = never> extends ScalarMetric<L> {
  readonly type = 'gauge';

  set(labels: LabelValues<L> | undefined, value: number): void {
    this.entry(labels).value = value;
  }

  inc(labels?: LabelValues<L>, by = 1): void {
    this.entry(labels).value += by;
  }

  /** Forgets every labelled series, for gauges rebuilt from a snapshot at each scrape. */
  reset(): void {
    for (const [key, entry] of this.series) {
      if (entry.values.length) this.series.delete(key);
      else entry.value = 0;
    }
  }
}

interface HistogramSeries {
  values: string[];
  /** Per bucket, observations at or below its bound (not yet cumulative). */
  counts: number[];
  sum: number;
  count: number;
}

export const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

export class Histogram<L extends string = never> extends Metric<L> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  private readonly series = new Map<string, HistogramSeries>();

  constructor(name: string, help: string, labelNames: readonly L[], buckets: readonly number[] = DEFAULT_BUCKETS) {
    super(name, help, labelNames);
    if ((labelNames as readonly string[]).includes('le')) throw new Error(`histogram ${name} cannot have a label named 'le' (Prometheus uses it for buckets)`);
    const sorted = [...new Set(buckets.filter((b) => Number.isFinite(b)))].sort((a, b) => a - b);
    if (sorted.length === 0) throw new Error(`histogram ${name} needs at least one finite bucket bound`);
    this.buckets = sorted;
    if (labelNames.length === 0) this.series.set('[]', this.fresh([]));
  }

  private fresh(values: string[]): HistogramSeries {
    return { values, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
  }

  observe(labels: LabelValues<L> | undefined, value: number): void {
    const values = this.valuesOf(labels);
    const key = JSON.stringify(values);
    let entry = this.series.get(key);
    if (!entry) {
      entry = this.fresh(values);
      this.series.set(key, entry);
    }
    const index = this.buckets.findIndex((bound) => value <= bound);
    if (index >= 0) entry.counts[index] = (entry.counts[index] ?? 0) + 1;
    entry.sum += value;
    entry.count += 1;
  }

  /** Count of observations for the labels (0 when none). */
  count(labels?: LabelValues<L>): number {
    return this.series.get(JSON.stringify(this.valuesOf(labels)))?.count ?? 0;
  }

  samples(): string[] {
    const lines: string[] = [];
    for (const entry of this.series.values()) {
      let cumulative = 0;
      this.buckets.forEach((bound, i) => {
        cumulative += entry.counts[i] ?? 0;
        lines.push(`${this.name}_bucket${labelText(this.labelNames, entry.values, ['le', formatValue(bound)])} ${cumulative}`);
      });
      lines.push(`${this.name}_bucket${labelText(this.labelNames, entry.values, ['le', '+Inf'])} ${entry.count}`);
      const plain = labelText(this.labelNames, entry.values);
      lines.push(`${this.name}_sum${plain} ${formatValue(entry.sum)}`);
      lines.push(`${this.name}_count${plain} ${entry.count}`);
    }
    return lines;
  }
}

type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;

/**
 * The metrics of one process, rendered in registration order. Asking again for a metric already registered
 * with the same type and labels returns it, so modules can declare their metrics independently.
 */
export class Registry {
  private readonly metrics = new Map<string, AnyMetric>();

  counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return this.register(name, 'counter', labelNames, () => new Counter<L>(name, help, labelNames));
  }

  gauge<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    return this.register(name, 'gauge', labelNames, () => new Gauge<L>(name, help, labelNames));
  }

  histogram<L extends string = never>(name: string, help: string, labelNames: readonly L[] = [], buckets?: readonly number[]): Histogram<L> {
    return this.register(name, 'histogram', labelNames, () => new Histogram<L>(name, help, labelNames, buckets));
  }

  private register<M>(name: string, type: MetricType, labelNames: readonly string[], create: () => M): M {
    if (!METRIC_NAME.test(name)) throw new Error(`'${name}' is not a valid Prometheus metric name`);
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith('__')) throw new Error(`'${label}' is not a valid Prometheus label name (metric ${name})`);
    }
    const existing = this.metrics.get(name);
    if (existing) {
      if (existing.type !== type || existing.labelNames.join(',') !== labelNames.join(',')) {
        throw new Error(`metric ${name} is already registered as a ${existing.type} with labels [${existing.labelNames.join(', ')}]`);
      }
      return existing as unknown as M;
    }
    const metric = create();
    this.metrics.set(name, metric as unknown as AnyMetric);
    return metric;
  }

  render(): string {
    let text = '';
    for (const metric of this.metrics.values()) {
      text += `# HELP ${metric.name} ${escapeHelp(metric.help)}\n# TYPE ${metric.name} ${metric.type}\n`;
      for (const line of metric.samples()) text += `${line}\n`;
    }
    return text;
  }
}

/** The process-wide registry: HTTP request metrics live here, and tool code registers its own, e.g. `mcp_jupyter_tool_calls_total`. */
export const metricsRegistry = new Registry();

/** Request latency bounds in seconds; tool calls can legitimately wait a minute for a cell. */
export const HTTP_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] as const;

export interface HttpMetrics {
  requests: Counter<'path' | 'method' | 'code'>;
  duration: Histogram<'path' | 'method'>;
}

export function httpMetrics(registry: Registry = metricsRegistry): HttpMetrics {
  return {
    requests: registry.counter('mcp_jupyter_http_requests_total', 'HTTP requests answered, by path, method and status code', ['path', 'method', 'code']),
    duration: registry.histogram('mcp_jupyter_http_request_duration_seconds', 'HTTP request duration in seconds (an SSE stream counts until it closes)', ['path', 'method'], HTTP_DURATION_BUCKETS),
  };
}

export interface ToolMetrics {
  calls: Counter<'tool' | 'outcome'>;
  duration: Histogram<'tool'>;
  redactions: Counter<'kind'>;
}

/** Per-tool call counts (outcome `ok` or `error`) and latencies, and the secrets redacted from tool results. */
export function toolMetrics(registry: Registry = metricsRegistry): ToolMetrics {
  return {
    calls: registry.counter('mcp_jupyter_tool_calls_total', 'MCP tool calls answered, by tool and outcome (ok, error)', ['tool', 'outcome']),
    duration: registry.histogram('mcp_jupyter_tool_call_duration_seconds', 'MCP tool call duration in seconds (waiting for a cell included)', ['tool'], HTTP_DURATION_BUCKETS),
    redactions: registry.counter('mcp_jupyter_redactions_total', 'Secrets replaced by a marker in tool results, by kind', ['kind']),
  };
}

/** Paths that get their own label value; everything else is `other`, so scanners cannot blow up cardinality. */
const KNOWN_PATHS = new Set(['/', '/mcp', '/events', '/health', '/metrics']);
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export function pathLabel(pathname: string): string {
  return KNOWN_PATHS.has(pathname) ? pathname : 'other';
}

export function methodLabel(method: string | undefined): string {
  return method && KNOWN_METHODS.has(method) ? method : 'other';
}

export interface StatusSource {
  status(): ServerStatus;
}

export interface CollectExtras {
  /** Counters and histograms kept between scrapes (default: the process-wide registry). */
  registry?: Registry;
  /** Open MCP sessions on the HTTP transport. */
  mcpSessions?: number;
}

/**
 * The scrape: gauges read from the workspace at this moment, then the registry's counters and histograms.
 * Throws when the workspace cannot be read (its database is closed or broken); the caller answers 503.
 */
export function collectMetrics(workspace: StatusSource, extras: CollectExtras = {}): string {
  const status = workspace.status();
  // Snapshot gauges live in a throwaway registry so that notebooks or states that vanished do not linger.
  const snapshot = new Registry();
  const executions = snapshot.gauge('mcp_jupyter_executions', 'Executions in the journal, by state', ['state']);
  for (const [state, n] of Object.entries(status.executionsByState)) executions.set({ state }, n);
  const queue = snapshot.gauge('mcp_jupyter_queue_depth', 'Executions waiting in a kernel queue, by notebook', ['notebook']);
  for (const kernel of status.kernels) queue.set({ notebook: kernel.notebookPath }, kernel.queueLength);
  const kernels = snapshot.gauge('mcp_jupyter_kernels', 'Notebook kernels known to the engine, by status', ['status']);
  for (const kernel of status.kernels) kernels.inc({ status: kernel.status });
  snapshot.gauge('mcp_jupyter_event_clients', 'Connected live-event (WebSocket) clients').set(undefined, status.eventClients);
  snapshot.gauge('mcp_jupyter_database_bytes', 'Size of the state database and its WAL file in bytes').set(undefined, status.databaseBytes);
  snapshot.gauge('mcp_jupyter_uptime_seconds', 'Seconds since the server started').set(undefined, status.uptimeS);
  if (status.queueLimit !== undefined) snapshot.gauge('mcp_jupyter_queue_limit', 'Unfinished executions one kernel accepts before refusing more').set(undefined, status.queueLimit);
  snapshot
    .gauge('mcp_jupyter_kernels_restart_blocked', 'Kernels not restarted automatically after repeated deaths (waiting for restart_kernel)')
    .set(undefined, status.kernels.filter((kernel) => kernel.restartBlocked).length);
  const engine = status.engine;
  if (engine) {
    snapshot.counter('mcp_jupyter_kernel_deaths_total', 'Kernels that died (process exited or vanished) since the start').inc(undefined, engine.kernelDeaths);
    const restarts = snapshot.counter('mcp_jupyter_kernel_restarts_total', 'Kernel restarts: after a death (automatic) or requested (restart_kernel)', ['reason']);
    restarts.inc({ reason: 'after_death' }, engine.restartsAfterDeath);
    restarts.inc({ reason: 'requested' }, engine.requestedRestarts);
    snapshot.counter('mcp_jupyter_kernel_breaker_trips_total', 'Times a kernel died too often and was left for restart_kernel').inc(undefined, engine.breakerTrips);
    snapshot.counter('mcp_jupyter_interrupts_ignored_total', 'Interrupts the running code outlived by the grace period').inc(undefined, engine.interruptsIgnored);
    snapshot.counter('mcp_jupyter_queue_full_refusals_total', 'Submissions refused because a kernel queue was at its limit').inc(undefined, engine.queueFullRefusals);
    snapshot.counter('mcp_jupyter_journal_write_errors_total', 'Journal writes that failed (disk full, read-only state directory)').inc(undefined, engine.journalWriteErrors);
  }
  if (extras.mcpSessions !== undefined) snapshot.gauge('mcp_jupyter_mcp_sessions', 'Open MCP sessions on the HTTP transport').set(undefined, extras.mcpSessions);
  return snapshot.render() + (extras.registry ?? metricsRegistry).render();
}
