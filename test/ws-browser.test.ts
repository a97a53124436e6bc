// echo-server --ws from a real browser: Debian's headless Chromium, driven by puppeteer-core,
// opens ws:// and wss:// (the test's self-signed certificate accepted with
// --ignore-certificate-errors) to echo-server in evented and workers modes, from a page served
// on loopback (an origin the server accepts by default). Multi-byte UTF-8 text and a 1 MiB
// binary message come back exact; the close code 4000 comes back. Runs in `npm run test:e2e`
// (ECHO_TEST_FULL=1: a browser start costs seconds); skipped when chromium is absent.

import { once } from 'node:events';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import puppeteer, { type Browser } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FULL_MATRIX, spawnServer } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`ws-browser tests skipped: no ${CHROMIUM}`);
else if (!FULL_MATRIX) console.warn('ws-browser tests skipped: they run in npm run test:e2e');

interface PageResult {
  text: string;
  binaryLength: number;
  binaryExact: boolean;
  closeCode: number;
  closeReason: string;
}

describe.skipIf(!hasChromium || !FULL_MATRIX)('a browser talks to echo-server --ws', () => {
  let browser: Browser;
  let page: import('puppeteer-core').Page;
  let pageServer: http.Server;

  beforeAll(async () => {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--ignore-certificate-errors', '--disable-gpu', '--no-first-run'],
      timeout: 60_000,
    });
    pageServer = http.createServer((_req, res) => {
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        .end('<!doctype html><title>ws test</title>');
    });
    pageServer.listen(0, '127.0.0.1');
    await once(pageServer, 'listening');
    page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${(pageServer.address() as AddressInfo).port}/`);
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((r) => (pageServer ? pageServer.close(() => r()) : r()));
  });

  const TEXT = 'héllo wörld — ✓ 日本語 🦊🚀';

  async function roundTrip(url: string): Promise<PageResult> {
    return page.evaluate(
      async (url: string, text: string) => {
        const ws = new WebSocket(url);
        ws.binaryType = 'arraybuffer';
        const next = () =>
          new Promise<MessageEvent>((resolve, reject) => {
            ws.addEventListener('message', resolve, { once: true });
            ws.addEventListener('error', () => reject(new Error('websocket error')), { once: true });
          });
        await new Promise<void>((resolve, reject) => {
          ws.onopen = () => resolve();
          ws.onerror = () => reject(new Error(`cannot open ${url}`));
        });
        ws.send(text);
        const t = (await next()).data as string;
        const bin = new Uint8Array(1024 * 1024);
        for (let i = 0; i < bin.length; i++) bin[i] = (i * 31 + (i >> 8)) & 0xff;
        ws.send(bin);
        const back = new Uint8Array((await next()).data as ArrayBuffer);
        let exact = back.length === bin.length;
        for (let i = 0; exact && i < bin.length; i++) if (back[i] !== bin[i]) exact = false;
        const closed = new Promise<CloseEvent>((resolve) => {
          ws.onclose = resolve;
        });
        ws.close(4000, 'bye from the browser');
        const c = await closed;
        return {
          text: t,
          binaryLength: back.length,
          binaryExact: exact,
          closeCode: c.code,
          closeReason: c.reason,
        };
      },
      url,
      TEXT,
    );
  }

  for (const [mode, args] of [
    ['evented', []],
    ['workers', ['--mode', 'workers', '--workers', '2']],
  ] as const) {
    for (const tls of [false, true]) {
      it(`${tls ? 'wss' : 'ws'}:// to ${mode}: UTF-8 text and 1 MiB binary exact, close code 4000 back`, async () => {
        const srv = await spawnServer(['--ws', '/echo', ...args, ...(tls ? ['--tls'] : [])]);
        const r = await roundTrip(`${tls ? 'wss' : 'ws'}://127.0.0.1:${srv.port}/echo`);
        expect(r).toEqual({
          text: TEXT,
          binaryLength: 1024 * 1024,
          binaryExact: true,
          closeCode: 4000,
          closeReason: 'bye from the browser',
        });
        await srv.waitStderr(/websocket close 4000/, 20_000);
      }, 60_000);
    }
  }

  it('a page from another origin is refused (403) unless --ws-origin allows it', async () => {
    const srv = await spawnServer(['--ws', '--ws-origin', 'https://elsewhere.example']);
    const outcome = await page.evaluate(
      (url: string) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(url);
          ws.onopen = () => resolve('open');
          ws.onerror = () => resolve('refused');
        }),
      `ws://127.0.0.1:${srv.port}/`,
    );
    expect(outcome).toBe('refused');
    await srv.waitStderr(/origin \\?"http:\/\/127\.0\.0\.1:\d+\\?" refused \(403\)/);
  }, 60_000);
});
