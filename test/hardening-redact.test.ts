// Secrets in tool results: redacted for agents over HTTP by default, kept in the notebook; tool metrics on /metrics.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { redactText, redactToolResult } from '../src/server/redact.js';
import { connectHttpClient, makeWorkspace, startHttpServerProcess, textOfResult } from './helpers/mcp.js';

// Fake secrets shaped like the real ones (AWS's documented example key id, random-looking filler elsewhere).
const AWS_KEY_ID = 'AKIA' + 'IOSFODNN7EXAMPLE';
const PEM = ['-----BEGIN RSA PRIVATE KEY-----', 'MIIEowIBAAKCAQEAfakefakefakefakefakefakefake0123456789', 'b2theXRoaXNpc25vdGFyZWFsa2V5YXRhbGw=', '-----END RSA PRIVATE KEY-----'].join('\n');

const SECRETS: Array<[kind: string, secret: string]> = [
  ['aws-access-key-id', AWS_KEY_ID],
  ['github-token', 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8'],
  ['github-token', 'github_pat_' + '11ABCDEFG0123456789_abcdefghijklmnopqrstuv'],
  ['gitlab-token', 'glpat-' + 'x1y2z3A4B5C6D7E8F9G0'],
  ['slack-token', 'xoxb-' + '123456789012-1234567890123-AbCdEfGhIjKl'],
  ['anthropic-api-key', 'sk-ant-' + 'api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789'],
  ['openai-api-key', 'sk-proj-' + 'AbCdEfGhIjKlMnOpQrStUvWxYz0123456789'],
  ['openai-api-key', 'sk-' + 'AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefghij'],
  ['jwt', 'eyJhbGciOiJIUzI1NiJ9.' + 'eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U'],
  ['private-key', PEM],
  ['google-api-key', 'AIza' + 'SyA1234567890abcdefghijklmnopqrstuv'],
  ['stripe-key', 'sk_live_' + '4eC39HqLyjWDarjtT1zdp7dc'],
];

test('each kind of secret is replaced by a marker naming its kind', () => {
  for (const [kind, secret] of SECRETS) {
    const counts = new Map<string, number>();
    const out = redactText(`before ${secret} after`, counts);
    assert.equal(out, `before [REDACTED ${kind}] after`, kind);
    assert.equal(counts.get(kind), 1);
  }
});

test('assignments keep their key and quotes; code that only names a secret stays readable', () => {
  const cases: Array<[string, string]> = [
    ['password = "hunter2!"', 'password = "[REDACTED password]"'],
    ["db_password='p4ss w0rd'", "db_password='[REDACTED password]'"],
    ['{"api_key": "abcd1234"}', '{"api_key": "[REDACTED password]"}'],
    ['DB_PASSWORD=s3cr3t-v4lue\nNEXT=1', 'DB_PASSWORD=[REDACTED password]\nNEXT=1'],
    ['GET /x?token=abc123&page=2', 'GET /x?token=[REDACTED password]&page=2'],
    ['aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'aws_secret_access_key = [REDACTED aws-secret-access-key]'],
    ['postgres://admin:pa55word@db:5432/app', 'postgres://admin:[REDACTED url-password]@db:5432/app'],
    ['Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123', 'Authorization: Bearer [REDACTED bearer-token]'],
    ['-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC (cut by the output budget)', '[REDACTED private-key]'],
  ];
  for (const [input, expected] of cases) assert.equal(redactText(input), expected, input);
  const untouched = [
    'def login(password: str, token=None):',
    'token = get_token()',
    'password=os.environ["PW"]',
    'max_tokens = 512; num_tokens="3"',
    'see https://example.com/a:b/c and sk-short',
    'AKIA is a prefix, AKIA123 is too short',
    'the total is 1234567890123456789012345678901234567890',
  ];
  for (const input of untouched) assert.equal(redactText(input), input, input);
});

test('property: a secret embedded in any text never survives, redaction is idempotent and never throws', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), fc.constantFrom(...SECRETS), fc.string({ maxLength: 200 }), (before, [, secret], after) => {
      const once = redactText(`${before} ${secret} ${after}`);
      assert.ok(!once.includes(secret), once);
      assert.equal(redactText(once), once);
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 2000 }), (text) => {
      assert.equal(typeof redactText(text), 'string');
    }),
    { numRuns: 300 },
  );
  // Linear on big hostile input: a megabyte of near-misses takes well under a second.
  const hostile = 'password=' + 'a_'.repeat(200_000) + ' -----BEGIN PRIVATE KEY-----' + 'x://u:'.repeat(50_000);
  const started = Date.now();
  redactText(hostile);
  assert.ok(Date.now() - started < 1_500, `took ${Date.now() - started} ms`);
});

