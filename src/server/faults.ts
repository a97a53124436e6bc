// Fault injection: an echo server that misbehaves on purpose, so a client can be tested
// against a slow, trickling, stalling, resetting or corrupting far end (--fault, and
// `faults` in the library). The fault model (parse, FaultSet) is core/faults.ts; this is
// the TCP side. A connection with no fault runs the plain echo path untouched.

import type { Socket } from 'node:net';
import { type Fault, type FaultKind, flipOneBit, latencyDelay } from '../core/faults.js';
import { LightSocket, resetLight, transportSocket, writeDirect } from '../core/internals.js';
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
 * One direction of a byte stream through its faults: each chunk read from `source` is cut
 * (stall-after, close-after, limit-data), maybe corrupted or dropped (timeout), split (slice,
 * bandwidth) and scheduled (latency, jitter, slice delay, bandwidth), then written to `sink`
 * in order; the source's FIN becomes the sink's, held by slow-close. Reading stops while too
 * much waits (backpressure end to end) and for good after stall-after. Echo's stream has the
 * same socket at both ends; a proxy runs one per direction. setFaults() changes the faults of
 * a stream already running: what is queued under a latency or bandwidth that goes is sent
 * at once, a stall that goes lets reading resume.
 */
export class FaultStream {
  private readonly queue: Entry[] = [];
  private queued = 0;
  private timer: NodeJS.Timeout | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private blocked = false;
  private ending = false;
  private ended = false;
  /** why nothing more is forwarded: stall-after or blackhole (undone when it goes), a close (final) */
  private stopped: 'stall' | 'close' | undefined;
  private read = 0;
  private lastAt = 0;
  private bwNext = 0;
  corrupted = 0;
  private by: Partial<Record<FaultKind, Fault>> = {};
  /** no fault at all: chunks are written as they come */
  private plain = false;
  /**
   * Chunks without a fault are written through the sink's handle (core/internals.ts writeDirect) where
   * it can: set by a forwarder whose read buffers ask `holding` (a write waiting there keeps
   * its chunk, and the sink's writableLength does not count it).
   */
  directWrites = false;
  /** direct writes not yet taken by the kernel */
  private directs = 0;
  /** the sink is a LightSocket: its write() takes no callback */
  private readonly lightSink: boolean;

  constructor(
    private readonly source: Socket,
    private readonly sink: Socket,
    faults: Fault[],
    /** told why the connection is being ended by a fault */
    private readonly onFault: (why: string) => void,
    /** how a fault ends the stream (default: FIN or RST on the sink); 'timeout' closes it all */
    private readonly finish?: (how: 'fin' | 'rst' | 'timeout') => void,
  ) {
    this.lightSink = sink instanceof LightSocket;
    this.setFaults(faults);
    this.live = true;
  }

  /** set once constructed: a change of faults then reschedules what waits */
  private live = false;

  /** The faults from now on; the chunks already queued are rescheduled by the new ones. */
  setFaults(faults: Fault[]): void {
    const old = this.by;
    const by: Partial<Record<FaultKind, Fault>> = {};
    for (const f of faults) by[f.kind] = f;
    this.by = by;
    this.plain = faults.length === 0;
    if (old.latency && old.latency !== by.latency) {
      // planned already by the old latency: planned again (a latency that goes sends at once)
      for (const e of this.queue) {
        e.at = 0;
        e.next = undefined;
      }
    }
    if (old.bandwidth !== by.bandwidth || old.slice !== by.slice) {
      this.bwNext = 0;
      for (const e of this.queue) e.next = undefined;
    }
    if (old.timeout !== by.timeout) {
      clearTimeout(this.timeoutTimer);
      this.timeoutTimer = undefined;
      const t = by.timeout;
      if (t?.delayMs)
        this.timeoutTimer = setTimeout(() => {
          this.onFault('fault timeout');
          this.stopped = 'close';
          if (this.finish) this.finish('timeout');
          else this.sink.destroy();
        }, t.delayMs);
    }
    if (by.blackhole && !this.stopped) {
      this.stopped = 'stall';
      this.source.pause();
    }
    const stall = by['stall-after'];
    if (this.stopped === 'stall' && !by.blackhole && !(stall && this.read >= stall.bytes!)) {
      this.stopped = undefined;
    }
    if (this.live) this.pump();
  }

