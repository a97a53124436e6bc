// The workers' primary accepts without a net.Socket: each accepted TCP handle is admitted on
// the peer address read from the handle, its descriptor goes over the hand-over channel and
// the handle is closed; a net.Socket is built only for what needs one (a refusal, Node's IPC).
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { fdPassAvailable } from '../src/core/fdpass.js';
import { AcceptedHandle, acceptHandles, acceptPathWorks } from '../src/core/internals.js';
import { connect, jsonLines, readAll, spawnServer, until, watchEnd } from './helpers.js';

const linux = process.platform === 'linux';
const can = linux && fdPassAvailable() === undefined;
const HANDLES = /accepting without a net\.Socket: descriptors go to the workers as accepted/;
const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
const totalsLine = (stderr: string) => jsonLines(stderr).find((l) => String(l.msg).startsWith('totals:'));

async function listening(): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  server.on('connection', () => {
    throw new Error("net.Server's own accept ran");
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
const connections = (server: net.Server) =>
  new Promise<number>((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n))));

describe('acceptHandles (core/internals.ts)', () => {
  it('hands the accepted handle over with its peer and descriptor; the server counts it; socket() echoes', async () => {
    expect((await acceptPathWorks()).ok).toBe(true);
    const server = await listening();
    const got: AcceptedHandle[] = [];
    const accepted = new Promise<AcceptedHandle>((resolve) =>
      expect(acceptHandles(server, (h) => resolve(got[got.push(h) - 1]!))).toBe(true),
    );
    const client = await connect((server.address() as net.AddressInfo).port);
    const h = await accepted;
    expect(h).toBeInstanceOf(AcceptedHandle);
    expect(h.remoteAddress).toBe('127.0.0.1');
    expect(h.remotePort).toBe(client.localPort);
    expect(typeof h.fd).toBe('number');
    expect(await connections(server)).toBe(1);
    const s = h.socket();
    expect(h.socket()).toBe(s); // built once
    expect(h.fd).toBeUndefined(); // the socket holds the handle now
    expect(s.remotePort).toBe(client.localPort);
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
    const closed = once(s, 'close');
    s.resume();
    client.end('hello');
    expect(String(await readAll(client))).toBe('hello');
    await closed;
    expect(await connections(server)).toBe(0);
    await new Promise((resolve) => server.close(resolve));
    expect(got).toHaveLength(1);
  });

  it('release() closes the descriptor and the count: the client sees the close, server.close() completes', async () => {
    const server = await listening();
    const accepted = new Promise<AcceptedHandle>((resolve) => acceptHandles(server, resolve));
    const client = await connect((server.address() as net.AddressInfo).port);
    const h = await accepted;
    const closed = new Promise((resolve) => server.close(resolve));
    const end = watchEnd(client).end;
    h.release();
    expect(h.fd).toBeUndefined();
    expect((await end).length).toBe(0);
    await closed; // the count went back to 0
    h.release(); // twice: nothing more
    expect(h.socket().destroyed).toBe(true); // released: no net.Socket can own it any more
  });
});

describe.skipIf(!can)('--mode workers: the primary accepts without a net.Socket', () => {
  it('80 clients at once, three times: echoed exactly, counted, the primary keeps no descriptor', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '-v']);
    expect(srv.stderr()).toMatch(HANDLES);
    const before = openFds(srv.child.pid!);
    let bytes = 0;
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(
        Array.from({ length: 80 }, async (_, i) => {
          const s = await connect(srv.port);
          s.end(`r${round} ${i}\n`);
          return String(await readAll(s));
        }),
      );
      expect(got).toEqual(Array.from({ length: 80 }, (_, i) => `r${round} ${i}\n`));
      bytes += got.reduce((a, b) => a + b.length, 0);
    }
    await until(() => openFds(srv.child.pid!) <= before, 10_000, "the primary's descriptors back");
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(totalsLine(srv.stderr())).toMatchObject({
      connections: 240,
      refused: 0,
      bytesIn: bytes,
      bytesOut: bytes,
    });
  });

  it('--max-connections 1: the second client is refused with a FIN and logged; the first is echoed', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '--max-connections', '1', '-v']);
    expect(srv.stderr()).toMatch(HANDLES);
    const first = await connect(srv.port);
    first.write('a');
    await new Promise((resolve) => first.once('data', resolve)); // admitted and served
    const second = await connect(srv.port);
    expect((await watchEnd(second).end).length).toBe(0);
    await srv.waitStderr(/refused 127\.0\.0\.1: 1 connection open \(--max-connections 1\)/);
    first.end('b');
    expect(String(await readAll(first))).toBe('b');
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(totalsLine(srv.stderr())).toMatchObject({ connections: 1, refused: 1, refusedBy: { max: 1 } });
  });

  it.each([
    ['ECHO_LIGHT=0', { ECHO_LIGHT: '0' }],
    ['ECHO_HANDOVER=ipc', { ECHO_HANDOVER: 'ipc' }],
    ['ECHO_INTERNALS_BROKEN=light', { ECHO_INTERNALS_BROKEN: 'light' }],
  ])('%s: a net.Socket per connection as before, and the echo is exact', async (_name, env) => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '-v'], { env });
    expect(srv.stderr()).not.toMatch(HANDLES);
    const s = await connect(srv.port);
    s.end('plain\n');
    expect(String(await readAll(s))).toBe('plain\n');
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
  });
});
