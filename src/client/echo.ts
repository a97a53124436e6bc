// The echo client's two ways of talking to a server over one connection:
// - roundTrip(): send a message, read until its whole echo is back (writen/readn loops), verify it byte for byte. Used by the interactive prompt, --message/--count and echo().
// - streamThrough(): pipe a stream (stdin) through the server, half-close at its end, write
//   the echo out and check every byte on the way (the piped mode).

import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { connectTcp, withRetry } from '../core/connect.js';
import { codedError } from '../core/errors.js';
import { TerminalText } from '../core/terminal.js';
import { looksLikeTls } from '../core/tls.js';

/** The reply is a TLS record (an alert): the server speaks TLS, this connection does not. */
const speaksTls = () =>
  codedError('ERR_PEER_SPEAKS_TLS', 'the server answered with a TLS record (an alert), not an echo');

import { plural } from '../core/parse.js';
import type { SocketOptions } from '../core/sockopts.js';

/** How long the server's FIN is awaited once every byte is back, when no --timeout says. */
export const FIN_WAIT_MS = 2000;

/**
 * A reset (or a write into one) before any byte came back on a plain connection: a TLS server
 * that read bytes that are not TLS closes that way; the explanation says so.
 */
function noteResetBeforeEcho(err: Error, socket: Socket, received: number): void {
  const code = (err as NodeJS.ErrnoException).code;
  if (received === 0 && !(socket instanceof TLSSocket) && (code === 'ECONNRESET' || code === 'EPIPE'))
    Object.assign(err, {
      extraHint: 'Nothing came back: if the server speaks TLS (it drops plain bytes), add --tls.',
    });
}

/** More bytes came back than were sent: no echo server does that. */
const beyondSent = (extra: number, sent: number) =>
  codedError(
    'ERR_ECHO_MISMATCH',
    `${extra} bytes came back beyond the ${sent} sent (not an echo server); stopped reading`,
  );

/** Reads echoes off one socket; one round trip at a time. */
export class EchoConnection {
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private ended = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  /** bytes written and bytes come back, over the connection's life */
  private sent = 0;
  private received = 0;
  /** when a byte last moved either way (a write taken by the kernel, a read) */
  private lastMove = 0;

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.lastMove = performance.now();
      this.received += chunk.length;
      if (this.received > this.sent) {
        // never kept: reading stops here, however much more the peer would send. A TLS record
        // as the first bytes back is a TLS server's alert to plain bytes.
        const first = this.received === chunk.length;
        this.error ??=
          first && looksLikeTls(chunk) ? speaksTls() : beyondSent(this.received - this.sent, this.sent);
        socket.destroy();
        this.wake?.();
        return;
      }
      this.pending.push(chunk);
      this.pendingLength += chunk.length;
      this.wake?.();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on('error', (err) => {
      noteResetBeforeEcho(err, socket, this.received);
      this.error ??= err;
      this.wake?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
  }

  private queue: Promise<unknown> = Promise.resolve();
  /** round trips started and not yet finished (they run one after another) */
  inFlight = 0;

  /**
   * Send `message` in full and resolve with its echo once all of it is back and identical.
   * Round trips run one after another (a heartbeat and a typed line never interleave).
   */
  roundTrip(message: Buffer, timeoutMs?: number): Promise<{ reply: Buffer; rttMs: number }> {
    this.inFlight++;
    const run = this.queue.then(() => this.oneRoundTrip(message, timeoutMs));
    this.queue = run.catch(() => {});
    return run.finally(() => {
      this.inFlight--;
    });
  }

  private async oneRoundTrip(message: Buffer, timeoutMs?: number): Promise<{ reply: Buffer; rttMs: number }> {
    const t0 = performance.now();
    this.sent += message.length;
    let written = false;
    this.socket.write(message, (err) => {
      if (err) return;
      written = true;
      this.lastMove = performance.now();
    });
    const reply = await this.read(message.length, timeoutMs, () => written);
    const rttMs = performance.now() - t0;
    if (!reply.equals(message)) {
      if (looksLikeTls(reply) && !looksLikeTls(message)) throw speaksTls();
      const at = firstDifference(reply, message);
      throw codedError(
        'ERR_ECHO_MISMATCH',
        `echo differs from what was sent at offset ${at} of ${message.length} (cmp: byte ${at + 1})`,
      );
    }
    return { reply, rttMs };
  }

  /**
   * Wait for `n` bytes. `timeoutMs` is an idle limit, as nc -w: the wait ends when no byte has
   * moved either way (our write taken by the kernel, a byte read) for that long.
   */
  private async read(n: number, timeoutMs?: number, written = () => true): Promise<Buffer> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    if (timeoutMs !== undefined) {
      this.lastMove = performance.now();
      const check = () => {
        const idle = performance.now() - this.lastMove;
        if (idle < timeoutMs) {
          timer = setTimeout(check, timeoutMs - idle);
          return;
        }
        timedOut = true;
        this.wake?.();
      };
      timer = setTimeout(check, timeoutMs);
    }
    try {
      while (this.pendingLength < n) {
        if (this.error) throw this.error;
        if (this.ended) {
          if (this.pendingLength > 0 && looksLikeTls(this.pending[0]!)) throw speaksTls();
          throw codedError(
            'ERR_ECHO_SHORT',
            `sent ${plural(n, 'byte')}, ${this.pendingLength} came back before the server closed`,
          );
        }
        if (timedOut) {
          throw codedError(
            'ERR_REPLY_TIMEOUT',
            `${this.pendingLength} of ${plural(n, 'byte')} came back within ${timeoutMs} ms; nothing moved either way for that long (${written() ? `all ${n} bytes sent` : 'not all sent: the server stopped reading'})`,
          );
        }
        await new Promise<void>((res) => {
          this.wake = res;
        });
        this.wake = undefined;
      }
    } finally {
      clearTimeout(timer);
    }
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length ? [rest] : [];
    this.pendingLength = rest.length;
    return out;
  }

