// Trust: a UDP server's duplicate fault is charged to the per-source rate limit (no amplifier),
// echo-client bench says so when nothing came back, echo-client --udp matches each reply to its
// own request, and echo-chat on a terminal stays linear on a peer line with no newline.

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CHAT_PIECE, inPieces } from '../src/client/chat.js';
import { parseFault, startUdpEchoServer, UdpEchoClient } from '../src/index.js';
import {
  afterTest,
  bin,
  hasCommand,
  jsonLines,
  plainServer,
  runEchoClient,
  spawnServer,
  until,
} from './helpers.js';

const savedBatch = process.env.ECHO_UDP_BATCH;
afterEach(() => {
  if (savedBatch === undefined) delete process.env.ECHO_UDP_BATCH;
  else process.env.ECHO_UDP_BATCH = savedBatch;
});

describe('UDP duplicate fault and the rate limit', () => {
  // ECHO_UDP_BATCH=1: what is queued behind the first datagram is read by recvmmsg (Linux, IPv4)
  const paths: [string, string][] = [
    ['dgram, one datagram per callback', '0'],
    ['recvmmsg/sendmmsg batches', '1'],
  ];
  it.each(paths)('every datagram sent is charged to the source (%s)', async (_name, batchEnv) => {
    process.env.ECHO_UDP_BATCH = batchEnv;
    const rate = 20;
    const burst = 10;
    const srv = await startUdpEchoServer({
      port: 0,
      rateLimit: rate,
      rateBurst: burst,
      faults: [parseFault('duplicate=1')],
    });
    afterTest(async () => {
      await srv.close();
    });
    const c = dgram.createSocket({ type: 'udp4', recvBufferSize: 1024 * 1024 });
    afterTest(() => {
      c.close();
    });
    let replies = 0;
    c.on('message', () => replies++);
    await new Promise<void>((r) => c.bind(0, '127.0.0.1', r));
    const n = 100;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) c.send(Buffer.from(`d${i}`), srv.address.port, '127.0.0.1');
    // every datagram read: the decisions (and the sends, made at once without latency) are done
    await until(() => srv.stats().datagramsIn === n, 10_000, 'every datagram read');
    const elapsed = (performance.now() - t0) / 1000;
    const allowed = burst + rate * elapsed + 1;
    const out = srv.stats().datagramsOut;
    expect(out).toBeGreaterThanOrEqual(burst); // the burst is answered
    expect(out).toBeLessThanOrEqual(allowed);
    expect(srv.stats().dropped['rate-limit']).toBeGreaterThan(0);
    // what arrived is what was counted (loopback loses nothing at this size)
    await until(() => replies === out, 10_000, 'every reply received');
  });
});

/** A UDP port with nothing bound: a datagram there gets ICMP port unreachable. */
async function closedUdpPort(): Promise<number> {
  const probe = dgram.createSocket('udp4');
  await new Promise<void>((r) => probe.bind(0, '127.0.0.1', r));
  const port = probe.address().port;
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}

/** A UDP socket that reads every datagram and answers none. */
async function silentUdpPort(): Promise<{ port: number; received: () => number }> {
  const s = dgram.createSocket('udp4');
  let n = 0;
  s.on('message', () => n++);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  afterTest(() => {
    s.close();
  });
  return { port: s.address().port, received: () => n };
}

