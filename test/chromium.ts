// Debian's chromium for the browser tests, driven by puppeteer-core: launched once a file
// (only when that file's tests run), a page at 1280×800 whose console errors and uncaught
// exceptions are collected.

import { existsSync } from 'node:fs';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, onTestFinished } from 'vitest';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);
/** ECHO_SCREENSHOTS=1: the browser tests also write the pages' screenshots to docs/ */
export const SHOTS = process.env.ECHO_SCREENSHOTS === '1';

/** A browser for this file's tests when `wanted` (and chromium is there); closed after them. */
export function useChromium(wanted: boolean): { newPage(): Promise<{ page: Page; problems: string[] }> } {
  let browser: Browser | undefined;
  beforeAll(async () => {
    if (!hasChromium || !wanted) return;
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });
  return {
    async newPage() {
      const page = await browser!.newPage();
      onTestFinished(() => page.close());
      await page.setViewport({ width: 1280, height: 800 });
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(`console: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`exception: ${(e as Error).message}`));
      return { page, problems };
    },
  };
}

/** Add a latency toxic with the admin page's form (on the proxy its select shows) and wait for its row. */
export async function addLatencyFromForm(page: Page, name: string, latencyMs: number): Promise<void> {
  await page.type('#f-name', name);
  await page.select('#f-type', 'latency');
  await page.$eval(
    '#f-attributes',
    (e, v) => {
      (e as HTMLInputElement).value = v;
    },
    JSON.stringify({ latency: latencyMs, jitter: 0 }),
  );
  await page.click('#f-submit');
  await page.waitForSelector(`#toxics tr[data-toxic="${name}"]`, { timeout: 15_000 });
}
