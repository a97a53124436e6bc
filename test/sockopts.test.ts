import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { connectTcp } from '../src/core/connect.js';
import { boundPort, closeFd } from '../src/core/libc.js';
import { listenTcp, rawListenFd } from '../src/core/listen.js';
import { applySocketOptions, readSocketOptions } from '../src/core/sockopts.js';
import { tcpStates } from '../src/core/tcp-states.js';
import type { EchoServer } from '../src/index.js';
import { connect, echoServer, jsonLines, readAll, spawnCli, spawnServer } from './helpers.js';

const linux = process.platform === 'linux';

/** The server side of the next accepted connection. */
function nextAccepted(server: net.Server): Promise<net.Socket> {
  return new Promise((resolve) => server.once('connection', resolve));
}

async function plainServer(handler?: (s: net.Socket) => void): Promise<net.Server> {
  const srv = net.createServer({ allowHalfOpen: true }, handler);
  await listenTcp(srv, { host: '127.0.0.1', port: 0 });
  onTestFinished(() => {
    srv.close();
  });
  return srv;
}

describe.runIf(linux)('socket options, read back from the kernel', () => {
  const opts = {
    keepAlive: true,
    keepAliveIdleMs: 7000,
    keepAliveIntervalMs: 3000,
    keepAliveCount: 4,
    userTimeoutMs: 4500,
    noDelay: true,
    sendBuffer: 65536,
    recvBuffer: 32768,
  };

  it('client socket: keepalive idle/interval/count, user timeout, buffers doubled, no-delay', async () => {
    const srv = await plainServer((s) => s.resume());
    const { socket, options } = await connectTcp({
      host: '127.0.0.1',
      port: (srv.address() as net.AddressInfo).port,
      socketOptions: opts,
    });
    onTestFinished(() => {
      socket.destroy();
    });
    const k = readSocketOptions(socket);
    expect(k).toMatchObject({
      SO_TYPE: 'SOCK_STREAM',
      SO_KEEPALIVE: true,
      TCP_KEEPIDLE: 7,
      TCP_KEEPINTVL: 3,
      TCP_KEEPCNT: 4,
      TCP_USER_TIMEOUT: 4500,
      TCP_NODELAY: true,
      SO_SNDBUF: 131072,
      SO_RCVBUF: 65536,
    });
    const snd = options.find((r) => r.option === 'SO_SNDBUF')!;
    expect(snd).toMatchObject({ requested: 65536, actual: 131072, note: 'Linux doubles it for bookkeeping' });
  });

  it('server side: accepted sockets get the options (echo-server applies them per connection)', async () => {
    // the handler reads the first accepted socket's options back from the kernel (getsockopt on
    // that very socket) and logs them: capture those lines
    const lines: { option: string; actual: unknown }[] = [];
    const capture = {
      debug() {},
      warn() {},
      error() {},
      info(o: object, msg?: string) {
        if (msg?.startsWith('accepted socket: ')) lines.push(o as { option: string; actual: unknown });
      },
    };
    const srv: EchoServer = await echoServer({ socket: opts, logger: capture, logOptions: true });
    const e = await connect(srv.address.port);
    const back = readAll(e);
    e.end('x');
    expect((await back).toString()).toBe('x'); // and it still echoes with them set
    const got = Object.fromEntries(lines.map((l) => [l.option, l.actual]));
    expect(got).toMatchObject({
      SO_KEEPALIVE: true,
      TCP_KEEPIDLE: 7,
      TCP_KEEPINTVL: 3,
      TCP_KEEPCNT: 4,
      TCP_USER_TIMEOUT: 4500,
      TCP_NODELAY: true,
      SO_SNDBUF: 131072,
    });
  });

  it('echo-server --verbose reports each option requested vs. what the kernel says', async () => {
    const srv = await spawnServer([
      '--verbose',
      '--send-buffer',
      '16k',
      '--keepalive',
      '5s',
      '--keepalive-count',
      '3',
    ]);
    const c = await connect(srv.port);
    c.end('hi');
    await readAll(c);
    await srv.waitStderr(
      /accepted socket: SO_SNDBUF requested 16384, kernel reports 32768 \(Linux doubles it/,
    );
    await srv.waitStderr(/accepted socket: TCP_KEEPCNT requested 3, kernel reports 3/);
    await srv.waitStderr(/listening socket: SO_REUSEADDR requested true, kernel reports true/);
  });

  it('linger 0: close sends RST, the peer sees ECONNRESET', async () => {
    const srv = await plainServer();
    const accepted = nextAccepted(srv);
    const c = await connect((srv.address() as net.AddressInfo).port);
    const s = await accepted;
    applySocketOptions(s, { lingerMs: 0 });
    expect(readSocketOptions(s).SO_LINGER).toBe('on, 0s');
    const err = once(c, 'error');
    c.resume();
    s.destroy();
    const [e] = await err;
    expect((e as NodeJS.ErrnoException).code).toBe('ECONNRESET');
  });

  it('backlog N: the kernel completes N+1 connections, then drops SYNs', async () => {
    const fd = rawListenFd({ host: '127.0.0.1', port: 0, backlog: 3, reuseAddr: true, reusePort: false });
    onTestFinished(() => closeFd(fd));
    const port = boundPort(fd);
    const socks: net.Socket[] = [];
    onTestFinished(() => {
      for (const s of socks) s.destroy();
    });
    const attempt = () =>
      new Promise<boolean>((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1' });
        socks.push(s);
        const t = setTimeout(() => resolve(false), 500);
        s.once('connect', () => {
          clearTimeout(t);
          resolve(true);
        });
      });
    const results: boolean[] = [];
    for (let i = 0; i < 5; i++) results.push(await attempt());
    expect(results).toEqual([true, true, true, true, false]);
    // the accept queue holds 4 completed connections, as ss/proc report for the listener
    const listener = tcpStates([port]).entries.find((e) => e.state === 'LISTEN' && e.localPort === port);
    expect(listener?.rxQueue).toBe(4);
  });

  it('listenTcp passes --backlog to the kernel (also on the libc path, where it must be positional)', async () => {
    for (const reuseAddr of [true, false]) {
      const srv = net.createServer();
      const addr = await listenTcp(srv, { host: '127.0.0.1', port: 0, backlog: 7, reuseAddr });
      onTestFinished(() => {
        srv.close();
      });
      const out = execFileSync('ss', ['-ltnH', `sport = :${addr.port}`], { encoding: 'utf8' });
      // for a listener, ss prints the backlog as Send-Q
      expect(out.trim().split(/\s+/)[2]).toBe('7');
      expect(readSocketOptions(srv).SO_REUSEADDR).toBe(reuseAddr);
    }
  });
});

/** A port whose server closed a connection first and then stopped: its side sits in TIME_WAIT. */
async function portInTimeWait(): Promise<number> {
  const first = net.createServer({ allowHalfOpen: true }, (s) => s.end());
  const { port } = await listenTcp(first, { host: '127.0.0.1', port: 0 });
  const c = await connect(port);
  c.resume();
  await once(c, 'end');
  c.end();
  await once(c, 'close');
  await new Promise((r) => first.close(r));
  return port;
}

describe.runIf(linux)('SO_REUSEADDR and TIME_WAIT', () => {
  it('restart after an active close: --no-reuse-addr fails with EADDRINUSE, the default succeeds', async () => {
    const port = await portInTimeWait();
    const states = tcpStates([port]).entries.filter((e) => e.localPort === port);
    expect(states.map((e) => e.state)).toContain('TIME_WAIT');

    const strict = net.createServer();
    await expect(listenTcp(strict, { host: '127.0.0.1', port, reuseAddr: false })).rejects.toMatchObject({
      code: 'EADDRINUSE',
      syscall: 'bind',
    });
    const again = net.createServer();
    const addr = await listenTcp(again, { host: '127.0.0.1', port });
    expect(addr.port).toBe(port);
    await new Promise((r) => again.close(r));
  });

  it('echo-server --no-reuse-addr on a port in TIME_WAIT exits 1 with the explained EADDRINUSE', async () => {
    const port = await portInTimeWait();
    const p = spawnCli('echo-server', ['--port', String(port), '--no-reuse-addr']);
    expect((await p.exit).code).toBe(1);
    expect(p.stderr()).toMatch(
      new RegExp(
        `^echo-server: bind EADDRINUSE 127\\.0\\.0\\.1:${port} — another socket holds that address and port`,
      ),
    );
  });
});

describe.runIf(linux)('SO_REUSEPORT', () => {
  it(`two echo-server processes share one port and both receive connections (Node ${process.versions.node})`, async () => {
    const a = await spawnServer(['--reuse-port']);
    const b = await spawnServer(['--reuse-port', '--port', String(a.port)].slice(0));
    expect(b.port).toBe(a.port);
    for (let i = 0; i < 40; i++) {
      const s = await connect(a.port);
      const back = readAll(s);
      s.end(`m${i}`);
      expect((await back).toString()).toBe(`m${i}`);
    }
    for (const p of [a, b]) p.child.kill('SIGTERM');
    await Promise.all([a.exit, b.exit]);
    const served = [a, b].map(
      (p) => jsonLines(p.stderr()).filter((l) => l.msg?.startsWith('closed ')).length,
    );
    expect(served[0]! + served[1]!).toBe(40);
    expect(served[0]).toBeGreaterThan(0);
    expect(served[1]).toBeGreaterThan(0);
  });

  it('without --reuse-port the second server fails with EADDRINUSE', async () => {
    const a = await spawnServer();
    const b = spawnCli('echo-server', ['--port', String(a.port)]);
    expect((await b.exit).code).toBe(1);
    expect(b.stderr()).toMatch(/EADDRINUSE/);
  });
});
