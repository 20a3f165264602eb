// edit_cell with source an agent read redacted: markers are put back to the cell's secrets, or the edit is refused.
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { RedactedSourceError, redactText, restoreRedactedSecrets } from '../src/server/redact.js';
import { connectHttpClient, makeWorkspace, startHttpServerProcess, startStdioServer, textOfResult } from './helpers/mcp.js';

// Fake secrets shaped like real ones, split so that no scanner mistakes this file for a leak.
const OPENAI_KEY = 'sk-proj-' + 'AbCdEfGhIjKlMnOpQrStUvWxYz0123456789';
const GITHUB_TOKEN = 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8';
const PEM = ['-----BEGIN RSA PRIVATE KEY-----', 'MIIEowIBAAKCAQEAfakefakefakefakefakefakefake0123456789', '-----END RSA PRIVATE KEY-----'].join('\n');

/** What an agent does: reads the cell redacted, changes it, sends it back. */
function roundTrip(current: string, edit: (shown: string) => string): { source: string; restored: number } {
  return restoreRedactedSecrets(current, edit(redactText(current)));
}

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof RedactedSourceError, String(error));
    return error.message;
  }
  assert.fail('the edit was accepted');
}

test('markers the agent sends back get their secrets back, wherever the lines went', () => {
  const current = `import os\napi_key = "${OPENAI_KEY}"\ntoken = "${GITHUB_TOKEN}"\nprint(1)`;
  assert.deepEqual(
    roundTrip(current, (shown) => shown.replace('print(1)', 'print(2)\nprint(3)')),
    { source: `import os\napi_key = "${OPENAI_KEY}"\ntoken = "${GITHUB_TOKEN}"\nprint(2)\nprint(3)`, restored: 2 },
  );
  // Two secrets behind the same marker: each line that still reads as it did gets its own back, even moved.
  const passwords = 'a_password = "first-one"\nb_password = "second-one"\n';
  assert.equal(roundTrip(passwords, (shown) => shown.split('\n').reverse().join('\n')).source, passwords.split('\n').reverse().join('\n'));
  // A changed line, when the marker on it can only mean one secret of the cell.
  assert.equal(roundTrip(current, (shown) => shown.replace('token = ', 'gh = ')).source, current.replace('token = ', 'gh = '));
  // A private key across lines comes back whole.
  const pem = `key = """${PEM}"""\nload(key)`;
  assert.equal(roundTrip(pem, (shown) => `${shown}\nprint("ok")`).source, `${pem}\nprint("ok")`);
  // No marker: nothing to do; a marker the cell already holds as text is text.
  assert.deepEqual(restoreRedactedSecrets(current, 'x = 1'), { source: 'x = 1', restored: 0 });
  const literal = 'doc = "secrets show as [REDACTED password] to agents"';
  assert.deepEqual(roundTrip(literal, (shown) => `${shown}\n`), { source: `${literal}\n`, restored: 0 });
});

test('a marker that stands for no secret of the cell, or for one of several that the edit mixed up, is refused', () => {
  const current = `api_key = "${OPENAI_KEY}"\nprint(api_key)`;
  const absent = refusal(() => restoreRedactedSecrets(current, `token = "[REDACTED github-token]"`));
  assert.match(absent, /contains \[REDACTED github-token\], but this cell holds no secret behind that marker/);
  assert.match(absent, /os\.environ\["NAME"\]/);
  assert.match(absent, /Nothing was changed\.$/);

  const passwords = 'a_password = "first-one"\nb_password = "second-one"';
  const mixed = refusal(() => roundTrip(passwords, (shown) => shown.replace('a_password', 'x_password').replace('b_password', 'y_password')));
  assert.match(mixed, /\[REDACTED password\] where this cell holds 2 different secrets behind that marker/);
  assert.match(mixed, /Keep every line that shows \[REDACTED password\] exactly as read_cell returned it/);
});

