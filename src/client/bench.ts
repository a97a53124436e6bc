// echo-client bench: tcpkali's job done for echo. Modes: pingpong (round trips,
// --pipeline messages in flight per connection), stream (bulk MB/s), connect (connect, echo,
// close per cycle), and UDP ping-pong. Every echoed byte is checked against what was sent.
// --rate switches to an open loop: messages leave at their scheduled times whatever the
// replies do, and latency is measured from the scheduled time (no coordinated omission).
//
// Hot path: one preallocated payload per connection; a reply is compared in place against
// the payload at the expected offset (the echo of a connection is the payload repeated);
// send times live in a ring of numbers; the histogram records integers (ns).

import dgram from 'node:dgram';
import type { Socket } from 'node:net';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import { connectTcp } from '../core/connect.js';
import { countError, errorCode } from '../core/errors.js';
import type { ClientTls } from '../core/tls.js';
import { type BenchHooks, wsConnectLoop, wsPingpong } from './bench-ws.js';

export type BenchMode = 'pingpong' | 'stream' | 'connect';

export interface BenchOptions {
  host: string;
  port: number;
  /** TCP modes: a Unix socket instead of host and port, TLS, a PROXY header first */
  path?: string;
  tls?: ClientTls;
  sendProxy?: 1 | 2;
  /** resolve the host to this family only (-4 / -6) */
  family?: 4 | 6;
  mode: BenchMode;
  udp?: boolean;
  connections: number;
  /** measured duration, ms: the bench ends then, --requests done or not */
  durationMs: number;
  /** stop after this many round trips / connections, or at durationMs if that comes first */
  requests?: number;
  /** message size (pingpong, connect, udp) or write size (stream) */
  size: number;
  pipeline: number;
  /** open loop: messages per second over all connections */
  rate?: number;
  warmupMs: number;
  noDelay?: boolean;
  /** called about every 250 ms while measuring (progress line) */
  onProgress?: (p: { elapsedMs: number; count: number; bytes: number }) => void;
  /** aborted (Ctrl-C): stop early and report what was measured so far */
  signal?: AbortSignal;
  /** --ws: each connection is a WebSocket upgraded at this path (bench-ws.ts) */
  ws?: { path: string };
}

export interface BenchResult {
  mode: string;
  connections: number;
  duration_s: number;
  /** round trips, connections completed, or echoed bytes (stream) */
  count: number;
  rate_per_s: number;
  mb_per_s: number;
  latency_us: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  errors: Record<string, number>;
  /** bytes that came back different from what was sent (must be 0) */
  mismatches: number;
  /** UDP: datagrams never answered */
  lost?: number;
  /** stopped early by the caller's signal (Ctrl-C): the figures cover duration_s only */
  interrupted?: true;
}

interface Run {
  measuring: boolean;
  stopped: boolean;
  count: number;
  bytes: number;
  mismatches: number;
  errors: Record<string, number>;
  hist: RecordableHistogram;
  lost: number;
  /** called once when measuring stops: each connection winds down (ends once its replies are in) */
  onStop: (() => void)[];
  /** called once the wait for replies in flight is over: each connection closes at once */
  onAbandon: (() => void)[];
  abandoned: boolean;
  /** --requests: stop measuring at exactly this count */
  requests?: number;
  onLimit?: () => void;
}

const STREAM_WINDOW = 4 * 1024 * 1024; // un-echoed bytes allowed per connection in stream mode

