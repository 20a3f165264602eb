// Kernels on a Jupyter Server, Kernel Gateway or Enterprise Gateway: kernelspecs, start, attach, over REST + WebSocket.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { userInfo } from 'node:os';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import { REMOTE_START_TIMEOUT_MS, RemoteKernelSession, isKernelGone, type RemoteKernelApi, type RemoteKernelModel } from './remote-session.js';
import type { KernelProvider, KernelSpec, StartOptions, StoredKernel } from './types.js';
import { TLS_CODES, type WsChannelOptions, type WsProtocol } from './ws-channel.js';
import { isPlainObject } from '../util/plain-object.js';

export type RemoteLog = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;

export interface RemoteKernelProviderOptions {
  /** The server's base URL, path prefix included (JupyterHub: `https://hub.example/user/alice/`); `?token=` is read too. */
  url: string;
  /** Sent as `Authorization: token T`; defaults to the URL's `?token=`. */
  token?: string | null;
  /** Extra headers on every request and WebSocket handshake (e.g. for an authenticating proxy). */
  headers?: Record<string, string>;
  /** A PEM file with the private CA that signed the server's certificate (trusted in addition to the system CAs). */
  caFile?: string;
  /** The workspace root: a notebook's folder is passed as the kernel `path`, relative to it (Jupyter Server). */
  workspaceRoot?: string;
  /** Where `KERNEL_*` variables for gateways come from (default: this process's environment). */
  env?: NodeJS.ProcessEnv;
  log?: RemoteLog;
  /** `POST /api/kernels` can take a minute on a gateway that launches a pod (default 120 s). */
  startTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Force one kernel WebSocket protocol; by default v1 is offered and legacy used when the server picks none. */
  protocol?: WsProtocol | 'auto';
  reconnectAttempts?: number;
  reconnectBaseDelayMs?: number;
  reconnectMaxDelayMs?: number;
  livenessIntervalMs?: number;
}

/** Why a request to the server failed, for the caller to decide (and for the user to fix). */
export type RemoteErrorKind = 'unreachable' | 'auth' | 'tls' | 'timeout' | 'not-jupyter' | 'http';

export class RemoteServerError extends Error {
  constructor(
    readonly kind: RemoteErrorKind,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'RemoteServerError';
  }
}

export interface RemoteServerCheck {
  /** The Jupyter Server version from `GET api` (null when the server does not say). */
  version: string | null;
  kernelspecs: string[];
  defaultKernelspec: string | null;
}

interface RemoteDetails {
  url: string;
  kernelId: string;
  wsSession: string;
  instance: number;
  path: string | undefined;
}

const ATTACH_TIMEOUT_MS = 30_000;
/** A restarted kernel that takes longer than this to answer is busy with someone else's work: start our own. */
const REUSE_READY_TIMEOUT_MS = 15_000;
const SHUTDOWN_ATTEMPTS = 4;
const CONNECT_HANDSHAKE_TIMEOUT_MS = 15_000;

export class RemoteKernelProvider implements KernelProvider {
  readonly kind = 'remote' as const;
  /** The base URL as users see it: scheme, host, path prefix; never the token. */
  readonly url: string;

  private readonly base: URL;
  private readonly token: string | null;
  private readonly headers: Record<string, string>;
  private readonly ca: string[] | undefined;
  private readonly options: RemoteKernelProviderOptions;
  private readonly log: RemoteLog;
  /** Learned from the first kernel WebSocket, so later kernels do not offer a protocol the server refuses. */
  private protocol: WsProtocol | 'auto';
  /** The REST calls as sessions see them. */
  private readonly api: RemoteKernelApi;
  /** Where each kernel we started works (its `path`), so a restarted one is reused only for the same folder. */
  private readonly kernelPaths = new Map<string, string>();
  /** Kernels that died to us but run on, restarted: remote id by kernelspec name and path. */
  private readonly reusable = new Map<string, string[]>();

