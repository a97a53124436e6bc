// Who may speak the PROXY protocol (--proxy-from), what a half-sent header costs (it counts
// from accept; --proxy-timeout), and how a refused client is closed (FIN after its bytes are
// read and dropped, not RST) — in every server mode.

import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import type net from 'node:net';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { buildProxyHeader } from '../src/core/proxy-protocol.js';
import {
  bin,
  connect,
  jsonLines,
  matrix,
  readN,
  runCommand,
  SERVER_MODES,
  spawnServer,
  until,
  watchEnd,
} from './helpers.js';

const MODES: [string, string[]][] = [
  ...SERVER_MODES,
  ['workers --exclusive', ['--mode', 'workers', '--workers', '2', '--exclusive', '--reuse-port']],
];
/** modes where one process sees every connection (the --max-connections* limits are global) */
const LIMIT_MODES = SERVER_MODES;

const totals = (stderr: string) => jsonLines(stderr).find((l) => String(l.msg).startsWith('totals:'));

/** Connect from `from`, send `bytes`; resolves how the server ended it: 'eof' (FIN), an error code, and what came back. */
async function exchange(
  port: number,
  bytes: Buffer | string,
  from = '127.0.0.1',
  { endAfterEof = true } = {},
): Promise<{ how: string; got: Buffer; socket: Socket }> {
  const s = await connect(port, '127.0.0.1', { localAddress: from } as net.NetConnectOpts);
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  const how = new Promise<string>((resolve) => {
    s.once('end', () => resolve('eof'));
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
  s.write(bytes);
  const h = await how;
  if (h === 'eof' && endAfterEof) s.end();
  return { how: h, got: Buffer.concat(chunks), socket: s };
}

async function stop(srv: Awaited<ReturnType<typeof spawnServer>>) {
  srv.child.kill('SIGTERM');
  expect((await srv.exit).code).toBe(0);
  const t = totals(srv.stderr());
  expect(t).toBeDefined();
  return t as Record<string, any>;
}

// every mode under test:e2e; evented, workers and --exclusive (a listener per worker) always.
// The tests of this block and the next each have their own server: they run at once
const PROXY_MODES = matrix(MODES, ['evented', 'workers', 'workers --exclusive']);
describe.concurrent.each(PROXY_MODES)('--mode %s', (mode, args) => {
  it('--proxy-protocol: a header is believed only from --proxy-from; anyone else is refused unread, counted and logged once', async () => {
    const srv = await spawnServer([
      ...args,
      '--proxy-protocol',
      '--allow',
      '10.0.0.0/8',
      '--proxy-from',
      '127.0.0.2,127.0.0.3',
    ]);
    await srv.waitStderr(/PROXY headers are believed only from 127\.0\.0\.2\/32, 127\.0\.0\.3\/32/);
    const forged = `PROXY TCP4 10.1.2.3 10.0.0.1 5555 7007\r\nhello`;
    // a plain client names an allowed address: refused before its header is read
    const a = await exchange(srv.port, forged, '127.0.0.1');
    expect(a).toMatchObject({ how: 'eof' });
    expect(a.got.length).toBe(0);
    const b = await exchange(srv.port, forged, '127.0.0.1');
    expect(b.got.length).toBe(0);
    // the trusted proxy, for the same client: echoed
    const c = await connect(srv.port, '127.0.0.1', { localAddress: '127.0.0.2' } as net.NetConnectOpts);
    c.write(`PROXY TCP4 10.9.8.7 10.0.0.1 5555 7007\r\nhello`);
    expect((await readN(c, 5)).toString()).toBe('hello');
    c.end();
    await watchEnd(c).end;
    // the trusted proxy relays a client outside --allow: the access list still applies to it
    const d = await exchange(srv.port, 'PROXY TCP4 192.0.2.1 10.0.0.1 5555 7007\r\nhello', '127.0.0.3');
    expect(d.got.length).toBe(0);
    const t = await stop(srv);
    expect(t.refusedBy).toMatchObject({ proxy: 2, access: 1 });
    const lines = srv.stderr().split('\n');
    // logged once per source per interval (by each process that accepts: --exclusive has 2)
    const logged = lines.filter((l) => /refused 127\.0\.0\.1: not a trusted proxy/.test(l)).length;
    expect(logged).toBeGreaterThanOrEqual(1);
    expect(logged).toBeLessThanOrEqual(mode === 'workers --exclusive' ? 2 : 1);
    expect(srv.stderr()).toMatch(/closed 10\.9\.8\.7:5555 via 127\.0\.0\.2/);
    expect(srv.stderr()).toMatch(/refused 192\.0\.2\.1: not in --allow/);
    expect(srv.stderr()).not.toMatch(/10\.1\.2\.3/); // the forged name never reaches a log line
  });

  it('--proxy-protocol without --proxy-from: loopback proxies only, said at start', async () => {
    const srv = await spawnServer([...args, '--proxy-protocol']);
    await srv.waitStderr(/PROXY headers are believed only from 127\.0\.0\.0\/8, ::1\/128/);
    const c = await connect(srv.port);
    c.write(
      Buffer.concat([
        buildProxyHeader(2, { address: '203.0.113.7', port: 4000 }, { address: '127.0.0.1', port: srv.port }),
        Buffer.from('v2'),
      ]),
    );
    expect((await readN(c, 2)).toString()).toBe('v2');
    c.end();
    await watchEnd(c).end;
    await stop(srv);
    expect(srv.stderr()).toMatch(/203\.0\.113\.7:4000 via 127\.0\.0\.1/);
  });

  it('a refused client that had written sees EOF (FIN), not ECONNRESET', async () => {
    const srv = await spawnServer([...args, '--deny', '127.0.0.1']);
    for (let i = 0; i < 3; i++) {
      // more than fits in one segment: some of it is unread (or still arriving) when the server refuses
      const r = await exchange(srv.port, Buffer.alloc(256 * 1024, 0x61));
      expect(r.how).toBe('eof');
      expect(r.got.length).toBe(0);
      if (!r.socket.destroyed) await once(r.socket, 'close');
    }
    const t = await stop(srv);
    expect(t.refusedBy).toMatchObject({ access: 3 });
  });
});

describe.concurrent.each(matrix(LIMIT_MODES, ['evented', 'fork']))('--mode %s, limits', (_mode, args) => {
  it('--proxy-protocol: a half-sent header holds a slot from accept, and only for --proxy-timeout', async () => {
    const srv = await spawnServer([
      ...args,
      '--proxy-protocol',
      '--max-connections',
      '2',
      '--proxy-timeout',
      '1500ms',
    ]);
    const stalled = await Promise.all([0, 1].map(() => connect(srv.port)));
    const ends = stalled.map((s) => {
      s.write('PROXY TCP4');
      return watchEnd(s);
    });
    // both slots are held by headers that never finish: a third client is refused at once
    const r = await exchange(srv.port, `PROXY TCP4 203.0.113.7 127.0.0.1 40000 7007\r\nhi`);
    expect(r.got.length).toBe(0);
    const t0 = Date.now();
    await Promise.all(ends.map((e) => e.end));
    expect(Date.now() - t0).toBeLessThan(5000);
    // closed by the server: the clients close their side too (a shutdown waits for refused
    // clients' FIN for up to REFUSED_LINGER_MS)
    for (const s of stalled) s.end();
    // the slots are free again
    const ok = await connect(srv.port);
    ok.write(`PROXY TCP4 203.0.113.7 127.0.0.1 40001 7007\r\nagain`);
    expect((await readN(ok, 5)).toString()).toBe('again');
    ok.end();
    await watchEnd(ok).end;
    const t = await stop(srv);
    expect(t.refusedBy).toMatchObject({ max: 1, proxy: 2 });
    expect(srv.stderr()).toMatch(/no PROXY header within (1500 ?ms|1\.5 ?s)/);
  });

  it('--max-connections-per-ip: a pending header counts under the proxy, then under the client it names', async () => {
    const srv = await spawnServer([...args, '--proxy-protocol', '--max-connections-per-ip', '1']);
    const pending = await connect(srv.port);
    pending.write('PROXY ');
    const pendingEnd = watchEnd(pending);
    // the proxy's one slot is taken by the pending header
    const r = await exchange(srv.port, `PROXY TCP4 203.0.113.7 127.0.0.1 40000 7007\r\nhi`);
    expect(r.got.length).toBe(0);
    pending.write(`TCP4 203.0.113.8 127.0.0.1 40000 7007\r\nmoved`);
    expect((await readN(pending, 5)).toString()).toBe('moved');
    // now counted under 203.0.113.8: another client through the same proxy is admitted while
    // the first is open (iterative: it waits its turn, then is served)
    const other = await connect(srv.port);
    const otherEnd = watchEnd(other);
    other.write(`PROXY TCP4 203.0.113.9 127.0.0.1 40000 7007\r\nother`);
    other.end();
    pending.end();
    await pendingEnd.end;
    expect((await otherEnd.end).toString()).toBe('other');
    const t = await stop(srv);
    expect(t.refusedBy).toMatchObject({ 'per-ip': 1 });
  });
});

describe('flags', () => {
  it.each([
    [['--proxy-from', '127.0.0.1'], /--proxy-from 127\.0\.0\.1: needs --proxy-protocol/],
    [['--proxy-protocol', '--proxy-from', '10.0.0.0/40'], /--proxy-from.*prefix length/],
    [['--proxy-timeout', '1s'], /--proxy-timeout 1s: needs --proxy-protocol/],
    [['--proxy-protocol', '--proxy-timeout', 'soon'], /--proxy-timeout/],
    [['--proxy-protocol', '--unix', '/tmp/x.sock', '--proxy-from', '127.0.0.1'], /--proxy-from.*--unix/],
  ])('echo-server %j exits 2 naming the flag', async (argv, re) => {
    const r = await runCommand(process.execPath, [bin('echo-server'), ...(argv as string[])]);
    expect(r.code).toBe(2);
    expect(r.err.toString()).toMatch(re);
  });
});

/** The kernel's state of the server side of the connection from local port `port` (ss, as a person would check). */
const serverSideState = (srvPort: number, clientPort: number) =>
  spawnSync('ss', ['-tnH', 'state', 'all', `sport = :${srvPort} and dport = :${clientPort}`], {
    encoding: 'utf8',
  }).stdout.trim();

describe.each([
  ['iterative', ['--mode', 'iterative']],
  ['fork --max-children 1', ['--mode', 'fork', '--max-children', '1']],
])('--mode %s: clients waiting their turn', (_mode, args) => {
  it('--max-connections: a waiter that is gone (FIN with nothing sent, or RST) frees its slot; a half-closed one is still served byte-exact', async () => {
    const srv = await spawnServer([...args, '--max-connections', '3']);
    const a = await connect(srv.port);
    a.write('a');
    expect((await readN(a, 1)).toString()).toBe('a'); // a is served: the others wait
    const aEnd = watchEnd(a);
    // b sends and shuts its write side (nc -N): it waits for its echo
    const b = await connect(srv.port);
    const bEnd = watchEnd(b);
    b.end('keep me');
    // c gives up: closes without having sent anything
    const c = await connect(srv.port);
    const cPort = c.localPort!;
    c.on('error', () => {});
    c.end();
    await until(() => /CLOSE-WAIT/.test(serverSideState(srv.port, cPort)), 10_000, 'c seen closed');
    // d takes c's slot (it waits), then resets: gone too
    const d = await connect(srv.port);
    const dPort = d.localPort!;
    await until(() => /ESTAB/.test(serverSideState(srv.port, dPort)), 10_000, 'd accepted');
    d.on('error', () => {});
    d.resetAndDestroy();
    await until(() => !/ESTAB/.test(serverSideState(srv.port, dPort)), 10_000, 'd seen reset');
    // e takes d's slot
    const e = await connect(srv.port);
    const eEnd = watchEnd(e);
    e.end('e too');
    a.end();
    expect((await aEnd.end).toString()).toBe('');
    expect((await bEnd.end).toString()).toBe('keep me');
    expect((await eEnd.end).toString()).toBe('e too');
    const t = await stop(srv);
    expect(t.refused).toBe(0);
  });
});

describe.each([
  ['evented', []],
  ['workers', ['--mode', 'workers', '--workers', '2']],
  ['iterative', ['--mode', 'iterative']],
])('--mode %s --tls', (_mode, args) => {
  it('a plain client is told at once to add --tls; the server logs it once per source', async () => {
    // a handshake timeout far longer than a loaded machine's node start-up: a plain line shorter
    // than a TLS record header, not refused at once, would keep echo-client for all of it
    const srv = await spawnServer([...args, '--tls', '--handshake-timeout', '20s']);
    for (let i = 0; i < 2; i++) {
      const t0 = Date.now();
      const r = await runCommand(process.execPath, [
        bin('echo-client'),
        '-m',
        'hi',
        '127.0.0.1',
        String(srv.port),
      ]);
      // at once: well within the handshake timeout (echo-client's node start-up included)
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/Add --tls/);
      expect(r.out.length).toBe(0);
    }
    // a TLS client is still served
    const ok = await runCommand(process.execPath, [
      bin('echo-client'),
      '--tls',
      '--insecure',
      '-m',
      'over tls',
      '127.0.0.1',
      String(srv.port),
    ]);
    expect(ok.out.toString()).toBe('over tls\n');
    const t = await stop(srv);
    expect(t.refusedBy).toMatchObject({ 'plain-on-tls': 2 });
    const logged = srv
      .stderr()
      .split('\n')
      .filter((l) => /plain bytes on a TLS port/.test(l));
    expect(logged.length).toBe(1);
    expect(srv.stderr()).not.toMatch(/handshake timed out/);
  });
});

describe('refused clients that never close', () => {
  it('hold no descriptor beyond the short linger (2 s), and a flood of them is capped', async () => {
    const srv = await spawnServer(['--deny', '127.0.0.1'], { prefix: ['prlimit', '--nofile=128'] });
    const pid = srv.child.pid!;
    // the server runs under prlimit: its own pid is the node process (prlimit execs it)
    const fds = () => readdirSync(`/proc/${pid}/fd`).length;
    const base = fds();
    const clients = await Promise.all(Array.from({ length: 40 }, () => connect(srv.port)));
    // each is refused: a FIN, or beyond the cap a reset (it wrote)
    await Promise.all(
      clients.map(
        (c) =>
          new Promise<void>((resolve) => {
            c.once('end', () => resolve());
            c.once('error', () => resolve());
            c.write('x'); // and never FIN
          }),
      ),
    );
    // at most the cap (128/16 = 8) linger at once
    expect(fds() - base).toBeLessThanOrEqual(8);
    const t0 = Date.now();
    await until(() => fds() <= base, 8000, 'lingering refused sockets closed');
    expect(Date.now() - t0).toBeLessThan(5000);
    await stop(srv);
  });
});
