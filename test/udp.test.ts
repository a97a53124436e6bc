import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { describe, expect, it, onTestFinished } from 'vitest';
import { readSocketOptions } from '../src/core/sockopts.js';
import { MAX_DATAGRAM, startUdpEchoServer, UdpEchoClient, type UdpEchoServerOptions } from '../src/index.js';
import { jsonLines, spawnCli } from './helpers.js';

async function udpServer(o: UdpEchoServerOptions = {}) {
  const srv = await startUdpEchoServer({ port: 0, ...o });
  onTestFinished(async () => {
    await srv.close();
  });
  return srv;
}

async function udpClient(port: number, host = '127.0.0.1', localAddress?: string) {
  const c = await UdpEchoClient.open({ host, port, localAddress });
  onTestFinished(() => c.close());
  return c;
}

describe('UDP echo', () => {
  it.each([1, 1400, MAX_DATAGRAM.ipv4])('echoes a %i-byte datagram byte-exact', async (size) => {
    const srv = await udpServer();
    const c = await udpClient(srv.address.port);
    const msg = randomBytes(size);
    const { reply } = await c.roundTrip(msg);
    expect(reply.equals(msg)).toBe(true);
  });

  it('echoes over IPv6 too', async () => {
    const srv = await udpServer({ host: '::1' });
    const c = await udpClient(srv.address.port, '::1');
    expect((await c.roundTrip(Buffer.from('six'))).reply.toString()).toBe('six');
  });

  it('refuses a payload larger than a datagram instead of truncating it', async () => {
    const srv = await udpServer();
    const c = await udpClient(srv.address.port);
    await expect(c.roundTrip(Buffer.alloc(MAX_DATAGRAM.ipv4 + 1))).rejects.toMatchObject({
      code: 'EMSGSIZE',
    });
  });

  it('serves many clients at once, counting per source', async () => {
    const srv = await udpServer();
    const clients = await Promise.all(
      Array.from({ length: 20 }, (_, i) => udpClient(srv.address.port, '127.0.0.1', `127.0.0.${i + 2}`)),
    );
    const replies = await Promise.all(clients.map((c, i) => c.roundTrip(Buffer.from(`hello ${i}`))));
    replies.forEach((r, i) => {
      expect(r.reply.toString()).toBe(`hello ${i}`);
    });
    expect(srv.sources().size).toBe(20);
    expect(srv.sources().get('127.0.0.5')).toEqual({ in: 1, out: 1, dropped: 0 });
  });

  it('client times out and retries when the server drops a datagram', async () => {
    // a test server that drops the first datagram it sees, echoes the rest
    const lossy = dgram.createSocket('udp4');
    let seen = 0;
    lossy.on('message', (m, r) => {
      if (seen++ > 0) lossy.send(m, r.port, r.address);
    });
    lossy.bind(0, '127.0.0.1');
    await once(lossy, 'listening');
    onTestFinished(() => {
      lossy.close();
    });
    const c = await udpClient(lossy.address().port);
    const { reply, attempts } = await c.roundTrip(Buffer.from('again'), { timeoutMs: 200, retries: 2 });
    expect(reply.toString()).toBe('again');
    // the first try was dropped for sure; on a loaded machine a later one may also time out
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(c.counters).toMatchObject({ retried: attempts - 1, answered: 1, lost: 0 });
  });

  it('gives up after the last retry with ERR_REPLY_TIMEOUT, and counts a late echo', async () => {
    const held: [Buffer, dgram.RemoteInfo][] = [];
    const slow = dgram.createSocket('udp4');
    slow.on('message', (m, r) => held.push([m, r]));
    slow.bind(0, '127.0.0.1');
    await once(slow, 'listening');
    onTestFinished(() => {
      slow.close();
    });
    const c = await udpClient(slow.address().port);
    await expect(c.roundTrip(Buffer.from('late'), { timeoutMs: 100, retries: 1 })).rejects.toMatchObject({
      code: 'ERR_REPLY_TIMEOUT',
    });
    expect(c.counters.lost).toBe(1);
    const [m, r] = held[0]!;
    slow.send(m, r.port, r.address);
    await once(c.socket, 'message');
    expect(c.counters.late).toBe(1);
  });

  it('a closed port is reported as ECONNREFUSED (ICMP port unreachable)', async () => {
    const probe = dgram.createSocket('udp4');
    probe.bind(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = probe.address().port;
    await new Promise<void>((r) => probe.close(() => r()));
    const c = await udpClient(port);
    await expect(c.roundTrip(Buffer.from('anyone?'), { timeoutMs: 2000, retries: 0 })).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
  });

  it('rate limit engages under a bounded burst; other sources keep their echoes', async () => {
    const srv = await udpServer({ rateLimit: 100, rateBurst: 20 });
    const flood = dgram.createSocket('udp4');
    flood.bind(0, '127.0.0.2');
    await once(flood, 'listening');
    onTestFinished(() => {
      flood.close();
    });
    let echoed = 0;
    flood.on('message', () => echoed++);
    const t0 = performance.now();
    for (let i = 0; i < 500; i++) flood.send(Buffer.from(`f${i}`), srv.address.port, '127.0.0.1');
    // another source is served while the flood is being dropped
    const other = await udpClient(srv.address.port, '127.0.0.1', '127.0.0.3');
    for (let i = 0; i < 10; i++) {
      // the kernel itself may drop a datagram while the flood fills the socket buffer: allow resends
      const r = await other.roundTrip(Buffer.from(`ok ${i}`), { timeoutMs: 300, retries: 3 });
      expect(r.reply.toString()).toBe(`ok ${i}`);
    }
    const elapsed = (performance.now() - t0) / 1000;
    const s = srv.sources().get('127.0.0.2')!;
    // what reached the server (the kernel drops some of a burst), at most burst + rate × time was echoed
    expect(s.in).toBeGreaterThan(100);
    expect(s.out).toBeLessThanOrEqual(20 + Math.ceil(100 * elapsed));
    expect(s.dropped).toBe(s.in - s.out);
    expect(s.dropped).toBeGreaterThan(0);
    expect(srv.sources().get('127.0.0.3')!.dropped).toBe(0);
    expect(srv.stats().dropped['rate-limit']).toBe(s.dropped);
    expect(echoed).toBeLessThanOrEqual(s.out);
  });

  it('never replies to source port 19 (chargen) or other echo-style ports', async (ctx) => {
    const srv = await udpServer();
    const chargen = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        chargen.once('error', reject);
        chargen.bind(19, '127.0.0.1', () => resolve());
      });
    } catch (err) {
      chargen.close();
      console.warn(`skipped: cannot bind UDP port 19 here (${(err as Error).message})`);
      ctx.skip();
      return;
    }
    onTestFinished(() => {
      chargen.close();
    });
    let replies = 0;
    chargen.on('message', () => replies++);
    chargen.send(Buffer.from('loop?'), srv.address.port, '127.0.0.1');
    // prove the datagram arrived and was dropped, then that a normal source still gets replies
    const c = await udpClient(srv.address.port);
    await c.roundTrip(Buffer.from('after'));
    // datagrams are handled in order: by the time 'after' is echoed, port 19's was dropped, and the
    // server's own count says nothing was sent to it
    expect(srv.stats().dropped['source-port']).toBe(1);
    expect(srv.stats().datagramsOut).toBe(1);
    expect(replies).toBe(0);
  });

  it.runIf(process.platform === 'linux')(
    'buffer sizes are set after bind and read back (doubled)',
    async () => {
      const srv = await udpServer({ sendBuffer: 65536, recvBuffer: 131072 });
      expect(srv.options.find((o) => o.option === 'SO_SNDBUF')).toMatchObject({
        requested: 65536,
        actual: 131072,
      });
      expect(srv.options.find((o) => o.option === 'SO_RCVBUF')).toMatchObject({
        requested: 131072,
        actual: 262144,
      });
      const c = await UdpEchoClient.open({ host: '127.0.0.1', port: srv.address.port, sendBuffer: 32768 });
      onTestFinished(() => c.close());
      expect(readSocketOptions(c.socket)).toMatchObject({ SO_TYPE: 'SOCK_DGRAM', SO_SNDBUF: 65536 });
    },
  );
});

