// echo-proxy's upstream leg as a light connection (core/internals.ts LightSocket, taken from
// the connected net.Socket by lightFromSocket): in use while nothing turns it off; toxics added
// and removed on an open connection run on it with every byte in order, both ways; FIN passed
// on each way; a reset passed on each way (the light leg's own reset: resetLight); and the
// fallbacks (ECHO_LIGHT=0, ECHO_SHARED_READ=0 in this process; all three switches in a spawned
// echo-proxy) forward byte-exact.

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { lightLinks } from '../src/proxy/forward.js';
import { Proxies } from '../src/proxy/registry.js';
import { lightUsable } from '../src/server/user-buffer.js';
import { connect, plainServer, readAll, spawnCli } from './helpers.js';

/** An upstream that echoes, keeping what it read; `onConn` sees each connection first. */
async function echoUpstream(onConn?: (s: Socket) => void) {
  const got: Buffer[][] = [];
  const { port } = await plainServer((s) => {
    const mine: Buffer[] = [];
    got.push(mine);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      mine.push(d);
      s.write(d);
    });
    onConn?.(s);
  });
  return { port, got };
}

async function proxyTo(upPort: number) {
  const reg = new Proxies({});
  onTestFinished(() => reg.close());
  const p = await reg.create({ name: 'p', listen: '127.0.0.1:0', upstream: `127.0.0.1:${upPort}` });
  return { p, port: Number(p.state().listen.split(':').pop()) };
}

/** Echo `total` random bytes through `s` in `chunk`-byte steps, each step answered before the next. */
async function stepped(s: Socket, total: number, chunk: number, onStep?: (i: number) => void) {
  const sent: Buffer[] = [];
  const back: Buffer[] = [];
  let got = 0;
  let want = 0;
  let wake: (() => void) | undefined;
  s.on('data', (d: Buffer) => {
    back.push(d);
    got += d.length;
    if (got >= want) wake?.();
  });
  for (let i = 0; i * chunk < total; i++) {
    onStep?.(i);
    const c = randomBytes(chunk);
    sent.push(c);
    want += c.length;
    const answered = new Promise<void>((r) => {
      wake = r;
    });
    s.write(c);
    if (got < want) await answered;
  }
  return { sent: Buffer.concat(sent), back: () => Buffer.concat(back) };
}

const usable = await lightUsable();

