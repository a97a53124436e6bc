// The Toxiproxy API on echo-server's admin port (--metrics): echo-server is one proxy whose
// toxics are its faults, changed at run time, in every server mode.

import dgram from 'node:dgram';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { connect, matrix, readN, SERVER_MODES, spawnServer } from './helpers.js';

async function admin(args: string[]) {
  const srv = await spawnServer(['--metrics', '127.0.0.1:0', ...args]);
  const m = await srv.waitStderr(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
  return { ...srv, url: `http://127.0.0.1:${m[1]}` };
}

/** The second round trip of a new connection (the first includes a fork child's start). */
async function tcpRoundTrip(port: number): Promise<number> {
  const s = await connect(port);
  s.write('warm');
  await readN(s, 4);
  const t0 = performance.now();
  s.write('ping');
  await readN(s, 4);
  const ms = performance.now() - t0;
  s.destroy();
  return ms;
}

/**
 * The fastest of up to `tries` round trips, stopping at the first under `underMs`: a latency
 * toxic still in place slows every one, a hiccup of a loaded machine one only.
 */
async function fastestRoundTrip(port: number, underMs: number, tries = 10): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < tries && best >= underMs; i++) best = Math.min(best, await tcpRoundTrip(port));
  return best;
}

const json = async (r: Response) => ({
  status: r.status,
  body: r.status === 204 ? undefined : await r.json(),
});

describe('echo-server as one Toxiproxy proxy on its admin port', () => {
  it.each(matrix(SERVER_MODES, ['evented', 'workers']))(
    '%s: GET /proxies, POST and DELETE a toxic change the faults',
    async (_m, mode) => {
      const srv = await admin([...mode, '--fault', 'corrupt=0,p=0.5']);
      const all = await json(await fetch(`${srv.url}/proxies`));
      expect(all.body['echo-server']).toMatchObject({
        name: 'echo-server',
        listen: `127.0.0.1:${srv.port}`,
        upstream: '',
        enabled: true,
        toxics: [
          { name: 'corrupt_downstream', type: 'corrupt', toxicity: 0.5, attributes: { probability: 0 } },
        ],
      });
      const add = await fetch(`${srv.url}/proxies/echo-server/toxics`, {
        method: 'POST',
        body: JSON.stringify({ name: 'slow', type: 'latency', attributes: { latency: 200 } }),
      });
      expect(add.status).toBe(200);
      expect(await tcpRoundTrip(srv.port)).toBeGreaterThanOrEqual(195);
      const del = await fetch(`${srv.url}/proxies/echo-server/toxics/slow`, { method: 'DELETE' });
      expect(del.status).toBe(204);
      expect(await fastestRoundTrip(srv.port, 195)).toBeLessThan(195);
      // what echo-server cannot do is a 400, Toxiproxy's body
      const bad = await json(
        await fetch(`${srv.url}/proxies/echo-server/toxics`, { method: 'POST', body: '{"type":"drop"}' }),
      );
      expect(bad).toMatchObject({ status: 400, body: { status: 400 } });
      expect((await fetch(`${srv.url}/metrics`)).status).toBe(200);
    },
  );

  it('--udp: a latency toxic delays each datagram', async () => {
    const srv = await admin(['--udp']);
    const add = await fetch(`${srv.url}/proxies/echo-server/toxics`, {
      method: 'POST',
      body: JSON.stringify({ type: 'latency', attributes: { latency: 200 } }),
    });
    expect(add.status).toBe(200);
    const sock = dgram.createSocket('udp4');
    try {
      const t0 = performance.now();
      sock.send('x', srv.port, '127.0.0.1');
      await once(sock, 'message');
      expect(performance.now() - t0).toBeGreaterThanOrEqual(195);
    } finally {
      sock.close();
    }
  });
});
