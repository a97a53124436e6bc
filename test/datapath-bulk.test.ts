// Large reads for bulk streams (server/user-buffer.ts): a socket whose reads fill its buffer
// reads up to 256 KiB at once, as the C epoll server does. The echo stays byte-exact, a peer
// that does not read still stops the server reading with a bounded amount held, and small
// connections keep reading into the shared buffer.

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { lightPathWorks } from '../src/core/internals.js';
import { acceptWithSharedRead, readChunk, SHARED_READ } from '../src/server/user-buffer.js';
import { connect, echoServer, readN, until } from './helpers.js';

const saved = { light: process.env.ECHO_LIGHT, shared: process.env.ECHO_SHARED_READ };
afterEach(() => {
  for (const [k, v] of [
    ['ECHO_LIGHT', saved.light],
    ['ECHO_SHARED_READ', saved.shared],
  ] as const)
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
});

/** An echo through acceptWithSharedRead and readChunk that records each read's size. */
async function recordingEcho(light: boolean) {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sockets: net.Socket[] = [];
  onTestFinished(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const reads: number[] = [];
  const used = acceptWithSharedRead(
    server,
    { allowHalfOpen: true, pauseOnCreate: false, light },
    function (n, buf) {
      reads.push(n);
      if (!this.write(readChunk(this, n, buf))) {
        this.pause();
        this.once('drain', () => this.resume());
      }
    },
    (s) => {
      sockets.push(s);
      s.on('end', () => s.end());
    },
  );
  expect(used).toBe(true);
  return { port: (server.address() as net.AddressInfo).port, reads, sockets };
}

describe('large reads for bulk streams', () => {
  for (const light of [true, false]) {
    const path = light ? 'light connection' : 'net.Socket with the shared buffer';
    it(`${path}: a 16 MiB stream comes back exact, read more than 64 KiB at a time, never past 256 KiB`, async () => {
      if (light) expect((await lightPathWorks()).ok).toBe(true);
      const srv = await recordingEcho(light);
      const s = await connect(srv.port);
      const payload = randomBytes(16 * 1024 * 1024);
      const back = readN(s, payload.length);
      s.write(payload);
      expect((await back).equals(payload)).toBe(true);
      expect(Math.max(...srv.reads)).toBeGreaterThan(64 * 1024);
      expect(Math.max(...srv.reads)).toBeLessThanOrEqual(256 * 1024);
      // small reads again: back to the shared buffer (no buffer of its own held)
      const small = readN(s, 100);
      s.write(Buffer.alloc(100, 7));
      expect((await small).equals(Buffer.alloc(100, 7))).toBe(true);
      const st = (srv.sockets[0] as net.Socket & { [SHARED_READ]?: { own?: Buffer } })[SHARED_READ];
      expect(st?.own).toBeUndefined();
      s.end();
      await once(s, 'close');
    });
  }

  const paths: [string, Record<string, string>][] = [
    ['light connections', {}],
    ['net.Socket with the shared buffer (ECHO_LIGHT=0)', { ECHO_LIGHT: '0' }],
    ['stream path (ECHO_SHARED_READ=0)', { ECHO_SHARED_READ: '0' }],
  ];
  for (const [name, env] of paths) {
    it(`${name}: a peer that does not read stops the server reading with little held, then gets every byte`, async () => {
      Object.assign(process.env, env);
      const srv = await echoServer();
      const s = await connect(srv.address.port);
      s.pause();
      const payload = randomBytes(32 * 1024 * 1024);
      s.write(payload);
      await until(() => srv.connections()[0]?.reading === false);
      // at most one large read waits in this process beyond what the kernel holds
      expect(srv.connections()[0]!.buffered).toBeLessThanOrEqual(512 * 1024);
      s.resume();
      expect((await readN(s, payload.length)).equals(payload)).toBe(true);
      s.end();
      await once(s, 'close');
    });
  }
});