describe('echo-proxy: both legs as light connections', () => {
  it('both legs are light while nothing turns them off (where this process may drive handles)', async () => {
    const up = await echoUpstream();
    const { port } = await proxyTo(up.port);
    const before = { ...lightLinks };
    const s = await connect(port);
    const r = await stepped(s, 64 * 1024, 64);
    expect(r.back().equals(r.sent)).toBe(true);
    expect(lightLinks.client - before.client).toBe(usable ? 1 : 0);
    expect(lightLinks.upstream - before.upstream).toBe(usable ? 1 : 0);
  });

  it('toxics added and removed mid-stream on the open connection: every byte in order, both ways', async () => {
    const up = await echoUpstream((u) => u.on('end', () => u.end()));
    const { p, port } = await proxyTo(up.port);
    const s = await connect(port);
    const total = 1024 * 1024;
    const chunk = 16 * 1024;
    const steps = total / chunk;
    const r = await stepped(s, total, chunk, (i) => {
      if (i === steps / 4) {
        // the upstream direction's sink is the light leg: pieces, pacing and a latency on it
        p.addToxic({
          name: 'lu',
          type: 'latency',
          stream: 'upstream',
          toxicity: 1,
          attributes: { latency: 2 },
        });
        p.addToxic({
          name: 'su',
          type: 'slicer',
          stream: 'upstream',
          toxicity: 1,
          attributes: { average_size: 1000, size_variation: 500, delay: 100 },
        });
        p.addToxic({
          name: 'bu',
          type: 'bandwidth',
          stream: 'upstream',
          toxicity: 1,
          attributes: { rate: 20000 },
        });
        // the downstream direction's source is the light leg
        p.addToxic({
          name: 'sd',
          type: 'slicer',
          stream: 'downstream',
          toxicity: 1,
          attributes: { average_size: 700, size_variation: 0, delay: 0 },
        });
      } else if (i === steps / 2) {
        for (const n of ['lu', 'su', 'bu', 'sd']) p.removeToxic(n);
      }
    });
    const upGot = Buffer.concat(up.got[0]!);
    expect(upGot.length).toBe(total);
    expect(upGot.equals(r.sent)).toBe(true);
    expect(r.back().equals(r.sent)).toBe(true);
    s.end();
    await once(s, 'end');
  });

  it("the client's FIN reaches the upstream, which still sends after it; then its FIN reaches the client", async () => {
    let upEnded!: () => void;
    const upEnd = new Promise<void>((r) => {
      upEnded = r;
    });
    const up = await echoUpstream((u) =>
      u.on('end', () => {
        u.end(Buffer.from('after your FIN'));
        upEnded();
      }),
    );
    const { port } = await proxyTo(up.port);
    const s = await connect(port);
    const all = readAll(s);
    const msg = randomBytes(3000);
    s.end(msg);
    await upEnd;
    expect((await all).equals(Buffer.concat([msg, Buffer.from('after your FIN')]))).toBe(true);
    expect(Buffer.concat(up.got[0]!).equals(msg)).toBe(true);
  });

  it("the upstream's FIN reaches the client, which still sends after it; then its FIN reaches the upstream", async () => {
    let upRead!: (p: Promise<Buffer>) => void;
    const upReading = new Promise<Promise<Buffer>>((r) => {
      upRead = r;
    });
    const { port: upPort } = await plainServer((u) => {
      u.on('error', () => {});
      upRead(readAll(u));
      u.end(Buffer.from('bye first'));
    });
    const { port } = await proxyTo(upPort);
    const s = await connect(port);
    expect((await readAll(s)).toString()).toBe('bye first');
    const late = randomBytes(5000);
    s.end(late);
    expect((await await upReading).equals(late)).toBe(true);
  });

  it('a reset from the upstream reaches the client, and one from the client reaches the upstream', async () => {
    // the upstream echoes until it reads "rst", then resets (that chunk not answered)
    const { port: up1 } = await plainServer((u) => {
      u.on('error', () => {});
      u.on('data', (d: Buffer) => {
        if (d.toString() === 'rst') u.resetAndDestroy();
        else u.write(d);
      });
    });
    const { port: p1 } = await proxyTo(up1);
    const a = await connect(p1);
    const ra = await stepped(a, 1024, 256);
    expect(ra.back().equals(ra.sent)).toBe(true);
    const aErr = new Promise<NodeJS.ErrnoException>((r) => a.once('error', r));
    a.write('rst');
    expect((await aErr).code).toBe('ECONNRESET');

    let upErr!: Promise<NodeJS.ErrnoException>;
    let upOn!: () => void;
    const upConnected = new Promise<void>((r) => {
      upOn = r;
    });
    const up2 = await echoUpstream((u) => {
      upErr = new Promise((r) => u.once('error', r));
      upOn();
    });
    const { port: p2 } = await proxyTo(up2.port);
    const b = await connect(p2);
    const r = await stepped(b, 1024, 256);
    expect(r.back().equals(r.sent)).toBe(true);
    await upConnected;
    b.resetAndDestroy();
    expect((await upErr).code).toBe('ECONNRESET');
  });
});

