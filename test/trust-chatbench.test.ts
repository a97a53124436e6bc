// Trust: a UDP server's duplicate fault is charged to the per-source rate limit (no amplifier),
// echo-client bench says so when nothing came back, echo-client --udp matches each reply to its
// own request, and echo-chat on a terminal stays linear on a peer line with no newline.

import dgram from 'node:dgram';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { parseFault, startUdpEchoServer } from '../src/index.js';
import { until } from './helpers.js';

const savedBatch = process.env.ECHO_UDP_BATCH;
afterEach(() => {
  if (savedBatch === undefined) delete process.env.ECHO_UDP_BATCH;
  else process.env.ECHO_UDP_BATCH = savedBatch;
});

describe('UDP duplicate fault and the rate limit', () => {
  // ECHO_UDP_BATCH=1: what is queued behind the first datagram is read by recvmmsg (Linux, IPv4)
  const paths: [string, string][] = [
    ['dgram, one datagram per callback', '0'],
    ['recvmmsg/sendmmsg batches', '1'],
  ];
  it.each(paths)('every datagram sent is charged to the source (%s)', async (_name, batchEnv) => {
    process.env.ECHO_UDP_BATCH = batchEnv;
    const rate = 20;
    const burst = 10;
    const srv = await startUdpEchoServer({
      port: 0,
      rateLimit: rate,
      rateBurst: burst,
      faults: [parseFault('duplicate=1')],
    });
    onTestFinished(async () => {
      await srv.close();
    });
    const c = dgram.createSocket({ type: 'udp4', recvBufferSize: 1024 * 1024 });
    onTestFinished(() => {
      c.close();
    });
    let replies = 0;
    c.on('message', () => replies++);
    await new Promise<void>((r) => c.bind(0, '127.0.0.1', r));
    const n = 100;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) c.send(Buffer.from(`d${i}`), srv.address.port, '127.0.0.1');
    // every datagram read: the decisions (and the sends, made at once without latency) are done
    await until(() => srv.stats().datagramsIn === n, 10_000, 'every datagram read');
    const elapsed = (performance.now() - t0) / 1000;
    const allowed = burst + rate * elapsed + 1;
    const out = srv.stats().datagramsOut;
    expect(out).toBeGreaterThanOrEqual(burst); // the burst is answered
    expect(out).toBeLessThanOrEqual(allowed);
    expect(srv.stats().dropped['rate-limit']).toBeGreaterThan(0);
    // what arrived is what was counted (loopback loses nothing at this size)
    await until(() => replies === out, 10_000, 'every reply received');
  });
});
