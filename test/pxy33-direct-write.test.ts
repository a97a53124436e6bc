// Writes through a net.Socket's handle (core/internals.ts writeDirect), as echo-proxy's forwarding
// path makes them while no toxic is set: the behavioural check, the cases that fall back to
// write(), ordering with write()/end() and errors; then through a proxy, a client that reads
// slowly (writes wait in libuv, holding the chunks read) and a toxic added and removed while
// they wait, every byte checked.

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import { describe, expect, it, onTestFinished } from 'vitest';
import { directWrites, directWriteUsable, writeDirect } from '../src/core/internals.js';
import { Proxies } from '../src/proxy/registry.js';
import { connect, plainServer, readAll } from './helpers.js';

/**
 * Whether this Node has what the direct path uses (stream_wrap's WriteWrap through
 * process.binding, net.Socket's _unrefTimer): where it has not, the check must say no and the
 * proxy writes through write().
 */
const shaped = (() => {
  try {
    const b = (process as unknown as { binding(m: string): Record<string, unknown> }).binding('stream_wrap');
    return (
      typeof b.WriteWrap === 'function' &&
      typeof (net.Socket.prototype as unknown as { _unrefTimer?: unknown })._unrefTimer === 'function'
    );
  } catch {
    return false;
  }
})();

/** A connected pair on loopback: `a` ours, `b` the peer (paused until resumed). */
async function pair(): Promise<{ a: Socket; b: Socket }> {
  let accepted!: (s: Socket) => void;
  const gotB = new Promise<Socket>((r) => {
    accepted = r;
  });
  const { port } = await plainServer((s) => {
    s.pause();
    onTestFinished(() => void s.destroy());
    accepted(s);
  });
  const a = await connect(port);
  return { a, b: await gotB };
}

describe('writeDirect', () => {
  it('passes its check where this Node has what it uses; ECHO_DIRECT_WRITE=0 turns it off', async () => {
    expect(await directWriteUsable()).toBe(shaped);
    process.env.ECHO_DIRECT_WRITE = '0';
    onTestFinished(() => {
      delete process.env.ECHO_DIRECT_WRITE;
    });
    expect(await directWriteUsable()).toBe(false);
  });

  it.skipIf(!shaped)(
    'a write that waits keeps order with write() and end() after it; bytesWritten counts all',
    async () => {
      expect(await directWriteUsable()).toBe(true);
      const { a, b } = await pair();
      const chunks: Buffer[] = [];
      let how: string | undefined = 'sent';
      let taken: Promise<boolean> | undefined;
      for (let i = 0; i < 64 && how === 'sent'; i++) {
        const c = randomBytes(256 * 1024);
        let done!: (ok: boolean) => void;
        const p = new Promise<boolean>((r) => {
          done = r;
        });
        how = writeDirect(a, c, done);
        expect(how).toBeDefined();
        chunks.push(c);
        if (how === 'pending') taken = p;
      }
      expect(how).toBe('pending');
      const last = Buffer.from('after');
      a.write(last);
      a.end();
      const back = readAll(b);
      b.resume();
      expect(await taken).toBe(true);
      const all = await back;
      expect(all.equals(Buffer.concat([...chunks, last]))).toBe(true);
      expect(a.bytesWritten).toBe(all.length);
    },
  );

  it.skipIf(!shaped)(
    'says no (nothing written) where write() must be used: queued, ended, destroyed, connecting, TLS',
    async () => {
      expect(await directWriteUsable()).toBe(true);
      const { a, b } = await pair();
      const no = () => {};
      // queued in the stream: a write() the kernel could not take at once
      while (a.write(randomBytes(256 * 1024)));
      expect(a.writableLength).toBeGreaterThan(0);
      expect(writeDirect(a, Buffer.from('x'), no)).toBeUndefined();
      const { a: e } = await pair();
      e.end();
      expect(writeDirect(e, Buffer.from('x'), no)).toBeUndefined();
      const { a: d } = await pair();
      d.destroy();
      expect(writeDirect(d, Buffer.from('x'), no)).toBeUndefined();
      const { port } = await plainServer();
      const c = net.connect(port, '127.0.0.1');
      onTestFinished(() => void c.destroy());
      expect(writeDirect(c, Buffer.from('x'), no)).toBeUndefined();
      const t = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      t.on('error', () => {});
      onTestFinished(() => void t.destroy());
      expect(writeDirect(t, Buffer.from('x'), no)).toBeUndefined();
      b.destroy();
    },
  );

  it.skipIf(!shaped)(
    'a write the peer reset fails as write() does: the socket is destroyed with the error',
    async () => {
      expect(await directWriteUsable()).toBe(true);
      const { a, b } = await pair();
      const closed = new Promise((r) => a.once('close', r));
      const errored = new Promise<NodeJS.ErrnoException>((r) => a.once('error', r));
      b.resetAndDestroy();
      await once(b, 'close');
      // the first write may still be taken (the RST not read yet): write until one fails
      for (let i = 0; i < 100 && !a.destroyed; i++) {
        writeDirect(a, Buffer.from('after the reset'), () => {});
        await new Promise((r) => setImmediate(r));
      }
      expect(['EPIPE', 'ECONNRESET']).toContain((await errored).code);
      await closed;
    },
  );
});

