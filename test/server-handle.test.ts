// One handle for every mode: close({ graceMs }) lets what is in flight finish within the
// grace and resolves with the totals, a short grace cuts a slow echo at the grace, and
// forceClose() cuts at once — in evented, iterative, workers, workers --exclusive, fork and UDP.

import dgram from 'node:dgram';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import type { Command } from 'commander';
import { describe, expect, it, onTestFinished } from 'vitest';
import { buildServerProgram, resolveServerConfig, type ServerFlags } from '../src/cli/echo-server.js';
import { silentLogger } from '../src/core/log.js';
import type { ServerHandle } from '../src/server/listener.js';
import { connect, readN } from './helpers.js';

const quiet = (p: Command) => {
  for (const c of [p, ...p.commands])
    c.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  return p;
};

async function server(argv: string[], app?: string): Promise<ServerHandle> {
  const p = quiet(buildServerProgram());
  p.parse(['--port', '0', ...argv], { from: 'user' });
  const cfg = { ...resolveServerConfig(p.opts<ServerFlags>(), p.processedArgs as string[]), app };
  // the built library: its child processes run dist/server/child-main.js
  // (typed from src/: a dist/ older than src/ must not break the type check)
  const built = '../dist/server/index.js';
  const { startServer } = (await import(built)) as typeof import('../src/server/index.js');
  const srv: ServerHandle = await startServer(cfg, silentLogger);
  onTestFinished(async () => {
    srv.forceClose();
    await srv.close({ graceMs: 0 });
  });
  return srv;
}

/** Every byte until the server's FIN or a reset: what arrived, and how it ended. */
function rest(s: Socket): Promise<{ data: Buffer; how: 'end' | 'error' }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => {
      s.end(); // the connection is done once both sides are
      resolve({ data: Buffer.concat(chunks), how: 'end' });
    });
    s.once('error', () => resolve({ data: Buffer.concat(chunks), how: 'error' }));
    s.once('close', () => resolve({ data: Buffer.concat(chunks), how: 'error' }));
  });
}

const TCP_MODES: [string, string[]][] = [
  ['evented', []],
  ['iterative', ['--mode', 'iterative']],
  ['workers', ['--mode', 'workers', '--workers', '2']],
  ['workers --exclusive', ['--mode', 'workers', '--workers', '2', '--exclusive', '--reuse-port']],
  ['fork', ['--mode', 'fork']],
];

const PAYLOAD = Buffer.from('abcdefgh');

/**
 * A connection whose echo is in flight: 8 bytes sent, echoed one byte per `delay`; resolves
 * once the first byte is back (the server has read all 8: they came in one segment).
 */
async function slowEcho(srv: ServerHandle) {
  const s = await connect(srv.address.port);
  s.write(PAYLOAD);
  const first = await readN(s, 1);
  return { s, first, ended: rest(s) };
}

describe.each(TCP_MODES)('%s: close and forceClose', (_name, args) => {
  it('close({ graceMs }) lets an in-flight echo finish, then resolves with the totals', async () => {
    const srv = await server([...args, '--fault', 'slice=1,delay=60ms']);
    const { first, ended } = await slowEcho(srv);
    const totals = await srv.close({ graceMs: 30_000 });
    const { data, how } = await ended;
    expect(how).toBe('end');
    expect(Buffer.concat([first, data]).toString()).toBe(PAYLOAD.toString());
    expect(totals.connections).toBe(1);
    expect(totals.bytesIn).toBe(PAYLOAD.length);
    expect(totals.bytesOut).toBe(PAYLOAD.length);
  });

  it('a short grace cuts a slow echo at the grace', async () => {
    const srv = await server([...args, '--fault', 'slice=1,delay=5s']);
    const { first, ended } = await slowEcho(srv);
    const t0 = performance.now();
    const totals = await srv.close({ graceMs: 400 });
    const took = performance.now() - t0;
    const { data } = await ended;
    expect(took).toBeGreaterThanOrEqual(380);
    expect(took).toBeLessThan(4_500);
    expect(first.length + data.length).toBeLessThan(PAYLOAD.length);
    expect(totals.connections).toBe(1);
    expect(totals.bytesIn).toBe(PAYLOAD.length);
    expect(totals.bytesOut).toBeLessThan(PAYLOAD.length);
  });

  it('forceClose() cuts at once, whatever the grace', async () => {
    const srv = await server([...args, '--fault', 'slice=1,delay=5s']);
    const { first, ended } = await slowEcho(srv);
    const t0 = performance.now();
    const closing = srv.close({ graceMs: 600_000 });
    srv.forceClose();
    const totals = await closing;
    expect(performance.now() - t0).toBeLessThan(4_500);
    const { data } = await ended;
    expect(first.length + data.length).toBeLessThan(PAYLOAD.length);
    expect(totals.connections).toBe(1);
    expect(totals.bytesOut).toBeLessThan(PAYLOAD.length);
  });
});