  constructor(options: RemoteKernelProviderOptions) {
    this.options = options;
    this.log = options.log ?? (() => undefined);
    const { base, token } = parseBaseUrl(options.url);
    this.base = base;
    this.url = base.href;
    this.token = options.token ?? token;
    this.headers = { ...(options.headers ?? {}) };
    if (this.token) this.headers['Authorization'] = `token ${this.token}`;
    if (options.caFile) {
      let pem: string;
      try {
        pem = readFileSync(options.caFile, 'utf8');
      } catch (error) {
        throw new RemoteServerError('tls', `Cannot read the CA file ${options.caFile} (${(error as Error).message}). Pass a readable PEM file with --jupyter-ca.`);
      }
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
        throw new RemoteServerError('tls', `The CA file ${options.caFile} holds no PEM certificate ("-----BEGIN CERTIFICATE-----").`);
      }
      this.ca = [...rootCertificates, pem];
    }
    this.protocol = options.protocol ?? 'auto';
    this.api = this.makeApi();
  }

  /**
   * Checks that the server answers and accepts our credentials (`GET api/kernelspecs` needs them), quickly and
   * with an error that says what to fix. Used at start, before anything is recovered onto this server.
   */
  async check(): Promise<RemoteServerCheck> {
    const about = await this.call('GET', 'api', { timeoutMs: 10_000 });
    const version = typeof asRecord(about.json)?.['version'] === 'string' ? (asRecord(about.json)?.['version'] as string) : null;
    const specs = await this.fetchSpecs(10_000);
    return { version, kernelspecs: specs.specs.map((spec) => spec.name), defaultKernelspec: specs.defaultName };
  }

  async listSpecs(): Promise<KernelSpec[]> {
    return (await this.fetchSpecs()).specs;
  }

  async start(options: StartOptions): Promise<RemoteKernelSession> {
    const startTimeoutMs = this.options.startTimeoutMs ?? REMOTE_START_TIMEOUT_MS;
    const started = Date.now();
    const kernelPath = this.kernelPath(options.cwd);
    const reused = await this.reuse(options, kernelPath);
    if (reused) return reused;
    const body = { name: options.kernelName, env: this.kernelEnv(startTimeoutMs), ...(kernelPath !== undefined ? { path: kernelPath } : {}) };
    const what = `start kernel "${options.kernelName}"`;
    const response = await this.call('POST', 'api/kernels', { body, timeoutMs: startTimeoutMs, what });
    if (response.status === 404) throw new RemoteServerError('http', `Cannot ${what} on ${this.url}: ${httpDetail(response)} (is "${options.kernelName}" one of its kernelspecs?)`, 404);
    const model = toModel(response.json);
    if (!model) throw new RemoteServerError('not-jupyter', `Cannot ${what} on ${this.url}: the answer to POST api/kernels has no kernel id.`);
    this.log('info', 'remote kernel started', { kernelId: options.id, remoteId: model.id, server: this.url, kernelName: options.kernelName });
    const session = this.session(options.id, options.kernelName, model.id, randomUUID(), 0, kernelPath);
    try {
      await session.waitReady(Math.max(5_000, startTimeoutMs - (Date.now() - started)), 'shell');
      return session;
    } catch (error) {
      await session.shutdown().catch(() => undefined);
      throw new Error(`Kernel "${options.kernelName}" was started on ${this.url} (id ${model.id}) but did not become ready, so it was shut down: ${(error as Error).message}`);
    }
  }

  /**
   * A kernel of ours that its server restarted (so its state is gone) is taken as the "new" kernel, with a new
   * WebSocket session: no second kernel is started on the cluster and nobody's kernel is deleted.
   */
  private async reuse(options: StartOptions, kernelPath: string | undefined): Promise<RemoteKernelSession | null> {
    const candidates = this.reusable.get(reuseKey(options.kernelName, kernelPath));
    for (let remoteId = candidates?.shift(); remoteId !== undefined; remoteId = candidates?.shift()) {
      const model = await this.kernel(remoteId).catch(() => null);
      if (!model || model.executionState === 'dead') continue;
      const session = this.session(options.id, options.kernelName, remoteId, randomUUID(), 0, kernelPath);
      try {
        await session.waitReady(REUSE_READY_TIMEOUT_MS, 'shell');
        this.log('info', 'reusing a remote kernel that its server restarted (its state was reset)', { kernelId: options.id, remoteId, server: this.url });
        return session;
      } catch (error) {
        await session.detach();
        this.log('warn', 'a restarted remote kernel did not answer; starting a new one instead', { remoteId, error: (error as Error).message });
      }
    }
    return null;
  }

  async attach(stored: StoredKernel): Promise<RemoteKernelSession | null> {
    if (stored.provider !== 'remote') return null;
    const details = parseDetails(stored.details);
    if (!details) return null;
    if (details.url !== this.url) {
      this.log('warn', 'a journaled kernel lives on another Jupyter server than the one configured; not re-attaching', { kernelId: stored.id, was: details.url, now: this.url });
      return null;
    }
    if (!(await this.kernel(details.kernelId))) return null;
    // The same WebSocket session id: the server replays what the kernel said while nobody was connected.
    const session = this.session(stored.id, stored.kernelName, details.kernelId, details.wsSession, details.instance, details.path);
    try {
      await session.waitReady(ATTACH_TIMEOUT_MS, 'control');
      return session;
    } catch (error) {
      await session.detach();
      if (isKernelGone(error)) return null;
      throw error;
    }
  }

  private session(id: string, kernelName: string, remoteId: string, wsSession: string, instance: number, kernelPath: string | undefined): RemoteKernelSession {
    this.kernelPaths.set(remoteId, kernelPath ?? '');
    return new RemoteKernelSession({ id, kernelName, remoteId, wsSession, instance, kernelPath, api: this.api, livenessIntervalMs: this.options.livenessIntervalMs ?? 10_000 });
  }

  // The REST API as sessions see it --------------------------------------------------------------------------

  private makeApi(): RemoteKernelApi {
    return {
      url: this.url,
      kernel: (remoteId) => this.kernel(remoteId),
      interrupt: async (remoteId) => {
        const response = await this.call('POST', `api/kernels/${encodeURIComponent(remoteId)}/interrupt`, { what: 'interrupt the kernel' });
        return response.status !== 404;
      },
      restart: async (remoteId) => {
        const timeoutMs = this.options.startTimeoutMs ?? REMOTE_START_TIMEOUT_MS;
        const response = await this.call('POST', `api/kernels/${encodeURIComponent(remoteId)}/restart`, { timeoutMs, what: 'restart the kernel' });
        if (response.status === 404) throw new RemoteServerError('http', `the Jupyter server at ${this.url} no longer has kernel ${remoteId} (HTTP 404)`, 404);
      },
      shutdown: async (remoteId) => {
        // Idempotent, so retried on a server error: Jupyter Server answers 500 to a DELETE that lands while it is
        // restarting a kernel that died.
        for (let attempt = 1; ; attempt += 1) {
          try {
            await this.call('DELETE', `api/kernels/${encodeURIComponent(remoteId)}`, { what: 'shut the kernel down' });
            return;
          } catch (error) {
            const serverError = error instanceof RemoteServerError && error.kind === 'http' && (error.status ?? 0) >= 500;
            if (!serverError || attempt >= SHUTDOWN_ATTEMPTS) throw error;
            await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
          }
        }
      },
      offerForReuse: (kernelName, remoteId) => {
        const key = reuseKey(kernelName, this.kernelPaths.get(remoteId));
        this.reusable.set(key, [...(this.reusable.get(key) ?? []).filter((id) => id !== remoteId), remoteId]);
        this.log('info', 'a remote kernel lost its state but runs on (restarted); the next start reuses it', { remoteId, server: this.url });
      },
      channelOptions: (remoteId, wsSession) => this.channelOptions(remoteId, wsSession),
      rememberProtocol: (protocol) => {
        // Later kernels then skip offering a protocol this server refuses.
        if (this.protocol === 'auto') this.protocol = protocol;
      },
      log: (level, message, fields) => this.log(level, message, fields),
    };
  }

  private async kernel(remoteId: string): Promise<RemoteKernelModel | null> {
    const response = await this.call('GET', `api/kernels/${encodeURIComponent(remoteId)}`, { what: 'look the kernel up' });
    if (response.status === 404) return null;
    const model = toModel(response.json);
    if (!model) throw new RemoteServerError('not-jupyter', `The answer of ${this.url} to GET api/kernels/${remoteId} is not a kernel model.`);
    return model;
  }

  private channelOptions(remoteId: string, wsSession: string): Omit<WsChannelOptions, 'onMessage' | 'onEvent'> {
    const url = new URL(`api/kernels/${encodeURIComponent(remoteId)}/channels`, this.base);
    url.protocol = this.base.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('session_id', wsSession);
    return {
      url: url.href,
      sessionId: wsSession,
      headers: this.headers,
      ...(this.ca ? { ca: this.ca } : {}),
      protocol: this.protocol,
      reconnectAttempts: this.options.reconnectAttempts ?? 8,
      reconnectBaseDelayMs: this.options.reconnectBaseDelayMs ?? 100,
      reconnectMaxDelayMs: this.options.reconnectMaxDelayMs ?? 5_000,
      handshakeTimeoutMs: CONNECT_HANDSHAKE_TIMEOUT_MS,
      pingIntervalMs: 15_000,
    };
  }

  // Kernel start parameters --------------------------------------------------------------------------------

  /** Jupyter Server: the kernel's working directory relative to its root (it walks up to the root if missing there). */
  private kernelPath(cwd: string): string | undefined {
    const root = this.options.workspaceRoot;
    if (!root) return undefined;
    const relative = path.relative(root, path.resolve(cwd));
    if (relative.startsWith('..') || path.isAbsolute(relative)) return undefined;
    return relative.split(path.sep).join('/');
  }

  /** Enterprise Gateway reads the kernel's environment from `env`: KERNEL_USERNAME, KERNEL_WORKING_DIR, any KERNEL_*. */
  private kernelEnv(startTimeoutMs: number): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(this.options.env ?? process.env)) {
      if (name.startsWith('KERNEL_') && value !== undefined) env[name] = value;
    }
    env['KERNEL_USERNAME'] ??= osUsername();
    // The gateway must give up on a launch before we stop waiting for its answer (as Jupyter's GatewayClient does).
    env['KERNEL_LAUNCH_TIMEOUT'] ??= String(Math.max(10, Math.floor(startTimeoutMs / 1000) - 5));
    return env;
  }

  // HTTP ---------------------------------------------------------------------------------------------------

  private async fetchSpecs(timeoutMs?: number): Promise<{ specs: KernelSpec[]; defaultName: string | null }> {
    const response = await this.call('GET', 'api/kernelspecs', { what: 'list kernelspecs', ...(timeoutMs ? { timeoutMs } : {}) });
    if (response.status === 404) {
      throw new RemoteServerError(
        'not-jupyter',
        `${this.url} answered 404 for api/kernelspecs: it is not the base URL of a Jupyter Server API. Include the server's base path (JupyterHub: https://HUB/user/NAME/).`,
        404,
      );
    }
    const body = asRecord(response.json);
    const table = asRecord(body?.['kernelspecs']);
    if (!table) throw new RemoteServerError('not-jupyter', `The answer of ${this.url} to GET api/kernelspecs has no "kernelspecs" object: is this a Jupyter Server?`);
    const specs: KernelSpec[] = [];
    for (const [name, entry] of Object.entries(table)) {
      const spec = asRecord(asRecord(entry)?.['spec']);
      if (!spec) continue;
      const argv = Array.isArray(spec['argv']) ? spec['argv'].filter((arg): arg is string => typeof arg === 'string') : [];
      const env = asRecord(spec['env']) ?? {};
      specs.push({
        name,
        display_name: typeof spec['display_name'] === 'string' ? spec['display_name'] : name,
        language: typeof spec['language'] === 'string' ? spec['language'] : '',
        argv,
        env: Object.fromEntries(Object.entries(env).filter((pair): pair is [string, string] => typeof pair[1] === 'string')),
        interrupt_mode: spec['interrupt_mode'] === 'message' ? 'message' : 'signal',
        resource_dir: '',
        source: `remote: ${this.url}`,
        metadata: asRecord(spec['metadata']) ?? {},
      });
    }
    const defaultName = typeof body?.['default'] === 'string' ? body['default'] : null;
    return { specs, defaultName };
  }

  /**
   * One REST call. 2xx and 404 are answers (404 means "no such kernel" to the callers); everything else is a
   * RemoteServerError that says what to fix. Never hangs: connect and answer share one timeout.
   */
  private call(
    method: 'GET' | 'POST' | 'DELETE',
    relative: string,
    options: { body?: unknown; timeoutMs?: number; what?: string } = {},
  ): Promise<{ status: number; json: unknown; text: string }> {
    const url = new URL(relative, this.base);
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs ?? 30_000;
    const what = `${method} ${relative}`;
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body), 'utf8');
    const headers: Record<string, string> = { Accept: 'application/json', ...this.headers };
    if (payload) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, { method, headers, ...(this.ca ? { ca: this.ca } : {}) }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (error) => finish(this.networkError(error, what)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          const failure = this.statusError(status, res.headers['location'], text, what);
          if (failure) {
            finish(failure);
            return;
          }
          let json: unknown = null;
          if (status !== 404 && status !== 204 && text.trim() !== '') {
            try {
              json = JSON.parse(text);
            } catch {
              finish(
                new RemoteServerError(
                  'not-jupyter',
                  `${this.url} answered ${what} with something that is not JSON (${String(res.headers['content-type'] ?? 'no content type')}): is --jupyter-url the base URL of a Jupyter Server (JupyterHub: https://HUB/user/NAME/)?`,
                  status,
                ),
              );
              return;
            }
          }
          finish(undefined, { status, json, text });
        });
      });
      const timer = setTimeout(() => {
        finish(new RemoteServerError('timeout', `The Jupyter server at ${this.url} did not answer ${what} within ${Math.round(timeoutMs / 1000)} s.`));
        req.destroy();
      }, timeoutMs);
      let done = false;
      const finish = (error: Error | undefined, value?: { status: number; json: unknown; text: string }): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (error) reject(error);
        else if (value) resolve(value);
      };
      req.on('error', (error: Error & { code?: string }) => finish(this.networkError(error, what)));
      if (payload) req.write(payload);
      req.end();
    });
  }

  private statusError(status: number, location: string | undefined, text: string, what: string): RemoteServerError | undefined {
    if ((status >= 200 && status < 300) || status === 404) return undefined;
    if (status === 401 || status === 403) {
      return new RemoteServerError(
        'auth',
        `The Jupyter server at ${this.url} refused our credentials (HTTP ${status} on ${what}). ` +
          (this.token ? 'Check --jupyter-token' : 'It needs a token: pass --jupyter-token') +
          ' (JupyterHub: an API token of that user, from the hub\'s token page).',
        status,
      );
    }
    if (status >= 300 && status < 400) {
      return new RemoteServerError(
        'auth',
        `The Jupyter server at ${this.url} redirected ${what} to ${location ?? 'another page'} (HTTP ${status}), usually a login page: ` +
          'the token is missing or wrong (--jupyter-token), or the URL lacks the server\'s base path (JupyterHub: https://HUB/user/NAME/).',
        status,
      );
    }
    return new RemoteServerError('http', `The Jupyter server at ${this.url} failed ${what}: ${httpDetail({ status, text })}`, status);
  }

  private networkError(error: Error & { code?: string }, what: string): RemoteServerError {
    const code = error.code ?? '';
    if (TLS_CODES.has(code)) {
      return new RemoteServerError('tls', `TLS error talking to ${this.url} (${what}): ${error.message} (${code}). If the server uses a private CA, pass its certificate with --jupyter-ca FILE.`);
    }
    const hint =
      code === 'ECONNREFUSED'
        ? 'nothing listens there: is the Jupyter server running, and is the port in --jupyter-url right?'
        : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
          ? 'the host name does not resolve: check --jupyter-url'
          : 'check --jupyter-url and the network';
    return new RemoteServerError('unreachable', `Cannot reach the Jupyter server at ${this.url} (${what}): ${error.message}${code && !error.message.includes(code) ? ` (${code})` : ''}; ${hint}.`);
  }
}

