// Fault injection: an echo server that misbehaves on purpose, so a client can be tested
// against a slow, trickling, stalling, resetting or corrupting far end (--fault, and
// `faults` in the library). Faults are chosen per connection (UDP: per datagram) by the
// process that accepts it, so `p=` and `every=` hold across worker and fork processes; they
// travel with the connection to the process that serves it. A connection with no fault runs
// the plain echo path untouched.

import type { Socket } from 'node:net';
import { transportSocket } from '../core/internals.js';
import { sendQueueBytes } from '../core/libc.js';
import { parseDuration, parseSize, UsageError } from '../core/parse.js';

export type FaultKind =
  | 'latency'
  | 'bandwidth'
  | 'slice'
  | 'stall-after'
  | 'close-after'
  | 'reset-on-connect'
  | 'blackhole'
  | 'corrupt'
  | 'drop'
  | 'duplicate'
  | 'reorder'
  | 'accept-delay';

export interface Fault {
  kind: FaultKind;
  /** latency: the delay; slice: the pause between pieces (ms) */
  delayMs?: number;
  /** latency: ± this much at random, order kept (ms) */
  jitterMs?: number;
  /** bandwidth: bytes per second */
  rate?: number;
  /** slice: piece size; stall-after, close-after: after this many bytes */
  bytes?: number;
  /** close-after: FIN, or RST (SO_LINGER 0) */
  how?: 'fin' | 'rst';
  /** corrupt, drop, duplicate, reorder: the chance per chunk (TCP) or datagram (UDP) */
  chance?: number;
  /** apply to this fraction of connections (UDP: datagrams) … */
  fraction?: number;
  /** … or to every Nth one */
  every?: number;
}

export const TCP_FAULTS: readonly FaultKind[] = [
  'latency',
  'bandwidth',
  'slice',
  'stall-after',
  'close-after',
  'reset-on-connect',
  'blackhole',
  'corrupt',
  'accept-delay',
];
export const UDP_FAULTS: readonly FaultKind[] = ['latency', 'corrupt', 'drop', 'duplicate', 'reorder'];

const KINDS = new Set<FaultKind>([...TCP_FAULTS, ...UDP_FAULTS]);

function chance(flag: string, raw: string): number {
  const p = Number(raw);
  if (!/^(0|1|0?\.\d+|1\.0*)$/.test(raw) || !(p >= 0 && p <= 1))
    throw new UsageError(flag, raw, 'must be a probability between 0 and 1 (e.g. 0.05)');
  return p;
}

/**
 * A duration inside a fault spec. A bare number is refused rather than read as seconds (the
 * rule of --idle-timeout and the other flags): people who know Toxiproxy type milliseconds.
 */
function faultDuration(flag: string, text: string, raw: string, minMs: number, maxMs: number): number {
  const bare = raw.trim();
  if (/^\d+(\.\d+)?$/.test(bare)) throw new UsageError(flag, text, `${bare}: add a unit, e.g. ${bare}ms`);
  return parseDuration(flag, raw, minMs, maxMs);
}