/**
 * UDP with `latency=…,every=2`: of A, B, C the second is held by the fault. Resolves once A
 * and C are back, so B is in flight; `replies` collects every reply from then on.
 */
async function heldDatagram(srv: ServerHandle) {
  const c = dgram.createSocket('udp4');
  onTestFinished(() => {
    c.close();
  });
  c.bind(0, '127.0.0.1');
  await once(c, 'listening');
  const replies: string[] = [];
  const gotBoth = new Promise<void>((resolve) =>
    c.on('message', (m) => {
      replies.push(m.toString());
      if (replies.includes('A') && replies.includes('C')) resolve();
    }),
  );
  for (const m of ['A', 'B', 'C']) c.send(m, srv.address.port, '127.0.0.1');
  await gotBoth;
  const later = new Promise<void>((resolve) => c.on('message', (m) => m.toString() === 'B' && resolve()));
  return { replies, later };
}

describe('UDP: close and forceClose', () => {
  it('close({ graceMs }) still sends what a fault holds, then resolves with the totals', async () => {
    const srv = await server(['--udp', '--fault', 'latency=300ms,every=2']);
    const { later } = await heldDatagram(srv);
    const totals = await srv.close({ graceMs: 30_000 });
    await later;
    expect(totals.bytesIn).toBe(3);
    expect(totals.bytesOut).toBe(3);
    expect(totals.refusedBy.shutdown ?? 0).toBe(0);
  });

  it('a short grace drops what a fault still holds at the grace, counted', async () => {
    const srv = await server(['--udp', '--fault', 'latency=60s,every=2']);
    const { replies } = await heldDatagram(srv);
    const t0 = performance.now();
    const totals = await srv.close({ graceMs: 400 });
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(380);
    expect(took).toBeLessThan(4_500);
    expect(totals.bytesOut).toBe(2);
    expect(totals.refusedBy.shutdown).toBe(1);
    expect(replies).not.toContain('B');
  });

  it('forceClose() drops what a fault holds at once and closes', async () => {
    const srv = await server(['--udp', '--fault', 'latency=60s,every=2']);
    await heldDatagram(srv);
    const t0 = performance.now();
    const closing = srv.close({ graceMs: 600_000 });
    srv.forceClose();
    const totals = await closing;
    expect(performance.now() - t0).toBeLessThan(4_500);
    expect(totals.bytesOut).toBe(2);
    expect(totals.refusedBy.shutdown).toBe(1);
  });

  it('forceClose() alone closes too', async () => {
    const srv = await server(['--udp', '--fault', 'latency=60s,every=2']);
    await heldDatagram(srv);
    srv.forceClose();
    const totals = await srv.close();
    expect(totals.refusedBy.shutdown).toBe(1);
  });
});

describe.each([
  ['evented', []],
  ['workers', ['--mode', 'workers', '--workers', '2']],
  ['fork', ['--mode', 'fork']],
])('%s: an application other than echo plugs in by name', (_name, args) => {
  it('discard (RFC 863): every byte is read and dropped, counted in; nothing comes back', async () => {
    const srv = await server(args, 'discard');
    const s = await connect(srv.address.port);
    const ended = rest(s);
    const payload = Buffer.alloc(256 * 1024, 7);
    s.end(payload);
    const { data, how } = await ended;
    expect(how).toBe('end');
    expect(data.length).toBe(0);
    const totals = await srv.close({ graceMs: 30_000 });
    expect(totals.connections).toBe(1);
    expect(totals.bytesIn).toBe(payload.length);
    expect(totals.bytesOut).toBe(0);
  });
});

it('an unknown application is refused before anything starts', async () => {
  await expect(server(['--mode', 'workers'], 'no-such-app')).rejects.toThrow(
    /unknown application "no-such-app"/,
  );
});
