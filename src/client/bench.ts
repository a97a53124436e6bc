// echo-client bench: tcpkali's job done for echo. Modes: pingpong (round trips,
// --pipeline messages in flight per connection), stream (bulk MB/s), connect (connect, echo,
// close per cycle), and UDP ping-pong. Every echoed byte is checked against what was sent.
// --rate switches to an open loop: one pacer sends message k at start + k/rate, round-robin
// over the connections, whatever the replies do; it arms a timer a little before the send time
// and catches up with setImmediate, so it does not sleep past it. Response time counts from the
// intended send time (no coordinated omission), service time from the actual write, and how
// late the pacer was is recorded too.
//
// Hot path: one preallocated payload per connection; a reply is compared in place against
// the payload at the expected offset (the echo of a connection is the payload repeated);
// send times live in a ring of numbers; the histograms (bench-hist.ts) record integers (ns).

import dgram from 'node:dgram';
import type { Socket } from 'node:net';
import { connectTcp } from '../core/connect.js';
import { countError, errorCode } from '../core/errors.js';
import type { ClientTls } from '../core/tls.js';
import { type HistogramJson, LogHistogram, latencySummary, us } from './bench-hist.js';
import { type BenchHooks, wsConnectLoop, wsTransport } from './bench-ws.js';

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
  /** each connection's connect must be done within this */
  connectTimeoutMs?: number;
  /** the message (pingpong, connect) or write (stream) sent instead of a generated pattern */
  payload?: Buffer;
  /** how a ping-pong connection is opened (default: TCP, TLS or Unix as the options say) */
  transport?: BenchConnect;
  /** called about every 250 ms while measuring (progress line, --abort-on) */
  onProgress?: (p: BenchProgress) => void;
  /** called every intervalMs while measuring, and once for the last part after the stop */
  intervalMs?: number;
  onInterval?: (i: BenchInterval) => void;
  /** aborted (Ctrl-C): stop early and report what was measured so far */
  signal?: AbortSignal;
  /** --ws: each connection is a WebSocket upgraded at this path (bench-ws.ts) */
  ws?: { path: string };
}

export interface BenchProgress {
  elapsedMs: number;
  count: number;
  bytes: number;
  errors: number;
  mismatches: number;
  /** response time at percentile p so far, µs */
  percentileUs: (p: number) => number;
}

/** One --interval: what was measured in it (sums over intervals equal the summary). */
export interface BenchInterval {
  /** seconds since the measurement began, at the interval's start and end */
  start_s: number;
  end_s: number;
  count: number;
  bytes: number;
  rate_per_s: number;
  latency_us: { p50: number; p90: number; p99: number; max: number };
  errors: number;
  mismatches: number;
}

/** The open loop's own figures: how well the generator kept its schedule. */
export interface OpenLoopFigures {
  target_rate: number;
  /** messages the pacer sent while measuring, and how many were due by the stop */
  sent: number;
  due: number;
  /** how late the pacer sent (actual minus intended send time), µs */
  lateness_us: { p50: number; p99: number; max: number };
  /** scheduleKept(sent, due), and p99 lateness at most 1 ms */
  rate_kept: boolean;
}

export interface BenchResult {
  mode: string;
  connections: number;
  duration_s: number;
  /** round trips, connections completed, or echoed bytes (stream) */
  count: number;
  rate_per_s: number;
  mb_per_s: number;
  /** response time: from the intended send time (open loop) or the send (closed loop) */
  latency_us: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  /** open loop: service time, from the actual write to the echo */
  service_us?: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  open_loop?: OpenLoopFigures;
  /** response time in log buckets (mergeable; bench-hist.ts), and service time in the open loop */
  histogram?: HistogramJson;
  service_histogram?: HistogramJson;
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
  /** response time; service time (open loop); this interval's response time; pacer lateness */
  hist: LogHistogram;
  svc: LogHistogram;
  ihist: LogHistogram;
  late: LogHistogram;
  lost: number;
  /** open loop: each connected ping-pong connection's sender, for the pacer */
  senders: ((intended: number) => boolean)[];
  /** open loop: messages sent and not yet echoed */
  inflight: number;
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
function record(run: Run, bytes: number, sentAt: number, now = performance.now(), actualAt = sentAt): void {
  if (!run.measuring) return;
  run.count++;
  run.bytes += bytes;
  const ns = (now - sentAt) * 1e6;
  run.hist.record(ns);
  run.ihist.record(ns);
  if (actualAt !== sentAt) run.svc.record((now - actualAt) * 1e6);
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
    ...(o.connectTimeoutMs !== undefined ? { connectTimeoutMs: o.connectTimeoutMs } : {}),
    allowHalfOpen: false,
    socketOptions: { noDelay: o.noDelay ?? true },
    ...(onread ? { onread: { buffer: Buffer.allocUnsafe(256 * 1024), callback: onread } } : {}),
  });
  return socket;
}

