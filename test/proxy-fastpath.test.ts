// The proxy's read path: both legs read into reused buffers (the process's shared one, or a
// buffer of their own while reads are large, written on without a copy). A buffer is read into
// again only once nothing holds its bytes: a write still pending, a fault's queue. These move
// megabytes at once through several connections, with faults that hold chunks and faults
// added and removed mid-stream, and check every byte from the client side; the same with the
// shared read buffer off (ECHO_SHARED_READ=0: 'data' events).

import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Proxies } from '../src/proxy/registry.js';
import { connect, plainServer, readAll } from './helpers.js';

async function setup() {
  // an upstream that is not ours: it echoes, and its FIN follows the client's
  const { server, port: upPort } = await plainServer((sock) => {
    sock.on('error', () => {});
    sock.pipe(sock);
  });
  onTestFinished(() => void server.close());
  const reg = new Proxies({});
  onTestFinished(() => reg.close());
  const p = await reg.create({ name: 'p', listen: '127.0.0.1:0', upstream: `127.0.0.1:${upPort}` });
  return { p, port: Number(p.state().listen.split(':').pop()) };
}

const latency = (stream: 'upstream' | 'downstream', ms: number) => ({
  name: `lat-${stream}`,
  type: 'latency',
  stream,
  toxicity: 1,
  attributes: { latency: ms },
});

/** Send `data` in 64 KiB writes, then FIN; what comes back, all of it. */
function exchange(s: Socket, data: Buffer): Promise<Buffer> {
  const back = readAll(s);
  for (let off = 0; off < data.length; off += 65536) s.write(data.subarray(off, off + 65536));
  s.end();
  return back;
}

for (const shared of [true, false])
  describe(`forwarding megabytes (${shared ? 'reused read buffers' : "'data' events, ECHO_SHARED_READ=0"})`, () => {
    const env = () => {
      const before = process.env.ECHO_SHARED_READ;
      if (!shared) process.env.ECHO_SHARED_READ = '0';
      onTestFinished(() => {
        if (before === undefined) delete process.env.ECHO_SHARED_READ;
        else process.env.ECHO_SHARED_READ = before;
      });
    };

    it('4 connections × 2 MB both ways, byte-exact, while latency holds chunks in both directions', async () => {
      env();
      const { p, port } = await setup();
      p.addToxic(latency('upstream', 5));
      p.addToxic(latency('downstream', 5));
      const datas = [0, 1, 2, 3].map(() => randomBytes(2 * 1024 * 1024));
      const socks = await Promise.all(datas.map(() => connect(port)));
      const backs = await Promise.all(socks.map((s, i) => exchange(s, datas[i]!)));
      for (let i = 0; i < datas.length; i++) {
        expect(backs[i]!.length).toBe(datas[i]!.length);
        expect(backs[i]!.equals(datas[i]!)).toBe(true);
      }
    }, 90_000);

    it('faults added and removed mid-stream: the open connection leaves the plain path and comes back, byte-exact', async () => {
      env();
      const { p, port } = await setup();
      const data = randomBytes(8 * 1024 * 1024);
      const s = await connect(port);
      const steps: string[] = [];
      let got = 0;
      s.on('data', (d: Buffer) => {
        got += d.length;
        if (got >= 1024 * 1024 && steps.length === 0) {
          steps.push('added');
          p.addToxic(latency('upstream', 3));
          p.addToxic(latency('downstream', 3));
        } else if (got >= 4 * 1024 * 1024 && steps.length === 1) {
          steps.push('removed');
          p.removeToxic('lat-upstream');
          p.removeToxic('lat-downstream');
        }
      });
      const back = await exchange(s, data);
      expect(steps).toEqual(['added', 'removed']);
      expect(back.length).toBe(data.length);
      expect(back.equals(data)).toBe(true);
    }, 90_000);
  });
