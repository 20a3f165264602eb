// Who may talk to the HTTP server: bearer-token auth and Host/Origin checks against DNS rebinding, as pure functions.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A fresh access token: 32 random bytes, base64url (43 characters, safe in a URL and a header). */
export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Compares in time independent of where the strings differ. Both sides are hashed first so that
 * `timingSafeEqual` always sees equal lengths and the comparison does not reveal the token's length either.
 */
export function tokensEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** `[::1]` for an IPv6 literal, the name unchanged otherwise: the form a Host header carries. */
export function hostForHeader(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/**
 * The `Host` header values accepted, lower-cased. By default the loopback names and the bound host, each
 * with the bound port (and bare when the port is 80, as browsers omit it). An extra host given without a
 * port is accepted bare (a reverse proxy in front) and with the bound port.
 */
export function allowedHostSet(boundHost: string, port: number, extra: readonly string[] = []): Set<string> {
  const hosts = new Set<string>();
  for (const name of ['localhost', '127.0.0.1', '[::1]', hostForHeader(boundHost)]) {
    hosts.add(`${name.toLowerCase()}:${port}`);
    if (port === 80) hosts.add(name.toLowerCase());
  }
  for (const raw of extra) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    hosts.add(entry);
    if (!/:\d+$/.test(entry)) hosts.add(`${entry}:${port}`);
  }
  return hosts;
}

/** Origins accepted: `http://<allowed host>` for every allowed host, plus the extra ones given (no trailing slash). */
export function allowedOriginSet(hosts: ReadonlySet<string>, extra: readonly string[] = []): Set<string> {
  const origins = new Set<string>();
  for (const host of hosts) origins.add(`http://${host}`);
  for (const raw of extra) {
    const entry = raw.trim().toLowerCase().replace(/\/+$/, '');
    if (entry) origins.add(entry);
  }
  return origins;
}

export interface GuardPolicy {
  token: string;
  allowedHosts: ReadonlySet<string>;
  allowedOrigins: ReadonlySet<string>;
}

export interface GuardRequest {
  method: string;
  /** The path without the query string, as sent. */
  pathname: string;
  host: string | undefined;
  origin: string | undefined;
  authorization: string | undefined;
  /** The `token` query parameter, if any. */
  queryToken: string | null;
}

export type GuardDecision =
  | { ok: true }
  | { ok: false; status: 401 | 403; message: string; headers: Record<string, string> };

/** Paths that answer without a token: a load balancer or a probe has none. */
const PUBLIC_PATHS = new Set(['/health']);
/** Paths where `?token=` is not accepted: the API clients can send a header, and a token in a URL ends up in logs. */
const HEADER_ONLY_PATHS = new Set(['/mcp', '/metrics']);

/** Whether a request may carry its token in the query string: only a GET of the page, its files or `/events`. */
export function queryTokenAllowed(method: string, pathname: string): boolean {
  return (method === 'GET' || method === 'HEAD') && !HEADER_ONLY_PATHS.has(pathname) && !PUBLIC_PATHS.has(pathname);
}

const HOW_TO_AUTHENTICATE =
  "Send the header 'Authorization: Bearer <token>'. The token is printed when the server starts (or set with --token or MCP_JUPYTER_TOKEN).";

/** Decides whether a request may proceed; the checks run in the order Host, Origin, token. */
export function checkRequest(request: GuardRequest, policy: GuardPolicy): GuardDecision {
  const host = request.host?.trim().toLowerCase();
  if (!host || !policy.allowedHosts.has(host)) {
    return {
      ok: false,
      status: 403,
      message: `Host not allowed: '${request.host ?? ''}'. Address the server by one of ${[...policy.allowedHosts].join(', ')}, or start it with the extra host allowed.`,
      headers: {},
    };
  }
  if (request.origin !== undefined && !policy.allowedOrigins.has(request.origin.trim().toLowerCase())) {
    return {
      ok: false,
      status: 403,
      message: `Origin not allowed: '${request.origin}'. Only pages served from this server (or an origin it was started to allow) may call it.`,
      headers: {},
    };
  }
  if (PUBLIC_PATHS.has(request.pathname)) return { ok: true };

  const header = request.authorization?.trim();
  if (header) {
    const match = /^bearer\s+(\S+)$/i.exec(header);
    if (!match?.[1]) {
      return { ok: false, status: 401, message: `The Authorization header is not a bearer token. ${HOW_TO_AUTHENTICATE}`, headers: { 'WWW-Authenticate': 'Bearer error="invalid_request"' } };
    }
    return tokensEqual(match[1], policy.token) ? { ok: true } : { ok: false, status: 403, message: 'The access token is wrong. Use the token printed when the server started.', headers: {} };
  }

  if (request.queryToken !== null) {
    if (!queryTokenAllowed(request.method, request.pathname)) {
      return {
        ok: false,
        status: 401,
        message: `A token in the query string is accepted only for the monitor page and /events, not for ${request.method} ${request.pathname}. ${HOW_TO_AUTHENTICATE}`,
        headers: { 'WWW-Authenticate': 'Bearer' },
      };
    }
    return tokensEqual(request.queryToken, policy.token) ? { ok: true } : { ok: false, status: 403, message: 'The access token is wrong. Use the token printed when the server started.', headers: {} };
  }

  const page = queryTokenAllowed(request.method, request.pathname) ? ' A browser can open the page with ?token=<token> instead.' : '';
  return { ok: false, status: 401, message: `This server needs its access token. ${HOW_TO_AUTHENTICATE}${page}`, headers: { 'WWW-Authenticate': 'Bearer' } };
}