/** Accepts `http(s)://host[:port][/prefix/][?token=T]`; the path prefix is kept (it is where the API lives). */
function reuseKey(kernelName: string, kernelPath: string | undefined): string {
  return `${kernelName}\0${kernelPath ?? ''}`;
}

export function parseBaseUrl(raw: string): { base: URL; token: string | null } {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new RemoteServerError('not-jupyter', `--jupyter-url '${raw}' is not a URL: expected e.g. http://127.0.0.1:8888/ or https://hub.example.org/user/alice/`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new RemoteServerError('not-jupyter', `--jupyter-url must start with http:// or https://, got '${url.protocol}'`);
  }
  const token = url.searchParams.get('token');
  url.search = '';
  url.hash = '';
  // Jupyter prints `…/lab?token=…` or `…/tree?token=…`: that page is not part of the base path. Only then: a
  // JupyterHub prefix like `/user/lab/` must never lose a segment.
  if (token) url.pathname = url.pathname.replace(/\/(lab|tree)$/, '/');
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return { base: url, token: token && token.length > 0 ? token : null };
}

/** `Name: value` → header pair (for `--jupyter-header`). */
export function parseHeader(raw: string): [string, string] {
  const colon = raw.indexOf(':');
  const name = colon > 0 ? raw.slice(0, colon).trim() : '';
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
    throw new RemoteServerError('http', `--jupyter-header takes 'Name: value', got '${raw}'`);
  }
  return [name, raw.slice(colon + 1).trim()];
}

