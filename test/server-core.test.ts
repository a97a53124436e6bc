// One server core: the same limits, drain and totals in every TCP mode, and a fork mode that
// a peer cannot crash. Each test runs the CLI as a user does.
import { once } from 'node:events';
import type net from 'node:net';
import { describe, expect, it, onTestFailed } from 'vitest';
import { echo, startEchoServer } from '../src/index.js';
import {
  connect,
  jsonLines,
  SERVER_MODES as MODES,
  readAll,
  readN,
  refusal,
  spawnServer,
  streamUntilServerCloses,
  until,
  watchEnd,
} from './helpers.js';

/** The limit tests' servers listen here, not on 127.0.0.1 where every other test connects. */
const HOST = '127.0.0.3';

const totalsLine = (stderr: string) => jsonLines(stderr).find((l) => String(l.msg).startsWith('totals:'));

/** Echo one byte on each socket; in iterative mode one at a time, each closed before the next. */
async function served(mode: string, socks: net.Socket[]): Promise<void> {
  for (const [i, s] of socks.entries()) {
    s.write(String(i));
    expect((await readN(s, 1)).toString()).toBe(String(i));
    if (mode === 'iterative') {
      s.end();
      await once(s, 'close');
    }
  }
}

describe.each(MODES)('--mode %s', (mode, args) => {
  it('--max-connections 2: of 5 connections 2 are served, 3 refused and logged', async () => {
    // on an address of its own: other tests' connects to 127.0.0.1 (a port just released by
    // them and handed to this server by the kernel) must not take one of the two slots
    const srv = await spawnServer([...args, '--max-connections', '2', '-v', '--host', HOST]);
    let stage = 'connect';
    const socks: import('node:net').Socket[] = [];
    onTestFailed(() => {
      console.error(
        `DIAG stage=${stage} mode=${mode} ours=${socks.map((x) => x.localPort).join(',')}\n${srv.stderr()}`,
      );
    });
    for (let i = 0; i < 5; i++) socks.push(await connect(srv.port, HOST));
    stage = 'wait for the refusals';
    const watched = socks.map(watchEnd);
    // one listener accepts in arrival order: the last three are refused (a FIN, nothing echoed)
    for (const w of watched.slice(2)) expect((await w.end).length).toBe(0);
    expect(watched[0]!.ended() || watched[1]!.ended()).toBe(false);
    stage = 'refusal line';
    await srv.waitStderr(/refused 127\.0\.0\.\d+: 2 connections open \(--max-connections 2\)/);
    stage = 'echo on the admitted';
    await served(mode, socks.slice(0, 2));
    stage = 'exit';
    for (const s of socks) s.end();
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(totalsLine(srv.stderr())).toMatchObject({ connections: 2, refused: 3, refusedBy: { max: 3 } });
  });

  it('--max-connections-per-ip 2: a third and fourth from 127.0.0.1 are refused, 127.0.0.2 is not', async () => {
    const srv = await spawnServer([...args, '--max-connections-per-ip', '2', '-v', '--host', HOST]);
    const socks: net.Socket[] = [];
    let stage = 'connect';
    onTestFailed(() => {
      console.error(
        `DIAG stage=${stage} mode=${mode} ours=${socks.map((x) => x.localPort).join(',')}\n${srv.stderr()}`,
      );
    });
    for (let i = 0; i < 4; i++)
      socks.push(await connect(srv.port, HOST, { localAddress: '127.0.0.1' } as net.NetConnectOpts));
    stage = 'wait for the refusals';
    const watched = socks.map(watchEnd);
    for (const w of watched.slice(2)) expect((await w.end).length).toBe(0);
    stage = 'refusal line';
    await srv.waitStderr(/refused 127\.0\.0\.1: 2 connections from this address/);
    stage = 'connect from 127.0.0.2';
    const other = await connect(srv.port, HOST, { localAddress: '127.0.0.2' } as net.NetConnectOpts);
    const otherEnd = watchEnd(other);
    stage = 'echo on the admitted';
    await served(mode, socks.slice(0, 2));
    stage = 'echo on 127.0.0.2';
    await served(mode, [other]);
    expect(otherEnd.ended()).toBe(mode === 'iterative'); // iterative: served() closed it itself
    stage = 'exit';
    for (const s of [...socks, other]) s.end();
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(totalsLine(srv.stderr())).toMatchObject({
      connections: 3,
      refused: 2,
      refusedBy: { 'per-ip': 2 },
    });
  });

  it('SIGTERM with 10 clients streaming: every byte the server read comes back, totals add up', async () => {
    const srv = await spawnServer(args);
    const want = mode === 'iterative' ? 1 : 10; // iterative serves one; the rest wait unread
    let echoing = 0;
    const streams = Array.from({ length: 10 }, () =>
      streamUntilServerCloses(srv.port, {
        payloadBytes: 4 * 1024 * 1024,
        onEchoing: () => {
          if (++echoing === want) srv.child.kill('SIGTERM');
        },
      }),
    );
    const results = await Promise.all(streams);
    expect((await srv.exit).code).toBe(0);
    for (const r of results) expect(r.exact).toBe(true);
    const got = results.reduce((s, r) => s + r.length, 0);
    const t = totalsLine(srv.stderr())!;
    expect(t.bytesIn).toBe(got);
    expect(t.bytesOut).toBe(got);
    expect(t.connections).toBe(mode === 'iterative' ? 1 : 10);
    expect(results.filter((r) => r.length > 0)).toHaveLength(want);
  });
});

