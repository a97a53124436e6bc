// Node internals behind core/internals.ts: the replaced accept path is checked by behaviour
// before a server uses it, a broken one (ECHO_INTERNALS_BROKEN) sends servers down net.Server's
// own path with the same echo, and what net.Server does for each accepted socket (the
// net.server.socket diagnostics channel, getConnections(), close() waiting) holds on both paths.

import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import diagnostics from 'node:diagnostics_channel';
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import {
  acceptPathWorks,
  handleFd,
  holdReads,
  releaseReads,
  transportSocket,
} from '../src/core/internals.js';
import { receiveQueueBytes } from '../src/core/libc.js';
import { selfSignedTls } from '../src/core/tls.js';
import { acceptWithSharedRead, SHARED_READ } from '../src/server/user-buffer.js';
import { connect, echoServer, readAll, readN, SERVER_MODES, spawnServer, until } from './helpers.js';

const saved = { shared: process.env.ECHO_SHARED_READ, broken: process.env.ECHO_INTERNALS_BROKEN };
afterEach(() => {
  for (const [name, v] of [
    ['ECHO_SHARED_READ', saved.shared],
    ['ECHO_INTERNALS_BROKEN', saved.broken],
  ] as const) {
    if (v === undefined) delete process.env[name];
    else process.env[name] = v;
  }
});

/** Sockets published on net.server.socket while the test runs. */
function watchAccepts(): net.Socket[] {
  const seen: net.Socket[] = [];
  const onMessage = (msg: unknown) => seen.push((msg as { socket: net.Socket }).socket);
  diagnostics.subscribe('net.server.socket', onMessage);
  onTestFinished(() => {
    diagnostics.unsubscribe('net.server.socket', onMessage);
  });
  return seen;
}

/** Send `payload`, half-close, read the echo to the server's FIN, then wait for the close. */
async function echoHalfClose(port: number, payload: Buffer): Promise<{ back: Buffer; local: number }> {
  const c = await connect(port);
  const local = c.localPort!;
  const back = readAll(c);
  c.end(payload);
  const got = await back;
  if (!c.destroyed) await once(c, 'close');
  return { back: got, local };
}

