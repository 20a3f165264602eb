// The HTTP server: MCP Streamable HTTP on /mcp (one transport and McpServer per session), /health, /metrics, static files.
import { randomUUID } from 'node:crypto';
import { createReadStream, realpathSync, type Stats } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { createServer as createNodeServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { extname, resolve, sep } from 'node:path';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '../log.js';
import { allowedHostSet, allowedOriginSet, checkRequest, hostForHeader, type GuardDecision, type GuardPolicy } from './http-guard.js';
import { PROMETHEUS_CONTENT_TYPE, collectMetrics, httpMetrics, methodLabel, metricsRegistry, pathLabel, type Registry } from './metrics.js';
import { connectServer } from './connect.js';
import type { Workspace } from './workspace.js';

export const MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface HttpServerOptions {
  workspace: Workspace;
  /** A fresh MCP server for each session; sessions share nothing but the workspace. */
  createServer: () => McpServer;
  host: string;
  /** 0 picks any free port; the handle reports the real one. */
  port: number;
  token: string;
  log: Logger;
  /** Extra `Host` values to accept (needed when bound to 0.0.0.0 or behind a proxy). */
  allowedHosts?: string[];
  /** Extra `Origin` values to accept, e.g. `https://notebooks.example.com`. */
  allowedOrigins?: string[];
  /** Folder of the monitor page; without it `/` is 404. */
  staticDir?: string;
  /**
   * HOOK for the live event stream: receives WebSocket upgrade requests for `/events` once Host, Origin and
   * token have been checked. Without it such upgrades are answered 404.
   */
  onUpgrade?: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** Where request counters and latencies go (default: the process-wide registry). */
  registry?: Registry;
  maxBodyBytes?: number;
  /**
   * How long an MCP session may sit with no request in flight and no open GET (SSE) stream before it is closed
   * (default: MCP_JUPYTER_SESSION_IDLE_S, else 1800 s). A client that crashed, or closed without DELETE, leaves
   * such a session behind; a later request with its id gets 404 "session not found" and must re-initialize.
   */
  sessionIdleMs?: number;
}

export interface HttpServerHandle {
  url: string;
  port: number;
  close(): Promise<void>;
  /** Open MCP sessions. */
  sessions(): number;
}

interface Session {
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  /** Open requests of this session (POSTs being answered, GET streams): it never expires while one is open. */
  open: number;
  /** Armed while nothing is open; closes the session when it fires. */
  idleTimer: NodeJS.Timeout | undefined;
}

export const DEFAULT_SESSION_IDLE_S = 1800;
/** setTimeout's ceiling (about 24.8 days): a longer delay would fire at once. */
const MAX_SESSION_IDLE_S = Math.floor(2 ** 31 / 1000) - 1;

/**
 * MCP_JUPYTER_SESSION_IDLE_S in milliseconds. Read here until src/config.ts carries it (then serve passes
 * `sessionIdleMs` from the config and this is only the fallback for other callers).
 */
export function sessionIdleMsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.MCP_JUPYTER_SESSION_IDLE_S;
  if (raw === undefined || raw.trim() === '') return DEFAULT_SESSION_IDLE_S * 1000;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > MAX_SESSION_IDLE_S) {
    throw new Error(`MCP_JUPYTER_SESSION_IDLE_S must be a positive number of seconds (at most ${MAX_SESSION_IDLE_S}), got '${raw}'`);
  }
  return value * 1000;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
};

/** Headers on every answer: the page may be opened with `?token=`, so it must never leak through a Referer. */
const COMMON_HEADERS = { 'Referrer-Policy': 'no-referrer', 'X-Content-Type-Options': 'nosniff' } as const;

