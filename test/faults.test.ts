// Fault injection: each fault driven by a client, asserting what the client observed — the
// added latency, the chunk sizes, where the RST came, what the integrity check caught, the
// datagrams lost, duplicated or reordered within binomial bounds.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { FaultSet, parseFault } from '../src/core/faults.js';
import { echo, startEchoServer } from '../src/index.js';
import {
  afterTest,
  connect,
  SERVER_MODES as MODES,
  refusal,
  runEchoClient,
  spawnServer,
  until,
} from './helpers.js';

const client = runEchoClient;

const rtts = (out: string) => [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));

// a fault's test waits on the fault's own timers (latency, bandwidth, delays): they run at once
describe.concurrent.each(MODES)('--mode %s', (_mode, args) => {
  it('latency=60ms: every round trip takes at least 60 ms more', async () => {
    const srv = await spawnServer([...args, '--fault', 'latency=60ms']);
    const r = await client(['-m', 'ping', '--count', '3', '127.0.0.1', String(srv.port)]);
    expect(r.code).toBe(0);
    const t = rtts(r.out.toString());
    expect(t).toHaveLength(3);
    for (const x of t) {
      expect(x).toBeGreaterThanOrEqual(59);
      expect(x).toBeLessThan(60 + 3000); // a loaded 2-core machine, not a precision timer
    }
  });

  it('close-after=64k,how=rst: the reset comes after exactly 64 KiB of echo', async () => {
    const srv = await spawnServer([...args, '--fault', 'close-after=64k,how=rst']);
    const data = randomBytes(1024 * 1024);
    const r = await client(['127.0.0.1', String(srv.port)], data);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ECONNRESET — the peer reset the connection/);
    // the server sent exactly 64 KiB, then RST; the client got them unless its kernel dropped
    // unread ones on the RST (Linux does): a prefix of what it sent, never more
    const closed = await srv.waitStderr(/"bytesOut":(\d+)[^\n]*fault close-after \(rst\)/);
    expect(Number(closed[1])).toBe(65536);
    expect(r.out.length).toBeLessThanOrEqual(65536);
    expect(r.out.equals(data.subarray(0, r.out.length))).toBe(true);
    expect(r.err).toMatch(new RegExp(`"received":${r.out.length}`));
  });
});

