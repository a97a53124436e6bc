// echo-proxy --udp in front of a UDP echo service: a session per client address, and the
// datagram toxics (drop, duplicate, reorder) within binomial bounds, each in one direction.

import dgram from 'node:dgram';
import { once } from 'node:events';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Proxies } from '../src/proxy/registry.js';
import { startUdpEchoServer } from '../src/udp/server.js';
import { bin, runCommand } from './helpers.js';

const N = 400;

async function setup() {
  const echo = await startUdpEchoServer({ port: 0, rateLimit: 0 });
  const reg = new Proxies({ udp: true });
  onTestFinished(async () => {
    await reg.close();
    await echo.close({ graceMs: 0 });
  });
  const p = await reg.create({
    name: 'u',
    listen: '127.0.0.1:0',
    upstream: `127.0.0.1:${echo.address.port}`,
  });
  const port = Number(p.state().listen.split(':').pop());
  const sock = dgram.createSocket('udp4');
  onTestFinished(() => {
    sock.close();
  });
  const got: number[] = [];
  sock.on('message', (m) => got.push(m.readUInt32BE(0)));
  /** N numbered datagrams, then (toxics removed) a marker; resolves once `until(got)` holds */
  const run = async (stop: (got: number[]) => boolean) => {
    // in tens, each handed to the kernel before the next: the proxy and the echo service run in
    // this process, and a burst of 400 would overflow their sockets' receive buffers
    for (let i = 0; i < N; i += 10) {
      await Promise.all(
        Array.from({ length: 10 }, (_, j) => {
          const b = Buffer.alloc(4);
          b.writeUInt32BE(i + j);
          return new Promise((r) => sock.send(b, port, '127.0.0.1', r));
        }),
      );
      await new Promise(setImmediate);
    }
    for (const t of p.state().toxics) p.removeToxic(t.name);
    const marker = Buffer.alloc(4);
    marker.writeUInt32BE(0xffffffff);
    sock.send(marker, port, '127.0.0.1');
    while (!stop(got)) await once(sock, 'message');
    return got.filter((x) => x !== 0xffffffff);
  };
  return { p, run };
}

/** n·p ± 5 standard deviations */
const bounds = (n: number, p: number) => {
  const sd = Math.sqrt(n * p * (1 - p));
  return [n * p - 5 * sd, n * p + 5 * sd];
};

describe('echo-proxy --udp', () => {
  it('drop=0.3 upstream loses about 30% (binomial bound)', async () => {
    const { p, run } = await setup();
    p.addToxic({
      name: 'd',
      type: 'drop',
      stream: 'upstream',
      toxicity: 1,
      attributes: { probability: 0.3 },
    });
    const got = await run((g) => g.includes(0xffffffff));
    const [lo, hi] = bounds(N, 0.3);
    expect(N - got.length).toBeGreaterThanOrEqual(lo!);
    expect(N - got.length).toBeLessThanOrEqual(hi!);
  });

  it('duplicate=0.3 downstream doubles about 30% and loses none', async () => {
    const { p, run } = await setup();
    p.addToxic({
      name: 'x',
      type: 'duplicate',
      stream: 'downstream',
      toxicity: 1,
      attributes: { probability: 0.3 },
    });
    const got = await run((g) => new Set(g).size >= N + 1); // every one, and the marker
    const [lo, hi] = bounds(N, 0.3);
    expect(got.length - N).toBeGreaterThanOrEqual(lo!);
    expect(got.length - N).toBeLessThanOrEqual(hi!);
    expect(new Set(got).size).toBe(N);
  });

  it('reorder: every datagram arrives, some out of order', async () => {
    const { p, run } = await setup();
    p.addToxic({
      name: 'r',
      type: 'reorder',
      stream: 'upstream',
      toxicity: 1,
      attributes: { probability: 0.5 },
    });
    const got = await run((g) => g.length >= N + 1);
    expect(new Set(got).size).toBe(N);
    let inversions = 0;
    for (let i = 1; i < got.length; i++) if (got[i]! < got[i - 1]!) inversions++;
    expect(inversions).toBeGreaterThan(20);
  });

  it('a TCP-only flag with --udp exits 2 naming both', async () => {
    const r = await runCommand(process.execPath, [
      bin('echo-proxy'),
      '--udp',
      '--tls',
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      '127.0.0.1:9',
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--tls.*--udp|--udp.*--tls/);
    const t = await runCommand(process.execPath, [
      bin('echo-proxy'),
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      '127.0.0.1:9',
      '--fault',
      'drop=0.1',
    ]);
    expect(t.code).toBe(2);
  });
});
