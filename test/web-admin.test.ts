// The admin page on echo-server's --metrics port, at the HTTP level: the page and its files,
// /api/state, and /events pushing a connection's arrival and departure in every mode. The
// browser test of the page is in test/web-browser.test.ts (npm run test:e2e).

import dgram from 'node:dgram';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { adminRoutes } from '../src/server/admin.js';
import type { ServerHandle } from '../src/server/listener.js';
import { connect, SERVER_MODES, spawnServer } from './helpers.js';

async function serverWithAdmin(args: string[]) {
  const srv = await spawnServer(['--metrics', '127.0.0.1:0', ...args]);
  const m = await srv.waitStderr(/metrics on http:\/\/([\d.]+:\d+)\/metrics/);
  return { ...srv, admin: `http://${m[1]}/` };
}

function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          body += d;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }),
        );
      })
      .on('error', reject);
  });
}

/** An open /events stream: every snapshot pushed, and a wait for one that satisfies `cond`. */
async function watch(url: string) {
  const snaps: any[] = [];
  const waiters: { cond: (s: any) => boolean; resolve: (s: any) => void }[] = [];
  const req = http.get(`${url}events`);
  onTestFinished(() => {
    req.destroy();
  });
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  expect(res.headers['content-type']).toMatch(/text\/event-stream/);
  let buf = '';
  res.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    for (let cut = buf.indexOf('\n\n'); cut >= 0; cut = buf.indexOf('\n\n')) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (!data) continue;
      const s = JSON.parse(data);
      snaps.push(s);
      for (const w of [...waiters])
        if (w.cond(s)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(s);
        }
    }
  });
  return {
    snaps,
    close: () => req.destroy(),
    /** the first snapshot (already pushed from index `from` on, or to come) for which `cond` holds */
    next(cond: (s: any) => boolean, from = 0, timeoutMs = 15_000): Promise<any> {
      const seen = snaps.slice(from).find(cond);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () =>
            reject(
              new Error(`no such snapshot within ${timeoutMs} ms; last: ${JSON.stringify(snaps.at(-1))}`),
            ),
          timeoutMs,
        );
        waiters.push({
          cond,
          resolve: (s) => {
            clearTimeout(t);
            resolve(s);
          },
        });
      });
    },
  };
}

describe('the admin page on the --metrics port', () => {
  it('serves the page, its files and /metrics beside it; a foreign Host is refused', async () => {
    const srv = await serverWithAdmin([]);
    const page = await get(srv.admin);
    expect(page.status).toBe(200);
    expect(page.type).toMatch(/text\/html/);
    expect(page.body).toContain('admin.js');
    expect(page.body).not.toMatch(/https?:\/\//);
    for (const f of ['admin.js', 'admin.css']) expect((await get(`${srv.admin}${f}`)).status, f).toBe(200);
    expect((await get(`${srv.admin}metrics`)).body).toContain('echo_connections_open');
    expect((await get(srv.admin, { host: 'attacker.example' })).status).toBe(403);
    const state = JSON.parse((await get(`${srv.admin}api/state`)).body);
    expect(state).toMatchObject({ program: 'echo-server', mode: 'evented', listen: `127.0.0.1:${srv.port}` });
  });

  for (const [mode, args] of [
    ...SERVER_MODES,
    ['workers', ['--mode', 'workers', '--workers', '2', '--exclusive', '--reuse-port']] as [string, string[]],
  ])
    it(`${args.join(' ') || mode}: /events pushes a connection as it opens (peer, age, bytes, TCP state, RTT) and drops it as it closes`, async () => {
      const srv = await serverWithAdmin(args);
      const w = await watch(srv.admin);
      const first = await w.next(() => true);
      expect(first.mode).toBe(mode);
      if (mode === 'workers') expect(first.workers).toHaveLength(2);
      const c = await connect(srv.port);
      const peer = `127.0.0.1:${c.localPort}`;
      const mine = (s: any) => s.connections.find((x: any) => x.peer === peer);
      const seen = mine(await w.next((s) => mine(s) !== undefined, 1));
      expect(seen.since).toBeGreaterThan(first.startedAt - 1);
      if (mode === 'evented' || mode === 'iterative') {
        expect(seen.state).toBe('ESTABLISHED');
        expect(seen.rttUs).toBeGreaterThanOrEqual(0);
      } else expect(seen.pid).toBeGreaterThan(0);
      c.write('hello\n');
      await once(c, 'data');
      // bytes each way, the TCP state and RTT: from this process, or from the child that serves it
      const moved = mine(await w.next((s) => mine(s)?.bytesIn === 6 && mine(s)?.bytesOut === 6));
      expect(moved.state).toBe('ESTABLISHED');
      expect(moved.rttUs).toBeGreaterThan(0);
      const from = w.snaps.length;
      c.end();
      const after = await w.next((s) => mine(s) === undefined && s.totals.active === 0, from);
      expect(after.totals.connections).toBeGreaterThanOrEqual(1);
      expect(after.totals.bytesIn).toBe(6);
      // never counted twice (open and closed at once) on the way
      expect(Math.max(...w.snaps.map((x) => x.totals.bytesIn))).toBe(6);
    });

  it('--udp: the page says so and counts datagrams', async () => {
    const srv = await serverWithAdmin(['--udp']);
    const w = await watch(srv.admin);
    expect((await w.next(() => true)).mode).toBe('udp');
    const s = dgram.createSocket('udp4');
    onTestFinished(() => {
      s.close();
    });
    s.send('ping', srv.port, '127.0.0.1');
    await once(s, 'message');
    const got = await w.next((x) => x.udp?.datagramsIn >= 1);
    expect(got.udp.datagramsOut).toBeGreaterThanOrEqual(1);
  });
});

describe('the admin page costs nothing while nobody watches', () => {
  it('reads the server only while an /events stream is open', () => {
    vi.useFakeTimers();
    onTestFinished(() => {
      vi.useRealTimers();
    });
    let reads = 0;
    const handle = {
      address: { address: '127.0.0.1', port: 7007, family: 'IPv4' },
      options: [],
      stats: () => ({
        connections: 0,
        active: 0,
        refused: 0,
        refusedBy: {},
        bytesIn: 0,
        bytesOut: 0,
        errors: {},
      }),
      connections: () => {
        reads++;
        return [];
      },
    } as unknown as ServerHandle;
    const admin = adminRoutes(handle, { mode: 'evented' });
    vi.advanceTimersByTime(60_000);
    expect(reads).toBe(0);
    const written: string[] = [];
    const res = Object.assign(new EventEmitter(), {
      writeHead: () => res,
      write: (t: string) => written.push(t),
      end: () => res.emit('close'),
    });
    const req = { url: '/events', method: 'GET', headers: { host: '127.0.0.1:9100' } };
    expect(admin.handle(req as any, res as any, '127.0.0.1')).toBe(true);
    expect(written).toHaveLength(1);
    vi.advanceTimersByTime(5_000);
    expect(reads).toBeGreaterThan(5);
    // nothing changed: nothing more was sent
    expect(written).toHaveLength(1);
    res.emit('close');
    expect(admin.watchers()).toBe(0);
    const after = reads;
    vi.advanceTimersByTime(60_000);
    expect(reads).toBe(after);
  });
});