/** `latency=50ms,jitter=10ms,p=0.5` → a Fault; bad input is a UsageError naming --fault. */
export function parseFault(text: string, flag = '--fault'): Fault {
  const parts = text.split(',').map((s) => s.trim());
  const [head = '', ...opts] = parts;
  const [name, value] = head.split('=', 2) as [string, string | undefined];
  if (!KINDS.has(name as FaultKind))
    throw new UsageError(flag, text, `unknown fault "${name}" (one of: ${[...KINDS].join(', ')})`);
  const kind = name as FaultKind;
  const f: Fault = { kind };
  const need = (what: string) => {
    if (value === undefined || value === '')
      throw new UsageError(flag, text, `${kind} needs a value: ${kind}=${what}`);
    return value;
  };
  switch (kind) {
    case 'latency':
      f.delayMs = faultDuration(flag, text, need('DUR'), 0, 600_000);
      break;
    case 'bandwidth':
      f.rate = parseSize(flag, need('RATE (bytes per second, e.g. 64k)'), 1, 1024 ** 3);
      break;
    case 'slice':
      f.bytes = parseSize(flag, need('SIZE'), 1, 64 * 1024 * 1024);
      f.delayMs = 10; // each piece its own read on the client
      break;
    case 'stall-after':
    case 'close-after':
      f.bytes = parseSize(flag, need('SIZE'), 0, Number.MAX_SAFE_INTEGER);
      if (kind === 'close-after') f.how = 'fin';
      break;
    case 'accept-delay':
      f.delayMs = faultDuration(flag, text, need('DUR'), 1, 600_000);
      break;
    case 'reset-on-connect':
    case 'blackhole':
      if (value !== undefined) throw new UsageError(flag, text, `${kind} takes no value`);
      break;
    case 'reorder':
      f.chance = value === undefined ? 0.5 : chance(flag, value);
      break;
    default:
      f.chance = chance(flag, need('P'));
  }
  for (const opt of opts) {
    const [k, v] = opt.split('=', 2) as [string, string | undefined];
    if (v === undefined || v === '') throw new UsageError(flag, text, `"${k}" needs a value (${k}=…)`);
    if (k === 'p') f.fraction = chance(flag, v);
    else if (k === 'every') {
      if (!/^[1-9]\d{0,8}$/.test(v)) throw new UsageError(flag, text, 'every= needs a whole number ≥ 1');
      f.every = Number(v);
    } else if (k === 'jitter' && kind === 'latency') f.jitterMs = faultDuration(flag, text, v, 0, 600_000);
    else if (k === 'delay' && kind === 'slice') f.delayMs = faultDuration(flag, text, v, 0, 60_000);
    else if (k === 'how' && kind === 'close-after') {
      if (v !== 'fin' && v !== 'rst') throw new UsageError(flag, text, 'how= is fin or rst');
      f.how = v;
    } else throw new UsageError(flag, text, `${kind} has no option "${k}"`);
  }
  if (f.fraction !== undefined && f.every !== undefined)
    throw new UsageError(flag, text, 'p= and every= choose connections two ways: give one');
  if (kind === 'accept-delay' && (f.fraction !== undefined || f.every !== undefined))
    throw new UsageError(
      flag,
      text,
      'accept-delay is about the listening socket, not a connection: no p= or every=',
    );
  return f;
}

/** `latency=50ms,jitter=10ms`: a fault as it is written. */
export function formatFault(f: Fault): string {
  const main =
    f.kind === 'latency' || f.kind === 'accept-delay'
      ? `=${f.delayMs}ms${f.jitterMs ? `,jitter=${f.jitterMs}ms` : ''}`
      : f.kind === 'bandwidth'
        ? `=${f.rate}`
        : f.kind === 'slice'
          ? `=${f.bytes},delay=${f.delayMs}ms`
          : f.kind === 'stall-after'
            ? `=${f.bytes}`
            : f.kind === 'close-after'
              ? `=${f.bytes},how=${f.how}`
              : f.chance !== undefined
                ? `=${f.chance}`
                : '';
  const sel =
    f.fraction !== undefined ? `,p=${f.fraction}` : f.every !== undefined ? `,every=${f.every}` : '';
  return `${f.kind}${main}${sel}`;
}

/**
 * The faults of a server, changeable while it runs; `pick()` chooses those that apply to the
 * next connection (or datagram).
 */
export class FaultSet {
  private list: Fault[];
  private n = 0;

  constructor(faults: Fault[] = []) {
    this.list = faults;
  }

  get faults(): readonly Fault[] {
    return this.list;
  }

  get active(): boolean {
    return this.list.length > 0;
  }

  /** accept-delay: the pause between two accept() calls, if set */
  get acceptDelayMs(): number | undefined {
    return this.list.find((f) => f.kind === 'accept-delay')?.delayMs;
  }

  /** Replace every fault; connections already open keep theirs. */
  set(faults: Fault[]): void {
    this.list = faults;
  }