describe('drain', () => {
  it.each(['evented', 'iterative'] as const)(
    '%s: bytes read while paused for a slow client are echoed at shutdown, not discarded',
    async (mode) => {
      const srv = await startEchoServer({ port: 0, mode });
      const c = await connect(srv.address.port);
      c.write(Buffer.alloc(8 * 1024 * 1024, 7)); // and do not read: the server pauses
      await until(() => srv.connections()[0]?.reading === false, 10_000, 'server paused');
      // the socket's counter includes what sits read in its buffer
      const readByServer = srv.connections()[0]!.bytesIn;
      const closing = srv.close({ graceMs: 20_000 });
      const back = await readAll(c.on('end', () => c.end()));
      const totals = await closing;
      expect(back.length).toBeGreaterThanOrEqual(readByServer);
      expect(back.every((b) => b === 7)).toBe(true);
      expect(totals.bytesOut).toBe(back.length);
    },
  );
});

describe('--mode fork survives what a peer can do', () => {
  it.skipIf(process.platform !== 'linux')(
    'at a low fd limit, clients beyond it are refused with the fd-limit line; it keeps serving',
    async () => {
      const srv = await spawnServer(['--mode', 'fork', '--max-children', '2'], {
        prefix: ['prlimit', '--nofile=48'],
      });
      const socks = [];
      for (let i = 0; i < 60; i++) {
        const s = await connect(srv.port);
        s.on('error', () => {});
        socks.push(s);
      }
      await srv.waitStderr(/the file-descriptor limit \(48\) is nearly reached; raise ulimit -n/);
      for (const s of socks) s.end();
      // served again once they are gone (the parent learns of each as its child finishes; 60
      // children end one by one: slow on a loaded machine)
      const end = Date.now() + 30_000;
      let reply = '';
      while (!reply && Date.now() < end) {
        reply = await echo({ port: srv.port, message: 'after', timeoutMs: 5_000 }).then(
          (r) => r.reply.toString(),
          () => '',
        );
      }
      expect(reply).toBe('after');
      srv.child.kill('SIGTERM');
      expect((await srv.exit).code).toBe(0);
      expect(srv.stderr()).not.toMatch(/\n\s+at /); // no stack trace
      expect(totalsLine(srv.stderr())!.refusedBy['fd-limit']).toBeGreaterThan(0);
    },
  );

  it('clients close, SIGTERM as their child exits: 10 runs, never a crash', async () => {
    // the race itself: a child exiting as shutdown begins. The signal goes either as the
    // client's echo is done (its FIN on the way to the child), or as the child logs the
    // connection closed (it is about to report to the parent and exit)
    const run = async (atChildClose: boolean) => {
      const srv = await spawnServer(['--mode', 'fork']);
      await echo({ port: srv.port, message: 'x' });
      if (atChildClose) await srv.waitStderr(/"msg":"closed /);
      srv.child.kill('SIGTERM');
      const { code } = await srv.exit;
      return { code, stderr: srv.stderr() };
    };
    for (let batch = 0; batch < 2; batch++) {
      const results = await Promise.all(Array.from({ length: 5 }, (_, i) => run((batch + i) % 2 === 1)));
      for (const r of results) {
        expect(r.stderr).not.toMatch(/\n\s+at |EPIPE|ERR_IPC/);
        expect(r.code).toBe(0);
      }
    }
  }, 60_000);

  it.each(['fork', 'workers'])(
    '--mode %s: SIGTERM to the process group drains like SIGTERM to the parent',
    async (mode) => {
      const srv = await spawnServer(['--mode', mode, ...(mode === 'workers' ? ['--workers', '2'] : [])], {
        detached: true,
      });
      let echoing = 0;
      const streams = Array.from({ length: 4 }, () =>
        streamUntilServerCloses(srv.port, {
          payloadBytes: 4 * 1024 * 1024,
          onEchoing: () => {
            if (++echoing === 4) process.kill(-srv.child.pid!, 'SIGTERM');
          },
        }),
      );
      const results = await Promise.all(streams);
      expect((await srv.exit).code).toBe(0);
      for (const r of results) {
        expect(r.exact).toBe(true);
        expect(r.length).toBeGreaterThan(0);
      }
      const got = results.reduce((s, r) => s + r.length, 0);
      expect(totalsLine(srv.stderr())).toMatchObject({ connections: 4, bytesIn: got, bytesOut: got });
      expect(srv.stderr()).not.toMatch(/ECONNRESET/);
    },
  );

  // each waits out its server's 1 s grace: the modes at once
  it.concurrent.each(MODES)(
    '--mode %s: --grace 1s is the grace, and the totals include what was served',
    async (_m, args) => {
      const srv = await spawnServer([...args, '--grace', '1s']);
      const c = await connect(srv.port);
      c.on('error', () => {});
      // the first echo shows the server has read; after it the client stops reading, so the
      // echo can never finish
      const firstEcho = once(c, 'data');
      for (let i = 0; i < 256; i++) c.write(Buffer.alloc(64 * 1024));
      await firstEcho;
      c.pause();
      const t0 = Date.now();
      srv.child.kill('SIGTERM');
      expect((await srv.exit).code).toBe(0);
      const took = Date.now() - t0;
      expect(took).toBeGreaterThanOrEqual(950);
      expect(took).toBeLessThan(1000 + 2500);
      const t = totalsLine(srv.stderr())!;
      expect(t.connections).toBe(1);
      expect(t.bytesIn).toBeGreaterThan(0);
    },
  );
});

describe('UDP through the same handle', () => {
  it('the exit totals count UDP drops by reason, access drops included', async () => {
    const srv = await spawnServer(['--udp', '--deny', '127.0.0.2']);
    const dgram = await import('node:dgram');
    const send = async (from: string) => {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, from, r));
      s.send('x', srv.port, '127.0.0.1');
      return s;
    };
    const denied = await send('127.0.0.2');
    const ok = await send('127.0.0.1');
    await once(ok, 'message'); // handled in order: the denied one was dropped before this echo
    denied.close();
    ok.close();
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    // a denied source is dropped before it counts as one served
    expect(totalsLine(srv.stderr())).toMatchObject({ connections: 1, refused: 1, refusedBy: { access: 1 } });
    expect(srv.stderr()).toMatch(/totals: 1 source, 1 dropped \(access 1\)/);
  });
});

describe('flags a mode cannot honour exit 2 naming both', () => {
  it.each([
    [['--udp', '--keepalive'], /--keepalive.*--udp/],
    [['--udp', '--max-connections', '3'], /--max-connections.*--udp/],
    [['--udp', '--idle-timeout', '1s'], /--idle-timeout.*--udp/],
    [['--udp', '--grace', '1s'], /--grace.*--udp/],
    [['--rate-limit', '5'], /--rate-limit.*needs --udp/],
    [
      ['--mode', 'workers', '--exclusive', '--reuse-port', '--max-connections', '3'],
      /--max-connections.*--exclusive/,
    ],
  ])('%j', async (args, re) => {
    const p = await refusal('echo-server', ['--port', '0', ...args]);
    expect(p.code).toBe(2);
    expect(p.stderr).toMatch(re);
  });
});