/**
 * What the ping-pong loop (closed and open) needs from a transport: connect, send, replies as
 * bytes, close. A transport other than TCP plugs in as BenchOptions.transport; replies may come
 * in any split (a byte stream) or one message per call.
 */
export interface BenchConn {
  send(data: Buffer): void;
  /** close once what was sent is out (the echo of it may still come) */
  end(): void;
  /** close now */
  destroy(): void;
  readonly ended: boolean;
}
export interface BenchHandlers {
  onReply(len: number, data: Buffer): void;
  onError(err: Error): void;
  /** exactly once, after an error or a close from either side */
  onClose(): void;
}
export type BenchConnect = (o: BenchOptions, h: BenchHandlers) => Promise<BenchConn>;

/** TCP (TLS, Unix): the default transport. */
export const tcpConnect: BenchConnect = async (o, h) => {
  const s = await connectOnce(o, h.onReply);
  s.on('error', h.onError);
  s.on('close', h.onClose);
  return {
    send: (d) => s.write(d),
    end: () => s.end(),
    destroy: () => s.destroy(),
    get ended() {
      return s.writableEnded;
    },
  };
};

/** Ping-pong on one connection: closed loop with `pipeline` in flight, or open loop fed by the pacer. */
async function pingpong(
  o: BenchOptions,
  run: Run,
  seed: number,
  open: boolean,
  connected: () => void,
): Promise<void> {
  const payload = o.payload ?? patterned(o.size, seed);
  const size = payload.length;
  const intended = new Float64Array(65536); // send (or scheduled) times of messages in flight
  const actual = new Float64Array(65536); // open loop: when each was written
  let head = 0;
  let tail = 0;
  let pos = 0; // offset within the payload of the next byte expected back
  let c!: BenchConn;
  let done!: () => void;
  const closed = new Promise<void>((r) => (done = r));
  const send = (t: number, now: number) => {
    intended[tail] = t;
    actual[tail] = now;
    tail = (tail + 1) & 65535;
    c.send(payload);
  };
  const onReply = (len: number, chunk: Buffer) => {
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
        record(run, size, intended[head]!, now, actual[head]!);
        head = (head + 1) & 65535;
        if (open) run.inflight--;
        if (!run.stopped && !open) send(now, now);
      }
    }
    if (run.stopped && head === tail && !c.ended) c.end();
  };
  try {
    c = await (o.transport ?? tcpConnect)(o, {
      onReply,
      onError: (err) => {
        countError(run.errors, err);
        done();
      },
      onClose: () => done(),
    });
  } finally {
    connected();
  }
  const stop = () => {
    if (head === tail && !c.ended) c.end();
  };
  run.onStop.push(stop);
  whenAbandoned(run, () => c.destroy());
  if (!open) {
    const now = performance.now();
    for (let i = 0; i < o.pipeline; i++) send(now, now);
  } else {
    const sender = (t: number) => {
      if (run.stopped || c.ended || ((tail + 1) & 65535) === head) return false;
      send(t, performance.now());
      run.inflight++;
      return true;
    };
    run.senders.push(sender);
    void closed.then(() => {
      const i = run.senders.indexOf(sender);
      if (i >= 0) run.senders.splice(i, 1);
    });
  }
  await closed;
}

/**
 * Whether the pacer sent what was due: at most 1 % missing, or one message (the one due just
 * before the stop may not have had its turn).
 */
export function scheduleKept(sent: number, due: number): boolean {
  return due - sent <= Math.max(1, 0.01 * due);
}

/**
 * The pacer arms its timer this long before a send time (longer when timers have fired late
 * lately: 1.5 × their recent lateness, up to MAX_SPIN_MS), then catches up with setImmediate;
 * while echoes are due it keeps polling (at most REPLY_SPIN_MS after a send), so a reply is
 * read when it comes rather than after this process is woken from a sleep.
 */
const SPIN_MS = 1.5;
const REPLY_SPIN_MS = 1;
const MAX_SPIN_MS = 4;
const BATCH = 1024;

/**
 * Open loop: message k is due at start + k/rate and goes to the connections in turn; a message
 * no connection can take (all gone, or a ring full) is not sent, and counts as not kept.
 */
