// Toxics changed through echo-server's admin port (the Toxiproxy API) act on connections
// already open, in every server mode, as in Toxiproxy: a latency added shows on the next
// echo of the same connection, a toxic removed lets what waits go at once (the DELETE never
// hangs), toxicity 0 never fires, and a connection's draws stay as they were when another
// toxic changes.

import dgram from 'node:dgram';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { type Fault, FaultSet } from '../src/core/faults.js';
import { connect, readN, spawnServer } from './helpers.js';

/** Large enough to tell from a plain loopback echo on a loaded machine. */
const LATENCY = 1000;

const MODES: [string, string[]][] = [
  ['evented', []],
  ['iterative', ['--mode', 'iterative']],
  ['workers', ['--mode', 'workers', '--workers', '2']],
  ['workers --exclusive', ['--mode', 'workers', '--workers', '2', '--exclusive', '--reuse-port']],
  ['fork', ['--mode', 'fork']],
];

async function admin(args: string[]) {
  const srv = await spawnServer(['--metrics', '127.0.0.1:0', ...args]);
  const m = await srv.waitStderr(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
  const url = `http://127.0.0.1:${m[1]}/proxies/echo-server/toxics`;
  return {
    ...srv,
    async add(toxic: object) {
      const r = await fetch(url, { method: 'POST', body: JSON.stringify(toxic) });
      expect(r.status).toBe(200);
    },
    async remove(name: string) {
      const t0 = performance.now();
      const r = await fetch(`${url}/${name}`, { method: 'DELETE' });
      expect(r.status).toBe(204);
      return performance.now() - t0;
    },
  };
}

/** One echo of 4 bytes on `s`: its round trip (ms). */
async function echoMs(s: Socket, text = 'ping'): Promise<number> {
  const t0 = performance.now();
  s.write(text);
  expect((await readN(s, text.length)).toString()).toBe(text);
  return performance.now() - t0;
}

// each test waits out LATENCY several times on its own server: they run at once
describe.concurrent('toxics act on connections already open', () => {
  it.each(MODES)('%s: add a latency toxic, then remove it, on the same open connection', async (_m, mode) => {
    const srv = await admin(mode);
    const s = await connect(srv.port);
    await echoMs(s, 'warm'); // a fork child's start, a worker's first hand-over
    expect(await echoMs(s)).toBeLessThan(LATENCY);

    await srv.add({ name: 'slow', type: 'latency', attributes: { latency: LATENCY } });
    expect(await echoMs(s)).toBeGreaterThanOrEqual(LATENCY - 5);

    // removed while an echo waits under it: the DELETE answers at once, the echo goes at once
    const t0 = performance.now();
    s.write('held');
    const held = readN(s, 4);
    expect(await srv.remove('slow')).toBeLessThan(LATENCY);
    expect((await held).toString()).toBe('held');
    expect(performance.now() - t0).toBeLessThan(LATENCY * 0.6);
    expect(await echoMs(s)).toBeLessThan(LATENCY);

    // toxicity 0 never fires, on this connection or a new one
    await srv.add({ name: 'never', type: 'latency', toxicity: 0, attributes: { latency: LATENCY } });
    expect(await echoMs(s)).toBeLessThan(LATENCY);
    expect(await echoMs(s)).toBeLessThan(LATENCY);
    s.destroy(); // iterative mode serves one connection at a time
    const s2 = await connect(srv.port);
    await echoMs(s2, 'warm');
    expect(await echoMs(s2)).toBeLessThan(LATENCY);
  });

  it.each(MODES.filter(([m]) => m === 'evented' || m === 'workers'))(
    '%s: a connection not drawn for a toxic stays undrawn when another toxic changes',
    async (_m, mode) => {
      const srv = await admin(mode);
      const conns = await Promise.all(Array.from({ length: 16 }, () => connect(srv.port)));
      for (const s of conns) await echoMs(s, 'warm');
      await srv.add({ name: 'half', type: 'latency', toxicity: 0.5, attributes: { latency: LATENCY } });
      const slow = async () =>
        (await Promise.all(conns.map((s) => echoMs(s)))).map((ms) => ms >= LATENCY - 5);
      const before = await slow();
      // drawn per connection: none of 16 drawn has a chance of 0.5^16
      expect(before.some((x) => x)).toBe(true);
      // another toxic, with no visible effect, added and removed: the draws of "half" stay
      await srv.add({ name: 'other', type: 'corrupt', attributes: { probability: 0 } });
      expect(await slow()).toEqual(before);
      await srv.remove('other');
      expect(await slow()).toEqual(before);
    },
  );

  it('evented: a blackhole added to an open connection holds its echo; removed, the echo comes', async () => {
    const srv = await admin([]);
    const s = await connect(srv.port);
    expect(await echoMs(s, 'warm')).toBeLessThan(LATENCY);
    await srv.add({ name: 'hole', type: 'blackhole' });
    let echoed = false;
    s.write('held');
    const held = readN(s, 4).then((b) => {
      echoed = true;
      return b;
    });
    // an HTTP exchange with the admin port takes longer than an echo not held over loopback
    await srv.add({ name: 'mark', type: 'corrupt', attributes: { probability: 0 } });
    expect(echoed).toBe(false);
    expect(await srv.remove('hole')).toBeLessThan(LATENCY);
    expect((await held).toString()).toBe('held');
    expect(await echoMs(s)).toBeLessThan(LATENCY);
  });

  it('--udp: the next datagram uses the new list', async () => {
    const srv = await admin(['--udp']);
    const sock = dgram.createSocket('udp4');
    try {
      const rtt = async () => {
        const t0 = performance.now();
        sock.send('x', srv.port, '127.0.0.1');
        await once(sock, 'message');
        return performance.now() - t0;
      };
      expect(await rtt()).toBeLessThan(LATENCY);
      await srv.add({ name: 'slow', type: 'latency', attributes: { latency: LATENCY } });
      expect(await rtt()).toBeGreaterThanOrEqual(LATENCY - 5);
      await srv.remove('slow');
      expect(await rtt()).toBeLessThan(LATENCY);
      await srv.add({ name: 'never', type: 'latency', toxicity: 0, attributes: { latency: LATENCY } });
      for (let i = 0; i < 5; i++) expect(await rtt()).toBeLessThan(LATENCY);
    } finally {
      sock.close();
    }
  });
});

describe('FaultSet: a connection draws each fault once', () => {
  const slow: Fault = { kind: 'latency', delayMs: 100, fraction: 0.5 };
  const every2: Fault = { kind: 'corrupt', chance: 0, every: 2 };
  const never: Fault = { kind: 'blackhole', fraction: 0 };

  it('a redraw after a change keeps the earlier draws and draws only the new faults', () => {
    const set = new FaultSet([slow]);
    const draws = Array.from({ length: 64 }, () => set.draw());
    const had = draws.map((d) => FaultSet.faultsOf(set.faults, d).some((f) => f.kind === 'latency'));
    expect(had.some((x) => x)).toBe(true);
    expect(had.some((x) => !x)).toBe(true);
    set.set([slow, every2, never]);
    for (const [i, d] of draws.entries()) {
      const now = FaultSet.faultsOf(set.faults, d);
      expect(now.some((f) => f.kind === 'latency')).toBe(had[i]);
      expect(now.some((f) => f.kind === 'corrupt')).toBe(d.n % 2 === 0);
      expect(now.some((f) => f.kind === 'blackhole')).toBe(false);
    }
    set.set([slow]);
    for (const [i, d] of draws.entries())
      expect(FaultSet.faultsOf(set.faults, d).some((f) => f.kind === 'latency')).toBe(had[i]);
    // a draw travels between processes as JSON
    const copy = JSON.parse(JSON.stringify(draws[0]));
    expect(FaultSet.faultsOf(set.faults, copy)).toEqual(FaultSet.faultsOf(set.faults, draws[0]!));
  });
});
