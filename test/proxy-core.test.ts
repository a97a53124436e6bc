// The proxy library (src/proxy): forwarding through the server's pipeline, byte-exact with
// half-close, resets passed on, and toxics that change on open connections. Measured from the
// client side, against echo-server and against a plain net server that is not ours.

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { parseFault } from '../src/core/faults.js';
import { UsageError } from '../src/core/parse.js';
import { normalizeToxic } from '../src/core/toxics.js';
import { Proxies } from '../src/proxy/registry.js';
import { closedPort, connect, echoServer, plainServer, readAll, readN } from './helpers.js';

async function proxyTo(upstreamPort: number, logger?: any) {
  const reg = new Proxies(logger ? { logger } : {});
  onTestFinished(() => reg.close());
  const p = await reg.create({ name: 'p', listen: '127.0.0.1:0', upstream: `127.0.0.1:${upstreamPort}` });
  const port = Number(p.state().listen.split(':').pop());
  return { reg, p, port };
}

/** One request, its echo: the time it took (ms). */
async function roundTrip(s: Socket, bytes = 16): Promise<number> {
  const t0 = performance.now();
  s.write(Buffer.alloc(bytes, 7));
  await readN(s, bytes);
  return performance.now() - t0;
}

describe('fault specs for the proxy', () => {
  it('parses the new kinds, a direction and slice variation; durations need a unit', () => {
    expect(parseFault('slow-close=200ms')).toEqual({ kind: 'slow-close', delayMs: 200 });
    expect(parseFault('timeout=0')).toEqual({ kind: 'timeout', delayMs: 0 });
    expect(parseFault('timeout=1s,stream=upstream')).toEqual({
      kind: 'timeout',
      delayMs: 1000,
      stream: 'upstream',
    });
    expect(parseFault('limit-data=1k,p=0.5')).toEqual({ kind: 'limit-data', bytes: 1024, fraction: 0.5 });
    expect(parseFault('down')).toEqual({ kind: 'down' });
    expect(parseFault('slice=100,variation=20')).toMatchObject({ kind: 'slice', bytes: 100, variation: 20 });
    expect(() => parseFault('slow-close=200')).toThrow(UsageError);
    expect(() => parseFault('latency=5ms,stream=sideways')).toThrow(/upstream or downstream/);
    expect(() => parseFault('slice=10,variation=10')).toThrow(/smaller/);
  });

  it('maps Toxiproxy toxics to faults in its units, 400 on a bad one', () => {
    expect(normalizeToxic({ type: 'latency', attributes: { latency: 50 } })).toEqual({
      toxic: {
        name: 'latency_downstream',
        type: 'latency',
        stream: 'downstream',
        toxicity: 1,
        attributes: { latency: 50, jitter: 0 },
      },
      fault: { kind: 'latency', delayMs: 50, stream: 'downstream' },
    });
    expect(normalizeToxic({ type: 'bandwidth', attributes: { rate: 64 } }).fault.rate).toBe(64_000);
    expect(
      normalizeToxic({ type: 'slicer', attributes: { average_size: 8, delay: 2000 } }).fault.delayMs,
    ).toBe(2);
    for (const bad of [
      { type: 'nope' },
      { type: 'latency', stream: 'sideways' },
      { type: 'latency', attributes: { latency: 'x' } },
      { type: 'latency', toxicity: 2 },
    ])
      expect(() => normalizeToxic(bad)).toThrow(expect.objectContaining({ status: 400 }));
  });
});

