// The admin page on echo-server's --metrics port, at the HTTP level: the page and its files,
// /api/state, and /events pushing a connection's arrival and departure in every mode. The
// browser test of the page is in test/web-browser.test.ts (npm run test:e2e).

import dgram from 'node:dgram';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { adminRoutes } from '../src/server/admin.js';
import type { ServerHandle } from '../src/server/listener.js';
import {
  afterTest,
  connect,
  expectReadsOnlyWhileWatched,
  get,
  SERVER_MODES,
  spawnServer,
  watch,
} from './helpers.js';

async function serverWithAdmin(args: string[]) {
  const srv = await spawnServer(['--metrics', '127.0.0.1:0', ...args]);
  const m = await srv.waitStderr(/metrics on http:\/\/([\d.]+:\d+)\/metrics/);
  return { ...srv, admin: `http://${m[1]}/` };
}

// each test waits for its own server's /events pushes: they run at once
describe.concurrent('the admin page on the --metrics port', () => {
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
    afterTest(() => {
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
    expectReadsOnlyWhileWatched(admin, () => reads);
  });
});