test('tool results: text and structured content are redacted, images are left alone', () => {
  const result: CallToolResult = {
    content: [
      { type: 'text', text: `key ${AWS_KEY_ID}` },
      { type: 'image', data: 'QUtJQUlPU0ZPRE5ON0VYQU1QTEU=', mimeType: 'image/png' },
    ],
    structuredContent: { outputs: [{ text: PEM, nested: { token: 'ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8' } }], count: 2 },
  };
  const clean = redactToolResult(result);
  assert.deepEqual(clean.content[0], { type: 'text', text: 'key [REDACTED aws-access-key-id]' });
  assert.deepEqual(clean.content[1], result.content[1]);
  assert.deepEqual(clean.structuredContent, { outputs: [{ text: '[REDACTED private-key]', nested: { token: '[REDACTED github-token]' } }], count: 2 });
  assert.match(JSON.stringify(result.structuredContent), /BEGIN RSA PRIVATE KEY/, 'the original result is not modified');
});

test('MCP_JUPYTER_REDACT: on by default over HTTP, off over stdio, and either way when set', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpj-hardening-redact-config-'));
  try {
    assert.equal(loadConfig({ workspace: dir, http: '127.0.0.1:0' }, {}).redact, true);
    assert.equal(loadConfig({ workspace: dir }, {}).redact, false);
    assert.equal(loadConfig({ workspace: dir, http: '127.0.0.1:0' }, { MCP_JUPYTER_REDACT: 'off' }).redact, false);
    assert.equal(loadConfig({ workspace: dir }, { MCP_JUPYTER_REDACT: 'on' }).redact, true);
    assert.throws(() => loadConfig({ workspace: dir }, { MCP_JUPYTER_REDACT: 'maybe' }), (error: unknown) => error instanceof ConfigError && /on or off/.test(error.message));
    assert.throws(() => loadConfig({ workspace: dir }, { MCP_JUPYTER_QUEUE_LIMIT: '0' }), ConfigError);
    assert.throws(() => loadConfig({ workspace: dir }, { MCP_JUPYTER_INTERRUPT_GRACE_S: 'soon' }), ConfigError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('over HTTP: a cell printing secrets is redacted in the tool result, kept in the notebook, and tool metrics are scraped', async () => {
  const workspace = makeWorkspace('mcpj-hardening-redact-');
  const server = await startHttpServerProcess(workspace);
  const client = await connectHttpClient(server.url, server.token);
  try {
    const code = `key_id = "AKIA" + "IOSFODNN7EXAMPLE"\npem = ${JSON.stringify(PEM)}\nprint("aws:", key_id)\nprint(pem)`;
    const created = (await client.callTool({ name: 'create_notebook', arguments: { notebook_path: 's.ipynb', cells: [{ cell_type: 'code', source: code }] } })) as CallToolResult;
    assert.ok(!created.isError, textOfResult(created));
    const result = (await client.callTool({ name: 'execute_cell', arguments: { notebook_path: 's.ipynb', index: 0 } }, undefined, { timeout: 120_000 })) as CallToolResult;
    assert.ok(!result.isError, textOfResult(result));
    const shown = JSON.stringify(result);
    assert.match(shown, /aws: \[REDACTED aws-access-key-id\]/);
    assert.match(shown, /\[REDACTED private-key\]/);
    assert.ok(!shown.includes(AWS_KEY_ID), 'the key id is not in what the agent got');
    assert.ok(!shown.includes('MIIEowIBAAKCAQEA'), 'the private key is not in what the agent got');

    const notebook = readFileSync(join(workspace, 's.ipynb'), 'utf8');
    assert.ok(notebook.includes(`aws: ${AWS_KEY_ID}`), 'the notebook keeps the original output');
    assert.ok(notebook.includes('MIIEowIBAAKCAQEA'));

    const response = await fetch(`${server.url}/metrics`, { headers: { Authorization: `Bearer ${server.token}` } });
    assert.equal(response.status, 200);
    const metrics = await response.text();
    assert.match(metrics, /^mcp_jupyter_tool_calls_total\{tool="execute_cell",outcome="ok"\} 1$/m);
    assert.match(metrics, /^mcp_jupyter_tool_calls_total\{tool="create_notebook",outcome="ok"\} 1$/m);
    assert.match(metrics, /^mcp_jupyter_tool_call_duration_seconds_count\{tool="execute_cell"\} 1$/m);
    assert.match(metrics, /^mcp_jupyter_tool_call_duration_seconds_bucket\{tool="execute_cell",le="\+Inf"\} 1$/m);
    assert.match(metrics, /^mcp_jupyter_redactions_total\{kind="aws-access-key-id"\} [1-9]/m);
    assert.match(metrics, /^mcp_jupyter_kernel_deaths_total 0$/m);
    assert.match(metrics, /^mcp_jupyter_kernel_restarts_total\{reason="requested"\} 0$/m);
    assert.match(metrics, /^mcp_jupyter_queue_limit 1000$/m);
    assert.match(metrics, /^mcp_jupyter_journal_write_errors_total 0$/m);

    const status = (await client.callTool({ name: 'server_status', arguments: {} })) as CallToolResult;
    const calls = (status.structuredContent as { tool_calls: Record<string, { calls: number; errors: number }> }).tool_calls;
    assert.equal(calls['execute_cell']?.calls, 1);
    assert.equal(calls['create_notebook']?.errors, 0);
    assert.match(textOfResult(status), /tool calls: .*execute_cell 1, mean \d+ ms/);
  } finally {
    await client.close();
    await server.stop();
    rmSync(workspace, { recursive: true, force: true });
  }
});
