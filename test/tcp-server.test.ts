import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { echo } from '../src/index.js';
import { connect, echoServer, readAll, readN, until } from './helpers.js';

describe('echo-server (evented)', () => {
  it('echoes a multi-megabyte random binary payload byte-exact', async () => {
    const srv = await echoServer();
    const payload = randomBytes(8 * 1024 * 1024);
    const s = await connect(srv.address.port);
    const got = readAll(s);
    s.end(payload);
    const back = await got;
    expect(back.length).toBe(payload.length);
    expect(back.equals(payload)).toBe(true);
    await once(s, 'close');
    expect(srv.stats()).toMatchObject({ connections: 1, bytesIn: payload.length, bytesOut: payload.length });
  });

  it('honours a half-close: echoes everything, then EOF', async () => {
    const srv = await echoServer();
    const s = await connect(srv.address.port);
    const all = readAll(s);
    s.write('first ');
    s.end('last');
    expect((await all).toString()).toBe('first last');
  });

  it('serves many clients at once', async () => {
    const srv = await echoServer();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => echo({ port: srv.address.port, message: `client ${i}` })),
    );
    results.forEach((r, i) => {
      expect(r.reply.toString()).toBe(`client ${i}`);
    });
  });

  it('does not buffer without bound for a client that never reads (backpressure)', async () => {
    const srv = await echoServer();
    const s = await connect(srv.address.port);
    s.pause();
    const payload = randomBytes(64 * 1024 * 1024);
    s.write(payload);
    // the server stops reading once its echo is not drained
    await until(() => srv.connections()[0]?.reading === false, 10_000, 'the server paused reading');
    const [c] = srv.connections();
    // bound: what the kernel may buffer on both sides (the largest send buffer of the server and
    // receive buffer of the client, tcp_wmem and tcp_rmem's maximum) plus one write queue
    const max = (f: string) => Number(readFileSync(`/proc/sys/net/ipv4/${f}`, 'utf8').trim().split(/\s+/)[2]);
    const kernel = process.platform === 'linux' ? max('tcp_rmem') + max('tcp_wmem') : 16 * 1024 * 1024;
    expect(c!.bytesIn).toBeLessThan(Math.min(payload.length, kernel + 2 * 1024 * 1024));
    expect(c!.buffered).toBeLessThanOrEqual(1024 * 1024);
    expect(s.writableLength).toBeGreaterThan(payload.length / 2);
    // now read: everything comes back, exact
    s.resume();
    const back = await readN(s, payload.length);
    expect(back.equals(payload)).toBe(true);
  });

  it('refuses connections beyond --max-connections with a FIN, counts them', async () => {
    const srv = await echoServer({ maxConnections: 1 });
    const a = await connect(srv.address.port);
    a.write('a');
    expect((await readN(a, 1)).toString()).toBe('a');
    const b = await connect(srv.address.port);
    b.write('b');
    expect((await readAll(b)).length).toBe(0);
    expect(srv.stats().refused).toBe(1);
    a.end();
    await once(a, 'close');
    // a slot is free again
    expect((await echo({ port: srv.address.port, message: 'c' })).reply.toString()).toBe('c');
  });

  it('closes idle connections after --idle-timeout', async () => {
    const srv = await echoServer({ idleTimeoutMs: 200 });
    const s = await connect(srv.address.port);
    const t0 = Date.now();
    await readAll(s);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(180);
    s.end();
    await once(s, 'close');
  });

  it('close() lets in-flight echoes finish: what was read is written back, then FIN', async () => {
    const srv = await echoServer();
    const s = await connect(srv.address.port);
    const payload = randomBytes(4 * 1024 * 1024);
    const received: Buffer[] = [];
    let got = 0;
    let echoing!: () => void;
    const started = new Promise<void>((r) => {
      echoing = r;
    });
    s.on('data', (c: Buffer) => {
      received.push(c);
      got += c.length;
      if (got >= 1024) echoing();
    });
    const ended = once(s, 'end');
    s.once('end', () => s.end()); // a well-behaved client closes when the server does
    s.write(payload);
    await started; // the server is echoing
    const totals = await srv.close({ graceMs: 5000 });
    await ended;
    const back = Buffer.concat(received);
    expect(back.equals(payload.subarray(0, back.length))).toBe(true);
    expect(back.length).toBe(totals.bytesIn);
    expect(totals.bytesOut).toBe(totals.bytesIn);
  });
});

describe('echo-server (iterative)', () => {
  it('serves the second client only after the first leaves', async () => {
    const srv = await echoServer({ mode: 'iterative' });
    const a = await connect(srv.address.port);
    a.write('A1');
    expect((await readN(a, 2)).toString()).toBe('A1');
    const b = await connect(srv.address.port); // completed by the kernel, waiting in line
    let aClosed = false;
    const bEcho = new Promise<boolean>((resolve) => b.once('data', () => resolve(aClosed)));
    b.write('B1');
    a.write('A2');
    expect((await readN(a, 2)).toString()).toBe('A2'); // A is still the one being served
    a.end();
    await once(a, 'close');
    aClosed = true;
    expect(await bEcho).toBe(true);
  });
});