class BodyTooLargeError extends Error {}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { ...COMMON_HEADERS, 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
  res.end(`${text}\n`);
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { ...COMMON_HEADERS, 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

/** MCP clients show the JSON-RPC error message, so problems on /mcp are reported in that shape. */
function sendRpcError(res: ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { jsonrpc: '2.0', error: { code, message }, id: null }, headers);
}

/** Reads the whole body, refusing (without reading on) once it passes `limit` bytes. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(new BodyTooLargeError());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolveBody(Buffer.concat(chunks));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/** The path exactly as sent (no `..` normalisation, so static serving can refuse it) and the query. */
function splitUrl(req: IncomingMessage): { pathname: string; query: URLSearchParams } {
  const rawUrl = req.url ?? '/';
  const queryAt = rawUrl.indexOf('?');
  return {
    pathname: queryAt >= 0 ? rawUrl.slice(0, queryAt) : rawUrl,
    query: new URLSearchParams(queryAt >= 0 ? rawUrl.slice(queryAt + 1) : ''),
  };
}

function describeListenError(error: NodeJS.ErrnoException, host: string, port: number): Error {
  switch (error.code) {
    case 'EADDRINUSE':
      return new Error(`port ${port} is in use; pick another with --http HOST:PORT`);
    case 'EACCES':
      return new Error(`not allowed to listen on ${host}:${port} (ports below 1024 need privileges); pick another with --http HOST:PORT`);
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
      return new Error(`cannot listen on host '${host}': it is not an address of this machine; pick another with --http HOST:PORT (e.g. 127.0.0.1:${port})`);
    default:
      return new Error(`cannot listen on ${host}:${port}: ${error.message}`);
  }
}

function staticFolder(dir: string): string {
  try {
    return realpathSync(dir);
  } catch (error) {
    throw new Error(`the static folder '${dir}' cannot be read (${(error as Error).message}); the monitor page is served from it.`);
  }
}

export async function startHttpServer(options: HttpServerOptions): Promise<HttpServerHandle> {
  const { workspace, log } = options;
  const maxBody = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const registry = options.registry ?? metricsRegistry;
  const metrics = httpMetrics(registry);
  const staticRoot = options.staticDir ? staticFolder(options.staticDir) : null;
  const sessions = new Map<string, Session>();
  const idleMs = options.sessionIdleMs ?? sessionIdleMsFromEnv();
  if (!(idleMs > 0) || idleMs > MAX_SESSION_IDLE_S * 1000) throw new Error(`sessionIdleMs must be between 1 and ${MAX_SESSION_IDLE_S * 1000}, got ${idleMs}`);
  let closing = false;

  /** Counts `res` as open on the session until it closes; the idle clock runs only while nothing is open. */
  function track(id: string, session: Session, res: ServerResponse): void {
    session.open += 1;
    clearTimeout(session.idleTimer);
    session.idleTimer = undefined;
    res.once('close', () => {
      session.open -= 1;
      if (session.open > 0 || closing || sessions.get(id) !== session) return;
      session.idleTimer = setTimeout(() => expire(id, session), idleMs);
      // Expiry is housekeeping: it must not keep the process alive.
      session.idleTimer.unref();
    });
  }

  function expire(id: string, session: Session): void {
    if (session.open > 0 || sessions.get(id) !== session) return;
    sessions.delete(id);
    log('info', 'MCP session expired', { session: id, idle_s: idleMs / 1000, sessions: sessions.size });
    // Closing ends the session's subscriptions and listeners; its executions go on in the engine.
    void session.server.close().catch((error: unknown) => log('warn', 'closing an expired MCP session failed', { session: id, error: String(error) }));
  }
  // Filled in once the port is known.
  let policy: GuardPolicy = { token: options.token, allowedHosts: new Set(), allowedOrigins: new Set() };

  const guard = (req: IncomingMessage, pathname: string, query: URLSearchParams): GuardDecision =>
    checkRequest(
      {
        method: req.method ?? 'GET',
        pathname,
        host: header(req, 'host'),
        origin: header(req, 'origin'),
        authorization: header(req, 'authorization'),
        queryToken: query.get('token'),
      },
      policy,
    );

  async function handleMcp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    if (method !== 'POST' && method !== 'GET' && method !== 'DELETE') {
      sendRpcError(res, 405, -32000, `Method ${method} is not supported on /mcp; use POST, GET or DELETE.`, { Allow: 'POST, GET, DELETE' });
      return;
    }
    const sessionId = header(req, 'mcp-session-id');
    const session = sessionId ? sessions.get(sessionId) : undefined;
    // Counted from the start: a slow upload must not let the session expire under it.
    if (sessionId && session) track(sessionId, session, res);

    let body: unknown;
    if (method === 'POST') {
      const declared = Number(header(req, 'content-length') ?? NaN);
      if (declared > maxBody) {
        refuseLargeBody(res);
        return;
      }
      let raw: Buffer;
      try {
        raw = await readBody(req, maxBody);
      } catch (error) {
        if (error instanceof BodyTooLargeError) refuseLargeBody(res);
        else res.destroy();
        return;
      }
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        sendRpcError(res, 400, -32700, 'Parse error: the request body is not valid JSON.');
        return;
      }
    }

