// The batched UDP path (src/udp/batch.ts: recvmmsg/sendmmsg through koffi, Linux, IPv4) and
// dgram's one-datagram path (ECHO_UDP_BATCH=0) must answer alike: every datagram back to its
// own sender byte-exact, the rate limit and the faults applied to each datagram of a batch.

import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { startUdpEchoServer, type UdpEchoServerOptions } from '../src/index.js';
import { UdpBatch } from '../src/udp/batch.js';
import { until } from './helpers.js';

const saved = process.env.ECHO_UDP_BATCH;
afterEach(() => {
  if (saved === undefined) delete process.env.ECHO_UDP_BATCH;
  else process.env.ECHO_UDP_BATCH = saved;
});

async function server(o: UdpEchoServerOptions) {
  const srv = await startUdpEchoServer({ port: 0, ...o });
  onTestFinished(async () => {
    await srv.close();
  });
  return srv;
}

/**
 * A client socket on `local` that sends `msgs` in waves of `wave` back to back (each wave waits
 * until the server has read the one before, so no receive buffer overflows and batches form),
 * and collects what comes back.
 */
async function waves(
  srv: Awaited<ReturnType<typeof server>>,
  local: string,
  msgs: Buffer[],
  wave: number,
  expectReplies: number,
) {
  // room for the replies of a whole wave, 64 KB ones included (the server shares this process's loop)
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  onTestFinished(() => {
    s.close();
  });
  await new Promise<void>((r) => s.bind(0, local, r));
  const got: Buffer[] = [];
  s.on('message', (m) => got.push(m));
  const outBefore = srv.stats().datagramsOut;
  for (let i = 0; i < msgs.length; i += wave) {
    const before = srv.stats().datagramsIn;
    const part = msgs.slice(i, i + wave);
    for (const m of part) s.send(m, srv.address.port, '127.0.0.1');
    await until(() => srv.stats().datagramsIn >= before + part.length, 5000, 'the server read the wave');
  }
  await until(() => got.length >= expectReplies, 5000, `${expectReplies} replies`);
  // whatever else the server sent to this socket (a duplicate that should not exist) is
  // waited for too: it sends only to this socket during the call
  await until(
    () => got.length >= srv.stats().datagramsOut - outBefore,
    5000,
    () => `${srv.stats().datagramsOut - outBefore} replies sent (${got.length} received)`,
  );
  return got;
}

describe(`UDP batch (recvmmsg/sendmmsg), ${process.platform}`, () => {
  it('reads batches here (Linux, 64-bit) and declines a socket it has no descriptor for', () => {
    expect(UdpBatch.create(undefined)).toBeUndefined();
    if (process.platform !== 'linux') return;
    const s = dgram.createSocket('udp4');
    return new Promise<void>((resolve) =>
      s.bind(0, '127.0.0.1', async () => {
        const { socketFd } = await import('../src/core/libc.js');
        const b = UdpBatch.create(socketFd(s));
        expect(b).toBeDefined();
        expect(
          b!.drain(
            () => true,
            () => {},
          ),
        ).toBe(0); // nothing queued: EAGAIN, no wait
        b!.free();
        s.close(() => resolve());
      }),
    );
  });

  for (const batch of ['1', '0']) {
    const name = batch === '1' ? 'batched' : 'one at a time (ECHO_UDP_BATCH=0)';
    it(`${name}: 3 sources × 300 datagrams of 1 B–64 KB, in waves of 10: each back once, to its sender, exact`, async () => {
      process.env.ECHO_UDP_BATCH = batch;
      const srv = await server({ rateLimit: 0 });
      const sizes = (i: number) => (i % 50 === 0 ? 65_507 : 1 + ((i * 7919) % 1400));
      // one source after the other: a wave at a time in the server's receive buffer (a 64 KB
      // datagram takes a third of it), so nothing is dropped on the way in
      const runs: { msgs: Buffer[]; got: Buffer[] }[] = [];
      for (const [k, local] of ['127.0.0.2', '127.0.0.3', '127.0.0.4'].entries()) {
        const msgs = Array.from({ length: 300 }, (_, i) => {
          const m = randomBytes(sizes(i));
          m[0] = k; // the sender's mark
          return m;
        });
        runs.push({ msgs, got: await waves(srv, local, msgs, 10, msgs.length) });
      }
      for (const [k, { msgs, got }] of runs.entries()) {
        expect(got).toHaveLength(msgs.length);
        const sent = new Set(msgs.map((m) => m.toString('base64')));
        for (const g of got) {
          expect(g[0]).toBe(k);
          expect(sent.has(g.toString('base64'))).toBe(true);
        }
        expect(new Set(got.map((g) => g.toString('base64'))).size).toBe(got.length); // no duplicates
      }
      const t = srv.stats();
      expect(t.datagramsOut).toBe(t.datagramsIn);
      expect(t.bytesOut).toBe(t.bytesIn);
    });

    it(`${name}: the rate limit holds within a burst (burst 50; 1,000 in waves of 100)`, async () => {
      process.env.ECHO_UDP_BATCH = batch;
      const srv = await server({ rateLimit: 10, rateBurst: 50 });
      const msgs = Array.from({ length: 1000 }, (_, i) => Buffer.from(`m${i}`));
      const got = await waves(srv, '127.0.0.5', msgs, 100, 50);
      const t = srv.stats();
      expect(t.datagramsIn).toBe(1000);
      // a few tokens refill while the burst arrives (10/s)
      expect(got.length).toBeGreaterThanOrEqual(50);
      expect(got.length).toBeLessThanOrEqual(60);
      expect(t.dropped['rate-limit']).toBe(t.datagramsIn - t.datagramsOut);
      expect(t.dropped['rate-limit']).toBeGreaterThan(0);
    });

    it(`${name}: faults apply per datagram inside a batch (drop p=1: nothing back, every one counted)`, async () => {
      process.env.ECHO_UDP_BATCH = batch;
      const srv = await server({ rateLimit: 0, faults: [{ kind: 'drop', chance: 1 }] as never });
      const msgs = Array.from({ length: 200 }, (_, i) => Buffer.from(`d${i}`));
      const got = await waves(srv, '127.0.0.6', msgs, 50, 0);
      expect(got).toHaveLength(0);
      expect(srv.stats().datagramsIn).toBe(200);
      expect(srv.stats().dropped.fault).toBe(200);
    });
  }
});