  pick(): Fault[] | undefined {
    if (this.list.length === 0) return undefined;
    const n = ++this.n;
    const out = this.list.filter(
      (f) =>
        f.kind !== 'accept-delay' &&
        (f.every === undefined || n % f.every === 0) &&
        (f.fraction === undefined || Math.random() < f.fraction),
    );
    return out.length ? out : undefined;
  }
}

// --- TCP: one connection's faulty echo ------------------------------------------------------

const HIGH = 256 * 1024; // stop reading the client while this much echo waits in our queue
const LOW = 64 * 1024;
const MAX_CHUNKS = 1024; // … or this many chunks (a client writing 1 byte at a time)

/**
 * A chunk read, waiting to be echoed: cut into pieces (slice, bandwidth) only as each piece
 * is written, so a 64 KiB chunk under slice=1 is one entry, not 65,536. `close` marks the
 * point where close-after ends the connection.
 */
interface Entry {
  /** earliest time of its first piece (arrival + latency) */
  at: number;
  buf?: Buffer;
  /** bytes of buf already written */
  off: number;
  /** the time of the next piece, once computed */
  next?: number;
  close?: 'fin' | 'rst';
}

/** A latency fault's delay for one chunk or datagram: the delay ± a uniform jitter, never < 0 (ms). */
export function latencyDelay(f: Fault): number {
  const jitter = f.jitterMs ? (Math.random() * 2 - 1) * f.jitterMs : 0;
  return Math.max(0, f.delayMs! + jitter);
}

/** Flip one random bit of a copy of `b`. */
export function flipOneBit(b: Buffer): Buffer {
  const c = Buffer.from(b);
  const i = Math.floor(Math.random() * c.length);
  c[i] = c[i]! ^ (1 << Math.floor(Math.random() * 8));
  return c;
}

/**
 * The echo of one connection through its faults: each chunk read is cut (stall-after,
 * close-after), maybe corrupted, split (slice, bandwidth) and scheduled (latency, jitter,
 * slice delay, bandwidth), then written in order. Reading stops while too much waits
 * (backpressure end to end) and for good after stall-after.
 */
export class FaultyEcho {
  private readonly queue: Entry[] = [];
  private queued = 0;
  private timer: NodeJS.Timeout | undefined;
  private blocked = false;
  private ending = false;
  private stopped = false; // stall-after reached or close-after scheduled: nothing more is echoed
  private read = 0;
  private lastAt = 0;
  private bwNext = 0;
  corrupted = 0;
  private readonly by: Partial<Record<FaultKind, Fault>> = {};

  constructor(
    private readonly socket: Socket,
    faults: Fault[],
    /** told why the connection is being ended by a fault */
    private readonly onFault: (why: string) => void,
  ) {
    for (const f of faults) this.by[f.kind] = f;
  }

  data(chunk: Buffer): void {
    if (this.stopped) return; // read after stall-after or close-after: dropped
    const { by } = this;
    let c = chunk;
    let close: 'fin' | 'rst' | undefined;
    const stall = by['stall-after'];
    if (stall && this.read + c.length >= stall.bytes!) {
      c = c.subarray(0, stall.bytes! - this.read);
      this.stopped = true;
      this.socket.pause(); // for good: the client's writes back up into its send buffer
    }
    const closeAfter = by['close-after'];
    if (closeAfter && this.read + c.length >= closeAfter.bytes!) {
      c = c.subarray(0, closeAfter.bytes! - this.read);
      close = closeAfter.how ?? 'fin';
      this.stopped = true;
      this.socket.pause();
    }
    this.read += c.length;
    if (c.length && by.corrupt && Math.random() < by.corrupt.chance!) {
      c = flipOneBit(c);
      this.corrupted++;
    }
    if (c.length) {
      const lat = by.latency;
      this.queue.push({ at: performance.now() + (lat ? latencyDelay(lat) : 0), buf: c, off: 0 });
      this.queued += c.length;
    }
    if (close) this.queue.push({ at: 0, off: 0, close });
    if (this.queued > HIGH || this.queue.length > MAX_CHUNKS) this.socket.pause();
    this.pump();
  }