function pace(run: Run, rate: number): { stats: (end: number) => { sent: number; due: number } } {
  const iv = 1000 / rate;
  let start = 0;
  let k = 0; // messages due so far (sent or not)
  let sent = 0;
  let k0 = 0; // k and sent when measuring began
  let sent0 = 0;
  let wasMeasuring = false;
  let rr = 0;
  let lastSend = 0;
  let timer: NodeJS.Timeout | undefined;
  let wakeAt = 0; // when the armed timer should fire
  let overshoot = 0; // how late timers fired lately (decaying maximum), ms
  const tick = () => {
    if (timer) {
      overshoot = Math.max(performance.now() - wakeAt, overshoot * 0.95);
      timer = undefined;
    }
    if (run.stopped) return;
    if (run.measuring && !wasMeasuring) {
      wasMeasuring = true;
      k0 = k;
      sent0 = sent;
    }
    let now = performance.now();
    // at most BATCH per turn: a pacer far behind still lets replies be read between batches
    for (let b = 0; b < BATCH && start + k * iv <= now; b++) {
      const t = start + k * iv;
      k++;
      const n = run.senders.length;
      for (let tries = 0; tries < n; tries++) {
        const s = run.senders[rr++ % n]!;
        if (s(t)) {
          sent++;
          now = performance.now();
          lastSend = now;
          if (run.measuring) run.late.record((now - t) * 1e6);
          break;
        }
      }
    }
    now = performance.now();
    const wait = start + k * iv - now;
    const margin = Math.min(MAX_SPIN_MS, Math.max(SPIN_MS, 1.5 * overshoot));
    if (wait > margin && !(run.inflight > 0 && now - lastSend < REPLY_SPIN_MS)) {
      wakeAt = now + wait - margin;
      timer = setTimeout(tick, wait - margin);
    } else setImmediate(tick);
  };
  run.onStop.push(() => clearTimeout(timer));
  start = performance.now();
  tick();
  return {
    // due by `end`, by the schedule, whether or not the pacer got to run by then
    stats: (end) => ({ sent: sent - sent0, due: Math.floor((end - start) / iv) + 1 - k0 }),
  };
}

/** Bulk: write as fast as the socket takes it, at most STREAM_WINDOW un-echoed; verify the echo. */
async function stream(o: BenchOptions, run: Run, seed: number): Promise<void> {
  const s = await connectOnce(o);
  const payload = o.payload ?? patterned(o.size, seed);
  const size = payload.length;
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
  const payload = o.payload ?? patterned(o.size, seed);
  const size = payload.length;
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
          if (pos >= size) s.end();
        });
        s.on('error', reject);
        s.on('close', () => resolve());
        s.write(payload);
      }).finally(() => {
        const i = run.onAbandon.indexOf(abandon);
        if (i >= 0) run.onAbandon.splice(i, 1);
      });
      if (abandoned) break; // its echo never came
      record(run, size, t0);
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

/** A WebSocket connect loop of the bench (bench-ws.ts), reporting through the run's hooks. */
function wsConnectWorker(o: BenchOptions, wsPath: string, run: Run, seed: number) {
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
  return wsConnectLoop(target, hooks, payload);
}

