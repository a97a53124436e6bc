// The echo client's two ways of talking to a server over one connection:
// - roundTrip(): send a message, read until its whole echo is back (writen/readn loops), verify it byte for byte. Used by the interactive prompt, --message/--count and echo().
// - streamThrough(): pipe a stream (stdin) through the server, half-close at its end, write
//   the echo out and check every byte on the way (the piped mode).

import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { connectTcp, withRetry } from '../core/connect.js';
import { codedError } from '../core/errors.js';
import { looksLikeTls } from '../core/tls.js';

/** The reply is a TLS record (an alert): the server speaks TLS, this connection does not. */
const speaksTls = () =>
  codedError('ERR_PEER_SPEAKS_TLS', 'the server answered with a TLS record (an alert), not an echo');

import { plural } from '../core/parse.js';
import type { SocketOptions } from '../core/sockopts.js';

/** Reads echoes off one socket; one round trip at a time. */
export class EchoConnection {
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private ended = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.pending.push(chunk);
      this.pendingLength += chunk.length;
      this.wake?.();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on('error', (err) => {
      this.error = err;
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
    this.socket.write(message);
    const reply = await this.read(message.length, timeoutMs);
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

  private async read(n: number, timeoutMs?: number): Promise<Buffer> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        this.wake?.();
      }, timeoutMs);
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
            `${this.pendingLength} of ${plural(n, 'byte')} came back within ${timeoutMs} ms`,
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

  /** Half-close and wait for the server's FIN; extra bytes after our last echo are an error. */
  async finish(): Promise<void> {
    this.socket.end();
    while (!this.ended && !this.error) {
      await new Promise<void>((res) => {
        this.wake = res;
      });
      this.wake = undefined;
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

/** Bytes allowed out but not yet echoed before the input is paused (bounded memory). */
const MAX_OUTSTANDING = 4 * 1024 * 1024;

/**
 * Stream `input` through the echo server on `socket`, write each echoed chunk to `output`,
 * compare every byte with what was sent. Half-closes when `input` ends; resolves when the
 * server has closed its side.
 */
export function streamThrough(
  socket: Socket,
  input: Readable,
  output: Writable | null,
): Promise<StreamResult> {
  return new Promise((resolve) => {
    const unverified: Buffer[] = []; // sent, not yet echoed
    let sent = 0;
    let received = 0;
    let problem: Error | undefined;
    let inputPaused = false;

    const finish = () => {
      input.off('data', onInput);
      input.pause();
      if (!problem && received < sent) {
        problem = codedError(
          'ERR_ECHO_SHORT',
          `sent ${plural(sent, 'byte')}, ${received} came back before the server closed`,
        );
      }
      resolve({ sent, received, ok: !problem, problem });
    };
    const onInput = (chunk: Buffer) => {
      sent += chunk.length;
      unverified.push(chunk);
      const full = !socket.write(chunk);
      if ((full || sent - received > MAX_OUTSTANDING) && !inputPaused) {
        inputPaused = true;
        input.pause();
      }
    };
    const maybeResume = () => {
      if (inputPaused && socket.writableLength === 0 && sent - received <= MAX_OUTSTANDING / 2) {
        inputPaused = false;
        input.resume();
      }
    };
    input.on('data', onInput);
    input.once('end', () => socket.end()); // stdin EOF → shutdown(SHUT_WR), keep reading
    socket.on('drain', maybeResume);
    socket.on('data', (chunk: Buffer) => {
      if (!problem) {
        let off = 0;
        while (off < chunk.length) {
          const head = unverified[0];
          if (!head) {
            problem = codedError('ERR_ECHO_MISMATCH', `byte ${received + off} came back but was never sent`);
            break;
          }
          const n = Math.min(head.length, chunk.length - off);
          if (head.compare(chunk, off, off + n, 0, n) !== 0) {
            if (received + off === 0 && looksLikeTls(chunk) && !looksLikeTls(head)) {
              problem = speaksTls();
              break;
            }
            const at = received + off + firstDifference(chunk.subarray(off, off + n), head.subarray(0, n));
            problem = codedError(
              'ERR_ECHO_MISMATCH',
              `echo differs from what was sent at offset ${at} (cmp: byte ${at + 1})`,
            );
            break;
          }
          off += n;
          if (n === head.length) unverified.shift();
          else unverified[0] = head.subarray(n);
        }
      }
      received += chunk.length;
      // a slow stdout holds the socket back rather than buffering without bound
      if (output && !output.write(chunk)) {
        socket.pause();
        output.once('drain', () => socket.resume());
      }
      maybeResume();
    });
    socket.on('error', (err) => {
      problem ??= err;
    });
    socket.on('close', finish);
  });
}
