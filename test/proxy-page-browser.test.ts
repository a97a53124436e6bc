// echo-proxy's admin page in headless chromium (puppeteer-core; skipped, with the reason,
// where Debian's chromium is absent): a section a proxy, a connection through a proxy shown and
// gone, a proxy created and deleted through the API shown and gone, and a latency toxic added
// from the page's form slowing the next echo. ECHO_SCREENSHOTS=1 also writes the page at
// 1280×800 to docs/web-proxy-admin.png. Run by `npm run test:e2e` (beside web-browser.test.ts).

import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addLatencyFromForm, CHROMIUM, hasChromium, SHOTS, useChromium } from './chromium.js';
import { connect, FULL_MATRIX, proxyWithPage, ROOT, readN, roundTripMs } from './helpers.js';

const WANTED = FULL_MATRIX || SHOTS;
const chromium = useChromium(WANTED);

describe.skipIf(!hasChromium || !WANTED)(
  `echo-proxy's admin page in headless chromium (${CHROMIUM}; npm run test:e2e)`,
  { timeout: 120_000 },
  () => {
    it('shows each proxy, its connections and toxics live; a latency toxic added from the form slows the next echo', async () => {
      const { url, port, upstream } = await proxyWithPage();
      const { page, problems } = await chromium.newPage();
      await page.goto(url);
      const a = 'section[data-proxy="a"]';
      await page.waitForSelector(a, { timeout: 15_000 });
      expect(await page.$eval(`${a} h2`, (e) => e.textContent)).toContain(
        `127.0.0.1:${port} → 127.0.0.1:${upstream}`,
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
        body: JSON.stringify({ name: 'b', listen: '127.0.0.1:0', upstream: `127.0.0.1:${upstream}` }),
      });
      expect(b.status).toBe(201);
      await page.waitForSelector('section[data-proxy="b"]', { timeout: 15_000 });
      // a latency toxic from the form, on proxy a
      await page.click(`${a} button[aria-label="add a fault to a"]`);
      expect(await page.$eval('#f-proxy', (e) => (e as HTMLSelectElement).value)).toBe('a');
      await addLatencyFromForm(page, 'lat', 400);
      await page.waitForFunction(
        (sel: string) => document.querySelector(sel)?.textContent?.includes('lat (latency downstream'),
        { timeout: 15_000 },
        `${a} .proxy-toxics`,
      );
      expect(await roundTripMs(port)).toBeGreaterThanOrEqual(395);
      if (SHOTS) await page.screenshot({ path: path.join(ROOT, 'docs', 'web-proxy-admin.png') });
      c.end();
      await page.waitForSelector(row, { hidden: true, timeout: 15_000 });
      expect((await fetch(`${url}proxies/b`, { method: 'DELETE' })).status).toBe(204);
      await page.waitForSelector('section[data-proxy="b"]', { hidden: true, timeout: 15_000 });
      expect(problems).toEqual([]);
    });
  },
);