  /**
   * Half-close and wait for the server's FIN; extra bytes after our last echo are an error.
   * A server that never closes is waited for `timeoutMs` (FIN_WAIT_MS by default), then left:
   * every byte sent had come back.
   */
  async finish(timeoutMs = FIN_WAIT_MS): Promise<void> {
    this.socket.end();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.wake?.();
    }, timeoutMs);
    try {
      while (!this.ended && !this.error && !timedOut) {
        await new Promise<void>((res) => {
          this.wake = res;
        });
        this.wake = undefined;
      }
    } finally {
      clearTimeout(timer);
    }
    if (this.error && (this.error as NodeJS.ErrnoException).code !== 'ECONNRESET') throw this.error;
    if (this.pendingLength > 0) {
      throw codedError(
        'ERR_ECHO_MISMATCH',
        `${plural(this.pendingLength, 'byte')} came back that were never sent`,
      );
    }
  }
}

/** What a heartbeat sends: one newline (an empty line, if a person reads the other side). */
export const HEARTBEAT = Buffer.from('\n');

/**
 * An application heartbeat over an echo connection: every `intervalMs` of quiet, one echo;
 * if it is not back within `timeoutMs`, the peer (or the path to it) is gone: `onDead` gets
 * ERR_HEARTBEAT_TIMEOUT. Finds a dead peer in seconds where TCP keepalive's defaults take over
 * two hours. Returns the function that stops it.
 */
