// The echo of small reads into the shared buffer (server/user-buffer.ts echoRead): the bytes
// are copied into a scratch buffer that the next read reuses while the kernel takes each
// write whole. A write that waits keeps its bytes; counters stay exact; on the light path
// and on its fallbacks (net.Sockets with the shared buffer, and the stream path). And the light
// connection's idle timer, which activity no longer refreshes.
import { once } from 'node:events';
import type net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConnectionRecord } from '../src/core/records.js';
import { echoRead, SHARED_READ, sharedReadOf } from '../src/server/user-buffer.js';
import { connect, echoServer, lightEcho, readN, until } from './helpers.js';

/** A stand-in for a socket reading into the shared buffer: its writes recorded, its queue set by the test. */
function fakeSocket() {
  const fake = {
    writableLength: 0,
    /** what write() does to the queue: 0, taken at once; otherwise the bytes wait */
    waits: false,
    chunks: [] as Buffer[],
    /** each chunk's bytes when it was written */
    texts: [] as string[],
    write(chunk: Buffer): boolean {
      fake.chunks.push(chunk);
      fake.texts.push(chunk.toString('latin1'));
      if (fake.waits) fake.writableLength += chunk.length;
      return true;
    },
    [SHARED_READ]: { socket: undefined, own: undefined },
  };
  const socket = fake as unknown as net.Socket;
  const shared = sharedReadOf(socket, () => {})!.buffer();
  /** a read of `text` into the shared buffer, echoed */
  const read = (text: string) => {
    shared.write(text, 0, 'latin1');
    return echoRead(socket, text.length, shared);
  };
  return { fake, shared, read };
}

describe('echoRead', () => {
  it('writes taken at once reuse one scratch buffer; a write that waits keeps its bytes', () => {
    const { fake, read } = fakeSocket();
    expect(read('aaaa')).toBe(true);
    expect(read('bbbb')).toBe(true);
    const [a, b] = fake.chunks;
    expect(b!.toString()).toBe('bbbb');
    // the same bytes of memory: nothing was allocated for the second read
    expect(b!.buffer).toBe(a!.buffer);
    expect(b!.byteOffset).toBe(a!.byteOffset);

    fake.waits = true;
    read('cccc'); // waits: the scratch buffer is now this write's
    const c = fake.chunks[2]!;
    read('dddd'); // a write waits on the socket: a chunk of its own
    fake.waits = false;
    fake.writableLength = 0; // both done
    read('eeee'); // taken at once: a new scratch buffer
    read('ffff');
    expect(fake.texts).toEqual(['aaaa', 'bbbb', 'cccc', 'dddd', 'eeee', 'ffff']);
    expect(c.toString()).toBe('cccc'); // still, after the reads since
    expect(fake.chunks[3]!.toString()).toBe('dddd');
    const e = fake.chunks[4]!;
    expect(e.buffer === c.buffer && e.byteOffset === c.byteOffset).toBe(false);
  });

  it('a read longer than the scratch buffer is a chunk of its own', () => {
    const { fake, read } = fakeSocket();
    read('x'.repeat(4096));
    read('y'.repeat(4096));
    expect(fake.chunks[0]!.toString()).toBe('x'.repeat(4096));
    expect(fake.chunks[1]!.toString()).toBe('y'.repeat(4096));
  });
});

const PATHS: [string, Record<string, string>][] = [
  ['light', {}],
  ['net.Socket, shared buffer (ECHO_LIGHT=0)', { ECHO_LIGHT: '0' }],
  ['stream (ECHO_SHARED_READ=0)', { ECHO_SHARED_READ: '0' }],
];

const saved = { ECHO_LIGHT: process.env.ECHO_LIGHT, ECHO_SHARED_READ: process.env.ECHO_SHARED_READ };
afterEach(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

describe.each(PATHS)('%s', (_name, env) => {
  function setEnv() {
    for (const k of Object.keys(saved)) delete process.env[k];
    Object.assign(process.env, env);
  }

  it('ping-pong: every message back as sent, byte counters exact', async () => {
    setEnv();
    const records: ConnectionRecord[] = [];
    const srv = await echoServer({ onConnectionClosed: (r) => records.push(r) });
    const conns = await Promise.all([1, 2, 3].map(() => connect(srv.address.port)));
    let total = 0;
    for (let round = 0; round < 50; round++) {
      const msgs = conns.map((_, i) => Buffer.from(`round ${round} conn ${i} ${'x'.repeat(round * 7)}`));
      conns.forEach((c, i) => {
        c.write(msgs[i]!);
      });
      const got = await Promise.all(conns.map((c, i) => readN(c, msgs[i]!.length)));
      got.forEach((g, i) => {
        expect(g.toString()).toBe(msgs[i]!.toString());
      });
      total += msgs[0]!.length;
    }
    for (const c of conns) c.end();
    await until(() => records.length === 3, 10_000, 'close records');
    expect(srv.stats()).toMatchObject({ connections: 3, active: 0 });
    for (const r of records) {
      expect(r.bytesIn).toBe(r.bytesOut);
      expect(r.bytesIn).toBeGreaterThanOrEqual(total);
    }
    expect(records.reduce((a, r) => a + r.bytesIn, 0)).toBe(srv.stats().bytesIn);
  });
});

// A light connection's idle timer is no longer refreshed per read or write: activity notes its
// time, and the timer, when it fires, waits out what is left from the last activity.
describe('light connection idle timer (activity noted, not refreshed)', () => {
  const IDLE_MS = 300;

  it('reads keep it away past several timeouts; once idle it fires, no sooner than the timeout after the last read', async () => {
    const { light, client } = await lightEcho();
    let timeouts = 0;
    light.on('timeout', () => timeouts++);
    light.setTimeout(IDLE_MS);
    let last = 0;
    // activity for more than 3 timeouts, one round trip at a time (the echo paces it)
    const until = performance.now() + 3.5 * IDLE_MS;
    for (let i = 0; performance.now() < until && i < 100_000; i++) {
      last = performance.now(); // before the server's read: its activity is later
      client.write('p');
      expect((await readN(client, 1)).toString()).toBe('p');
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 20));
    }
    expect(timeouts).toBe(0);
    await once(light as unknown as net.Socket, 'timeout');
    // timers keep whole milliseconds
    expect(performance.now() - last).toBeGreaterThanOrEqual(IDLE_MS - 2);
    expect(timeouts).toBe(1);
  });

  it('a timeout left unanswered comes again after the next activity and idle time', async () => {
    const { light, client } = await lightEcho();
    let timeouts = 0;
    light.on('timeout', () => timeouts++);
    light.setTimeout(IDLE_MS);
    await once(light as unknown as net.Socket, 'timeout');
    client.write('again');
    expect((await readN(client, 5)).toString()).toBe('again');
    const t0 = performance.now();
    await once(light as unknown as net.Socket, 'timeout');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(IDLE_MS - 2);
    expect(timeouts).toBe(2);
  });
});
