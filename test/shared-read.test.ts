// Accepted sockets that read into the process's shared buffer (server/user-buffer.ts) and the
// stream path it replaces (ECHO_SHARED_READ=0, and any Node whose listening handle lacks
// onconnection) must echo the same bytes, keep backpressure, and never mix connections' data.

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { acceptWithSharedRead, SHARED_READ } from '../src/server/user-buffer.js';
import { connect, echoServer, readAll, readN, until } from './helpers.js';

const saved = process.env.ECHO_SHARED_READ;
afterEach(() => {
  if (saved === undefined) delete process.env.ECHO_SHARED_READ;
  else process.env.ECHO_SHARED_READ = saved;
});

describe(`shared read buffer (Node ${process.versions.node})`, () => {
  it("this Node's listening handle has onconnection: accepted sockets are built with it", async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const got: net.Socket[] = [];
    const used = acceptWithSharedRead(
      server,
      { allowHalfOpen: true, pauseOnCreate: false },
      function (n, buf) {
        this.write(Buffer.from(buf.subarray(0, n)));
      },
      (s) => {
        got.push(s);
        s.on('end', () => s.end());
      },
    );
    expect(used).toBe(true);
    const c = await connect((server.address() as net.AddressInfo).port);
    const back = readAll(c);
    c.end('hello');
    expect((await back).toString()).toBe('hello');
    expect(got).toHaveLength(1);
    expect(SHARED_READ in got[0]!).toBe(true);
    server.close();
  });

  it('without onconnection on the handle nothing is replaced (the stream path stays)', () => {
    const fake = { _handle: {} } as unknown as net.Server;
    expect(
      acceptWithSharedRead(
        fake,
        { allowHalfOpen: true, pauseOnCreate: false },
        () => {},
        () => {},
      ),
    ).toBe(false);
  });

  for (const path of ['shared buffer', 'stream (ECHO_SHARED_READ=0)']) {
    it(`${path}: 8 connections at once, 2 MiB each in uneven writes, every byte back on its own connection`, async () => {
      process.env.ECHO_SHARED_READ = path.startsWith('shared') ? '1' : '0';
      const srv = await echoServer();
      const payloads = Array.from({ length: 8 }, () => randomBytes(2 * 1024 * 1024));
      const results = await Promise.all(
        payloads.map(async (p) => {
          const s = await connect(srv.address.port);
          const back = readAll(s);
          for (let off = 0; off < p.length; ) {
            const n = 1 + Math.floor(Math.random() * 100_000);
            s.write(p.subarray(off, off + n));
            off += n;
          }
          s.end();
          return back;
        }),
      );
      for (const [i, r] of results.entries()) expect(r.equals(payloads[i]!)).toBe(true);
      await until(() => srv.stats().active === 0);
      expect(srv.stats()).toMatchObject({
        connections: 8,
        bytesIn: 16 * 1024 * 1024,
        bytesOut: 16 * 1024 * 1024,
      });
    });

    it(`${path}: a 16 MiB stream to a client that reads in fits and starts comes back exact`, async () => {
      // large reads give the socket a buffer of its own, and a slow reader leaves writes
      // pending: each pending write must keep its bytes while the next read goes elsewhere
      process.env.ECHO_SHARED_READ = path.startsWith('shared') ? '1' : '0';
      const srv = await echoServer();
      const s = await connect(srv.address.port);
      const payload = randomBytes(16 * 1024 * 1024);
      const chunks: Buffer[] = [];
      let got = 0;
      const done = new Promise<void>((resolve) => {
        s.on('data', (c: Buffer) => {
          chunks.push(c);
          got += c.length;
          if (got >= payload.length) resolve();
          else if (chunks.length % 7 === 0) {
            s.pause();
            setTimeout(() => s.resume(), 2);
          }
        });
      });
      s.write(payload);
      await done;
      expect(Buffer.concat(chunks).equals(payload)).toBe(true);
      s.end();
      await once(s, 'close');
    });

    it(`${path}: a client that does not read stops the server reading, then gets it all`, async () => {
      process.env.ECHO_SHARED_READ = path.startsWith('shared') ? '1' : '0';
      const srv = await echoServer();
      const s = await connect(srv.address.port);
      s.pause();
      const payload = randomBytes(32 * 1024 * 1024);
      s.write(payload);
      await until(() => srv.connections()[0]?.reading === false);
      expect(srv.connections()[0]!.buffered).toBeLessThanOrEqual(1024 * 1024);
      s.resume();
      expect((await readN(s, payload.length)).equals(payload)).toBe(true);
      s.end();
      await once(s, 'close');
    });
  }
});
