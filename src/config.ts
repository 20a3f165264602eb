// One typed configuration object built from flags and environment variables, validated once at start.
import { mkdirSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';

export interface Config {
  /** Absolute, symlink-resolved workspace root: every notebook path is confined to it. */
  workspace: string;
  /** Where the journal, kernel connection files and logs live (default `<workspace>/.mcp-jupyter`). */
  stateDir: string;
  http: { host: string; port: number } | null;
  token: string | null;
  jupyterUrl: string | null;
  jupyterToken: string | null;
  /** Characters of output kept per execution in memory and in the journal. */
  outputBudgetChars: number;
  /** Characters of output text in one tool result. */
  maxOutputChars: number;
  /** Bytes of one image in a tool result. */
  maxImageBytes: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** How long a new asset's lease lasts, and how far saves and renewals extend it (seconds). */
  assetTtlS: number;
  /** After a restart, replay pending executions whose kernel is gone on a new kernel (default: they end lost). */
  resumeOnNewKernel: boolean;
  /** Circuit breaker: after this many kernel deaths within `restartWindowS`, a notebook's kernel waits for restart_kernel. */
  restartLimit: number;
  restartWindowS: number;
  /** How long a running execution may outlive an interrupt before callers are told the kernel ignored it. */
  interruptGraceS: number;
  /** Unfinished executions (running + waiting) one kernel accepts; past it submissions are refused. */
  queueLimit: number;
  /** HTTP: an MCP session with no request in flight and no open SSE stream for this long is closed (seconds). */
  sessionIdleS: number;
  /** Replace secrets (API keys, tokens, private keys) in tool results with markers; the notebook keeps the original. */
  redact: boolean;
}

export class ConfigError extends Error {}

export interface ConfigInput {
  workspace?: string | undefined;
  stateDir?: string | undefined;
  http?: string | undefined;
  token?: string | undefined;
  jupyterUrl?: string | undefined;
  jupyterToken?: string | undefined;
  resumeOnNewKernel?: boolean | undefined;
  redact?: boolean | undefined;
}

function positiveNumber(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new ConfigError(`${name} must be a positive number of seconds, got '${raw}'`);
  return value;
}

function onOff(name: string, raw: string | undefined, fallback: boolean): boolean {
  if (raw === undefined || raw === '') return fallback;
  const value = raw.trim().toLowerCase();
  if (['on', '1', 'true', 'yes'].includes(value)) return true;
  if (['off', '0', 'false', 'no'].includes(value)) return false;
  throw new ConfigError(`${name} must be on or off, got '${raw}'`);
}

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new ConfigError(`${name} must be a positive whole number, got '${raw}'`);
  return value;
}

/** `8000`, `:8000`, `0.0.0.0:8000` or `[::1]:8000`. */
export function parseListen(raw: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*))?:?(\d+)$/.exec(raw.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`--http takes [HOST:]PORT (e.g. 8765 or 127.0.0.1:8765), got '${raw}'`);
  }
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port };
}

export function loadConfig(input: ConfigInput, env: NodeJS.ProcessEnv = process.env): Config {
  const workspaceRaw = input.workspace ?? env.MCP_JUPYTER_WORKSPACE ?? process.cwd();
  let workspace: string;
  try {
    workspace = realpathSync(resolve(workspaceRaw));
    if (!statSync(workspace).isDirectory()) throw new Error('not a directory');
  } catch (error) {
    throw new ConfigError(`the workspace '${workspaceRaw}' is not a readable directory (${(error as Error).message}). Pass an existing folder with --workspace.`);
  }
  const stateRaw = input.stateDir ?? env.MCP_JUPYTER_STATE_DIR ?? join(workspace, '.mcp-jupyter');
  const stateDir = isAbsolute(stateRaw) ? stateRaw : resolve(workspace, stateRaw);
  try {
    mkdirSync(stateDir, { recursive: true });
  } catch (error) {
    throw new ConfigError(`cannot create the state directory '${stateDir}' (${(error as Error).message}). Pass a writable one with --state-dir.`);
  }
  const httpRaw = input.http ?? env.MCP_JUPYTER_HTTP;
  const logLevel = (env.MCP_JUPYTER_LOG_LEVEL ?? 'info') as Config['logLevel'];
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new ConfigError(`MCP_JUPYTER_LOG_LEVEL must be debug, info, warn or error`);
  const http = httpRaw ? parseListen(httpRaw) : null;
  return {
    workspace,
    stateDir,
    http,
    token: input.token ?? env.MCP_JUPYTER_TOKEN ?? null,
    jupyterUrl: input.jupyterUrl ?? env.MCP_JUPYTER_URL ?? null,
    jupyterToken: input.jupyterToken ?? env.MCP_JUPYTER_REMOTE_TOKEN ?? null,
    outputBudgetChars: positiveInt('MCP_JUPYTER_OUTPUT_BUDGET_CHARS', env.MCP_JUPYTER_OUTPUT_BUDGET_CHARS, 8 * 1024 * 1024),
    maxOutputChars: positiveInt('MCP_JUPYTER_MAX_OUTPUT_CHARS', env.MCP_JUPYTER_MAX_OUTPUT_CHARS, 20_000),
    maxImageBytes: positiveInt('MCP_JUPYTER_MAX_IMAGE_BYTES', env.MCP_JUPYTER_MAX_IMAGE_BYTES, 400 * 1024),
    logLevel,
    assetTtlS: positiveInt('MCP_JUPYTER_ASSET_TTL_S', env.MCP_JUPYTER_ASSET_TTL_S, 86_400),
    resumeOnNewKernel: input.resumeOnNewKernel ?? env.MCP_JUPYTER_RESUME_ON_NEW_KERNEL === '1',
    restartLimit: positiveInt('MCP_JUPYTER_RESTART_LIMIT', env.MCP_JUPYTER_RESTART_LIMIT, 3),
    restartWindowS: positiveNumber('MCP_JUPYTER_RESTART_WINDOW_S', env.MCP_JUPYTER_RESTART_WINDOW_S, 300),
    interruptGraceS: positiveNumber('MCP_JUPYTER_INTERRUPT_GRACE_S', env.MCP_JUPYTER_INTERRUPT_GRACE_S, 10),
    queueLimit: positiveInt('MCP_JUPYTER_QUEUE_LIMIT', env.MCP_JUPYTER_QUEUE_LIMIT, 1000),
    sessionIdleS: positiveNumber('MCP_JUPYTER_SESSION_IDLE_S', env.MCP_JUPYTER_SESSION_IDLE_S, 1800),
    // Over HTTP the agent (and whatever proxies sit in between) may be remote; over stdio it is the user's own client.
    redact: input.redact ?? onOff('MCP_JUPYTER_REDACT', env.MCP_JUPYTER_REDACT, http !== null),
  };
}