describe('forwarding', () => {
  it('in front of echo-server: 4 MB byte-exact both ways, the client half-closes and gets it all', async () => {
    const up = await echoServer();
    const { port } = await proxyTo(up.address.port);
    const s = await connect(port);
    const data = randomBytes(4 * 1024 * 1024);
    const back = readAll(s);
    s.end(data);
    expect((await back).equals(data)).toBe(true);
  }, 60_000);

  it('in front of a server that is not ours: its FIN reaches the client while the client still sends', async () => {
    const got: Buffer[] = [];
    let upSock!: Socket;
    const { server, port: upPort } = await plainServer((sock) => {
      upSock = sock;
      sock.end('bye\n'); // half-close first, keep reading
      sock.on('data', (d) => got.push(d));
    });
    const ended = once(server, 'connection');
    const { port } = await proxyTo(upPort);
    const s = await connect(port);
    await ended;
    expect((await readAll(s)).toString()).toBe('bye\n');
    s.end('still here');
    await once(upSock, 'end');
    expect(Buffer.concat(got).toString()).toBe('still here');
  });

  it('a reset from the upstream reaches the client as a reset', async () => {
    const { port: upPort } = await plainServer((sock) => sock.on('data', () => sock.resetAndDestroy()));
    const { port } = await proxyTo(upPort);
    const s = await connect(port);
    s.write('x');
    const [err] = await once(s, 'error');
    expect((err as NodeJS.ErrnoException).code).toBe('ECONNRESET');
  });

  it('a reset from the client reaches the upstream as a reset', async () => {
    let upSock!: Socket;
    const { server, port: upPort } = await plainServer((sock) => {
      upSock = sock;
    });
    const { port } = await proxyTo(upPort);
    const s = await connect(port);
    await once(server, 'connection');
    const errored = once(upSock, 'error');
    s.resetAndDestroy();
    const [err] = await errored;
    expect((err as NodeJS.ErrnoException).code).toBe('ECONNRESET');
  });

  it('an unreachable upstream: the client is reset, one line names the upstream and errno, the proxy goes on', async () => {
    const lines: string[] = [];
    const logger = {
      warn: (_o: object, m: string) => lines.push(m),
      info() {},
      debug() {},
      error() {},
      level: 'info',
      isLevelEnabled: () => true,
    };
    const dead = await closedPort();
    const { port } = await proxyTo(dead, logger);
    for (let i = 0; i < 2; i++) {
      const s = await connect(port);
      const [err] = await once(s, 'error');
      expect((err as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    }
    expect(lines.filter((l) => l.includes(`127.0.0.1:${dead}`) && l.includes('ECONNREFUSED'))).toHaveLength(
      2,
    );
  });
});

describe('toxics on open connections', () => {
  it('latency added, updated and removed act on a connection already open; removing never hangs', async () => {
    const up = await echoServer();
    const { p, port } = await proxyTo(up.address.port);
    const s = await connect(port);
    const base = await roundTrip(s);
    p.addToxic({
      name: 'lat',
      type: 'latency',
      stream: 'downstream',
      toxicity: 1,
      attributes: { latency: 150 },
    });
    expect(await roundTrip(s)).toBeGreaterThanOrEqual(145);
    p.updateToxic('lat', { attributes: { latency: 300 } });
    expect(await roundTrip(s)).toBeGreaterThanOrEqual(295);
    // a chunk under way when the toxic goes is sent at once, not after its 300 ms
    s.write('z');
    const pending = readN(s, 1);
    p.removeToxic('lat');
    await pending;
    expect(await roundTrip(s)).toBeLessThan(base + 250);
  });

  it('a stall on an open connection holds its bytes; removed, they flow and nothing is lost', async () => {
    const up = await echoServer();
    const { p, port } = await proxyTo(up.address.port);
    const s = await connect(port);
    p.addToxic({
      name: 'hold',
      type: 'stall_after',
      stream: 'upstream',
      toxicity: 1,
      attributes: { bytes: 4 },
    });
    s.write('0123');
    expect((await readN(s, 4)).toString()).toBe('0123');
    s.write('456789'); // not forwarded while the stall lasts
    p.removeToxic('hold');
    expect((await readN(s, 6)).toString()).toBe('456789');
  });

  it('toxicity 0 never fires; the upstream direction delays what the client sends', async () => {
    const up = await echoServer();
    const { p, port } = await proxyTo(up.address.port);
    p.addToxic({ name: 'never', type: 'reset_peer', stream: 'downstream', toxicity: 0, attributes: {} });
    p.addToxic({
      name: 'up',
      type: 'latency',
      stream: 'upstream',
      toxicity: 1,
      attributes: { latency: 120 },
    });
    for (let i = 0; i < 5; i++) {
      const s = await connect(port);
      expect(await roundTrip(s)).toBeGreaterThanOrEqual(115);
      s.end();
      await readAll(s);
    }
  });

  it('timeout: nothing gets through, then the connection is closed; limit_data closes after N bytes', async () => {
    const up = await echoServer();
    const { p, port } = await proxyTo(up.address.port);
    p.addToxic({ name: 't', type: 'timeout', stream: 'upstream', toxicity: 1, attributes: { timeout: 200 } });
    const s = await connect(port);
    const t0 = performance.now();
    s.write('lost');
    const closed = await readAll(s).catch(() => Buffer.from('error'));
    expect(closed.length).toBe(0);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
    p.removeToxic('t');
    p.addToxic({
      name: 'l',
      type: 'limit_data',
      stream: 'downstream',
      toxicity: 1,
      attributes: { bytes: 1000 },
    });
    const s2 = await connect(port);
    const back = readAll(s2);
    s2.write(Buffer.alloc(5000, 1));
    expect((await back).length).toBe(1000);
  });

  it('slow_close holds the FIN; reset_peer resets; down refuses and up again listens on the same port', async () => {
    const up = await echoServer();
    const { p, port } = await proxyTo(up.address.port);
    p.addToxic({
      name: 'sc',
      type: 'slow_close',
      stream: 'downstream',
      toxicity: 1,
      attributes: { delay: 300 },
    });
    const s = await connect(port);
    const t0 = performance.now();
    const back = readAll(s);
    s.end('abc');
    expect((await back).toString()).toBe('abc');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    p.removeToxic('sc');
    p.addToxic({
      name: 'r',
      type: 'reset_peer',
      stream: 'downstream',
      toxicity: 1,
      attributes: { timeout: 0 },
    });
    const s2 = await connect(port);
    const [err] = await once(s2, 'error');
    expect((err as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    p.removeToxic('r');
    await p.update({ enabled: false });
    await expect(connect(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await p.update({ enabled: true });
    const s3 = await connect(port);
    expect(await roundTrip(s3)).toBeGreaterThanOrEqual(0);
  });
});
