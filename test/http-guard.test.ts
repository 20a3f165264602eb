// The HTTP guard's decisions: which Host, Origin and token combinations get through, and what a refusal says.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allowedHostSet, allowedOriginSet, checkRequest, generateToken, tokensEqual, type GuardPolicy, type GuardRequest } from '../src/server/http-guard.js';

const TOKEN = 'right-token';
const hosts = allowedHostSet('127.0.0.1', 8765);
const policy: GuardPolicy = { token: TOKEN, allowedHosts: hosts, allowedOrigins: allowedOriginSet(hosts) };

function request(overrides: Partial<GuardRequest>): GuardRequest {
  return { method: 'GET', pathname: '/mcp', host: '127.0.0.1:8765', origin: undefined, authorization: `Bearer ${TOKEN}`, queryToken: null, ...overrides };
}

test('generateToken gives 32 random bytes as base64url', () => {
  const a = generateToken();
  const b = generateToken();
  assert.match(a, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(a, 'base64url').length, 32);
  assert.notEqual(a, b);
});

test('tokensEqual compares whole strings, whatever their lengths', () => {
  assert.equal(tokensEqual('abc', 'abc'), true);
  assert.equal(tokensEqual('abc', 'abd'), false);
  assert.equal(tokensEqual('abc', 'abcd'), false);
  assert.equal(tokensEqual('', 'abc'), false);
});

test('default hosts are the loopback names and the bound host, with the bound port', () => {
  assert.deepEqual([...allowedHostSet('127.0.0.1', 8765)].sort(), ['127.0.0.1:8765', '[::1]:8765', 'localhost:8765']);
  assert.ok(allowedHostSet('::1', 9000).has('[::1]:9000'));
  assert.ok(allowedHostSet('0.0.0.0', 9000, ['box.lan']).has('box.lan:9000'));
  assert.ok(allowedHostSet('0.0.0.0', 9000, ['box.lan']).has('box.lan'), 'a proxy in front sends the name without our port');
  assert.ok(allowedHostSet('127.0.0.1', 80).has('localhost'), 'browsers omit port 80');
});

test('Host must be allowed, whatever the token', () => {
  for (const host of ['evil.example:8765', 'localhost:8766', 'localhost', '127.0.0.1', undefined, '']) {
    const decision = checkRequest(request({ host }), policy);
    assert.equal(decision.ok, false, String(host));
    if (!decision.ok) {
      assert.equal(decision.status, 403);
      assert.match(decision.message, /Host not allowed/);
    }
  }
  assert.equal(checkRequest(request({ host: 'LOCALHOST:8765' }), policy).ok, true);
  assert.equal(checkRequest(request({ host: '[::1]:8765' }), policy).ok, true);
  // /health is public but still bound to the Host check.
  assert.equal(checkRequest(request({ pathname: '/health', authorization: undefined, host: 'evil.example:8765' }), policy).ok, false);
});

test('Origin, when present, must be http://<allowed host> or an extra allowed origin', () => {
  assert.equal(checkRequest(request({ origin: 'http://localhost:8765' }), policy).ok, true);
  assert.equal(checkRequest(request({ origin: 'http://127.0.0.1:8765' }), policy).ok, true);
  for (const origin of ['http://evil.example', 'https://localhost:8765', 'http://localhost:8766', 'null', '']) {
    const decision = checkRequest(request({ origin }), policy);
    assert.deepEqual(decision.ok ? 'ok' : [decision.status, /Origin not allowed/.test(decision.message)], [403, true], origin);
  }
  const extra = { ...policy, allowedOrigins: allowedOriginSet(hosts, ['https://notebooks.example/']) };
  assert.equal(checkRequest(request({ origin: 'https://notebooks.example' }), extra).ok, true);
});

test('/health needs no token; everything else does', () => {
  assert.equal(checkRequest(request({ pathname: '/health', authorization: undefined }), policy).ok, true);
  for (const pathname of ['/mcp', '/metrics', '/', '/app.js', '/events', '/health/x']) {
    const decision = checkRequest(request({ pathname, authorization: undefined }), policy);
    assert.equal(decision.ok, false, pathname);
    if (!decision.ok) {
      assert.equal(decision.status, 401);
      assert.equal(decision.headers['WWW-Authenticate'], 'Bearer');
      assert.match(decision.message, /Authorization: Bearer <token>/);
    }
  }
});

test('a wrong bearer token is 403; a malformed header is 401', () => {
  const wrong = checkRequest(request({ authorization: 'Bearer nope' }), policy);
  assert.deepEqual(wrong.ok ? null : wrong.status, 403);
  const basic = checkRequest(request({ authorization: 'Basic dXNlcjpwYXNz' }), policy);
  assert.deepEqual(basic.ok ? null : basic.status, 401);
  assert.equal(checkRequest(request({ authorization: `bearer ${TOKEN}` }), policy).ok, true, 'the scheme is case-insensitive');
});

test('?token= works only for GET of the page, its files and /events', () => {
  const viaQuery = (method: string, pathname: string, queryToken = TOKEN) => checkRequest(request({ method, pathname, authorization: undefined, queryToken }), policy);
  for (const pathname of ['/', '/index.html', '/app.js', '/events']) assert.equal(viaQuery('GET', pathname).ok, true, pathname);
  for (const [method, pathname] of [['POST', '/mcp'], ['GET', '/mcp'], ['DELETE', '/mcp'], ['GET', '/metrics'], ['POST', '/'], ['POST', '/events']] as const) {
    const decision = viaQuery(method, pathname);
    assert.equal(decision.ok ? 0 : decision.status, 401, `${method} ${pathname}`);
  }
  const bad = viaQuery('GET', '/', 'nope');
  assert.equal(bad.ok ? 0 : bad.status, 403);
});
