// A lossy, never-blocking writer for logs and traces: lines wait in memory and go out in
// batches with asynchronous writes; when the reader is slow they are dropped beyond a bound,
// and when the destination fails (EPIPE: the reader left; ENOSPC, EIO, EBADF…) the sink
// stops writing for good and counts what it drops. A sink never throws, never keeps the
// process alive, and at exit writes what waits synchronously for at most EXIT_FLUSH_MS.

import fs from 'node:fs';
import { Writable } from 'node:stream';

/** At exit: how long a full pipe (EAGAIN) may delay the process before waiting lines are dropped. */
const EXIT_FLUSH_MS = 200;
/** After EAGAIN (a non-blocking pipe that is full), the next attempt comes this much later. */
const RETRY_MS = 20;
/** Lines are copied into buffers of this size as they come (a longer line gets one of its own). */
const CHUNK = 64 * 1024;

export interface SinkOptions {
  /** a file descriptor (2 for stderr) or a file to append to */
  fd?: number;
  file?: string;
  /** write once this many bytes wait (default: at once) */
  minLength?: number;
  /** at most this many bytes wait; beyond, lines are dropped and counted */
  maxLength?: number;
  /** waiting lines are written at the latest this long after the first (default 50 ms) */
  flushMs?: number;
}

/** Lines dropped by every sink of this process: the lost log has no other place to say it. */
let droppedTotal = 0;
export const droppedLogLines = (): number => droppedTotal;

export class LossySink extends Writable {
  /** lines dropped because too much waited (reset once a write succeeds and onResume was told) */
  private droppedSlow = 0;
  /** set once the destination failed: nothing is written again */
  lostError: NodeJS.ErrnoException | undefined;
  /** lines dropped since the destination failed */
  droppedLost = 0;
  private fd = -1;
  /** buffers filled already, waiting to be written */
  private full: Buffer[] = [];
  /** the buffer lines are copied into now, and how much of it they fill */
  private cur: Buffer | undefined;
  private curLen = 0;
  /** a CHUNK buffer written already, filled again next */
  private spare: Buffer | undefined;
  private pendingBytes = 0;
  /** lines waiting (in full and cur) */
  private pendingLines = 0;
  private writing = false;
  /** lines in the write in flight */
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly min: number;
  private readonly max: number;
  private readonly flushMs: number;
  /** called after a write succeeds when lines had been dropped for lack of room */
  onResume: ((dropped: number) => void) | undefined;
  /** called once, when the destination fails */
  onLost: ((err: NodeJS.ErrnoException) => void) | undefined;
  private readonly exitHandler = () => this.flushSync();

  constructor(o: SinkOptions) {
    super({ decodeStrings: false });
    this.min = o.minLength ?? 0;
    this.max = o.maxLength ?? 1024 * 1024;
    this.flushMs = o.flushMs ?? 50;
    if (o.file !== undefined) {
      try {
        this.fd = fs.openSync(o.file, 'a');
      } catch (err) {
        this.lose(err as NodeJS.ErrnoException);
      }
    } else this.fd = o.fd ?? 2;
    // a Writable with no 'error' listener would throw; a sink reports through onLost instead
    this.on('error', () => {});
    process.on('exit', this.exitHandler);
  }

