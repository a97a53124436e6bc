// Fault injection: an echo server that misbehaves on purpose, so a client can be tested
// against a slow, trickling, stalling, resetting or corrupting far end (--fault, and
// `faults` in the library). The fault model (parse, FaultSet) is core/faults.ts; this is
// the TCP side. A connection with no fault runs the plain echo path untouched.

import type { Socket } from 'node:net';
import { type Fault, type FaultKind, flipOneBit, latencyDelay } from '../core/faults.js';
import { transportSocket } from '../core/internals.js';
import { sendQueueBytes } from '../core/libc.js';

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