describe.concurrent('each fault, as a client sees it', () => {
  it('latency with jitter keeps the order: 2 MB piped come back byte-exact', async () => {
    const srv = await spawnServer(['--fault', 'latency=20ms,jitter=15ms']);
    const data = randomBytes(2 * 1024 * 1024);
    const r = await client(['127.0.0.1', String(srv.port)], data);
    expect(r.code).toBe(0);
    expect(r.out.equals(data)).toBe(true);
    const t = rtts((await client(['-m', 'x', '--count', '5', '127.0.0.1', String(srv.port)])).out.toString());
    for (const x of t) expect(x).toBeGreaterThanOrEqual(4); // 20 − 15 ms, at least
  });

  it('bandwidth=1m: 1 MiB takes about a second, byte-exact', async () => {
    const srv = await spawnServer(['--fault', 'bandwidth=1m']);
    const data = randomBytes(1024 * 1024);
    const t0 = performance.now();
    const r = await client(['127.0.0.1', String(srv.port)], data);
    const ms = performance.now() - t0;
    expect(r.code).toBe(0);
    expect(r.out.equals(data)).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(900);
  });

  it('slice=10,delay=20ms: a 100-byte message arrives in 10-byte slices, 20 ms apart', async () => {
    const srv = await spawnServer(['--fault', 'slice=10,delay=20ms']);
    const s = await connect(srv.port);
    const sizes: number[] = [];
    let got = 0;
    let lastAt = 0;
    s.on('data', (d: Buffer) => {
      sizes.push(d.length);
      got += d.length;
      lastAt = performance.now();
    });
    const t0 = performance.now();
    s.write(Buffer.alloc(100, 7));
    await until(() => got >= 100, 10_000, '100 bytes back');
    // a client that falls behind (a loaded machine) reads slices that arrived meanwhile as one
    // read: the reads are whole 10-byte slices, and the last came no sooner than 9 delays after
    // the message went out
    expect(sizes.every((n) => n % 10 === 0)).toBe(true);
    expect(sizes.length).toBeGreaterThanOrEqual(2);
    expect(lastAt - t0).toBeGreaterThanOrEqual(9 * 20 - 2);
  });

  it('stall-after=64k: 64 KiB come back, then the server stops reading and the client’s writes back up', async () => {
    const srv = await spawnServer(['--fault', 'stall-after=64k']);
    const s = await connect(srv.port);
    let got = 0;
    s.on('data', (d: Buffer) => {
      got += d.length;
    });
    const chunk = Buffer.alloc(64 * 1024, 1);
    let blocked = false;
    for (let i = 0; i < 512 && !blocked; i++) blocked = !s.write(chunk); // at most 32 MiB
    expect(blocked).toBe(true);
    await until(() => got === 65536, 10_000, '64 KiB echoed');
    // the client's send buffer stays full: no 'drain' while the server does not read
    const drained = await Promise.race([
      once(s, 'drain').then(() => true),
      new Promise((r) => setTimeout(() => r(false), 500)),
    ]);
    expect(drained).toBe(false);
    expect(got).toBe(65536);
  });

  it('close-after=10,how=fin: 10 bytes, then a FIN; the client says what was missing', async () => {
    const srv = await spawnServer(['--fault', 'close-after=10']);
    const r = await client(['-m', 'a message longer than ten bytes', '127.0.0.1', String(srv.port)]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/sent 31 bytes, 10 came back before the server closed/);
  });

  it('reset-on-connect and blackhole', async () => {
    const reset = await spawnServer(['--fault', 'reset-on-connect']);
    const r = await client(['-m', 'x', '127.0.0.1', String(reset.port)]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ECONNRESET/);
    const hole = await spawnServer(['--fault', 'blackhole']);
    const h = await client(['-m', 'anyone?', '--timeout', '300ms', '127.0.0.1', String(hole.port)]);
    expect(h.code).toBe(1);
    expect(h.err).toMatch(/0 of 7 bytes came back within 300 ms/);
  });

  // alone: the third connect must time out before the first accept, 2 s after the server listens
  it.sequential('accept-delay=2s with --backlog 1: connections wait in the kernel; once it is full, a connect times out', async () => {
    const srv = await spawnServer(['--backlog', '1', '--fault', 'accept-delay=2s']);
    // the kernel completes backlog + 1 handshakes on its own, with nobody calling accept()
    const first = await connect(srv.port);
    const second = await connect(srv.port);
    const third = await client(['--connect-timeout', '500ms', '-m', 'x', '127.0.0.1', String(srv.port)]);
    expect(third.code).toBe(1);
    expect(third.err).toMatch(/connect ETIMEDOUT/);
    // accepted one per 2 s: both are served in the end
    let got = '';
    for (const s of [first, second]) {
      s.on('data', (d: Buffer) => {
        got += d.toString();
      });
    }
    first.write('1');
    second.write('2');
    await until(() => got.length === 2, 10_000, 'both echoed');
    expect([...got].sort().join('')).toBe('12');
  });

  it('corrupt=0.5: the bench’s integrity check catches about half the echoes (binomial bound)', async () => {
    const srv = await spawnServer(['--fault', 'corrupt=0.5']);
    const r = await client([
      'bench',
      '-c',
      '1',
      '--requests',
      '400',
      '--warmup',
      '0',
      '--json',
      '127.0.0.1',
      String(srv.port),
    ]);
    expect(r.code).toBe(1); // mismatches fail the bench
    const j = JSON.parse(r.out.toString());
    // one 64-byte echo per read at pipeline 1: mismatches ~ Binomial(count, 0.5); ±5σ
    const n = j.count;
    const sigma = Math.sqrt(n * 0.25);
    expect(j.mismatches).toBeGreaterThan(n * 0.5 - 5 * sigma);
    expect(j.mismatches).toBeLessThan(n * 0.5 + 5 * sigma);
    expect(r.err).toMatch(/ERR_ECHO_MISMATCH|differed from what was sent/);
  });

  it('every=2 counts connections across worker processes: the 2nd and 4th are reset', async () => {
    const srv = await spawnServer([
      '--mode',
      'workers',
      '--workers',
      '2',
      '--fault',
      'reset-on-connect,every=2',
    ]);
    const codes: (number | null)[] = [];
    for (let i = 0; i < 4; i++) codes.push((await client(['-m', 'x', '127.0.0.1', String(srv.port)])).code);
    expect(codes).toEqual([0, 1, 0, 1]);
  });

  it('library: faults switched on and off on a running server', async () => {
    const srv = await startEchoServer({ port: 0 });
    afterTest(() => void srv.close({ graceMs: 0 }));
    const time = async () => {
      const t0 = performance.now();
      expect((await echo({ port: srv.address.port, message: 'x' })).reply.toString()).toBe('x');
      return performance.now() - t0;
    };
    await time();
    // 500 ms: longer than any loopback round trip here, even on a loaded machine, so the
    // restored server's echoes must come back sooner than the latency would let them
    srv.setFaults([parseFault('latency=500ms')]);
    expect(await time()).toBeGreaterThanOrEqual(499);
    srv.setFaults([]);
    const restored = [await time(), await time(), await time()];
    expect(Math.min(...restored)).toBeLessThan(500);
  });
});