function patterned(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** `fn` closes a connection once the wait for replies is over (at once if it already is). */
function whenAbandoned(run: Run, fn: () => void): void {
  if (run.abandoned) fn();
  else run.onAbandon.push(fn);
}

/** One measured round trip (or connection); with --requests N, the Nth ends the measurement. */
function record(run: Run, bytes: number, sentAt: number, now = performance.now()): void {
  if (!run.measuring) return;
  run.count++;
  run.bytes += bytes;
  run.hist.record(Math.max(1, Math.round((now - sentAt) * 1e6)));
  if (run.requests !== undefined && run.count >= run.requests) {
    run.measuring = false; // replies still in flight are not counted
    run.onLimit?.();
  }
}

/**
 * `onread`: libuv reads into one buffer of ours and the callback gets the byte count — no
 * Buffer allocated and no stream machinery per read, which is most of a small echo's cost.
 */
type OnRead = (nread: number, buf: Buffer) => void;

async function connectOnce(o: BenchOptions, onread?: OnRead): Promise<Socket> {
  const { socket } = await connectTcp({
    host: o.host,
    port: o.port,
    path: o.path,
    tls: o.tls,
    sendProxy: o.sendProxy,
    ...(o.family ? { family: o.family } : {}),
    allowHalfOpen: false,
    socketOptions: { noDelay: o.noDelay ?? true },
    ...(onread ? { onread: { buffer: Buffer.allocUnsafe(256 * 1024), callback: onread } } : {}),
  });
  return socket;
}

/** Ping-pong on one connection: closed loop with `pipeline` in flight, or open loop at `interval` ms. */
async function pingpong(o: BenchOptions, run: Run, seed: number, intervalMs?: number): Promise<void> {
  const size = o.size;
  const payload = patterned(size, seed);
  const ring = new Float64Array(65536); // send (or scheduled) times of messages in flight
  let head = 0;
  let tail = 0;
  let pos = 0; // offset within the payload of the next byte expected back
  let timer: NodeJS.Timeout | undefined;
  let next = performance.now();
  let s!: Socket;
  const send = (t: number) => {
    ring[tail] = t;
    tail = (tail + 1) & 65535;
    s.write(payload);
  };
  const onRead = (len: number, chunk: Buffer) => {
    let off = 0;
    let now = 0;
    while (off < len) {
      const n = Math.min(size - pos, len - off);
      if (chunk.compare(payload, pos, pos + n, off, off + n) !== 0) run.mismatches++;
      off += n;
      pos += n;
      if (pos === size) {
        pos = 0;
        now ||= performance.now();
        const sent = ring[head]!;
        head = (head + 1) & 65535;
        record(run, size, sent, now);
        if (!run.stopped && intervalMs === undefined) send(now);
      }
    }
    if (run.stopped && head === tail && !s.writableEnded) s.end();
  };
  s = await connectOnce(o, onRead);
  run.onStop.push(() => {
    if (head === tail && !s.writableEnded) s.end();
  });
  await new Promise<void>((resolve) => {
    s.on('error', (err) => {
      countError(run.errors, err);
      resolve();
    });
    s.on('close', () => {
      clearInterval(timer);
      resolve();
    });
    whenAbandoned(run, () => s.destroy());
    if (intervalMs === undefined) {
      const now = performance.now();
      for (let i = 0; i < o.pipeline; i++) send(now);
    } else {
      // open loop: send at the scheduled times; latency counts from the schedule
      const tick = () => {
        if (run.stopped) {
          clearInterval(timer);
          if (head === tail && !s.writableEnded) s.end();
          return;
        }
        const now = performance.now();
        while (next <= now && ((tail + 1) & 65535) !== head) {
          send(next);
          next += intervalMs;
        }
      };
      timer = setInterval(tick, Math.max(1, Math.min(10, intervalMs)));
      tick();
    }
  });
}

/** Bulk: write as fast as the socket takes it, at most STREAM_WINDOW un-echoed; verify the echo. */
async function stream(o: BenchOptions, run: Run, seed: number): Promise<void> {
  const s = await connectOnce(o);
  const size = o.size;
  const payload = patterned(size, seed);
  let sent = 0;
  let received = 0;
  let pos = 0;
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (!run.stopped && sent - received < STREAM_WINDOW) {
        sent += size;
        if (!s.write(payload)) return;
      }
      if (run.stopped && !s.writableEnded) s.end();
    };
    s.on('drain', pump);
    run.onStop.push(pump);
    whenAbandoned(run, () => s.destroy());
    s.on('data', (chunk: Buffer) => {
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(size - pos, chunk.length - off);
        if (chunk.compare(payload, pos, pos + n, off, off + n) !== 0) run.mismatches++;
        off += n;
        pos = (pos + n) % size;
      }
      received += chunk.length;
      if (run.measuring) run.bytes += chunk.length;
      if (s.writableLength === 0) pump();
    });
    s.on('error', (err) => {
      countError(run.errors, err);
      resolve();
    });
    s.on('close', () => resolve());
    pump();
  });
}

/** Connect rate: connect, send `size` bytes, read them back, close; repeat. */
async function connectLoop(o: BenchOptions, run: Run, seed: number): Promise<void> {
  const payload = patterned(o.size, seed);
  while (!run.stopped) {
    const t0 = performance.now();
    try {
      const s = await connectOnce(o);
      if (run.abandoned) {
        s.destroy();
        break;
      }
      let abandoned = false;
      const abandon = () => {
        abandoned = true;
        s.destroy();
      };
      whenAbandoned(run, abandon);
      await new Promise<void>((resolve, reject) => {
        let pos = 0;
        s.on('data', (chunk: Buffer) => {
          if (chunk.compare(payload, pos, pos + chunk.length) !== 0) run.mismatches++;
          pos += chunk.length;
          if (pos >= o.size) s.end();
        });
        s.on('error', reject);
        s.on('close', () => resolve());
        s.write(payload);
      }).finally(() => {
        const i = run.onAbandon.indexOf(abandon);
        if (i >= 0) run.onAbandon.splice(i, 1);
      });
      if (abandoned) break; // its echo never came
      record(run, o.size, t0);
    } catch (err) {
      countError(run.errors, err);
      if (run.errors[errorCode(err)]! > 1000) return; // a dead server: stop hammering it
    }
  }
}