test('property: any edit of the lines around secrets, and any reordering, keeps every secret', () => {
  const secretValue = fc.oneof(
    fc.stringMatching(/^[A-Za-z0-9]{36}$/).map((tail) => `ghp_${tail}`),
    fc.stringMatching(/^[A-Za-z0-9]{32}$/).map((tail) => `sk-proj-${tail}`),
    fc.stringMatching(/^[a-z0-9!#]{6,16}$/),
  );
  // Plain lines cannot form a secret (no `=`, `:` or `-`), so the agent sees them as they are.
  const plain = fc.stringMatching(/^[a-z (),.0-9]{0,30}$/);
  type Line = { secret: string } | { plain: string };
  const cell = fc.array(fc.oneof(plain.map((text): Line => ({ plain: text })), secretValue.map((secret): Line => ({ secret }))), { minLength: 1, maxLength: 12 });
  const op = fc.oneof(
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: plain }),
    fc.record({ kind: fc.constant('change' as const), at: fc.nat(), text: plain }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('swap' as const), at: fc.nat(), with: fc.nat() }),
  );
  fc.assert(
    fc.property(cell, fc.array(op, { maxLength: 8 }), (lines, ops) => {
      // Each secret on its own key, as cells name them.
      const original = lines.map((line, i) => ('secret' in line ? `k${i}_password = "${line.secret}"` : line.plain));
      let mine = [...original];
      let secretAt = lines.map((line) => 'secret' in line);
      let shown = redactText(original.join('\n')).split('\n');
      assert.equal(shown.length, mine.length);
      for (const step of ops) {
        const plainAt = mine.flatMap((_, i) => (secretAt[i] ? [] : [i]));
        if (step.kind === 'insert') {
          const at = step.at % (mine.length + 1);
          mine.splice(at, 0, step.text);
          shown.splice(at, 0, step.text);
          secretAt.splice(at, 0, false);
        } else if (step.kind === 'swap' && mine.length > 1) {
          const [a, b] = [step.at % mine.length, step.with % mine.length];
          [mine[a], mine[b]] = [mine[b]!, mine[a]!];
          [shown[a], shown[b]] = [shown[b]!, shown[a]!];
          [secretAt[a], secretAt[b]] = [secretAt[b]!, secretAt[a]!];
        } else if (plainAt.length > 0 && step.kind !== 'swap') {
          const at = plainAt[step.at % plainAt.length]!;
          if (step.kind === 'change') mine[at] = shown[at] = step.text;
          else {
            mine = mine.filter((_, i) => i !== at);
            shown = shown.filter((_, i) => i !== at);
            secretAt = secretAt.filter((_, i) => i !== at);
          }
        }
      }
      assert.equal(restoreRedactedSecrets(original.join('\n'), shown.join('\n')).source, mine.join('\n'));
    }),
    { numRuns: 300 },
  );
});

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