const listening = async (server: net.Server) => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTestFinished(() => {
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
};

describe(`accept path check (Node ${process.versions.node})`, () => {
  it('passes on this Node, quickly', async () => {
    delete process.env.ECHO_INTERNALS_BROKEN;
    const check = await acceptPathWorks();
    expect(check).toMatchObject({ ok: true });
    expect(check.ms).toBeLessThan(1000);
  });

  it('ECHO_INTERNALS_BROKEN=onconnection really breaks the internal: used unchecked, a byte is lost', async () => {
    process.env.ECHO_INTERNALS_BROKEN = 'onconnection';
    const server = net.createServer({ allowHalfOpen: true });
    const port = await listening(server);
    const used = acceptWithSharedRead(
      server,
      { allowHalfOpen: true, pauseOnCreate: false },
      function (n, buf) {
        this.write(Buffer.from(buf.subarray(0, n)));
      },
      (s) => s.on('end', () => s.end()),
    );
    expect(used).toBe(true);
    const { back } = await echoHalfClose(port, Buffer.from('hello'));
    expect(back.toString()).toBe('hell');
  });

  it('the check sees the broken internal and says why', async () => {
    process.env.ECHO_INTERNALS_BROKEN = 'onconnection';
    expect(await acceptPathWorks()).toMatchObject({
      ok: false,
      why: expect.stringMatching(/bytes came back/),
    });
  });

  it('an accept path that never hands the connection on fails the check within its timeout', async () => {
    process.env.ECHO_INTERNALS_BROKEN = 'onconnection-silent';
    const check = await acceptPathWorks();
    expect(check).toMatchObject({ ok: false, why: expect.stringMatching(/no echo within/) });
    expect(check.ms).toBeLessThan(5000);
  });
});

describe('a broken accept internal: the server takes the public path, the echo is the same', () => {
  for (const broken of ['onconnection', 'onconnection-silent']) {
    it(`startEchoServer with ECHO_INTERNALS_BROKEN=${broken}: byte-exact, half-close, close`, async () => {
      process.env.ECHO_INTERNALS_BROKEN = broken;
      const accepted = watchAccepts();
      const debug: string[] = [];
      const logger = {
        debug: (_o: object, msg?: string) => debug.push(msg ?? ''),
        info() {},
        warn() {},
        error() {},
      };
      const srv = await echoServer({ logger } as Parameters<typeof echoServer>[0]);
      const payload = randomBytes(256 * 1024);
      const { back, local } = await echoHalfClose(srv.address.port, payload);
      expect(back.equals(payload)).toBe(true);
      const mine = accepted.find((s) => s.remotePort === local);
      expect(mine).toBeDefined();
      expect(SHARED_READ in mine!).toBe(false); // net.Server's own socket
      expect(debug.join('\n')).toMatch(/own path: the shared-read accept check failed/);
      expect(srv.stats()).toMatchObject({
        connections: 1,
        bytesIn: payload.length,
        bytesOut: payload.length,
      });
    });
  }

  // fork and workers serve sockets the primary accepted with net.Server's own path and handed
  // on: no process of theirs checks the accept path. Every mode must still echo.
  const accepting = ['evented', 'iterative', 'workers --exclusive'];
  const modes: [string, string[]][] = [
    ...SERVER_MODES,
    ['workers --exclusive', ['--mode', 'workers', '--workers', '2', '--exclusive', '--reuse-port']],
  ];
  for (const [mode, args] of modes) {
    it(`echo-server ${mode} with ECHO_INTERNALS_BROKEN=onconnection: echoes byte-exact (and logs why where it accepts)`, async () => {
      const srv = await spawnServer([...args, '--verbose'], {
        env: { ECHO_INTERNALS_BROKEN: 'onconnection' },
      });
      const payload = randomBytes(64 * 1024);
      for (let i = 0; i < 3; i++) {
        const { back } = await echoHalfClose(srv.port, payload);
        expect(back.equals(payload)).toBe(true);
      }
      if (accepting.includes(mode))
        await srv.waitStderr(/shared-read accept check failed \(\d+ of \d+ bytes came back as sent\)/);
      expect(srv.stderr()).not.toMatch(/check passed/);
      srv.child.kill('SIGTERM');
      expect((await srv.exit).code).toBe(0);
    });
  }

  it('echo-server without the hook: the check passes (logged at debug with its cost)', async () => {
    const srv = await spawnServer(['--verbose'], { env: { ECHO_INTERNALS_BROKEN: '' } });
    const m = await srv.waitStderr(/"ms":([\d.]+)[^\n]*accepting into the shared read buffer: check passed/);
    expect(Number(m[1])).toBeLessThan(1000);
    const payload = randomBytes(64 * 1024);
    const { back } = await echoHalfClose(srv.port, payload);
    expect(back.equals(payload)).toBe(true);
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
  });
});

describe('what net.Server does for each accepted socket holds on the shared-read path', () => {
  for (const path of ['shared buffer', 'stream (ECHO_SHARED_READ=0)']) {
    it(`${path}: net.server.socket fires once for each accepted socket`, async () => {
      delete process.env.ECHO_INTERNALS_BROKEN;
      const shared = path.startsWith('shared');
      process.env.ECHO_SHARED_READ = shared ? '1' : '0';
      const accepted = watchAccepts();
      const srv = await echoServer();
      const locals: number[] = [];
      for (let i = 0; i < 3; i++) {
        const { back, local } = await echoHalfClose(srv.address.port, Buffer.from(`ping ${i}`));
        expect(back.toString()).toBe(`ping ${i}`);
        locals.push(local);
      }
      const mine = accepted.filter((s) => locals.includes(s.remotePort!));
      expect(mine.map((s) => s.remotePort).sort()).toEqual([...locals].sort());
      for (const s of mine) expect(SHARED_READ in s).toBe(shared);
    });
  }

  it("an accept error and a server's maxConnections go to net.Server's own onconnection", async () => {
    const server = net.createServer({ allowHalfOpen: true });
    const port = await listening(server);
    const shared: net.Socket[] = [];
    const own: net.Socket[] = [];
    server.on('connection', (s) => own.push(s));
    acceptWithSharedRead(
      server,
      { allowHalfOpen: true, pauseOnCreate: false },
      () => {},
      (s) => shared.push(s),
    );
    // libuv reports a failed accept as a negative status (here EMFILE)
    const errored = once(server, 'error');
    (server as unknown as { _handle: { onconnection(status: number): void } })._handle.onconnection(-24);
    const [err] = (await errored) as [NodeJS.ErrnoException];
    expect(err).toMatchObject({ code: 'EMFILE', syscall: 'accept' });
    server.maxConnections = 1;
    const dropped = once(server, 'drop');
    const a = await connect(port);
    await until(() => own.length === 1);
    const b = await connect(port);
    await dropped;
    expect((await readAll(b)).length).toBe(0); // closed unserved: FIN, nothing echoed
    expect(shared).toHaveLength(0);
    expect(a.destroyed).toBe(false);
  });

  it("getConnections() counts shared-read sockets, and close()'s callback waits for them", async () => {
    const server = net.createServer({ allowHalfOpen: true });
    const port = await listening(server);
    const sockets: net.Socket[] = [];
    acceptWithSharedRead(
      server,
      { allowHalfOpen: true, pauseOnCreate: false },
      function (n, buf) {
        this.write(Buffer.from(buf.subarray(0, n)));
      },
      (s) => sockets.push(s),
    );
    const count = () => new Promise<number>((r, j) => server.getConnections((e, n) => (e ? j(e) : r(n))));
    const a = await connect(port);
    const b = await connect(port);
    a.write('x');
    b.write('y');
    await Promise.all([once(a, 'data'), once(b, 'data')]);
    expect(await count()).toBe(2);
    let closed = false;
    server.close(() => {
      closed = true;
    });
    sockets[0]!.destroy();
    await once(sockets[0]!, 'close');
    expect(await count()).toBe(1);
    expect(closed).toBe(false);
    sockets[1]!.destroy();
    await once(server, 'close');
    expect(closed).toBe(true);
  });
});

describe('the other internals, through core/internals.ts', () => {
  it('handleFd: the fd of a listening server, a connected socket and a bound dgram socket, without DEP0112', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    onTestFinished(() => {
      process.off('warning', onWarning);
    });
    const server = net.createServer();
    const port = await listening(server);
    const c = await connect(port);
    const u = dgram.createSocket('udp4');
    await new Promise<void>((r) => u.bind(0, '127.0.0.1', r));
    onTestFinished(() => {
      u.close();
    });
    const fds = [handleFd(server), handleFd(c), handleFd(u)];
    for (const fd of fds) expect(fd).toBeGreaterThanOrEqual(0);
    expect(new Set(fds).size).toBe(3);
    expect(handleFd({})).toBeUndefined();
    c.destroy();
    expect(handleFd(c)).toBeUndefined();
    await new Promise((r) => setImmediate(r)); // process warnings are emitted on a later tick
    expect(warnings.map((w) => w.message)).toEqual([]);
  });

  it('transportSocket: the TCP socket under a TLS one, a plain socket itself', async () => {
    // as the server's TLS sockets are made: over an accepted net.Socket
    const creds = await selfSignedTls('127.0.0.1');
    const server = net.createServer();
    const port = await listening(server);
    const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    onTestFinished(() => {
      c.destroy();
    });
    const [tcp] = (await once(server, 'connection')) as [net.Socket];
    const secure = new tls.TLSSocket(tcp, { isServer: true, key: creds.key, cert: creds.cert });
    onTestFinished(() => {
      secure.destroy();
    });
    await once(c, 'secureConnect');
    const under = transportSocket(secure);
    expect(under).toBe(tcp);
    expect(under).toBeInstanceOf(net.Socket);
    expect(handleFd(under)).toBeGreaterThanOrEqual(0);
    const plain = new net.Socket();
    expect(transportSocket(plain)).toBe(plain);
  });

  it('holdReads: bytes stay in the kernel until releaseReads, then arrive in order', async () => {
    let accepted!: net.Socket;
    const server = net.createServer((s) => {
      accepted = s;
      holdReads(s);
    });
    const port = await listening(server);
    const c = await connect(port);
    await until(() => accepted !== undefined);
    c.write('a'.repeat(1000));
    await until(() => receiveQueueBytes(accepted) === 1000, 10_000, 'the bytes in the receive queue');
    expect(accepted.bytesRead).toBe(0);
    accepted.resume(); // net asks to read: held, nothing is read
    await new Promise((r) => setImmediate(r));
    expect(accepted.bytesRead).toBe(0);
    releaseReads(accepted);
    expect((await readN(accepted, 1000)).toString()).toBe('a'.repeat(1000));
  });
});