describe('echo-proxy light legs: writes that wait, toxics that reset, the PROXY header', () => {
  it('a client that reads slowly, a toxic added and removed while writes wait: every byte, in order', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const { port: upPort } = await plainServer((u) => {
      u.on('error', () => {});
      u.end(data);
    });
    const { p, port } = await proxyTo(upPort);
    const before = { ...lightLinks };
    const s = await connect(port);
    s.end();
    const chunks: Buffer[] = [];
    let got = 0;
    let step = 0;
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (step === 0 && got > data.length / 4) {
        step = 1;
        p.addToxic({
          name: 'lat',
          type: 'latency',
          stream: 'downstream',
          toxicity: 1,
          attributes: { latency: 5 },
        });
      } else if (step === 1 && got > data.length / 2) {
        step = 2;
        p.removeToxic('lat');
      }
      s.pause();
      setImmediate(() => s.resume());
    });
    await once(s, 'end');
    expect(step).toBe(2);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    expect(lightLinks.client - before.client).toBe(usable ? 1 : 0);
  });

  it('reset_peer added on an open connection resets the (light) client', async () => {
    const up = await echoUpstream();
    const { p, port } = await proxyTo(up.port);
    const s = await connect(port);
    const r = await stepped(s, 4096, 512);
    expect(r.back().equals(r.sent)).toBe(true);
    const err = new Promise<NodeJS.ErrnoException>((res) => s.once('error', res));
    p.addToxic({
      name: 'rp',
      type: 'reset_peer',
      stream: 'downstream',
      toxicity: 1,
      attributes: { timeout: 0 },
    });
    expect((await err).code).toBe('ECONNRESET');
  });

  it('sendProxy: the PROXY header names the client and the address it connected to', async () => {
    let header!: (h: string) => void;
    const gotHeader = new Promise<string>((r) => {
      header = r;
    });
    const { port: upPort } = await plainServer((u) => {
      u.on('error', () => {});
      let text = '';
      u.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        if (text.includes('\r\n')) header(text.slice(0, text.indexOf('\r\n')));
      });
    });
    const reg = new Proxies({ sendProxy: 1 });
    onTestFinished(() => reg.close());
    const p = await reg.create({ name: 'p', listen: '127.0.0.1:0', upstream: `127.0.0.1:${upPort}` });
    const port = Number(p.state().listen.split(':').pop());
    const s = await connect(port);
    expect(await gotHeader).toBe(`PROXY TCP4 127.0.0.1 127.0.0.1 ${s.localPort} ${port}`);
  });
});

describe('echo-proxy fallbacks forward byte-exact', () => {
  for (const env of ['ECHO_LIGHT', 'ECHO_SHARED_READ'] as const)
    it(`${env}=0 in this process: no light leg; bytes and FINs both ways as before`, async () => {
      process.env[env] = '0';
      onTestFinished(() => {
        delete process.env[env];
      });
      const up = await echoUpstream((u) => u.on('end', () => u.end()));
      const { port } = await proxyTo(up.port);
      const before = { ...lightLinks };
      const s = await connect(port);
      const r = await stepped(s, 256 * 1024, 4096);
      s.end();
      await once(s, 'end');
      expect(r.back().equals(r.sent)).toBe(true);
      expect(lightLinks).toEqual(before);
    });

  it('ECHO_LIGHT=0, ECHO_SHARED_READ=0 and ECHO_DIRECT_WRITE=0 in a spawned echo-proxy', async () => {
    const up = await echoUpstream((u) => u.on('end', () => u.end()));
    for (const env of [{ ECHO_LIGHT: '0' }, { ECHO_SHARED_READ: '0' }, { ECHO_DIRECT_WRITE: '0' }, {}]) {
      const px = spawnCli('echo-proxy', ['--listen', '127.0.0.1:0', '--upstream', `127.0.0.1:${up.port}`], {
        env,
      });
      const m = await px.waitStderr(/listening on 127\.0\.0\.1:(\d+)/);
      const s = await connect(Number(m[1]));
      const r = await stepped(s, 128 * 1024, 8192);
      s.end();
      await once(s, 'end');
      expect(r.back().equals(r.sent), JSON.stringify(env)).toBe(true);
      px.child.kill();
      await px.exit;
    }
  });
});