describe('UDP CLIs', () => {
  it('echo-server --udp and echo-client --udp --message', async () => {
    const srv = spawnCli('echo-server', ['--udp', '--port', '0', '--log-format', 'json']);
    const m = await srv.waitStderr(/listening on 127\.0\.0\.1:(\d+) \(udp\)/);
    const c = spawnCli('echo-client', ['--udp', '127.0.0.1', m[1]!, '--message', 'dgram', '--count', '3']);
    expect((await c.exit).code).toBe(0);
    // ping-style: a line per echo, then a summary
    expect(c.stdout()).toMatch(
      /^(5 bytes from 127\.0\.0\.1:\d+: seq=\d time=[\d.]+ ms\n){3}3 sent, 3 echoed; rtt min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms\n$/,
    );
    srv.child.kill('SIGINT');
    expect((await srv.exit).code).toBe(0);
    const src = jsonLines(srv.stderr()).find((l) => l.source === '127.0.0.1');
    expect(src).toMatchObject({ in: 3, out: 3, dropped: 0 });
  });

  it('echo-client --udp to a closed port exits 1 with the explained ECONNREFUSED', async () => {
    const probe = dgram.createSocket('udp4');
    probe.bind(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = probe.address().port;
    await new Promise<void>((r) => probe.close(() => r()));
    const c = spawnCli('echo-client', ['--udp', '127.0.0.1', String(port), '-m', 'x']);
    expect((await c.exit).code).toBe(1);
    expect(c.stderr()).toMatch(
      /ECONNREFUSED.*nothing is listening on that UDP port \(its kernel answered with ICMP port unreachable\)/,
    );
  });
});