export function startHeartbeat(
  conn: EchoConnection,
  { intervalMs, timeoutMs }: { intervalMs: number; timeoutMs: number },
  onDead: (err: Error) => void,
): () => void {
  let stopped = false;
  const timer = setInterval(() => {
    if (stopped || conn.inFlight > 0) return; // a round trip in flight already proves the peer is there
    conn.roundTrip(HEARTBEAT, timeoutMs).catch((err: NodeJS.ErrnoException) => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      onDead(
        err.code === 'ERR_REPLY_TIMEOUT'
          ? codedError(
              'ERR_HEARTBEAT_TIMEOUT',
              `no heartbeat echo within ${timeoutMs} ms: the peer, or the path to it, is gone`,
            )
          : err,
      );
    });
  }, intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

export interface EchoOptions {
  host?: string;
  port: number;
  message: string | Buffer;
  connectTimeoutMs?: number;
  /** ms to wait for the whole echo */
  timeoutMs?: number;
  retries?: number;
  socketOptions?: SocketOptions;
}

/** Library: connect, send one message, await its full echo, verify, close. */
export async function echo(o: EchoOptions): Promise<{ reply: Buffer; rttMs: number }> {
  const msg = typeof o.message === 'string' ? Buffer.from(o.message) : o.message;
  const { socket } = await withRetry(
    () =>
      connectTcp({
        host: o.host ?? '127.0.0.1',
        port: o.port,
        connectTimeoutMs: o.connectTimeoutMs,
        socketOptions: o.socketOptions,
      }),
    { retries: o.retries ?? 0 },
  );
  const conn = new EchoConnection(socket);
  try {
    const r = await conn.roundTrip(msg, o.timeoutMs);
    await conn.finish();
    return r;
  } finally {
    socket.destroy();
  }
}

export interface StreamResult {
  sent: number;
  received: number;
  ok: boolean;
  /** why not ok */
  problem?: Error;
}

export interface StreamProgress {
  /** bytes read from the input and written to the connection */
  sent: number;
  /** bytes come back */
  received: number;
  elapsedMs: number;
  /** bytes come back per second since the previous report */
  rate: number;
}

export interface StreamOptions {
  /**
   * Give up (ERR_REPLY_TIMEOUT) when no byte has moved either way for this long while an echo
   * is owed, as nc -w does; also how long the server's FIN is awaited once every byte is back
   * (FIN_WAIT_MS without it).
   */
  timeoutMs?: number;
  /** `output` is a terminal: the echo is written as text with its controls made visible */
  terminal?: boolean;
  /** called every `progressEveryMs` (250) while the stream runs */
  onProgress?: (p: StreamProgress) => void;
  progressEveryMs?: number;
}

/** Bytes allowed out but not yet echoed before the input is paused (bounded memory). */
const MAX_OUTSTANDING = 4 * 1024 * 1024;

/** `1.5 MiB`, `96.0 KiB`, `512 B` */
export function humanBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** The progress line of a stream: `1.5 MiB sent, 1.4 MiB back, 64.0 KiB/s` (the echo's current rate). */
export function formatProgress(p: StreamProgress): string {
  return `${humanBytes(p.sent)} sent, ${humanBytes(p.received)} back, ${humanBytes(p.rate)}/s`;
}

/**
 * Report `counts()` every `everyMs` (250) with the time since the start and the echo's rate
 * since the previous report. Returns the function that stops it.
 */
export function startProgress(
  counts: () => { sent: number; received: number },
  onProgress: (p: StreamProgress) => void,
  everyMs = 250,
): () => void {
  const t0 = performance.now();
  let last = { at: t0, received: 0 };
  const timer = setInterval(() => {
    const now = performance.now();
    const { sent, received } = counts();
    const rate = now > last.at ? ((received - last.received) * 1000) / (now - last.at) : 0;
    last = { at: now, received };
    onProgress({ sent, received, elapsedMs: now - t0, rate });
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Stream `input` through the echo server on `socket`, write each echoed chunk to `output`,
 * compare every byte with what was sent. Half-closes when `input` ends; resolves when the
 * server has closed its side. The first problem (a byte that differs, more bytes back than
 * were sent, the idle timeout) ends the stream at once: nothing more is read.
 */
export function streamThrough(
  socket: Socket,
  input: Readable,
  output: Writable | null,
  o: StreamOptions = {},
): Promise<StreamResult> {
  return new Promise((resolve) => {
    const unverified: Buffer[] = []; // sent, not yet echoed
    let sent = 0;
    let written = 0; // taken by the kernel (write callbacks)
    let received = 0;
    let problem: Error | undefined;
    let inputPaused = false;
    let inputEnded = false;
    let outputBlocked = false;
    let done = false;
    let lastMove = performance.now();
    const text = o.terminal ? new TerminalText() : undefined;

    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(idleTimer);
      stopProgress();
      input.off('data', onInput);
      input.pause();
      if (text && output) output.write(text.end());
      if (!problem && received < sent) {
        problem = codedError(
          'ERR_ECHO_SHORT',
          `sent ${plural(sent, 'byte')}, ${received} came back before the server closed`,
        );
      }
      resolve({ sent, received, ok: !problem, problem });
    };
    /** the first problem ends it: no more reading or writing */
    const abort = (err: Error) => {
      problem ??= err;
      input.off('data', onInput);
      input.pause();
      socket.destroy();
    };

    // the idle timer runs while the server owes something: an echo, or its FIN after ours
    let idleTimer: NodeJS.Timeout | undefined;
    const owed = () => sent > received || inputEnded;
    const limit = () => (sent > received ? o.timeoutMs : (o.timeoutMs ?? FIN_WAIT_MS));
    const checkIdle = () => {
      idleTimer = undefined;
      const ms = limit();
      if (done || !owed() || ms === undefined) return;
      if (outputBlocked) lastMove = performance.now(); // waiting on our own reader, not the server
      const idle = performance.now() - lastMove;
      if (idle < ms) {
        idleTimer = setTimeout(checkIdle, ms - idle);
        return;
      }
      if (sent === received) {
        socket.destroy(); // every byte is back; the server just never closed
        return;
      }
      abort(
        codedError(
          'ERR_REPLY_TIMEOUT',
          `no byte moved either way for ${ms} ms: ${written} bytes sent, ${received} came back${sent > written ? ` (${sent - written} more read from the input, not taken by the kernel: the server stopped reading)` : ''}`,
        ),
      );
    };
    const armIdle = () => {
      if (!idleTimer && !done && limit() !== undefined) idleTimer = setTimeout(checkIdle, limit());
    };

    const stopProgress = o.onProgress
      ? startProgress(() => ({ sent, received }), o.onProgress, o.progressEveryMs)
      : () => {};

    const onInput = (chunk: Buffer) => {
      if (!owed()) lastMove = performance.now(); // the wait for the server starts now
      sent += chunk.length;
      unverified.push(chunk);
      const full = !socket.write(chunk, (err) => {
        if (err) return;
        written += chunk.length;
        lastMove = performance.now();
      });
      if ((full || sent - received > MAX_OUTSTANDING) && !inputPaused) {
        inputPaused = true;
        input.pause();
      }
      armIdle();
    };
    const maybeResume = () => {
      if (inputPaused && !problem && socket.writableLength === 0 && sent - received <= MAX_OUTSTANDING / 2) {
        inputPaused = false;
        input.resume();
      }
    };
    input.on('data', onInput);
    input.once('end', () => {
      if (!owed()) lastMove = performance.now();
      inputEnded = true;
      socket.end(); // stdin EOF → shutdown(SHUT_WR), keep reading
      armIdle();
    });
    socket.on('drain', maybeResume);
    socket.on('data', (chunk: Buffer) => {
      if (problem) return;
      lastMove = performance.now();
      // never more than was sent is checked or written out
      const echo = received + chunk.length > sent ? chunk.subarray(0, sent - received) : chunk;
      let off = 0;
      while (off < echo.length) {
        const head = unverified[0]!;
        const n = Math.min(head.length, echo.length - off);
        if (head.compare(echo, off, off + n, 0, n) !== 0) {
          if (received + off === 0 && looksLikeTls(echo) && !looksLikeTls(head)) {
            problem = speaksTls();
            break;
          }
          const at = received + off + firstDifference(echo.subarray(off, off + n), head.subarray(0, n));
          problem = codedError(
            'ERR_ECHO_MISMATCH',
            `echo differs from what was sent at offset ${at} (cmp: byte ${at + 1}); stopped reading`,
          );
          break;
        }
        off += n;
        if (n === head.length) unverified.shift();
        else unverified[0] = head.subarray(n);
      }
      received += chunk.length;
      if (!problem && echo.length < chunk.length)
        problem =
          received === chunk.length && looksLikeTls(chunk) ? speaksTls() : beyondSent(received - sent, sent);
      if (output && echo.length > 0) {
        // a slow stdout holds the socket back rather than buffering without bound
        if (!output.write(text ? text.write(echo) : echo)) {
          outputBlocked = true;
          socket.pause();
          output.once('drain', () => {
            outputBlocked = false;
            lastMove = performance.now();
            socket.resume();
          });
        }
      }
      if (problem) {
        abort(problem);
        return;
      }
      maybeResume();
      armIdle();
    });
    socket.on('error', (err) => {
      noteResetBeforeEcho(err, socket, received);
      problem ??= err;
    });
    socket.on('close', finish);
  });
}