/** Both legs of the proxies made in this test are net.Sockets (light ones write through their own handle: plight34.test.ts). */
function netLegs(): void {
  process.env.ECHO_LIGHT = '0';
  onTestFinished(() => {
    delete process.env.ECHO_LIGHT;
  });
}

describe('echo-proxy forwarding through the handle', () => {
  async function setup() {
    // an upstream that sends `data` at once, then FIN
    const data = randomBytes(8 * 1024 * 1024);
    const { port: upPort } = await plainServer((sock) => {
      sock.on('error', () => {});
      sock.end(data);
    });
    // the proxy starts the check without waiting for it: until it passes, write() is used
    expect(await directWriteUsable()).toBe(shaped);
    netLegs();
    const reg = new Proxies({});
    onTestFinished(() => reg.close());
    const p = await reg.create({ name: 'p', listen: '127.0.0.1:0', upstream: `127.0.0.1:${upPort}` });
    return { p, data, port: Number(p.state().listen.split(':').pop()) };
  }

  it('a client that reads slowly gets every byte: the chunks held by waiting writes are not read into', async () => {
    const { data, port } = await setup();
    const before = { ...directWrites };
    const s = await connect(port);
    s.end();
    // read in steps: a pause after each chunk, until the next turn of the loop
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      s.pause();
      setImmediate(() => s.resume());
    });
    await once(s, 'end');
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    if (shaped) {
      expect(directWrites.sent).toBeGreaterThan(before.sent);
      expect(directWrites.pending).toBeGreaterThan(before.pending);
    }
  });

  it('a toxic added and removed while writes wait acts on the open connection; every byte arrives', async () => {
    const { p, data, port } = await setup();
    const s = await connect(port);
    s.end();
    const chunks: Buffer[] = [];
    let got = 0;
    let added = false;
    let removed = false;
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (!added && got > data.length / 4) {
        added = true;
        p.addToxic({
          name: 'lat',
          type: 'latency',
          stream: 'downstream',
          toxicity: 1,
          attributes: { latency: 5 },
        });
      } else if (added && !removed && got > data.length / 2) {
        removed = true;
        p.removeToxic('lat');
      }
      s.pause();
      setImmediate(() => s.resume());
    });
    await once(s, 'end');
    expect(added && removed).toBe(true);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
  });
});

describe('echo-proxy: small chunks through the handle', () => {
  it('many small chunks then FIN, both ways: every byte in order, then the FIN, on each leg', async () => {
    // the upstream echoes and, after the client's FIN, sends a last small chunk and its own FIN
    const { port: upPort } = await plainServer((sock) => {
      sock.on('error', () => {});
      sock.on('data', (d) => sock.write(d));
      sock.on('end', () => sock.end(Buffer.from('bye')));
    });
    // the proxy starts the check without waiting for it: until it passes, write() is used
    expect(await directWriteUsable()).toBe(shaped);
    netLegs();
    const reg = new Proxies({});
    onTestFinished(() => reg.close());
    const p = await reg.create({ name: 'p', listen: '127.0.0.1:0', upstream: `127.0.0.1:${upPort}` });
    const port = Number(p.state().listen.split(':').pop());
    const conns = await Promise.all([0, 1, 2, 3].map(() => connect(port)));
    const sent = conns.map(() => [] as Buffer[]);
    const back = conns.map((s) => readAll(s));
    const before = directWrites.sent + directWrites.pending;
    for (let i = 0; i < 200; i++)
      conns.forEach((s, k) => {
        const c = randomBytes(1 + ((i * 7 + k) % 300));
        sent[k]!.push(c);
        s.write(c);
      });
    for (const s of conns) s.end();
    const got = await Promise.all(back);
    got.forEach((g, k) => {
      expect(g.equals(Buffer.concat([...sent[k]!, Buffer.from('bye')]))).toBe(true);
    });
    if (shaped) expect(directWrites.sent + directWrites.pending).toBeGreaterThan(before);
  });
});
