// echo-proxy's admin page and metrics on the port of its Toxiproxy API, at the HTTP level: a
// section a proxy in /events and /api/state (a connection through a proxy comes and goes;
// proxies created and deleted through the API come and go), a toxic added with the request the
// page's form sends slows the next echo, /metrics counts bytes by proxy, and nothing is read
// while nobody watches. The page in a browser: test/web-browser.test.ts (npm run test:e2e).

import dgram from 'node:dgram';
import { once } from 'node:events';
import http from 'node:http';
import { describe, expect, it, onTestFinished } from 'vitest';
import { proxyAdmin } from '../src/proxy/admin.js';
import type { Proxies } from '../src/proxy/registry.js';
import {
  connect,
  expectReadsOnlyWhileWatched,
  get,
  proxyWithPage,
  readN,
  roundTripMs,
  spawnCli,
  spawnServer,
  watch,
} from './helpers.js';

const section = (s: any, name: string) => s.proxies?.find((p: any) => p.name === name);

describe("echo-proxy's admin page on its API port", () => {
  it('serves the page and its files beside the API; a foreign Host is refused', async () => {
    const px = await proxyWithPage();
    const page = await get(px.url);
    expect(page.status).toBe(200);
    expect(page.body).toContain('admin.js');
    for (const f of ['admin.js', 'admin.css']) expect((await get(`${px.url}${f}`)).status, f).toBe(200);
    expect((await get(px.url, { host: 'attacker.example' })).status).toBe(403);
    const state = JSON.parse((await get(`${px.url}api/state`)).body);
    expect(state).toMatchObject({
      program: 'echo-proxy',
      mode: 'proxy',
      listen: px.url.slice(7, -1),
      proxies: [
        {
          name: 'a',
          listen: `127.0.0.1:${px.port}`,
          upstream: `127.0.0.1:${px.upstream}`,
          enabled: true,
          toxics: [],
          totals: { connections: 0, active: 0 },
        },
      ],
    });
    // the API is still answered as before
    expect((await get(`${px.url}version`)).body).toContain('version');
    expect((await get(`${px.url}nothing-here`)).status).toBe(404);
  });

  it('/events pushes a connection through a proxy as it opens (bytes, TCP state, RTT) and drops it as it closes', async () => {
    const px = await proxyWithPage();
    const w = await watch(px.url);
    expect(section(await w.next(() => true), 'a').connections).toEqual([]);
    const c = await connect(px.port);
    const peer = `127.0.0.1:${c.localPort}`;
    const mine = (s: any) => section(s, 'a')?.connections.find((x: any) => x.peer === peer);
    c.write('hello\n');
    await readN(c, 6);
    const seen = mine(await w.next((s) => mine(s)?.bytesIn === 6 && mine(s)?.bytesOut === 6));
    expect(seen.state).toBe('ESTABLISHED');
    expect(seen.rttUs).toBeGreaterThan(0);
    expect(seen.since).toBeGreaterThan(0);
    const from = w.snaps.length;
    c.end();
    const after = await w.next((s) => mine(s) === undefined && section(s, 'a').totals.active === 0, from);
    expect(section(after, 'a').totals).toMatchObject({ connections: 1, bytesIn: 6, bytesOut: 6 });
  });

  it('proxies created and deleted through the API appear and go; a disabled one stays, with its address', async () => {
    const px = await proxyWithPage();
    const w = await watch(px.url);
    await w.next((s) => s.proxies.length === 1);
    const made = await fetch(`${px.url}proxies`, {
      method: 'POST',
      body: JSON.stringify({ name: 'b', listen: '127.0.0.1:0', upstream: `127.0.0.1:${px.upstream}` }),
    });
    expect(made.status).toBe(201);
    const b = await made.json();
    const added = await w.next((s) => section(s, 'b') !== undefined);
    expect(section(added, 'b')).toMatchObject({ listen: b.listen, enabled: true, connections: [] });
    await fetch(`${px.url}proxies/b`, { method: 'POST', body: '{"enabled":false}' });
    expect(section(await w.next((s) => section(s, 'b')?.enabled === false), 'b').listen).toBe(b.listen);
    expect((await fetch(`${px.url}proxies/b`, { method: 'DELETE' })).status).toBe(204);
    const gone = await w.next((s) => section(s, 'b') === undefined);
    expect(gone.proxies.map((p: any) => p.name)).toEqual(['a']);
  });

  it("a toxic added with the page form's request shows in the section and slows the next echo through the proxy", async () => {
    const px = await proxyWithPage();
    const before = await roundTripMs(px.port);
    const w = await watch(px.url);
    // the body web/admin/admin.js sends (its browser test checks the form sends exactly this)
    const add = await fetch(`${px.url}proxies/a/toxics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: px.url.slice(0, -1) },
      body: JSON.stringify({
        name: 'lat',
        type: 'latency',
        stream: 'downstream',
        toxicity: 1,
        attributes: { latency: 300, jitter: 0 },
      }),
    });
    expect(add.status).toBe(200);
    const shown = await w.next((s) => section(s, 'a')?.toxics.length === 1);
    expect(section(shown, 'a').toxics[0]).toMatchObject({ name: 'lat', type: 'latency' });
    const after = await roundTripMs(px.port);
    expect(after).toBeGreaterThanOrEqual(295);
    expect(after).toBeGreaterThan(before + 200);
  });

  it('GET /metrics counts connections and bytes each way with a proxy label', async () => {
    const px = await proxyWithPage();
    const c = await connect(px.port);
    c.write('x'.repeat(1000));
    await readN(c, 1000);
    c.end();
    await once(c, 'close');
    const m = await get(`${px.url}metrics`);
    expect(m.status).toBe(200);
    expect(m.type).toMatch(/text\/plain/);
    const value = (name: string) =>
      Number(new RegExp(`^${name}\\{proxy="a"\\} (\\d+)$`, 'm').exec(m.body)?.[1]);
    expect(value('echo_connections_total')).toBe(1);
    expect(value('echo_received_bytes_total')).toBe(1000);
    expect(value('echo_sent_bytes_total')).toBe(1000);
    expect(m.body).toMatch(/^echo_connections_open\{proxy="a"\} 0$/m);
    expect(m.body).toContain('echo_process_cpu_seconds_total');
  });
});

describe("a proxy's totals over its life", () => {
  it('disabling and enabling a proxy keeps what it served: on the page and as Prometheus counters (which never go down)', async () => {
    const px = await proxyWithPage();
    const c = await connect(px.port);
    c.write('hello\n');
    await readN(c, 6);
    const w = await watch(px.url);
    await w.next((s) => section(s, 'a').totals.bytesIn === 6);
    // disabled with the connection open: it is closed, and still counted
    c.resume().once('end', () => c.end());
    const closed = once(c, 'close');
    await fetch(`${px.url}proxies/a`, { method: 'POST', body: '{"enabled":false}' });
    await closed;
    const off = section(
      await w.next((s) => section(s, 'a').enabled === false && section(s, 'a').totals.active === 0),
      'a',
    );
    expect(off.totals).toMatchObject({ connections: 1, bytesIn: 6, bytesOut: 6 });
    const scrape = async () => (await get(`${px.url}metrics`)).body;
    expect(await scrape()).toMatch(/^echo_received_bytes_total\{proxy="a"\} 6$/m);
    await fetch(`${px.url}proxies/a`, { method: 'POST', body: '{"enabled":true}' });
    const c2 = await connect(px.port);
    c2.write('hi\n');
    await readN(c2, 3);
    c2.end();
    await once(c2.resume(), 'close');
    const on = section(
      await w.next((s) => section(s, 'a').totals.connections === 2 && section(s, 'a').totals.active === 0),
      'a',
    );
    expect(on.totals).toMatchObject({ bytesIn: 9, bytesOut: 9 });
    const m = await scrape();
    expect(m).toMatch(/^echo_received_bytes_total\{proxy="a"\} 9$/m);
    expect(m).toMatch(/^echo_connections_total\{proxy="a"\} 2$/m);
  });
});

describe('a datagram proxy on the page', () => {
  it('echo-proxy --udp: each client address is a session with its bytes; the totals stay once disabled', async () => {
    const up = await spawnServer(['--udp', '--rate-limit', '0']);
    const px = spawnCli('echo-proxy', [
      '--udp',
      '--api',
      '127.0.0.1:0',
      '--proxy',
      `u=127.0.0.1:0,127.0.0.1:${up.port}`,
    ]);
    const url = (await px.waitStderr(/admin page at (http:\/\/127\.0\.0\.1:\d+\/)/))[1]!;
    const port = Number(/proxy u: listening on 127\.0\.0\.1:(\d+)/.exec(px.stderr())![1]);
    const sock = dgram.createSocket('udp4');
    onTestFinished(() => {
      sock.close();
    });
    sock.send('ping', port, '127.0.0.1');
    await once(sock, 'message');
    const state = async () => section(JSON.parse((await get(`${url}api/state`)).body), 'u');
    const u = await state();
    expect(u).toMatchObject({
      datagrams: true,
      totals: { connections: 1, active: 1, bytesIn: 4, bytesOut: 4 },
    });
    expect(u.connections).toEqual([
      expect.objectContaining({ peer: `127.0.0.1:${sock.address().port}`, bytesIn: 4, bytesOut: 4 }),
    ]);
    await fetch(`${url}proxies/u`, { method: 'POST', body: '{"enabled":false}' });
    const off = await state();
    expect(off.connections).toEqual([]);
    expect(off.totals).toMatchObject({ connections: 1, active: 0, bytesIn: 4, bytesOut: 4 });
    expect((await get(`${url}metrics`)).body).toMatch(/^echo_received_bytes_total\{proxy="u"\} 4$/m);
  });
});

describe('the API beside the page refuses what the page refuses', () => {
  /** A POST from a page whose name was pointed at 127.0.0.1 (DNS rebinding): Host and Origin agree. */
  const rebound = (url: string, path: string, body: string) => {
    const port = new URL(url).port;
    return new Promise<number>((resolve, reject) => {
      const req = http.request(
        `${url}${path}`,
        { method: 'POST', headers: { host: `evil.example:${port}`, origin: `http://evil.example:${port}` } },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  };

  it('echo-proxy --api: a request naming another Host is refused (403) and changes nothing', async () => {
    const px = await proxyWithPage();
    const body = JSON.stringify({ name: 'x', listen: '127.0.0.1:0', upstream: '127.0.0.1:9' });
    expect(await rebound(px.url, 'proxies', body)).toBe(403);
    expect(Object.keys(await (await fetch(`${px.url}proxies`)).json())).toEqual(['a']);
  });

  it("echo-server --metrics: the same for echo-server's faults", async () => {
    const srv = await spawnServer(['--metrics', '127.0.0.1:0']);
    const m = await srv.waitStderr(/metrics on http:\/\/([\d.]+:\d+)\/metrics/);
    const url = `http://${m[1]}/`;
    const body = JSON.stringify({ name: 'lat', type: 'latency', attributes: { latency: 100 } });
    expect(await rebound(url, 'proxies/echo-server/toxics', body)).toBe(403);
    expect((await (await fetch(`${url}proxies`)).json())['echo-server'].toxics).toEqual([]);
  });
});

describe("echo-proxy's page costs nothing while nobody watches", () => {
  it('reads the proxies only while an /events stream is open', () => {
    let reads = 0;
    const reg = {
      listeners: () => {
        reads++;
        return [];
      },
    } as unknown as Proxies;
    expectReadsOnlyWhileWatched(proxyAdmin(reg), () => reads);
  });
});
