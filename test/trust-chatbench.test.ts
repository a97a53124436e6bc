// Trust: a UDP server's duplicate fault is charged to the per-source rate limit (no amplifier),
// echo-client bench says so when nothing came back, echo-client --udp matches each reply to its
// own request, and echo-chat on a terminal stays linear on a peer line with no newline.

import dgram from 'node:dgram';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { parseFault, startUdpEchoServer, UdpEchoClient } from '../src/index.js';
import { jsonLines, plainServer, runEchoClient, spawnServer, until } from './helpers.js';

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

/** A UDP port with nothing bound: a datagram there gets ICMP port unreachable. */
async function closedUdpPort(): Promise<number> {
  const probe = dgram.createSocket('udp4');
  await new Promise<void>((r) => probe.bind(0, '127.0.0.1', r));
  const port = probe.address().port;
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}

/** A UDP socket that reads every datagram and answers none. */
async function silentUdpPort(): Promise<{ port: number; received: () => number }> {
  const s = dgram.createSocket('udp4');
  let n = 0;
  s.on('message', () => n++);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  onTestFinished(() => {
    s.close();
  });
  return { port: s.address().port, received: () => n };
}

describe('echo-client bench when nothing comes back', () => {
  it('UDP to a closed port: errors counted (ECONNREFUSED), exit 1, nothing claimed verified', async () => {
    const port = await closedUdpPort();
    const t0 = performance.now();
    const r = await runEchoClient(['bench', '--udp', '-d', '1s', '--warmup', '0', `127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.out.toString()).not.toMatch(/every echoed byte matched/);
    expect(r.err).toMatch(/ECONNREFUSED/);
    expect(performance.now() - t0).toBeLessThan(8000);
  });

  it('UDP to a port that never answers: says nothing came back, exit 1', async () => {
    const silent = await silentUdpPort();
    const r = await runEchoClient([
      'bench',
      '--udp',
      '-d',
      '1s',
      '--warmup',
      '0',
      '--json',
      `127.0.0.1:${silent.port}`,
    ]);
    expect(silent.received()).toBeGreaterThan(0);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no echo came back/);
    const j = JSON.parse(r.out.toString());
    expect(j.count).toBe(0);
  });

  it('TCP to a server that accepts and never echoes: says nothing came back, exit 1, ends', async () => {
    const held: Socket[] = [];
    const { port } = await plainServer((s) => {
      held.push(s); // read, never answer
      s.on('error', () => {});
    });
    onTestFinished(() => {
      for (const s of held) s.destroy();
    });
    const t0 = performance.now();
    const r = await runEchoClient(['bench', '-c', '2', '-d', '1s', '--warmup', '0', `127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.out.toString()).not.toMatch(/every echoed byte matched/);
    expect(r.err).toMatch(/no echo came back/);
    expect(performance.now() - t0).toBeLessThan(8000);
  });

  it('--requests 1 -d 1s ends with its duration when the requests never complete', async () => {
    const silent = await silentUdpPort();
    const t0 = performance.now();
    const r = await runEchoClient([
      'bench',
      '--udp',
      '--requests',
      '1',
      '-d',
      '1s',
      `127.0.0.1:${silent.port}`,
    ]);
    const took = performance.now() - t0;
    expect(r.code).toBe(1);
    // warmup 1 s + duration 1 s + at most 2 s for replies in flight, with room for a loaded machine
    expect(took).toBeLessThan(7000);
  });
});

describe('echo-client --udp matches each reply to its own request', () => {
  it('each request of a run leaves from its own source port, carrying exactly the bytes asked for', async () => {
    const seen: { msg: string; port: number }[] = [];
    const peer = dgram.createSocket('udp4');
    onTestFinished(() => {
      peer.close();
    });
    // an echo that answers every datagram twice
    peer.on('message', (m, r) => {
      seen.push({ msg: m.toString('latin1'), port: r.port });
      peer.send(m, r.port, r.address);
      peer.send(m, r.port, r.address);
    });
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', r));
    const c = await UdpEchoClient.open({ host: '127.0.0.1', port: peer.address().port });
    onTestFinished(() => c.close());
    for (let i = 0; i < 5; i++) {
      const { reply } = await c.roundTrip(Buffer.from('hello'));
      expect(reply.toString()).toBe('hello');
    }
    expect(seen.map((s) => s.msg)).toEqual(Array(5).fill('hello'));
    expect(new Set(seen.map((s) => s.port)).size).toBe(5);
    // every second copy lands on its request's socket, kept open until close()
    await until(() => c.counters.duplicate === 5, 10_000, 'five duplicates counted');
    expect(c.counters).toMatchObject({ answered: 5, lost: 0, late: 0 });
  });

  it('against --fault latency=20ms duplicate=0.3 reorder=0.3: RTTs >= 20 ms, duplicates counted', async () => {
    const srv = await spawnServer([
      '--udp',
      '--fault',
      'latency=20ms',
      '--fault',
      'duplicate=0.3',
      '--fault',
      'reorder=0.3',
    ]);
    const n = 40;
    const r = await runEchoClient([
      '--udp',
      '-m',
      'hello',
      '--count',
      String(n),
      '--timeout',
      '5s',
      '--log-format',
      'json',
      `127.0.0.1:${srv.port}`,
    ]);
    expect(r.code).toBe(0);
    const rtts = [...r.out.toString().matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
    expect(rtts).toHaveLength(n);
    for (const t of rtts) expect(t).toBeGreaterThanOrEqual(20);
    const summary = jsonLines(r.err).find((l) => typeof l.duplicate === 'number')!;
    expect(summary).toMatchObject({ answered: n, lost: 0 });
    // binomial(40, 0.3): mean 12, sd 2.9; the last request's copy may come after the end
    expect(summary.duplicate).toBeGreaterThanOrEqual(1);
    expect(summary.duplicate).toBeLessThanOrEqual(27);
    expect(summary.duplicate + summary.late).toBeLessThanOrEqual(n);
  });
});
