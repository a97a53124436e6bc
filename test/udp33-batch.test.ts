// The UDP echo's fast path (src/udp/batch.ts) answers exactly as dgram's one-datagram path:
// every byte value back unchanged to its own sender, over IPv4 (batched, and with
// ECHO_UDP_BATCH=0) and IPv6 (dgram only), and the numeric source checks the batch uses agree
// with the string ones dgram's path uses.

import dgram from 'node:dgram';
import fc from 'fast-check';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { startUdpEchoServer } from '../src/index.js';
import { isBroadcastOrMulticastV4, parseIpv4, UdpBatch } from '../src/udp/batch.js';
import { isBroadcastOrMulticast } from '../src/udp/server.js';
import { until } from './helpers.js';

const saved = process.env.ECHO_UDP_BATCH;
afterEach(() => {
  if (saved === undefined) delete process.env.ECHO_UDP_BATCH;
  else process.env.ECHO_UDP_BATCH = saved;
});

const dotted = (v: number) => `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;

describe('UDP source checks', () => {
  it('the numeric broadcast/multicast check agrees with the string one on every kind of address', () => {
    const edges = [0, 1, 0x7f000001, 0xdfffffff, 0xe0000000, 0xe0000001, 0xefffffff, 0xf0000000, 0xfffffffe];
    for (const v of [...edges, 0xffffffff])
      expect(isBroadcastOrMulticastV4(v)).toBe(isBroadcastOrMulticast(dotted(v)));
    expect(isBroadcastOrMulticastV4(0xe0000000)).toBe(true);
    expect(isBroadcastOrMulticastV4(0x7f000001)).toBe(false);
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), (v) => {
        expect(isBroadcastOrMulticastV4(v)).toBe(isBroadcastOrMulticast(dotted(v)));
      }),
      { numRuns: 5000 },
    );
  });
});

/**
 * 256 datagrams from `local` in waves of 32 (each wave waits until the server has read the
 * one before): datagram i holds every byte value, rotated by i, and is 256 + i bytes long.
 */
async function everyByte(port: number, family: 'udp4' | 'udp6', local: string, server: string) {
  const msgs = Array.from({ length: 256 }, (_, i) => {
    const m = Buffer.alloc(256 + i);
    for (let j = 0; j < m.length; j++) m[j] = (i + j) & 255;
    return m;
  });
  const s = dgram.createSocket({ type: family, recvBufferSize: 1024 * 1024 });
  onTestFinished(() => {
    s.close();
  });
  await new Promise<void>((r) => s.bind(0, local, r));
  const got: Buffer[] = [];
  s.on('message', (m) => got.push(m));
  for (let i = 0; i < msgs.length; i += 32) {
    const wave = msgs.slice(i, i + 32);
    for (const m of wave) s.send(m, port, server);
    await until(
      () => got.length >= i + wave.length,
      5000,
      () => `${i + wave.length} echoes (${got.length})`,
    );
  }
  return { msgs, got };
}

describe('UDP echo: every byte value, both paths', () => {
  const cases = [
    {
      name: 'IPv4 batched',
      batch: '1',
      host: '127.0.0.1',
      family: 'udp4' as const,
      locals: ['127.0.0.2', '127.0.0.3'],
    },
    {
      name: 'IPv4 one at a time (ECHO_UDP_BATCH=0)',
      batch: '0',
      host: '127.0.0.1',
      family: 'udp4' as const,
      locals: ['127.0.0.2', '127.0.0.3'],
    },
    { name: 'IPv6', batch: '1', host: '::1', family: 'udp6' as const, locals: ['::1'] },
  ];
  for (const c of cases) {
    it(`${c.name}: 256 datagrams holding every byte value come back unchanged, once each, to their sender`, async () => {
      process.env.ECHO_UDP_BATCH = c.batch;
      const srv = await startUdpEchoServer({ port: 0, host: c.host, rateLimit: 0 });
      onTestFinished(async () => {
        await srv.close();
      });
      for (const local of c.locals) {
        const { msgs, got } = await everyByte(srv.address.port, c.family, local, c.host);
        expect(got).toHaveLength(msgs.length);
        // each length is sent once: the echo of that length must be that datagram
        const byLength = new Map(got.map((g) => [g.length, g]));
        expect(byLength.size).toBe(msgs.length);
        for (const m of msgs) expect(byLength.get(m.length)?.equals(m)).toBe(true);
      }
      const t = srv.stats();
      expect(t.datagramsIn).toBe(256 * c.locals.length);
      expect(t.datagramsOut).toBe(t.datagramsIn);
      expect(t.bytesOut).toBe(t.bytesIn);
      expect(srv.sources().size).toBe(c.locals.length);
    });
  }
});

describe('UdpBatch.queue: the datagram dgram delivered goes out in the batch', () => {
  it('parses dotted IPv4 addresses only', () => {
    expect(parseIpv4('127.0.0.1')).toBe(0x7f000001);
    expect(parseIpv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIpv4('0.0.0.0')).toBe(0);
    for (const bad of [
      '',
      '::1',
      '1.2.3',
      '1.2.3.4.5',
      '256.0.0.1',
      '1..2.3',
      '1.2.3.',
      'a.b.c.d',
      '1.2.3.4 ',
      '1234.0.0.1',
    ])
      expect(parseIpv4(bad)).toBe(-1);
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), (v) => {
        expect(parseIpv4(dotted(v))).toBe(v);
      }),
      { numRuns: 2000 },
    );
  });

  it.skipIf(process.platform !== 'linux')(
    'the queued datagram is echoed first, then those the same drain reads, each to its sender',
    async () => {
      // a socket libuv does not read: what is sent to it stays queued for the drain
      const { rawListenFd } = await import('../src/core/listen.js');
      const { boundPort, closeFd } = await import('../src/core/libc.js');
      const fd = rawListenFd({
        host: '127.0.0.1',
        port: 0,
        backlog: 0,
        type: 'udp',
        reuseAddr: false,
        reusePort: false,
      });
      const b = UdpBatch.create(fd);
      onTestFinished(() => {
        b?.free();
        closeFd(fd);
      });
      expect(b).toBeDefined();
      const port = boundPort(fd);
      const cli = dgram.createSocket('udp4');
      onTestFinished(() => {
        cli.close();
      });
      await new Promise<void>((r) => cli.bind(0, '127.0.0.2', r));
      const got: Buffer[] = [];
      cli.on('message', (m) => got.push(m));
      const first = Buffer.from([0, 255, 1, 128]);
      const later = [Buffer.from([255]), Buffer.from([0]), Buffer.alloc(300, 0xaa)];
      // loopback delivers within the send: once its callback ran, the datagram is queued
      for (const m of later)
        await new Promise<void>((r, j) => cli.send(m, port, '127.0.0.1', (e) => (e ? j(e) : r())));
      const me = cli.address().port;
      expect(b!.queue(first, '::1', me)).toBe(false);
      expect(b!.queue(first, '127.0.0.2', me)).toBe(true);
      expect(b!.queue(Buffer.from('again'), '127.0.0.2', me)).toBe(false); // one at a time
      const admitted: string[] = [];
      const read = b!.drain(
        (address, p, length) => {
          admitted.push(`${address}:${p}:${length}`);
          return true;
        },
        () => {
          throw new Error('nothing should need a resend');
        },
      );
      expect(read).toBe(3);
      expect(admitted).toEqual([`127.0.0.2:${me}:1`, `127.0.0.2:${me}:1`, `127.0.0.2:${me}:300`]);
      await until(
        () => got.length >= 4,
        5000,
        () => `4 echoes (${got.length})`,
      );
      expect(got).toEqual([first, ...later]);
      // the queued one went out once: a second drain sends nothing
      expect(
        b!.drain(
          () => true,
          () => {},
        ),
      ).toBe(0);
      expect(b!.queue(first, '127.0.0.2', me)).toBe(true);
      expect(
        b!.drain(
          () => true,
          () => {},
        ),
      ).toBe(0);
      await until(
        () => got.length >= 5,
        5000,
        () => `5 echoes (${got.length})`,
      );
      expect(got).toHaveLength(5);
      expect(got[4]).toEqual(first);
    },
  );
});
