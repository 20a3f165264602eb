// The monitor page in headless Chromium against the real server: live output and plots, escaping, drop and catch-up.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startHttpServer, type ServerFixture } from './helpers/mcp.js';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = path.join(tmpdir(), 'monitor.png');

/** The kernel's default (inline) backend sends the figure as image/png display data. */
const PLOT = [
  'import matplotlib.pyplot as plt',
  'print("plotting a line", flush=True)',
  'fig, ax = plt.subplots(figsize=(4, 2.4), dpi=80)',
  'ax.plot([0, 1, 2, 3, 4], [1, 3, 2, 5, 4], marker="o")',
  'ax.set_title("monitor test plot")',
  'plt.show()',
].join('\n');

let fx: ServerFixture;
let context: BrowserContext;
let page: Page;
let profile: string;
const pageErrors: string[] = [];

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}; the monitor page test needs it. Install it with: apt-get update && apt-get install -y chromium`);
  }
  fx = await startHttpServer();
  await fx.ok('create_notebook', {
    notebook_path: 'monitor.ipynb',
    cells: [
      { cell_type: 'code', source: 'print("hello from the monitor test")' },
      { cell_type: 'code', source: PLOT },
      { cell_type: 'code', source: 'import time\nfor i in range(3):\n    print(f"step {i}", flush=True)\n    time.sleep(0.7)' },
      {
        cell_type: 'code',
        source: 'from IPython.display import HTML, display\nprint(\'<img src=x onerror="window.__pwned=1"><b>not bold</b>\')\ndisplay(HTML("<i>html</i><script>window.__pwned=2</script>"))',
      },
    ],
  });
  profile = mkdtempSync(path.join(tmpdir(), 'monitor-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(`${fx.url!}/?token=${fx.token!}`);
  await page.waitForSelector('#connection[data-state="live"]', { timeout: 15_000 });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await fx?.close();
});

test('executions appear live: streaming output while running, then text, an inline plot, status and duration', async () => {
  assert.equal(await page.title(), 'Jupyter workspace · live');
  await fx.ok('execute_cell', { notebook_path: 'monitor.ipynb', index: 0 });
  const hello = page.locator('.execution[data-state="succeeded"]', { hasText: 'hello from the monitor test' });
  await hello.first().waitFor({ timeout: 15_000 });
  assert.match(await hello.first().locator('.meta').innerText(), /\d+(\.\d+)? (ms|s)$/);
  assert.match(await hello.first().locator('.exec-count').innerText(), /^\[1\]$/);

  // While it runs, the running card shows the lines printed so far.
  const slow = await fx.ok<{ execution_id: string }>('execute_cell', { notebook_path: 'monitor.ipynb', index: 2, wait: false });
  const running = page.locator(`.execution.running[data-execution-id="${slow.execution_id}"]`);
  await running.locator('.output-text', { hasText: 'step 0' }).waitFor({ timeout: 15_000 });
  assert.doesNotMatch(await running.locator('.output-text').innerText(), /step 2/, 'output appears as it is printed, before the cell ends');
  assert.equal(await page.locator('.kernel[data-notebook="monitor.ipynb"] .badge').innerText(), 'busy');
  // Work queued behind it is listed under its kernel until it starts.
  const queued = await fx.ok<{ execution_id: string }>('execute_code', { notebook_path: 'monitor.ipynb', code: 'print("queued behind")', wait: false });
  const queueItem = page.locator(`.kernel[data-notebook="monitor.ipynb"] .queue li[data-execution-id="${queued.execution_id}"]`);
  await queueItem.waitFor({ timeout: 15_000 });
  assert.match(await queueItem.innerText(), /1\s+print\("queued behind"\)/);
  await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, '-running.png') });
  await page.locator(`.execution[data-execution-id="${slow.execution_id}"][data-state="succeeded"]`).waitFor({ timeout: 15_000 });
  await page.locator(`.execution[data-execution-id="${queued.execution_id}"][data-state="succeeded"]`).waitFor({ timeout: 15_000 });
  assert.equal(await queueItem.count(), 0);

  await fx.ok('execute_cell', { notebook_path: 'monitor.ipynb', index: 1 });
  const plot = page.locator('.execution[data-state="succeeded"]', { hasText: 'plotting a line' }).first();
  await plot.waitFor({ timeout: 15_000 });
  const image = plot.locator('img.output-image');
  await image.waitFor({ timeout: 15_000 });
  assert.match((await image.getAttribute('src')) ?? '', /^data:image\/png;base64,iVBOR/);
  const size = await image.evaluate((img) => ({ width: (img as unknown as { naturalWidth: number }).naturalWidth, height: (img as unknown as { naturalHeight: number }).naturalHeight }));
  // Decoded for real (the inline backend trims the 320×192 figure to its content).
  assert.ok(size.width > 200 && size.width <= 320 && size.height > 150 && size.height <= 240, `image is ${size.width}×${size.height}`);
  await page.locator('.activity li', { hasText: 'monitor.ipynb' }).first().waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('.kernel[data-notebook="monitor.ipynb"] .badge').innerText(), 'idle');
  assert.deepEqual(pageErrors, []);
});

test('output text is shown as text, never as HTML', async () => {
  await fx.ok('execute_cell', { notebook_path: 'monitor.ipynb', index: 3 });
  const card = page.locator('.execution[data-state="succeeded"]', { hasText: 'not bold' }).first();
  await card.waitFor({ timeout: 15_000 });
  assert.match(await card.locator('.outputs').innerText(), /<img src=x onerror="window.__pwned=1"><b>not bold<\/b>/);
  assert.equal(await card.locator('.outputs b, .outputs i, .outputs script, .outputs img').count(), 0);
  assert.equal(await page.evaluate('typeof window.__pwned'), 'undefined');
});

test('when the connection drops, a banner shows; the page reconnects by itself and catches up with what ran meanwhile', async () => {
  await context.setOffline(true);
  await page.evaluate('window.monitor.socket && window.monitor.socket.close()');
  const banner = page.locator('#banner');
  await banner.waitFor({ state: 'visible', timeout: 10_000 });
  assert.match(await banner.innerText(), /Connection to the server lost\. Reconnecting in \d+ s/);
  assert.equal(await page.locator('#connection').getAttribute('data-state'), 'down');

  // A reconnect attempt has failed: the page is really cut off while the next execution runs.
  await page.waitForFunction('window.monitor.failedAttempts >= 2', undefined, { timeout: 10_000 });
  const missed = await fx.ok<{ execution_id: string }>('execute_code', { notebook_path: 'monitor.ipynb', code: 'print("ran while the page was away")' });
  assert.equal(await page.locator(`.execution[data-execution-id="${missed.execution_id}"]`).count(), 0);
  await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, '-disconnected.png') });

  await context.setOffline(false);
  const caughtUp = page.locator(`.execution[data-execution-id="${missed.execution_id}"][data-state="succeeded"]`);
  await caughtUp.waitFor({ timeout: 30_000 });
  assert.match(await caughtUp.innerText(), /ran while the page was away/);
  await banner.waitFor({ state: 'hidden', timeout: 10_000 });
  assert.equal(await page.locator('#connection').getAttribute('data-state'), 'live');
  // What was on the page before the drop is still there.
  assert.ok((await page.locator('.execution', { hasText: 'hello from the monitor test' }).count()) >= 1);
  await page.locator('img.output-image').first().waitFor();
  assert.deepEqual(pageErrors, []);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
});