test('over HTTP: an agent edits a cell it read redacted; the kernel runs the real secrets; unsafe edits change nothing', async () => {
  const workspace = makeWorkspace('mcpj-hardening-redact-edit-');
  const server = await startHttpServerProcess(workspace);
  const client = await connectHttpClient(server.url, server.token);
  cleanups.push(async () => {
    await client.close();
    await server.stop();
    rmSync(workspace, { recursive: true, force: true });
  });
  const call = async (name: string, args: Record<string, unknown>): Promise<CallToolResult> =>
    (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
  const file = join(workspace, 'k.ipynb');

  const source = `api_key = "${OPENAI_KEY}"\ndb_password = "hunter2!"\nprint(len(api_key), len(db_password))`;
  const twoPasswords = 'a_password = "first-one"\nb_password = "second-one"';
  const created = await call('create_notebook', { notebook_path: 'k.ipynb', cells: [{ cell_type: 'code', source }, { cell_type: 'code', source: twoPasswords }] });
  assert.ok(!created.isError, textOfResult(created));

  const read = await call('read_cell', { notebook_path: 'k.ipynb', index: 0 });
  const shown = (read.structuredContent as { source: string }).source;
  assert.equal(shown, `api_key = "[REDACTED openai-api-key]"\ndb_password = "[REDACTED password]"\nprint(len(api_key), len(db_password))`);

  const edited = await call('edit_cell', { notebook_path: 'k.ipynb', index: 0, source: `${shown}\nprint("edited")` });
  assert.ok(!edited.isError, textOfResult(edited));
  assert.match(textOfResult(edited), /2 redacted secret\(s\) kept as they were in the cell/);
  const onDisk = JSON.parse(readFileSync(file, 'utf8')) as { cells: Array<{ source: string[] }> };
  assert.equal(onDisk.cells[0]!.source.join(''), `${source}\nprint("edited")`);

  // The kernel gets the real values: a marker would have other lengths than 44 and 8.
  const ran = await call('execute_cell', { notebook_path: 'k.ipynb', index: 0 });
  assert.match(textOfResult(ran), /44 8\nedited/);

  const before = readFileSync(file, 'utf8');
  const foreign = await call('edit_cell', { notebook_path: 'k.ipynb', index: 0, source: `${shown}\ntoken = "[REDACTED github-token]"` });
  assert.equal(foreign.isError, true);
  assert.match(textOfResult(foreign), /secrets are hidden from agents on this server.*holds no secret behind that marker.*Nothing was changed/s);

  const mixedShown = (await call('read_cell', { notebook_path: 'k.ipynb', index: 1 })).structuredContent as { source: string };
  const mixed = await call('edit_cell', { notebook_path: 'k.ipynb', index: 1, source: mixedShown.source.replaceAll('_password = ', '_pw_password  = ') });
  assert.equal(mixed.isError, true);
  assert.match(textOfResult(mixed), /2 different secrets behind that marker/);
  assert.equal(readFileSync(file, 'utf8'), before, 'refused edits left the notebook as it was');

  // A cell_type change alone does not look at the source.
  const retyped = await call('edit_cell', { notebook_path: 'k.ipynb', index: 1, cell_type: 'raw' });
  assert.ok(!retyped.isError, textOfResult(retyped));

  // A new cell has no secret behind a marker copied into it: it is stored as typed, and the agent is told so.
  const copied = await call('insert_cell', { notebook_path: 'k.ipynb', cell_type: 'code', source: shown });
  assert.ok(!copied.isError, textOfResult(copied));
  assert.match(textOfResult(copied), /note: 2 redaction marker\(s\) .* stored as typed.*os\.environ/);
  const fresh = await call('create_notebook', { notebook_path: 'copy.ipynb', cells: [{ cell_type: 'code', source: 'key = "[REDACTED openai-api-key]"' }] });
  assert.match(textOfResult(fresh), /note: 1 redaction marker\(s\)/);
  const plain = await call('insert_cell', { notebook_path: 'k.ipynb', cell_type: 'code', source: 'print(1)' });
  assert.doesNotMatch(textOfResult(plain), /redaction marker/);
});

test('over stdio (no redaction) the agent saw the real source, so a marker it writes is its own text', async () => {
  const fx = await startStdioServer(makeWorkspace('mcpj-hardening-redact-edit-stdio-'));
  cleanups.push(() => fx.close());
  await fx.ok('create_notebook', { notebook_path: 'p.ipynb', cells: [{ cell_type: 'code', source: `token = "${GITHUB_TOKEN}"` }] });
  await fx.ok('edit_cell', { notebook_path: 'p.ipynb', index: 0, source: 'token = "[REDACTED github-token]"' });
  const inserted = await fx.call('insert_cell', { notebook_path: 'p.ipynb', cell_type: 'code', source: 'other = "[REDACTED github-token]"' });
  assert.doesNotMatch(textOfResult(inserted), /redaction marker/, 'no note where nothing is redacted');
  const notebook = JSON.parse(readFileSync(join(fx.workspace, 'p.ipynb'), 'utf8')) as { cells: Array<{ source: string[] }> };
  assert.equal(notebook.cells[0]!.source.join(''), 'token = "[REDACTED github-token]"');
});