export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const run: Run = {
    measuring: false,
    stopped: false,
    count: 0,
    bytes: 0,
    mismatches: 0,
    errors: {},
    hist: new LogHistogram(),
    svc: new LogHistogram(),
    ihist: new LogHistogram(),
    late: new LogHistogram(),
    lost: 0,
    senders: [],
    inflight: 0,
    onStop: [],
    onAbandon: [],
    abandoned: false,
    requests: o.requests,
  };
  const open = o.rate !== undefined && o.mode === 'pingpong' && !o.udp;
  let connecting = o.connections;
  let connected!: () => void;
  const ready = new Promise<void>((r) => (connected = r));
  const workers: Promise<void>[] = [];
  // --ws: ping-pong runs on the same scheduler, each connection a WebSocket
  const wsOptions = o.ws ? { ...o, transport: wsTransport({ ...o, wsPath: o.ws.path }) } : o;
  if (o.udp) workers.push(udpPingpong(o, run));
  else {
    for (let i = 0; i < o.connections; i++) {
      const seed = i + 1;
      if (o.ws && o.mode === 'connect') {
        workers.push(wsConnectWorker(o, o.ws.path, run, seed).catch((err) => countError(run.errors, err)));
        continue;
      }
      const w =
        o.mode === 'pingpong'
          ? pingpong(wsOptions, run, seed, open, () => --connecting === 0 && connected())
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
  // the open loop's schedule starts once every connection is up (or has failed)
  let pacer: ReturnType<typeof pace> | undefined;
  if (open) {
    await Promise.race([ready, all, aborted]);
    pacer = pace(run, o.rate!);
  }
  if (o.warmupMs > 0)
    await Promise.race([new Promise((r) => setTimeout(r, o.warmupMs).unref()), all, aborted]);
  run.measuring = o.requests === undefined || o.requests > 0;
  run.count = 0;
  run.bytes = 0;
  run.hist.reset();
  run.svc.reset();
  run.ihist.reset();
  run.late.reset();
  const t0 = performance.now();
  const errorCount = () => Object.values(run.errors).reduce((a, b) => a + b, 0);
  const progress = o.onProgress
    ? setInterval(
        () =>
          o.onProgress!({
            elapsedMs: performance.now() - t0,
            count: run.count,
            bytes: run.bytes,
            errors: errorCount(),
            mismatches: run.mismatches,
            percentileUs: (p) => us(run.hist.percentile(p)),
          }),
        250,
      )
    : undefined;
  // --interval: what each interval measured; the last one is closed after the stop, so late
  // errors land in it and the sums equal the summary
  let last = { t: t0, count: 0, bytes: 0, errors: errorCount(), mismatches: run.mismatches };
  const emit = (end: number) => {
    const h = run.ihist;
    const secs = (end - last.t) / 1000;
    const errors = errorCount();
    o.onInterval!({
      start_s: Math.round(((last.t - t0) / 1000) * 1000) / 1000,
      end_s: Math.round(((end - t0) / 1000) * 1000) / 1000,
      count: run.count - last.count,
      bytes: run.bytes - last.bytes,
      rate_per_s: secs > 0 ? Math.round((run.count - last.count) / secs) : 0,
      latency_us: {
        p50: us(h.percentile(50)),
        p90: us(h.percentile(90)),
        p99: us(h.percentile(99)),
        max: us(h.max),
      },
      errors: errors - last.errors,
      mismatches: run.mismatches - last.mismatches,
    });
    h.reset();
    last = { t: end, count: run.count, bytes: run.bytes, errors, mismatches: run.mismatches };
  };
  const ticker =
    o.onInterval && o.intervalMs ? setInterval(() => emit(performance.now()), o.intervalMs) : undefined;
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
  const tEnd = performance.now();
  const elapsed = (tEnd - t0) / 1000;
  run.measuring = false;
  run.stopped = true;
  const schedule = pacer?.stats(tEnd);
  for (const f of run.onStop) f();
  clearInterval(progress);
  clearInterval(ticker);
  // let in-flight replies come back (bounded), then close what is still open (a server that
  // never echoes would otherwise hold its connections, and this process, open) and report
  let grace: NodeJS.Timeout | undefined;
  await Promise.race([all, new Promise((r) => (grace = setTimeout(r, 2000)))]);
  clearTimeout(grace);
  run.abandoned = true;
  for (const f of run.onAbandon.splice(0)) f();
  await all;
  if (ticker) emit(tEnd);
  const h = run.hist;
  const count = o.mode === 'stream' && !o.udp ? run.bytes : run.count;
  const lateP99 = us(run.late.percentile(99));
  return {
    mode: o.udp ? 'udp' : o.mode,
    connections: o.connections,
    duration_s: Math.round(elapsed * 1000) / 1000,
    count,
    rate_per_s: Math.round((o.mode === 'stream' && !o.udp ? 0 : run.count) / elapsed),
    mb_per_s: Math.round((run.bytes / 1e6 / elapsed) * 100) / 100,
    latency_us: latencySummary(h),
    ...(open ? { service_us: latencySummary(run.svc) } : {}),
    ...(schedule
      ? {
          open_loop: {
            target_rate: o.rate!,
            sent: schedule.sent,
            due: schedule.due,
            lateness_us: { p50: us(run.late.percentile(50)), p99: lateP99, max: us(run.late.max) },
            rate_kept: scheduleKept(schedule.sent, schedule.due) && lateP99 <= 1000,
          },
        }
      : {}),
    histogram: h.toJSON(),
    ...(open ? { service_histogram: run.svc.toJSON() } : {}),
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
  o: Pick<BenchOptions, 'udp' | 'tls' | 'sendProxy' | 'family' | 'connectTimeoutMs'>,
): Promise<void> {
  if (o.udp) return;
  for (const t of targets)
    (
      await connectTcp({
        ...t,
        tls: o.tls,
        sendProxy: o.sendProxy,
        family: o.family,
        connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
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