describe.concurrent('UDP faults (per datagram)', () => {
  /** An echo-server --udp with this --fault and its /metrics, from which the exchange learns what it did. */
  async function udpServer(fault: string) {
    const srv = await spawnServer(['--udp', '--rate-limit', '0', '--metrics', '0', '--fault', fault]);
    const url = `http://${(await srv.waitStderr(/metrics on http:\/\/(127\.0\.0\.1:\d+)\/metrics/))[1]}/metrics`;
    const datagrams = async () => {
      const text = await (await fetch(url)).text();
      const count = (dir: string) =>
        Number(
          new RegExp(`^echo_udp_datagrams_total\\{[^}]*direction="${dir}"[^}]*\\} (\\d+)$`, 'm').exec(
            text,
          )?.[1],
        );
      return { in: count('in'), out: count('out') };
    };
    return { port: srv.port, datagrams };
  }

  /**
   * Send n numbered datagrams in waves of 20, each wave once the server has read the last; what
   * came back, in arrival order, once every datagram the server sent has arrived (`out`: how
   * many it must send in all, when a held one may still be on its way).
   */
  async function exchange(
    srv: Awaited<ReturnType<typeof udpServer>>,
    n: number,
    out?: number,
  ): Promise<{ seqs: number[]; corrupted: number }> {
    const s = dgram.createSocket('udp4');
    afterTest(() => {
      s.close();
    });
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    const seqs: number[] = [];
    let corrupted = 0;
    const body = (i: number) => {
      const b = Buffer.alloc(32, i & 0xff);
      b.writeUInt32BE(i, 0);
      return b;
    };
    let received = 0;
    s.on('message', (m) => {
      received++;
      const i = m.readUInt32BE(0);
      if (i < n && m.equals(body(i))) seqs.push(i);
      else corrupted++;
    });
    let d = { in: 0, out: 0 };
    for (let i = 0; i < n; i += 20) {
      const wave = Math.min(n, i + 20);
      for (let j = i; j < wave; j++) s.send(body(j), srv.port, '127.0.0.1');
      await until(
        async () => {
          d = await srv.datagrams();
          return d.in >= wave;
        },
        10_000,
        () => `the server reading datagram ${wave} (in ${d.in})`,
      );
    }
    await until(
      async () => {
        d = await srv.datagrams();
        return received === d.out && (out === undefined || d.out >= out);
      },
      10_000,
      () =>
        `every datagram sent back arriving (sent ${d.out}${out ? ` of ${out}` : ''}, received ${received})`,
    );
    return { seqs, corrupted };
  }

  const bound = (n: number, p: number) => 5 * Math.sqrt(n * p * (1 - p));

  it('drop=0.3 loses about 30% (binomial bound); duplicate=0.3 doubles about 30%', async () => {
    const n = 1000;
    const a = await exchange(await udpServer('drop=0.3'), n);
    expect(Math.abs(n - a.seqs.length - 0.3 * n)).toBeLessThan(bound(n, 0.3));
    const b = await exchange(await udpServer('duplicate=0.3'), n);
    expect(Math.abs(b.seqs.length - n - 0.3 * n)).toBeLessThan(bound(n, 0.3));
    expect(new Set(b.seqs).size).toBe(n);
  });

  it('reorder swaps neighbours; corrupt=1 alters every datagram; latency delays each', async () => {
    // a held datagram goes with the next one or 50 ms later: all 200 are sent back in the end
    const r = await exchange(await udpServer('reorder=0.5'), 200, 200);
    expect(new Set(r.seqs).size).toBe(200); // nothing lost
    const inversions = r.seqs.filter((x, i) => i > 0 && x < r.seqs[i - 1]!).length;
    expect(inversions).toBeGreaterThan(10);
    expect((await exchange(await udpServer('corrupt=1'), 100)).corrupted).toBe(100);
    const slow = await spawnServer(['--udp', '--fault', 'latency=80ms']);
    const t0 = performance.now();
    const u = await client(['--udp', '-m', 'x', '--timeout', '2s', '127.0.0.1', String(slow.port)]);
    expect(u.code).toBe(0);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(80);
  });
});

describe('--fault bad input exits 2 naming it', () => {
  it.each([
    [['--fault', 'nonsense'], /--fault .*unknown fault "nonsense"/],
    [['--fault', 'latency'], /latency needs a value/],
    [['--fault', 'corrupt=2'], /probability between 0 and 1/],
    [['--fault', 'drop=0.1'], /--fault drop: needs --udp/],
    [['--udp', '--fault', 'slice=10'], /--fault slice: cannot be used with --udp/],
    [['--fault', 'latency=5ms,p=0.5,every=2'], /p= and every=/],
    [['--fault', 'close-after=1k,how=maybe'], /how= is fin or rst/],
    [['--fault', 'accept-delay=1s,p=0.5'], /accept-delay is about the listening socket/],
    [
      ['--unix', '/tmp/x.sock', '--fault', 'accept-delay=1s'],
      /--fault accept-delay: cannot be used with --unix/,
    ],
  ] as [string[], RegExp][])('%j', async (args, re) => {
    const { code, stderr } = await refusal('echo-server', args);
    expect(code).toBe(2);
    expect(stderr).toMatch(re);
  });

  it('FaultSet picks by p= and every=', () => {
    const set = new FaultSet([parseFault('latency=1ms,every=3'), parseFault('corrupt=1,p=0')]);
    const picks = Array.from({ length: 6 }, () => set.pick()?.map((f) => f.kind));
    expect(picks).toEqual([undefined, undefined, ['latency'], undefined, undefined, ['latency']]);
  });
});