  /**
   * The time of the next piece of `e` (the head of the queue), and its size: order kept
   * (never before the previous piece), slice's pause between pieces, bandwidth's pacing.
   */
  private plan(e: Entry): number {
    const { slice, bandwidth: bw } = this.by;
    const len = e.buf!.length;
    // bandwidth: pieces of at most 1/50 s worth, so the rate is smooth
    const step = Math.min(slice?.bytes ?? len, bw ? Math.max(1, Math.floor(bw.rate! / 50)) : len);
    if (e.next === undefined) {
      let at: number;
      if (e.off > 0) at = this.lastAt + (slice?.delayMs ?? 0);
      else {
        at = Math.max(e.at, this.lastAt);
        if (slice && this.lastAt > 0 && at <= this.lastAt) at += slice.delayMs ?? 0;
      }
      if (bw) at = Math.max(at, this.bwNext);
      e.next = at;
    }
    return step;
  }

  private pump = (): void => {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.blocked || this.socket.destroyed) return;
    const now = performance.now();
    while (this.queue.length) {
      const e = this.queue[0]!;
      if (e.close) {
        this.queue.shift();
        this.close(e.close);
        return;
      }
      const step = this.plan(e);
      if (e.next! > now + 1) break;
      const piece = e.buf!.subarray(e.off, e.off + step);
      const bw = this.by.bandwidth;
      if (bw) this.bwNext = e.next! + (piece.length * 1000) / bw.rate!;
      this.lastAt = e.next!;
      e.next = undefined;
      e.off += piece.length;
      if (e.off >= e.buf!.length) this.queue.shift();
      this.queued -= piece.length;
      const ok = this.socket.write(piece, this.written);
      // Not taken by the kernel at once: wait for it (its callback, or 'drain') rather than
      // queue more writes in Node, each with its own overhead.
      if (!ok || this.socket.writableLength > 0) {
        this.blocked = true;
        return;
      }
    }
    if (this.queue.length) {
      this.timer = setTimeout(this.pump, Math.max(0, this.queue[0]!.next! - now));
      return;
    }
    if (this.ending) {
      this.socket.end();
      return;
    }
    if (!this.stopped && this.queued < LOW && this.socket.isPaused()) this.socket.resume();
  };

  private written = (): void => {
    if (this.blocked && this.socket.writableLength === 0) this.drained();
  };

  /** The client can take more. */
  drained(): void {
    this.blocked = false;
    this.pump();
  }

  /** The client sent FIN (or shutdown began): echo what is queued, then FIN. */
  end(): void {
    this.ending = true;
    this.pump();
  }

  /** Stop: the connection is being destroyed. */
  dispose(): void {
    clearTimeout(this.timer);
    this.queue.length = 0;
  }

  private close(how: 'fin' | 'rst'): void {
    this.onFault(`fault close-after (${how})`);
    if (how === 'fin') {
      this.socket.end();
      return;
    }
    // An RST discards what is still in our send queue, and the client's kernel discards what
    // its program has not read yet (Linux purges the receive queue on RST). So: Node's buffer
    // flushed, the kernel's send queue acknowledged (at most 1 s), then 50 ms for the client
    // to read, then RST. A client that reads slower still sees fewer bytes: as with a real reset.
    this.socket.write(Buffer.alloc(0), () => {
      const tcp = transportSocket(this.socket);
      const until = Date.now() + 1000;
      const check = () => {
        const left = sendQueueBytes(tcp);
        if (this.socket.destroyed) return;
        if (!left || Date.now() >= until) this.timer = setTimeout(() => resetSocket(this.socket), 50);
        else this.timer = setTimeout(check, 2);
      };
      check();
    });
  }
}

/** Close with RST (SO_LINGER 0): Node's resetAndDestroy; on a TLS socket, on the TCP one under it. */
export function resetSocket(socket: Socket): void {
  const target = transportSocket(socket) as Socket & { resetAndDestroy?: () => void };
  if (typeof target.resetAndDestroy === 'function') {
    target.resetAndDestroy();
    if (target !== socket) socket.destroy();
  } else socket.destroy();
}
