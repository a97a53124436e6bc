// A worker turns each descriptor received over the hand-over channel into a light connection
// (a TCP handle opened on the descriptor, driven without a net.Socket) where its connections
// qualify for one, as evented mode's do; else a net.Socket as before. The channel's
// self-test runs on the same path, so a broken one sends that worker's hand-overs over
// Node's IPC.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { fdPassAvailable } from '../src/core/fdpass.js';
import { acceptOne, boundPort, closeFd } from '../src/core/libc.js';
import { rawListenFd } from '../src/core/listen.js';
import { lightOnFd, lightUsable } from '../src/server/user-buffer.js';
import { connect, jsonLines, readAll, readN, spawnServer, until } from './helpers.js';

const linux = process.platform === 'linux';
const can = linux && fdPassAvailable() === undefined;
const LIGHT = /received descriptors are served as light connections/;
const FALLBACK =
  /hand-over over Node's IPC, one socket per message: the descriptor channel failed its self-test/;
const totalsLine = (stderr: string) => jsonLines(stderr).find((l) => String(l.msg).startsWith('totals:'));

/** A connected TCP descriptor that no handle of this process owns, and its client. */
async function rawConnection(): Promise<{ fd: number; client: net.Socket }> {
  const lfd = rawListenFd({
    host: '127.0.0.1',
    port: 0,
    backlog: 4,
    reuseAddr: true,
    reusePort: false,
    nonBlocking: true,
  });
  try {
    const client = await connect(boundPort(lfd));
    let fd: number | undefined;
    await until(
      () => {
        fd = acceptOne(lfd);
        return fd !== undefined;
      },
      5000,
      'the connection accepted',
    );
    return { fd: fd!, client };
  } finally {
    closeFd(lfd);
  }
}

async function sendAndEcho(port: number, payload: Buffer): Promise<Buffer> {
  const s = await connect(port);
  s.end(payload);
  return readAll(s);
}

describe.skipIf(!can)('lightOnFd (server/user-buffer.ts)', () => {
  it('a received descriptor becomes a light connection: 1 MiB echoed byte-exact, its peer named, FIN after FIN', async () => {
    expect(await lightUsable()).toBe(true);
    const { fd, client } = await rawConnection();
    const own = Buffer.allocUnsafe(64 * 1024);
    const light = lightOnFd(fd, {
      buffer: () => own,
      callback(n, buf) {
        if (!this.write(Buffer.from(buf.subarray(0, n)))) {
          this.pause();
          this.once('drain', () => this.resume());
        }
      },
    });
    expect(light).toBeDefined();
    expect(light).not.toBeInstanceOf(net.Socket);
    expect(light!.remotePort).toBe(client.localPort);
    light!.on('end', () => light!.end());
    const closed = once(light!, 'close');
    const sent = randomBytes(1024 * 1024);
    client.end(sent);
    expect((await readAll(client)).equals(sent)).toBe(true);
    await closed;
    expect(light!.bytesRead).toBe(sent.length);
  });
});

describe.skipIf(!can)('--mode workers: workers serve received descriptors as light connections', () => {
  it('80 clients at once, three times, and four 1 MiB streams: echoed exactly, every byte counted', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '-v']);
    await srv.waitStderr(LIGHT);
    expect(srv.stderr()).not.toMatch(FALLBACK);
    let bytes = 0;
    for (let round = 0; round < 3; round++) {
      const lines = Array.from({ length: 80 }, (_, i) => Buffer.from(`r${round} ${i}\n`));
      const got = await Promise.all(lines.map((l) => sendAndEcho(srv.port, l)));
      expect(got.map(String)).toEqual(lines.map(String));
      bytes += lines.reduce((a, b) => a + b.length, 0);
    }
    const big = Array.from({ length: 4 }, () => randomBytes(1024 * 1024));
    const back = await Promise.all(big.map((b) => sendAndEcho(srv.port, b)));
    expect(back.map((b, i) => b.equals(big[i]!))).toEqual([true, true, true, true]);
    bytes += 4 * 1024 * 1024;
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(totalsLine(srv.stderr())).toMatchObject({
      connections: 244,
      refused: 0,
      bytesIn: bytes,
      bytesOut: bytes,
    });
  });

  it('ECHO_INTERNALS_BROKEN=light-fd (light connections on a received descriptor lose bytes): the self-test fails, Node IPC serves, the echo is exact', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '-v'], {
      env: { ECHO_INTERNALS_BROKEN: 'light-fd' },
    });
    expect(srv.stderr()).toMatch(FALLBACK);
    const lines = Array.from({ length: 20 }, (_, i) => Buffer.from(`line ${i} of the fallback\n`));
    const got = await Promise.all(lines.map((l) => sendAndEcho(srv.port, l)));
    expect(got.map(String)).toEqual(lines.map(String));
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
  });

  it.each([
    ['ECHO_LIGHT=0', { ECHO_LIGHT: '0' }],
    ['ECHO_INTERNALS_BROKEN=light', { ECHO_INTERNALS_BROKEN: 'light' }],
  ])('%s: net.Sockets in the workers, over the channel, and the echo is exact', async (_n, env) => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '-v'], { env });
    expect(srv.stderr()).not.toMatch(FALLBACK);
    const got = await sendAndEcho(srv.port, Buffer.from('plain\n'));
    expect(String(got)).toBe('plain\n');
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(srv.stderr()).not.toMatch(LIGHT);
  });

  it('a toxic added while a light connection is open: it goes on through a net.Socket, its bytes reported and counted', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '-v', '--metrics', '127.0.0.1:0']);
    await srv.waitStderr(LIGHT);
    const m = await srv.waitStderr(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
    const s = await connect(srv.port);
    s.write('before\n');
    expect(String(await readN(s, 7))).toBe('before\n');
    const r = await fetch(`http://127.0.0.1:${m[1]}/proxies/echo-server/toxics`, {
      method: 'POST',
      body: JSON.stringify({ name: 'slow', type: 'latency', attributes: { latency: 300 } }),
    });
    expect(r.status).toBe(200);
    const t0 = performance.now();
    s.end('after the toxic\n');
    expect(String(await readAll(s))).toBe('after the toxic\n');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290); // the toxic acts on it
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(totalsLine(srv.stderr())).toMatchObject({ connections: 1, bytesIn: 23, bytesOut: 23 });
  });
});