// each bench waits out its own timeouts against its own silent peer: they run at once
describe.concurrent('echo-client bench when nothing comes back', () => {
  it('UDP to a closed port: errors counted (ECONNREFUSED), exit 1, nothing claimed verified', async () => {
    const port = await closedUdpPort();
    const t0 = performance.now();
    const r = await runEchoClient(['bench', '--udp', '-d', '1s', '--warmup', '0', `127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.out.toString()).not.toMatch(/every echoed byte matched/);
    expect(r.err).toMatch(/ECONNREFUSED/);
    expect(performance.now() - t0).toBeLessThan(8000);
  });

  it('UDP to a port that never answers: says nothing came back, exit 1', async () => {
    const silent = await silentUdpPort();
    const r = await runEchoClient([
      'bench',
      '--udp',
      '-d',
      '1s',
      '--warmup',
      '0',
      '--json',
      `127.0.0.1:${silent.port}`,
    ]);
    expect(silent.received()).toBeGreaterThan(0);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no echo came back/);
    const j = JSON.parse(r.out.toString());
    expect(j.count).toBe(0);
  });

  it('TCP to a server that accepts and never echoes: says nothing came back, exit 1, ends', async () => {
    const held: Socket[] = [];
    const { port } = await plainServer((s) => {
      held.push(s); // read, never answer
      s.on('error', () => {});
    });
    afterTest(() => {
      for (const s of held) s.destroy();
    });
    const t0 = performance.now();
    const r = await runEchoClient(['bench', '-c', '2', '-d', '1s', '--warmup', '0', `127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.out.toString()).not.toMatch(/every echoed byte matched/);
    expect(r.err).toMatch(/no echo came back/);
    expect(performance.now() - t0).toBeLessThan(8000);
  });

  it('--requests 1 -d 1s ends with its duration when the requests never complete', async () => {
    const silent = await silentUdpPort();
    const t0 = performance.now();
    const r = await runEchoClient([
      'bench',
      '--udp',
      '--requests',
      '1',
      '-d',
      '1s',
      `127.0.0.1:${silent.port}`,
    ]);
    const took = performance.now() - t0;
    expect(r.code).toBe(1);
    // warmup 1 s + duration 1 s + at most 2 s for replies in flight, with room for a loaded machine
    expect(took).toBeLessThan(7000);
  });
});

describe('echo-client --udp matches each reply to its own request', () => {
  it('each request of a run leaves from its own source port, carrying exactly the bytes asked for', async () => {
    const seen: { msg: string; port: number }[] = [];
    const peer = dgram.createSocket('udp4');
    afterTest(() => {
      peer.close();
    });
    // an echo that answers every datagram twice
    peer.on('message', (m, r) => {
      seen.push({ msg: m.toString('latin1'), port: r.port });
      peer.send(m, r.port, r.address);
      peer.send(m, r.port, r.address);
    });
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', r));
    const c = await UdpEchoClient.open({ host: '127.0.0.1', port: peer.address().port });
    afterTest(() => c.close());
    for (let i = 0; i < 5; i++) {
      const { reply } = await c.roundTrip(Buffer.from('hello'));
      expect(reply.toString()).toBe('hello');
    }
    expect(seen.map((s) => s.msg)).toEqual(Array(5).fill('hello'));
    expect(new Set(seen.map((s) => s.port)).size).toBe(5);
    // every second copy lands on its request's socket, kept open until close()
    await until(() => c.counters.duplicate === 5, 10_000, 'five duplicates counted');
    expect(c.counters).toMatchObject({ answered: 5, lost: 0, late: 0 });
  });

  it('against --fault latency=20ms duplicate=0.3 reorder=0.3: RTTs >= 20 ms, duplicates counted', async () => {
    const srv = await spawnServer([
      '--udp',
      '--fault',
      'latency=20ms',
      '--fault',
      'duplicate=0.3',
      '--fault',
      'reorder=0.3',
    ]);
    const n = 40;
    const r = await runEchoClient([
      '--udp',
      '-m',
      'hello',
      '--count',
      String(n),
      '--timeout',
      '5s',
      '--log-format',
      'json',
      `127.0.0.1:${srv.port}`,
    ]);
    expect(r.code).toBe(0);
    const rtts = [...r.out.toString().matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
    expect(rtts).toHaveLength(n);
    for (const t of rtts) expect(t).toBeGreaterThanOrEqual(20);
    const summary = jsonLines(r.err).find((l) => typeof l.duplicate === 'number')!;
    expect(summary).toMatchObject({ answered: n, lost: 0 });
    // binomial(40, 0.3): mean 12, sd 2.9; the last request's copy may come after the end
    expect(summary.duplicate).toBeGreaterThanOrEqual(1);
    expect(summary.duplicate).toBeLessThanOrEqual(27);
    expect(summary.duplicate + summary.late).toBeLessThanOrEqual(n);
  });
});

/**
 * echo-chat on a pseudo-terminal (util-linux `script`), its screen bytes read as they come:
 * how many peer bytes ('z') were shown, the longest unbroken run of them, the last 4 KB.
 */
function chatOnPty(port: number) {
  const cmd = `'${process.execPath}' '${bin('echo-chat')}' 127.0.0.1 ${port}`;
  const child = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  afterTest(() => {
    child.kill('SIGKILL');
  });
  const seen = { shown: 0, run: 0, longest: 0, tail: '' };
  const waiters: { cond: () => boolean; resolve: () => void }[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    for (const b of d) {
      if (b === 0x7a) {
        seen.shown++;
        if (++seen.run > seen.longest) seen.longest = seen.run;
      } else seen.run = 0;
    }
    seen.tail = (seen.tail + d.toString('latin1')).slice(-4096);
    for (const w of [...waiters]) if (w.cond()) waiters.splice(waiters.indexOf(w), 1) && w.resolve();
  });
  const exit = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const wait = (cond: () => boolean, what: string, timeoutMs = 20_000) =>
    new Promise<void>((resolve, reject) => {
      if (cond()) return resolve();
      const t = setTimeout(
        () =>
          reject(
            new Error(
              `${what} not seen within ${timeoutMs} ms; screen ends: ${JSON.stringify(seen.tail.slice(-300))}`,
            ),
          ),
        timeoutMs,
      );
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      waiters.push({ cond, resolve: done });
      void exit.then(() => {
        if (!cond()) {
          clearTimeout(t);
          reject(
            new Error(
              `echo-chat exited before ${what}; screen ends: ${JSON.stringify(seen.tail.slice(-300))}`,
            ),
          );
        }
      });
    });
  /** the last screen bytes without cursor moves and line clearing (CSI sequences) */
  // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences
  const end = () => seen.tail.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
  return { child, seen, exit, wait, end, type: (t: string) => child.stdin!.write(t) };
}

/** A peer that hands its one connection over and collects what it receives. */
async function chatPeer() {
  let resolvePeer!: (s: Socket) => void;
  const peer = new Promise<Socket>((r) => {
    resolvePeer = r;
  });
  let got = '';
  const { port } = await plainServer((s) => {
    s.on('error', () => {});
    s.setEncoding('latin1').on('data', (d: string) => {
      got += d;
    });
    resolvePeer(s);
  });
  afterTest(async () => {
    (await peer).destroy();
  });
  return { port, peer, got: () => got };
}

describe('inPieces', () => {
  it('cuts only lines longer than CHAT_PIECE, never inside a surrogate pair', () => {
    expect(inPieces('short\nlines\n')).toBe('short\nlines\n');
    const long = `${'x'.repeat(CHAT_PIECE * 2 + 5)}\nend`;
    expect(
      inPieces(long)
        .split('\n')
        .map((l) => l.length),
    ).toEqual([CHAT_PIECE, CHAT_PIECE, 5, 3]);
    const emoji = `x${'\u{1F600}'.repeat(CHAT_PIECE)}`; // 2 units each, after one: a cut at CHAT_PIECE would split one
    const pieces = inPieces(emoji).split('\n');
    expect(pieces.join('')).toBe(emoji);
    for (const piece of pieces) {
      expect(piece.length).toBeLessThanOrEqual(CHAT_PIECE);
      expect(piece).not.toMatch(/[\ud800-\udbff]$/); // no high surrogate left without its pair
    }
  });
});

describe.skipIf(!hasCommand('script', '-V'))('echo-chat on a terminal, a peer line with no end', () => {
  it('a 1 MB line is shown in pieces of at most CHAT_PIECE, and a half-typed line survives', async () => {
    const p = await chatPeer();
    const chat = chatOnPty(p.port);
    const s = await p.peer;
    await chat.wait(() => chat.end().endsWith('> '), 'the prompt');
    chat.type('half typ');
    await chat.wait(() => chat.end().endsWith('> half typ'), 'the typed text');
    const n = 1024 * 1024;
    s.write(Buffer.alloc(n, 'z'));
    await chat.wait(() => chat.seen.shown >= n - CHAT_PIECE, 'the line, all but the piece held');
    s.write('\n');
    await chat.wait(() => chat.seen.shown === n, 'the whole line');
    expect(chat.seen.longest).toBeLessThanOrEqual(CHAT_PIECE);
    // the prompt was redrawn under the pieces with what had been typed
    await chat.wait(() => chat.end().endsWith('> half typ'), 'the prompt and the typed text redrawn');
    chat.type('ed\r');
    await until(() => p.got() === 'half typed\n', 10_000, 'the typed line at the peer');
    s.end();
    expect(await chat.exit).toBe(0);
  });

  it('48 MB with no newline: shown whole and in time (linear, not quadratic)', async () => {
    const p = await chatPeer();
    const chat = chatOnPty(p.port);
    const s = await p.peer;
    await chat.wait(() => chat.end().endsWith('> '), 'the prompt');
    const n = 48 * 1024 * 1024;
    const t0 = performance.now();
    const block = Buffer.alloc(1024 * 1024, 'z');
    for (let i = 0; i < n / block.length; i++) {
      if (!s.write(block)) await new Promise((r) => s.once('drain', r));
    }
    s.end();
    // quadratic work took 11.6 s for 16 MB here (9 × that for 48 MB); linear work takes ~2 s
    await chat.wait(() => chat.seen.shown === n, 'all 48 MB', 25_000);
    expect(performance.now() - t0).toBeLessThan(25_000);
    expect(await chat.exit).toBe(0);
  });
});