  /** Queue one line (or several); never blocks, never throws. */
  push(s: string): void {
    if (this.lostError) {
      this.droppedLost++;
      droppedTotal++;
      return;
    }
    // A line is copied into a buffer at once, so no line waits as a string of its own (lines
    // held as strings until a batch was joined outlived young-generation collections and were
    // copied by the GC). A UTF-16 unit is at most 3 bytes of UTF-8: when that much room is
    // left, the line's length in bytes need not be counted first.
    if (s.length === 0) return;
    const room = this.cur ? this.cur.length - this.curLen : 0;
    let n: number;
    if (s.length * 3 <= room && this.pendingBytes + s.length * 3 <= this.max) {
      n = this.cur!.write(s, this.curLen);
    } else {
      n = Buffer.byteLength(s);
      if (this.pendingBytes + n > this.max) {
        this.droppedSlow++;
        droppedTotal++;
        return;
      }
      if (n > room) {
        this.seal();
        this.cur = n > CHUNK ? Buffer.allocUnsafeSlow(n) : (this.spare ?? Buffer.allocUnsafeSlow(CHUNK));
        if (this.cur === this.spare) this.spare = undefined;
      }
      this.cur!.write(s, this.curLen);
    }
    this.curLen += n;
    this.pendingBytes += n;
    this.pendingLines++;
    if (this.pendingBytes >= this.min) this.writeNow();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.writeNow();
      }, this.flushMs);
      this.timer.unref();
    }
  }

  override _write(chunk: unknown, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.push(typeof chunk === 'string' ? chunk : String(chunk));
    cb();
  }

  private writeNow(): void {
    if (this.writing || this.lostError || this.pendingBytes === 0) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const buf = this.takePending();
    this.inFlight = this.pendingLines;
    this.pendingLines = 0;
    this.writing = true;
    this.writeBuf(buf);
  }

  /** the buffer being filled joins the full ones (none is filled until a line needs one) */
  private seal(): void {
    if (this.cur && this.curLen > 0) this.full.push(this.cur.subarray(0, this.curLen));
    else if (this.cur && this.cur.length === CHUNK) this.spare ??= this.cur;
    this.cur = undefined;
    this.curLen = 0;
  }

  /** All waiting bytes in one buffer; nothing waits after. */
  private takePending(): Buffer {
    this.seal();
    const buf = this.full.length === 1 ? this.full[0]! : Buffer.concat(this.full, this.pendingBytes);
    this.full = [];
    this.pendingBytes = 0;
    return buf;
  }

  private writeBuf(buf: Buffer): void {
    fs.write(this.fd, buf, 0, buf.length, null, (err, n) => {
      if (err) {
        if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') {
          // a full non-blocking pipe: try again later, without holding the process open
          const t = setTimeout(() => this.writeBuf(buf), RETRY_MS);
          t.unref();
          this.retry = { t, buf };
          return;
        }
        this.writing = false;
        this.droppedLost += this.inFlight;
        droppedTotal += this.inFlight;
        this.lose(err);
        return;
      }
      this.retry = undefined;
      if (n < buf.length) return this.writeBuf(buf.subarray(n));
      this.writing = false;
      // a whole batch buffer written: the next one is filled in it
      if (buf.buffer.byteLength === CHUNK && buf.byteOffset === 0 && !this.spare)
        this.spare = Buffer.from(buf.buffer, 0, CHUNK);
      if (this.droppedSlow > 0 && this.onResume) {
        const d = this.droppedSlow;
        this.droppedSlow = 0;
        this.onResume(d);
      }
      if (this.pendingBytes >= this.min) this.writeNow();
      else if (this.pendingBytes > 0 && !this.timer) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.writeNow();
        }, this.flushMs);
        this.timer.unref();
      }
    });
  }

  /** an attempt waiting after EAGAIN: at exit its bytes are written first */
  private retry: { t: NodeJS.Timeout; buf: Buffer } | undefined;

  private lose(err: NodeJS.ErrnoException): void {
    if (this.lostError) return;
    this.lostError = err;
    const lines = this.pendingLines;
    this.droppedLost += lines;
    droppedTotal += lines;
    this.full = [];
    this.cur = undefined;
    this.curLen = 0;
    this.pendingLines = 0;
    this.pendingBytes = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.onLost?.(err);
  }

  /**
   * Write what waits, synchronously (at exit, or before a forced exit). A full pipe is retried
   * for at most EXIT_FLUSH_MS; any other failure drops the rest.
   */
  flushSync(): void {
    if (this.lostError || this.fd < 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const parts: Buffer[] = [];
    if (this.retry) {
      clearTimeout(this.retry.t);
      parts.push(this.retry.buf);
      this.retry = undefined;
    } else if (this.writing) return; // an asynchronous write is in flight: its bytes are its own
    if (this.pendingBytes > 0) parts.push(this.takePending());
    this.pendingLines = 0;
    let buf = Buffer.concat(parts);
    const deadline = Date.now() + EXIT_FLUSH_MS;
    const nap = new Int32Array(new SharedArrayBuffer(4));
    while (buf.length > 0) {
      try {
        buf = buf.subarray(fs.writeSync(this.fd, buf));
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if ((e.code === 'EAGAIN' || e.code === 'EWOULDBLOCK') && Date.now() < deadline) {
          Atomics.wait(nap, 0, 0, 5);
          continue;
        }
        this.lose(e);
        return;
      }
    }
  }

  /** Stop: the exit hook is removed; what waits is written synchronously (bounded). */
  close(): void {
    this.flushSync();
    process.off('exit', this.exitHandler);
  }
}