/** UDP ping-pong: `connections` datagrams outstanding on one socket, each carrying its sequence number. */
async function udpPingpong(o: BenchOptions, run: Run): Promise<void> {
  const v6 = o.host.includes(':') || o.family === 6;
  const sock = dgram.createSocket(v6 ? 'udp6' : 'udp4');
  await new Promise<void>((res, rej) => {
    sock.once('error', rej);
    sock.connect(o.port, o.host, () => {
      sock.off('error', rej);
      res();
    });
  });
  const size = Math.max(8, o.size);
  const body = patterned(size, 7);
  const outstanding = new Map<number, number>(); // seq → send time
  let seq = 0;
  let closed = false;
  const send = () => {
    if (closed) return;
    const b = Buffer.from(body);
    const id = seq++;
    b.writeUInt32LE(id >>> 0, 0);
    b.writeUInt32LE((id / 2 ** 32) >>> 0, 4);
    outstanding.set(id, performance.now());
    // an ICMP error (port unreachable: ECONNREFUSED) left on the connected socket by an earlier
    // datagram fails this send: nothing left, so the slot is sent again shortly
    sock.send(b, (err) => {
      if (!err) return;
      outstanding.delete(id);
      countError(run.errors, err);
      if (!run.stopped) setTimeout(() => !run.stopped && send(), 10);
    });
  };
  await new Promise<void>((resolve) => {
    sock.on('message', (m) => {
      const id = m.readUInt32LE(0) + m.readUInt32LE(4) * 2 ** 32;
      const t = outstanding.get(id);
      if (t === undefined) return; // late duplicate
      outstanding.delete(id);
      if (m.length !== size || m.compare(body, 8, size, 8, size) !== 0) run.mismatches++;
      record(run, size, t);
      if (!run.stopped) send();
      else if (outstanding.size === 0) resolve();
    });
    // the same ICMP error read by recvmsg: its datagram is reaped as lost below and sent again
    sock.on('error', (err) => countError(run.errors, err));
    // a lost datagram would shrink the window forever: resend a slot after 1 s of silence
    const reaper = setInterval(() => {
      const now = performance.now();
      for (const [id, t] of outstanding) {
        if (now - t > 1000) {
          outstanding.delete(id);
          run.lost++;
          if (!run.stopped) send();
        }
      }
      if (run.stopped) {
        clearInterval(reaper);
        resolve();
      }
    }, 250);
    whenAbandoned(run, () => {
      clearInterval(reaper);
      resolve();
    });
    for (let i = 0; i < o.connections; i++) send();
  });
  closed = true;
  sock.close();
}

/** A WebSocket connection of the bench (bench-ws.ts), reporting through the run's hooks. */
function wsWorker(o: BenchOptions, wsPath: string, run: Run, seed: number, intervalMs?: number) {
  const hooks: BenchHooks = {
    stopped: () => run.stopped,
    record: (bytes, sentAt, now) => record(run, bytes, sentAt, now),
    mismatch: () => {
      run.mismatches++;
    },
    error: (err) => countError(run.errors, err),
    onStop: (fn) => run.onStop.push(fn),
    whenAbandoned: (fn) => {
      whenAbandoned(run, fn);
      return () => {
        const i = run.onAbandon.indexOf(fn);
        if (i >= 0) run.onAbandon.splice(i, 1);
      };
    },
  };
  const target = { ...o, wsPath };
  const payload = patterned(o.size, seed);
  return o.mode === 'connect'
    ? wsConnectLoop(target, hooks, payload)
    : wsPingpong(target, hooks, payload, o.pipeline, intervalMs);
}

