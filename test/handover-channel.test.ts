// The descriptor channel of the workers' hand-over, in this process: both of its ends, its
// batching, its queue when the receiver does not read, its self-test, and the primary's copy
// of each socket given up without a 'close'.
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { closeDescriptor, fdPassAvailable, sendFds, socketPair } from '../src/core/fdpass.js';
import { releaseHandle } from '../src/core/internals.js';
import {
  BATCH_MAX,
  type HandedMeta,
  HandoverChannel,
  probeHandover,
  receiveHandovers,
} from '../src/server/handover.js';
import { readAll } from './helpers.js';

const can = fdPassAvailable() === undefined;
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
  delete process.env.ECHO_HANDOVER;
});

/** A loopback server whose accepted sockets come paused; `accepted()` resolves with the next n. */
async function loopback() {
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
  const queue: net.Socket[] = [];
  const waiters: (() => void)[] = [];
  server.on('connection', (s) => {
    queue.push(s);
    for (const w of waiters.splice(0)) w();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const clients: net.Socket[] = [];
  cleanup.push(() => {
    for (const c of clients) c.destroy();
    for (const s of queue) s.destroy();
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    server,
    dial(): net.Socket {
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      clients.push(c);
      return c;
    },
    async accepted(n: number): Promise<net.Socket[]> {
      while (queue.length < n) await new Promise<void>((r) => waiters.push(r));
      return queue.splice(0, n);
    },
  };
}

/** Both ends of a channel: the primary's HandoverChannel and a receiver that echoes what it gets. */
function channelPair(opts: { start?: boolean } = {}) {
  const [parentEnd, childEnd] = socketPair('seqpacket');
  const [parentWake, childWake] = socketPair('stream');
  const ch = new HandoverChannel(parentEnd, parentWake);
  const got: { meta: HandedMeta; socket: net.Socket }[] = [];
  const batches: number[] = [];
  const lost: HandedMeta[] = [];
  let rx: { close(): void } | undefined;
  const start = () => {
    rx = receiveHandovers(childEnd, childWake, {
      conn(socket, meta) {
        got.push({ meta, socket });
        socket.on('data', (d) => socket.write(d));
        socket.on('end', () => socket.end());
      },
      lost: (meta) => lost.push(meta),
      batch: (seq) => batches.push(seq),
      end: () => {},
    });
  };
  if (opts.start !== false) start();
  cleanup.push(() => {
    rx?.close();
    ch.close();
    closeDescriptor(childEnd); // (the wake-up end is closed by the receiver's socket, or here)
    if (!rx) closeDescriptor(childWake);
    for (const g of got) g.socket.destroy();
  });
  return { ch, got, batches, lost, start: () => start() };
}

const sendAll = (ch: HandoverChannel, sockets: net.Socket[], first = 1) =>
  Promise.all(
    sockets.map(
      (s, i) =>
        new Promise<void>((resolve, reject) => {
          const ok = ch.send(s, { id: first + i, peer: `peer ${first + i}`, head: 'aGk=' }, (err) =>
            err ? reject(err) : resolve(),
          );
          if (!ok) reject(new Error('not queued'));
        }),
    ),
  );

describe.skipIf(!can)('the hand-over descriptor channel', () => {
  it('sockets handed in one turn leave in one message each way, with their metadata, and echo', async () => {
    const lb = await loopback();
    const { ch, got, batches } = channelPair();
    const clients = Array.from({ length: 10 }, () => lb.dial());
    const accepted = await lb.accepted(10);
    await sendAll(ch, accepted);
    expect(ch.seq).toBe(1); // one sendmsg for the ten
    const echoes = await Promise.all(
      clients.map((c, i) => {
        c.end(`client ${i}`);
        return readAll(c);
      }),
    );
    expect(echoes.map(String)).toEqual(clients.map((_, i) => `client ${i}`));
    expect(batches).toEqual([1]);
    expect(got.map((g) => g.meta)).toEqual(
      accepted.map((_, i) => ({ id: i + 1, peer: `peer ${i + 1}`, head: 'aGk=' })),
    );
  });

  it(`more than ${BATCH_MAX} at once: several messages, none lost`, async () => {
    const lb = await loopback();
    const { ch, got } = channelPair();
    const n = BATCH_MAX * 2 + 5;
    const clients = Array.from({ length: n }, () => lb.dial());
    await sendAll(ch, await lb.accepted(n));
    expect(ch.seq).toBe(3);
    const echoes = await Promise.all(
      clients.map((c, i) => {
        c.end(`${i}`);
        return readAll(c);
      }),
    );
    expect(echoes.map(String)).toEqual(clients.map((_, i) => `${i}`));
    expect(new Set(got.map((g) => g.meta.id)).size).toBe(n);
  });

  it('a receiver that does not read: the sender queues on EAGAIN, never drops, and delivers once it reads', async () => {
    const lb = await loopback();
    const { ch, got, start } = channelPair({ start: false });
    // fill the receiver's queue with messages that name no socket
    let fills = 0;
    const filler = 'x'.repeat(60_000);
    while (sendFds(ch.fd, [], filler) === 0) if (++fills > 10_000) break;
    expect(fills).toBeLessThan(10_000); // EAGAIN came: the queue is full
    const clients = Array.from({ length: 5 }, () => lb.dial());
    const sent = sendAll(ch, await lb.accepted(5));
    // several turns pass without the sockets leaving
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(ch.queued).toBe(5);
    start(); // the fillers are read (they name no sockets), then the five
    await sent;
    const echoes = await Promise.all(
      clients.map((c, i) => {
        c.end(`late ${i}`);
        return readAll(c);
      }),
    );
    expect(echoes.map(String)).toEqual(clients.map((_, i) => `late ${i}`));
    expect(got).toHaveLength(5);
  });

  it('closed with sockets still queued: each is given back (ECHILDGONE), still open on this side', async () => {
    const lb = await loopback();
    const { ch } = channelPair({ start: false });
    const client = lb.dial();
    const [s] = await lb.accepted(1);
    const err = new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      expect(ch.send(s!, { id: 1, peer: 'p' }, resolve)).toBe(true);
    });
    ch.close(); // before the turn ends: nothing was sent
    expect((await err)?.code).toBe('ECHILDGONE');
    expect(s!.destroyed).toBe(false);
    expect(ch.send(s!, { id: 2, peer: 'p' }, () => {})).toBe(false);
    // the socket is this process's still: it can be served here
    s!.on('data', (d) => s!.end(d));
    s!.resume();
    client.end('still mine');
    expect(String(await readAll(client))).toBe('still mine');
  });

  it('the self-test passes on a working channel and fails on a broken or silent one', async () => {
    const ok = channelPair();
    expect(await probeHandover(ok.ch)).toBeUndefined();

    process.env.ECHO_HANDOVER = 'broken'; // the receiver closes what it gets
    const dropping = channelPair();
    expect(await probeHandover(dropping.ch, 5000)).toMatch(
      /ECONNRESET|closed without the echo|bytes came back/,
    );

    process.env.ECHO_HANDOVER = 'silent'; // the receiver never reads
    const silent = channelPair();
    expect(await probeHandover(silent.ch, 300)).toBe('no echo within 300 ms');
  });
});

describe('releaseHandle', () => {
  it("closes this process's copy without a 'close' event; the server no longer counts it", async () => {
    const lb = await loopback();
    const client = lb.dial();
    const [s] = await lb.accepted(1);
    const count = () => new Promise<number>((r) => lb.server.getConnections((_e, n) => r(n)));
    expect(await count()).toBe(1);
    let closed = false;
    s!.on('close', () => {
      closed = true;
    });
    expect(releaseHandle(s!)).toBe(true);
    expect(await count()).toBe(0);
    // the only copy is gone: the client sees the connection end
    await once(client, 'end');
    expect(closed).toBe(false);
    s!.destroy(); // later destroy() of the handle-less socket does not count it off twice
    expect(await count()).toBe(0);
  });
});