  data(chunk: Buffer): void {
    if (this.stopped) return; // read after stall-after or close-after: dropped
    const { by } = this;
    if (this.plain && this.queue.length === 0 && !this.blocked) {
      // no fault: straight through, reading paused while the sink is full (as pipe() does)
      this.read += chunk.length;
      const direct = this.directWrites ? writeDirect(this.sink, chunk, this.directDone) : undefined;
      if (direct === 'sent') return;
      if (direct === 'pending') {
        this.directs++;
        this.blocked = true;
        this.source.pause();
        return;
      }
      if (!this.sink.write(chunk)) {
        this.blocked = true;
        this.source.pause();
      }
      return;
    }
    if (by.timeout) return; // timeout: nothing gets through while it lasts
    let c = chunk;
    let close: 'fin' | 'rst' | undefined;
    const stall = by['stall-after'];
    if (stall && this.read + c.length >= stall.bytes!) {
      c = c.subarray(0, Math.max(0, stall.bytes! - this.read));
      this.stopped = 'stall';
      this.source.pause(); // the writer's bytes back up into its send buffer
    }
    for (const k of ['close-after', 'limit-data'] as const) {
      const f = by[k];
      if (!close && f && this.read + c.length >= f.bytes!) {
        c = c.subarray(0, Math.max(0, f.bytes! - this.read));
        close = f.how ?? 'fin';
        this.stopped = 'close';
        this.source.pause();
      }
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
    if (this.queued > HIGH || this.queue.length > MAX_CHUNKS) this.source.pause();
    this.pump();
  }

  /**
   * The time of the next piece of `e` (the head of the queue), and its size: order kept
   * (never before the previous piece), slice's pause between pieces, bandwidth's pacing.
   */
  private plan(e: Entry): number {
    const { slice, bandwidth: bw } = this.by;
    const len = e.buf!.length;
    let size = slice?.bytes ?? len;
    if (slice?.variation) size += Math.round((Math.random() * 2 - 1) * slice.variation);
    // bandwidth: pieces of at most 1/50 s worth, so the rate is smooth
    const step = Math.max(1, Math.min(size, bw ? Math.max(1, Math.floor(bw.rate! / 50)) : len));
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
    if (this.blocked || this.sink.destroyed || this.ended) return;
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
      const ok = this.sink.write(piece, this.written);
      // Not taken by the kernel at once: wait for it (its callback, or 'drain') rather than
      // queue more writes in Node, each with its own overhead. A light sink (core/internals.ts
      // LightSocket) calls no write callback: it says 'drain' after a write that returned false.
      if (!ok || (this.sink.writableLength > 0 && !this.lightSink)) {
        this.blocked = true;
        return;
      }
    }
    if (this.queue.length) {
      this.timer = setTimeout(this.pump, Math.max(0, this.queue[0]!.next! - now));
      return;
    }
    if (this.ending) {
      this.ended = true;
      const hold = this.by['slow-close']?.delayMs;
      if (hold) this.timer = setTimeout(() => this.sink.end(), hold);
      else this.sink.end();
      return;
    }
    if (!this.stopped && this.queued < LOW && this.source.isPaused()) this.source.resume();
  };

  private directDone = (ok: boolean): void => {
    this.directs--;
    if (ok) this.drained();
  };

  private written = (): void => {
    if (this.blocked && this.sink.writableLength === 0) this.drained();
  };

  /** Chunks are held for later (a fault's schedule, a full sink): their buffers are still in use. */
  get holding(): boolean {
    return this.queue.length > 0 || this.directs > 0;
  }

  /** The sink can take more (not while a direct write waits: its completion says so). */
  drained(): void {
    if (this.directs > 0) return;
    this.blocked = false;
    this.pump();
  }

  /** The source sent FIN (or shutdown began): write what is queued, then FIN. */
  end(): void {
    this.ending = true;
    this.pump();
  }

  /** Stop: the connection is being destroyed. */
  dispose(): void {
    clearTimeout(this.timer);
    clearTimeout(this.timeoutTimer);
    this.queue.length = 0;
  }

  private close(how: 'fin' | 'rst'): void {
    this.onFault(
      this.by['limit-data'] && !this.by['close-after'] ? 'fault limit-data' : `fault close-after (${how})`,
    );
    if (this.finish) {
      this.finish(how);
      return;
    }
    if (how === 'fin') {
      this.sink.end();
      return;
    }
    // An RST discards what is still in our send queue, and the client's kernel discards what
    // its program has not read yet (Linux purges the receive queue on RST). So: Node's buffer
    // flushed, the kernel's send queue acknowledged (at most 1 s), then 50 ms for the client
    // to read, then RST. A client that reads slower still sees fewer bytes: as with a real reset.
    resetWhenSent(this.sink, (t) => {
      this.timer = t;
    });
  }
}

/** Reset `socket` once what it was given is sent and acknowledged (at most 1 s), then 50 ms more. */
export function resetWhenSent(socket: Socket, onTimer: (t: NodeJS.Timeout) => void = () => {}): void {
  socket.write(Buffer.alloc(0), () => {
    const tcp = transportSocket(socket);
    const until = Date.now() + 1000;
    const check = () => {
      const left = sendQueueBytes(tcp);
      if (socket.destroyed) return;
      if (!left || Date.now() >= until) onTimer(setTimeout(() => resetSocket(socket), 50));
      else onTimer(setTimeout(check, 2));
    };
    check();
  });
}

/** The echo of one connection through its faults: the stream whose source and sink are the client. */
export class FaultyEcho extends FaultStream {
  constructor(socket: Socket, faults: Fault[], onFault: (why: string) => void) {
    super(socket, socket, faults, onFault);
  }
}

/** Close with RST (SO_LINGER 0): Node's resetAndDestroy; on a TLS socket, on the TCP one under it. */
export function resetSocket(socket: Socket): void {
  const target = transportSocket(socket) as Socket & { resetAndDestroy?: () => void };
  if (typeof target.resetAndDestroy === 'function') {
    target.resetAndDestroy();
    if (target !== socket) socket.destroy();
  } else if (!resetLight(socket)) socket.destroy();
}