export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const run: Run = {
    measuring: false,
    stopped: false,
    count: 0,
    bytes: 0,
    mismatches: 0,
    errors: {},
    hist: createHistogram({ lowest: 1, highest: 60e9, figures: 3 }),
    lost: 0,
    onStop: [],
    onAbandon: [],
    abandoned: false,
    requests: o.requests,
  };
  const perConnInterval = o.rate ? (1000 * o.connections) / o.rate : undefined;
  const workers: Promise<void>[] = [];
  if (o.udp) workers.push(udpPingpong(o, run));
  else {
    for (let i = 0; i < o.connections; i++) {
      const seed = i + 1;
      if (o.ws) {
        workers.push(
          wsWorker(o, o.ws.path, run, seed, perConnInterval).catch((err) => countError(run.errors, err)),
        );
        continue;
      }
      const w =
        o.mode === 'pingpong'
          ? pingpong(o, run, seed, perConnInterval)
          : o.mode === 'stream'
            ? stream(o, run, seed)
            : connectLoop(o, run, seed);
      workers.push(w.catch((err) => countError(run.errors, err)));
    }
  }
  const all = Promise.all(workers);
  const aborted = new Promise<void>((resolve) => {
    if (o.signal?.aborted) resolve();
    else o.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  if (o.warmupMs > 0)
    await Promise.race([new Promise((r) => setTimeout(r, o.warmupMs).unref()), all, aborted]);
  run.measuring = o.requests === undefined || o.requests > 0;
  run.count = 0;
  run.bytes = 0;
  run.hist.reset();
  const t0 = performance.now();
  const progress = o.onProgress
    ? setInterval(
        () => o.onProgress!({ elapsedMs: performance.now() - t0, count: run.count, bytes: run.bytes }),
        250,
      )
    : undefined;
  // stop on time, at the request count, or when every connection gave up
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(limit);
      resolve();
    };
    const limit = setTimeout(done, o.durationMs);
    run.onLimit = done;
    void all.then(done);
    void aborted.then(done);
  });
  const elapsed = (performance.now() - t0) / 1000;
  run.measuring = false;
  run.stopped = true;
  for (const f of run.onStop) f();
  clearInterval(progress);
  // let in-flight replies come back (bounded), then close what is still open (a server that
  // never echoes would otherwise hold its connections, and this process, open) and report
  let grace: NodeJS.Timeout | undefined;
  await Promise.race([all, new Promise((r) => (grace = setTimeout(r, 2000)))]);
  clearTimeout(grace);
  run.abandoned = true;
  for (const f of run.onAbandon.splice(0)) f();
  await all;
  const h = run.hist;
  const us = (ns: number) => Math.round(ns / 10) / 100;
  const count = o.mode === 'stream' && !o.udp ? run.bytes : run.count;
  return {
    mode: o.udp ? 'udp' : o.mode,
    connections: o.connections,
    duration_s: Math.round(elapsed * 1000) / 1000,
    count,
    rate_per_s: Math.round((o.mode === 'stream' && !o.udp ? 0 : run.count) / elapsed),
    mb_per_s: Math.round((run.bytes / 1e6 / elapsed) * 100) / 100,
    latency_us: {
      p50: h.count ? us(h.percentile(50)) : 0,
      p90: h.count ? us(h.percentile(90)) : 0,
      p99: h.count ? us(h.percentile(99)) : 0,
      p999: h.count ? us(h.percentile(99.9)) : 0,
      max: h.count ? us(h.max) : 0,
      mean: h.count ? us(h.mean) : 0,
    },
    errors: run.errors,
    mismatches: run.mismatches,
    ...(o.udp ? { lost: run.lost } : {}),
    ...(o.signal?.aborted ? { interrupted: true as const } : {}),
  };
}

/**
 * Connect once to each target and close, before any load: a server that is not there (or a
 * TLS check that fails) is one error, not a table of zeros. UDP has nothing to connect to.
 */
export async function checkTargets(
  targets: readonly { host: string; port: number; path?: string }[],
  o: Pick<BenchOptions, 'udp' | 'tls' | 'sendProxy' | 'family'>,
): Promise<void> {
  if (o.udp) return;
  for (const t of targets)
    (
      await connectTcp({
        ...t,
        tls: o.tls,
        sendProxy: o.sendProxy,
        family: o.family,
        connectTimeoutMs: 10_000,
      })
    ).socket.destroy();
}

/** What a fleet of benches measured together: each target's figures summed. */
export interface FleetTotal {
  count: number;
  rate_per_s: number;
  mb_per_s: number;
  mismatches: number;
  errors: Record<string, number>;
}

export function fleetTotal(results: readonly BenchResult[]): FleetTotal {
  const sum = (k: 'count' | 'rate_per_s' | 'mb_per_s' | 'mismatches') =>
    results.reduce((s, r) => s + (r[k] ?? 0), 0);
  return {
    count: sum('count'),
    rate_per_s: Math.round(sum('rate_per_s')),
    mb_per_s: Number(sum('mb_per_s').toFixed(1)),
    mismatches: sum('mismatches'),
    errors: results.reduce<Record<string, number>>((acc, r) => {
      for (const [k, v] of Object.entries(r.errors)) acc[k] = (acc[k] ?? 0) + v;
      return acc;
    }, {}),
  };
}
