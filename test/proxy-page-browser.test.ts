// echo-proxy's admin page in headless chromium (puppeteer-core; skipped, with the reason,
// where Debian's chromium is absent): a section a proxy, a connection through a proxy shown and
// gone, a proxy created and deleted through the API shown and gone, and a latency toxic added
// from the page's form slowing the next echo. ECHO_SCREENSHOTS=1 also writes the page at
// 1280×800 to docs/web-proxy-admin.png. Run by `npm run test:e2e` (beside web-browser.test.ts).

import { existsSync } from 'node:fs';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { connect, echoServer, FULL_MATRIX, ROOT, readN, spawnCli } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
const SHOTS = process.env.ECHO_SCREENSHOTS === '1';
const WANTED = FULL_MATRIX || SHOTS;

let browser: Browser | undefined;
beforeAll(async () => {
  if (!hasChromium || !WANTED) return;
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}, 60_000);
afterAll(async () => {
  await browser?.close();
});

async function newPage(): Promise<{ page: Page; problems: string[] }> {
  const page = await browser!.newPage();
  onTestFinished(() => page.close());
  await page.setViewport({ width: 1280, height: 800 });
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`exception: ${(e as Error).message}`));
  return { page, problems };
}

/** One round trip on a new connection through `port` (after a first one). */
async function echoMs(port: number): Promise<number> {
  const s = await connect(port);
  try {
    s.write('warm');
    await readN(s, 4);
    const t0 = performance.now();
    s.write('ping');
    await readN(s, 4);
    return performance.now() - t0;
  } finally {
    s.destroy();
  }
}

describe.skipIf(!hasChromium || !WANTED)(
  `echo-proxy's admin page in headless chromium (${CHROMIUM}; npm run test:e2e)`,
  { timeout: 120_000 },
  () => {
    it('shows each proxy, its connections and toxics live; a latency toxic added from the form slows the next echo', async () => {
      const up = await echoServer();
      const px = spawnCli('echo-proxy', [
        '--api',
        '127.0.0.1:0',
        '--proxy',
        `a=127.0.0.1:0,127.0.0.1:${up.address.port}`,
      ]);
      const url = (await px.waitStderr(/admin page at (http:\/\/127\.0\.0\.1:\d+\/)/))[1]!;
      const port = Number(/proxy a: listening on 127\.0\.0\.1:(\d+)/.exec(px.stderr())![1]);
      const { page, problems } = await newPage();
      await page.goto(url);
      const a = 'section[data-proxy="a"]';
      await page.waitForSelector(a, { timeout: 15_000 });
      expect(await page.$eval(`${a} h2`, (e) => e.textContent)).toContain(
        `127.0.0.1:${port} → 127.0.0.1:${up.address.port}`,
      );
      expect(await page.$eval('#server', (e) => (e as HTMLElement).hidden)).toBe(true);
      // a connection through the proxy comes and goes
      const c = await connect(port);
      c.write('hello\n');
      await readN(c, 6);
      const row = `${a} tr[data-peer="127.0.0.1:${c.localPort}"]`;
      await page.waitForSelector(row, { timeout: 15_000 });
      await page.waitForFunction(
        (sel: string) => /ESTABLISHED/.test(document.querySelector(sel)?.textContent ?? ''),
        { timeout: 15_000 },
        row,
      );
      // a proxy created through the API gets its section
      const b = await fetch(`${url}proxies`, {
        method: 'POST',
        body: JSON.stringify({ name: 'b', listen: '127.0.0.1:0', upstream: `127.0.0.1:${up.address.port}` }),
      });
      expect(b.status).toBe(201);
      await page.waitForSelector('section[data-proxy="b"]', { timeout: 15_000 });
      // a latency toxic from the form, on proxy a
      await page.click(`${a} button[aria-label="add a fault to a"]`);
      expect(await page.$eval('#f-proxy', (e) => (e as HTMLSelectElement).value)).toBe('a');
      await page.type('#f-name', 'lat');
      await page.select('#f-type', 'latency');
      await page.$eval('#f-attributes', (e) => {
        (e as HTMLInputElement).value = '{"latency":400,"jitter":0}';
      });
      await page.click('#f-submit');
      await page.waitForSelector('#toxics tr[data-toxic="lat"]', { timeout: 15_000 });
      await page.waitForFunction(
        (sel: string) => document.querySelector(sel)?.textContent?.includes('lat (latency downstream'),
        { timeout: 15_000 },
        `${a} .proxy-toxics`,
      );
      expect(await echoMs(port)).toBeGreaterThanOrEqual(395);
      if (SHOTS) await page.screenshot({ path: path.join(ROOT, 'docs', 'web-proxy-admin.png') });
      c.end();
      await page.waitForSelector(row, { hidden: true, timeout: 15_000 });
      expect((await fetch(`${url}proxies/b`, { method: 'DELETE' })).status).toBe(204);
      await page.waitForSelector('section[data-proxy="b"]', { hidden: true, timeout: 15_000 });
      expect(problems).toEqual([]);
    });
  },
);