function toModel(value: unknown): RemoteKernelModel | null {
  const record = asRecord(value);
  if (!record || typeof record['id'] !== 'string') return null;
  return {
    id: record['id'],
    name: typeof record['name'] === 'string' ? record['name'] : '',
    executionState: typeof record['execution_state'] === 'string' ? record['execution_state'] : null,
  };
}

function parseDetails(details: Record<string, unknown>): RemoteDetails | undefined {
  const { url, kernelId, wsSession, instance, path } = details;
  if (typeof url !== 'string' || typeof kernelId !== 'string' || typeof wsSession !== 'string') return undefined;
  if (typeof instance !== 'number' || !Number.isInteger(instance)) return undefined;
  return { url, kernelId, wsSession, instance, path: typeof path === 'string' ? path : undefined };
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return isPlainObject(value) ? value : undefined;
}

function httpDetail(response: { status: number; text: string }): string {
  let detail = '';
  try {
    const body = asRecord(JSON.parse(response.text));
    const message = body?.['message'] ?? body?.['reason'];
    if (typeof message === 'string') detail = message;
  } catch {
    detail = response.text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
  }
  return `HTTP ${response.status}${detail ? `: ${detail.slice(0, 300)}` : ''}`;
}

function osUsername(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env['USER'] ?? 'mcp-server-jupyter';
  }
}