    if (session) {
      await session.transport.handleRequest(req, res, body);
      return;
    }
    if (sessionId) {
      sendRpcError(
        res,
        404,
        -32001,
        `Session not found: '${sessionId}' was closed, expired after ${idleMs / 1000} s with no request and no open stream, or the server restarted. Re-initialize: send an initialize request without the mcp-session-id header.`,
      );
      return;
    }
    if (method !== 'POST' || !isInitializeRequest(body)) {
      sendRpcError(res, 400, -32000, 'Bad Request: no mcp-session-id header. Re-initialize: send an initialize request first, then pass the mcp-session-id it returns.');
      return;
    }
    if (closing) {
      sendRpcError(res, 503, -32000, 'The server is shutting down; connect again once it has restarted.');
      return;
    }

    const server = options.createServer();
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      // Registered only once the session id exists, so no request can race ahead of its own session.
      onsessioninitialized: (id) => {
        if (closing) {
          void server.close();
          return;
        }
        const session: Session = { transport, server, open: 0, idleTimer: undefined };
        sessions.set(id, session);
        // The initialize request itself is the session's first open request.
        track(id, session, res);
        log('info', 'MCP session opened', { session: id, sessions: sessions.size });
      },
    });
    transport.onclose = () => {
      const id = transport.sessionId;
      const session = id ? sessions.get(id) : undefined;
      if (!id || !session || session.transport !== transport) return;
      clearTimeout(session.idleTimer);
      sessions.delete(id);
      log('info', 'MCP session closed', { session: id, sessions: sessions.size });
    };
    await connectServer(server, transport);
    await transport.handleRequest(req, res, body);
  }

  function refuseLargeBody(res: ServerResponse): void {
    // Closing the connection is how the rest of the body goes unread.
    sendRpcError(res, 413, -32000, `The request body is larger than ${maxBody} bytes. Send less at once (large data belongs in files in the workspace).`, {
      Connection: 'close',
    });
  }

  function handleHealth(res: ServerResponse): void {
    try {
      const health = workspace.health();
      sendJson(res, 200, { status: 'ok', version: health.version, uptime_s: health.uptimeS, kernels: health.liveKernels });
    } catch (error) {
      sendJson(res, 503, { status: 'unavailable', reason: `the workspace database cannot be queried: ${(error as Error).message}` });
    }
  }

  function handleMetrics(res: ServerResponse): void {
    let text: string;
    try {
      text = collectMetrics(workspace, { registry, mcpSessions: sessions.size });
    } catch (error) {
      sendText(res, 503, `metrics unavailable: the workspace database cannot be queried: ${(error as Error).message}`);
      return;
    }
    res.writeHead(200, { ...COMMON_HEADERS, 'Content-Type': PROMETHEUS_CONTENT_TYPE, 'Cache-Control': 'no-store' });
    res.end(text);
  }

  async function handleStatic(req: IncomingMessage, res: ServerResponse, rawPath: string): Promise<void> {
    if (!staticRoot) {
      sendText(res, 404, `Not found: ${rawPath}`);
      return;
    }
    let decoded: string;
    try {
      decoded = decodeURIComponent(rawPath);
    } catch {
      sendText(res, 400, 'The path is not valid percent-encoding.');
      return;
    }
    const segments = decoded.split(/[/\\]/);
    // `..` and dotfiles are refused outright, before any resolution could normalise them away.
    if (decoded.includes('\0') || segments.some((segment) => segment === '..' || segment.startsWith('.'))) {
      sendText(res, 403, 'Forbidden: the path leaves the static folder or names a hidden file.');
      return;
    }
    const relative = decoded.endsWith('/') ? `${decoded}index.html` : decoded;
    const candidate = resolve(staticRoot, `.${relative}`);
    let file: string;
    let info: Stats;
    try {
      file = await realpath(candidate);
      info = await stat(file);
    } catch {
      sendText(res, 404, `Not found: ${rawPath}`);
      return;
    }
    // A symlink inside the folder may still point out of it: judge the resolved path.
    if (file !== staticRoot && !file.startsWith(staticRoot + sep)) {
      sendText(res, 403, 'Forbidden: the path leaves the static folder.');
      return;
    }
    if (!info.isFile()) {
      sendText(res, 404, `Not found: ${rawPath}`);
      return;
    }
    res.writeHead(200, {
      ...COMMON_HEADERS,
      'Content-Type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'Content-Length': String(info.size),
      'Cache-Control': 'no-cache',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const stream = createReadStream(file);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const { pathname, query } = splitUrl(req);
    const method = req.method ?? 'GET';
    res.on('close', () => {
      const labels = { path: pathLabel(pathname), method: methodLabel(method) };
      metrics.requests.inc({ ...labels, code: String(res.statusCode) });
      metrics.duration.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
    });

    const decision = guard(req, pathname, query);
    if (!decision.ok) {
      log('debug', 'HTTP request refused', { method, path: pathname, status: decision.status });
      if (pathname === '/mcp') sendRpcError(res, decision.status, -32001, decision.message, decision.headers);
      else sendText(res, decision.status, decision.message, decision.headers);
      return;
    }

    switch (pathname) {
      case '/mcp':
        return handleMcp(req, res);
      case '/health':
        if (method === 'GET' || method === 'HEAD') return handleHealth(res);
        return sendText(res, 405, 'Use GET /health.', { Allow: 'GET, HEAD' });
      case '/metrics':
        if (method === 'GET' || method === 'HEAD') return handleMetrics(res);
        return sendText(res, 405, 'Use GET /metrics.', { Allow: 'GET, HEAD' });
      case '/events':
        return sendText(res, 426, 'GET /events is a WebSocket: connect with a WebSocket client (ws://…/events?token=…).', { Upgrade: 'websocket', Connection: 'Upgrade' });
      default:
        if (method === 'GET' || method === 'HEAD') return handleStatic(req, res, pathname);
        return sendText(res, 405, `Method ${method} is not supported on ${pathname}.`, { Allow: 'GET, HEAD' });
    }
  }

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const { pathname, query } = splitUrl(req);
    const decision = guard(req, pathname, query);
    let status = 0;
    let message = '';
    let extra: Record<string, string> = {};
    if (!decision.ok) ({ status, message, headers: extra } = decision);
    else if (pathname !== '/events' || !options.onUpgrade) [status, message] = [404, `No WebSocket endpoint at ${pathname}.`];
    if (status) {
      const lines = [`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : 'Not Found'}`, 'Content-Type: text/plain; charset=utf-8', 'Connection: close'];
      for (const [name, value] of Object.entries(extra)) lines.push(`${name}: ${value}`);
      socket.end(`${lines.join('\r\n')}\r\nContent-Length: ${Buffer.byteLength(message) + 1}\r\n\r\n${message}\n`);
      return;
    }
    options.onUpgrade?.(req, socket, head);
  }

  const server: Server = createNodeServer({
    // A client that dribbles its headers or body is cut off instead of holding a socket forever.
    headersTimeout: 20_000,
    // Headers and body of one request (at most MAX_BODY_BYTES). An SSE GET is complete once its headers are in,
    // and a POST's streamed answer comes after its body: neither is cut by this.
    requestTimeout: 30_000,
    // How often Node enforces both: its default (30 s) lets a slow client live up to twice as long.
    connectionsCheckingInterval: 1_000,
    // TCP keep-alive probes on every connection after a minute of silence: an SSE stream (or /events socket) whose
    // client vanished without a FIN is found dead and closed, so its session can expire. Without probes, nothing
    // is ever sent or received on a quiet stream and the session would be held forever.
    keepAlive: true,
    keepAliveInitialDelay: 60_000,
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((error: unknown) => {
      log('error', 'HTTP request failed', { method: req.method, url: req.url, error: error instanceof Error ? error.message : String(error) });
      if (res.headersSent) res.destroy();
      else sendRpcError(res, 500, -32603, 'Internal server error; the server log has the details.');
    });
  });
  server.on('upgrade', handleUpgrade);

  await new Promise<void>((resolveListen, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => reject(describeListenError(error, options.host, options.port));
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolveListen();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const allowedHosts = allowedHostSet(options.host, port, options.allowedHosts ?? []);
  policy = { token: options.token, allowedHosts, allowedOrigins: allowedOriginSet(allowedHosts, options.allowedOrigins ?? []) };
  server.on('error', (error) => log('error', 'HTTP server error', { error: error.message }));
  const url = `http://${hostForHeader(options.host)}:${port}`;
  log('info', 'HTTP server listening', { url });

  let closed: Promise<void> | null = null;
  return {
    url,
    port,
    sessions: () => sessions.size,
    close() {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolveClose) => server.close(() => resolveClose()));
        for (const session of sessions.values()) clearTimeout(session.idleTimer);
        await Promise.allSettled([...sessions.values()].map((session) => session.server.close()));
        sessions.clear();
        // Open SSE streams and idle keep-alive sockets would otherwise hold close() open.
        server.closeAllConnections();
        await stopped;
        log('info', 'HTTP server closed', { url });
      })();
      return closed;
    },
  };
}
