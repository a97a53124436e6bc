// Light connections (core/internals.ts LightSocket): an evented echo-only server drives the
// accepted TCP handle without a net.Socket. Each test runs on the light path and on its
// fallback (ECHO_INTERNALS_BROKEN=light: the check fails, connections are net.Sockets
// again), in this process through the library, and once through the CLI.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lightPathWorks } from '../src/core/internals.js';
import type { ConnectionRecord } from '../src/core/records.js';
import type { EchoServerOptions } from '../src/index.js';
import { connect, echoServer, readAll, readN, spawnServer, until } from './helpers.js';

function capture() {
  const lines: Record<string, any>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

async function server(opts: EchoServerOptions = {}) {
  const records: ConnectionRecord[] = [];
  const { logger, lines } = capture();
  const srv = await echoServer({ logger, onConnectionClosed: (r) => records.push(r), ...opts });
  return { srv, records, lines, port: srv.address.port };
}

const PATHS: [string, string | undefined][] = [
  ['light', undefined],
  ['fallback (ECHO_INTERNALS_BROKEN=light)', 'light'],
];

describe.each(PATHS)('%s', (_name, broken) => {
  const before = process.env.ECHO_INTERNALS_BROKEN;
  beforeAll(() => {
    if (broken) process.env.ECHO_INTERNALS_BROKEN = broken;
    else delete process.env.ECHO_INTERNALS_BROKEN;
  });
  afterAll(() => {
    if (before === undefined) delete process.env.ECHO_INTERNALS_BROKEN;
    else process.env.ECHO_INTERNALS_BROKEN = before;
  });

  it('the check says which path runs, and the server says so at debug', async () => {
    const check = await lightPathWorks();
    expect(check.ok).toBe(!broken);
    const { lines } = await server();
    const msgs = lines.map((l) => String(l.msg));
    if (broken) expect(msgs.some((m) => m.includes('the light-connection check failed'))).toBe(true);
    else expect(msgs).toContain('light connections for echo: check passed');
  });

  it('24 MiB of binary come back byte-exact through backpressure; the client FIN is answered after them', async () => {
    const { srv, records, port } = await server();
    const s = await connect(port);
    s.pause(); // the echo waits in the kernel: the server must stop reading the client
    const sent = randomBytes(24 * 1024 * 1024); // more than both ends' kernel buffers take
    s.end(sent);
    await until(
      () => srv.connections()[0]?.reading === false,
      20_000,
      () => `server reading paused: ${JSON.stringify(srv.connections())}`,
    );
    const reading = readAll(s);
    s.resume(); // paused on purpose: a 'data' listener alone does not resume it
    const back = await reading;
    expect(back.length).toBe(sent.length);
    expect(back.equals(sent)).toBe(true);
    await until(() => records.length === 1, 10_000, 'close record');
    expect(records[0]).toMatchObject({
      bytesIn: sent.length,
      bytesOut: sent.length,
      reason: 'client closed',
    });
    expect(srv.stats()).toMatchObject({
      connections: 1,
      active: 0,
      bytesIn: sent.length,
      bytesOut: sent.length,
    });
  });

  it('half-close: after its FIN the client still gets its echo, then ours', async () => {
    const { records, port } = await server();
    const s = await connect(port);
    s.write('first ');
    expect((await readN(s, 6)).toString()).toBe('first ');
    s.end('last');
    expect((await readAll(s)).toString()).toBe('last');
    await until(() => records.length === 1, 10_000, 'close record');
    expect(records[0]).toMatchObject({ bytesIn: 10, bytesOut: 10, reason: 'client closed' });
  });

  it('a client reset is counted and logged; the server goes on serving', async () => {
    const { srv, records, port } = await server();
    const s = await connect(port);
    s.pause();
    s.write(randomBytes(1024 * 1024)); // echo pending when the RST comes (the client does not read)
    await until(() => (srv.connections()[0]?.bytesIn ?? 0) > 0, 10_000, 'bytes read');
    s.resetAndDestroy();
    await until(() => records.length === 1, 10_000, 'close record');
    expect(records[0].reason).toMatch(/^(reset by peer|error EPIPE)/);
    expect(srv.stats().active).toBe(0);
    const t = await connect(port);
    t.end('again');
    expect((await readAll(t)).toString()).toBe('again');
  });

  it('--idle-timeout closes an idle connection', async () => {
    const { records, port } = await server({ idleTimeoutMs: 300 });
    const s = await connect(port);
    s.write('x');
    expect((await readN(s, 1)).toString()).toBe('x');
    await readAll(s); // the server's FIN (or close) after the timeout
    await until(() => records.length === 1, 10_000, 'close record');
    expect(records[0].reason).toBe('idle timeout');
  });

  it('shutdown: what was read is echoed, then FIN; --max-connections refuses the second', async () => {
    const { srv, port } = await server({ maxConnections: 1 });
    const s = await connect(port);
    s.write('in flight');
    expect((await readN(s, 9)).toString()).toBe('in flight');
    const t = await connect(port);
    expect((await readAll(t)).length).toBe(0); // refused: FIN, no echo
    expect(srv.stats().refused).toBe(1);
    const rest = readAll(s);
    s.once('end', () => s.end()); // our FIN answers the server's: the close does not wait out its grace
    const totals = await srv.close({ graceMs: 5000 });
    expect((await rest).length).toBe(0);
    expect(totals).toMatchObject({ connections: 1, active: 0, bytesIn: 9, bytesOut: 9 });
  });

  it('faults switched on live apply to a connection already open, and off again; counts stay right', async () => {
    const { srv, records, port } = await server();
    const s = await connect(port);
    const echoMs = async (text: string) => {
      const t0 = performance.now();
      s.write(text);
      expect((await readN(s, text.length)).toString()).toBe(text);
      return performance.now() - t0;
    };
    await echoMs('warm');
    srv.setFaults([{ kind: 'latency', delayMs: 400 }]);
    expect(await echoMs('slow')).toBeGreaterThanOrEqual(390);
    srv.setFaults([]);
    await echoMs('fast again');
    s.end();
    await once(s, 'close');
    await until(() => records.length === 1, 10_000, 'close record');
    expect(records[0]).toMatchObject({ bytesIn: 18, bytesOut: 18 });
  });

  it('faults switched on while writes wait: the echo stays byte-exact across the hand-over', async () => {
    const { srv, records, port } = await server();
    const s = await connect(port);
    s.pause(); // the echo piles up: the server's writes wait and it stops reading
    const sent = randomBytes(24 * 1024 * 1024);
    s.end(sent);
    await until(() => srv.connections()[0]?.reading === false, 20_000, 'server reading paused');
    srv.setFaults([{ kind: 'latency', delayMs: 1 }]);
    const reading = readAll(s);
    s.resume();
    const back = await reading;
    expect(back.length).toBe(sent.length);
    expect(back.equals(sent)).toBe(true);
    await until(() => records.length === 1, 10_000, 'close record');
    expect(records[0]).toMatchObject({ bytesIn: sent.length, bytesOut: sent.length });
  });
});

describe('echo-server (CLI)', () => {
  it.each(PATHS)('%s: -v names the path; binary echoed byte-exact', async (_n, broken) => {
    const env = { ...process.env, ECHO_INTERNALS_BROKEN: broken ?? '' };
    const srv = await spawnServer(['-v'], { env });
    await srv.waitStderr(
      broken ? /the light-connection check failed/ : /light connections for echo: check passed/,
    );
    const s = net.connect(srv.port, '127.0.0.1');
    const sent = randomBytes(256 * 1024);
    s.end(sent);
    expect((await readAll(s)).equals(sent)).toBe(true);
  });
});
