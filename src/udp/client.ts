// UDP echo client: one datagram per message on a connected socket, so the kernel reports a
// closed port as ECONNREFUSED (ICMP port unreachable). Each message waits `timeout` for its
// echo and is resent up to `retries` times — a client that just calls recvfrom() blocks forever on a
// lost datagram.
// Replies are matched by content: a second copy is a duplicate, one after we gave up is late.

import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { asUdpError, codedError } from '../core/errors.js';
import { applySocketOptions } from '../core/sockopts.js';

/** Largest UDP payload: 65535 − 20 (IPv4 header) − 8 (UDP header); IPv6's length field excludes its header: 65535 − 8. */
export const MAX_DATAGRAM = { ipv4: 65507, ipv6: 65527 } as const;

export interface UdpClientOptions {
  host: string;
  port: number;
  sendBuffer?: number;
  recvBuffer?: number;
  localAddress?: string;
  localPort?: number;
  /** with a host name: resolve to this family only (-4 / -6) */
  family?: 4 | 6;
}

export interface UdpCounters {
  sent: number;
  answered: number;
  lost: number;
  late: number;
  duplicate: number;
  retried: number;
}

export class UdpEchoClient {
  readonly counters: UdpCounters = { sent: 0, answered: 0, lost: 0, late: 0, duplicate: 0, retried: 0 };
  private waiting: { msg: Buffer; done: (err: Error | null, reply?: Buffer) => void } | undefined;
  private answered = new Set<string>();
  private givenUp = new Set<string>();
  private lastError: Error | undefined;

  private constructor(
    readonly socket: dgram.Socket,
    readonly maxSize: number,
  ) {
    socket.on('message', (msg) => this.onMessage(msg));
    socket.on('error', (e) => {
      const err = asUdpError(e);
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w.done(err);
      } else {
        this.lastError = err;
      }
    });
  }

  static async open(o: UdpClientOptions): Promise<UdpEchoClient> {
    const v6 = isIP(o.host) === 6 || o.family === 6;
    const socket = dgram.createSocket(v6 ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(asUdpError(err));
      socket.once('error', onError);
      socket.bind({ address: o.localAddress, port: o.localPort ?? 0 }, () => {
        socket.connect(o.port, o.host, () => {
          socket.off('error', onError);
          resolve();
        });
      });
    });
    applySocketOptions(socket, { sendBuffer: o.sendBuffer, recvBuffer: o.recvBuffer }, { report: false });
    return new UdpEchoClient(socket, v6 ? MAX_DATAGRAM.ipv6 : MAX_DATAGRAM.ipv4);
  }

  private onMessage(msg: Buffer): void {
    const key = msg.toString('latin1');
    const w = this.waiting;
    if (w && msg.equals(w.msg)) {
      this.waiting = undefined;
      this.answered.add(key);
      w.done(null, msg);
    } else if (this.givenUp.has(key)) {
      this.counters.late++;
    } else if (this.answered.has(key)) {
      this.counters.duplicate++;
    } else {
      this.counters.duplicate++; // an echo of nothing we are waiting for: count it, never print it
    }
  }

  /** Send `msg`, wait for its echo; resend on timeout. Throws ERR_REPLY_TIMEOUT after the last try. */
  async roundTrip(
    msg: Buffer,
    { timeoutMs = 1000, retries = 2 } = {},
  ): Promise<{ reply: Buffer; rttMs: number; attempts: number }> {
    if (msg.length > this.maxSize) {
      throw codedError(
        'EMSGSIZE',
        `message of ${msg.length} bytes is larger than a UDP datagram can carry (${this.maxSize})`,
      );
    }
    if (this.lastError) {
      const e = this.lastError;
      this.lastError = undefined;
      throw e;
    }
    this.answered.delete(msg.toString('latin1')); // the same text may legitimately be sent again
    const t0 = performance.now();
    for (let attempt = 1; attempt <= retries + 1; attempt++) {
      if (attempt > 1) this.counters.retried++;
      this.counters.sent++;
      const result = await new Promise<Buffer | Error | null>((resolve) => {
        const timer = setTimeout(() => {
          this.waiting = undefined;
          resolve(null);
        }, timeoutMs);
        this.waiting = {
          msg,
          done: (err, reply) => {
            clearTimeout(timer);
            resolve(err ?? reply!);
          },
        };
        this.socket.send(msg, (err) => {
          if (err && this.waiting?.msg === msg) {
            const w = this.waiting;
            this.waiting = undefined;
            w.done(err);
          }
        });
      });
      if (result instanceof Error) throw result;
      if (result) {
        this.counters.answered++;
        return { reply: result, rttMs: performance.now() - t0, attempts: attempt };
      }
    }
    this.counters.lost++;
    this.givenUp.add(msg.toString('latin1'));
    throw codedError(
      'ERR_REPLY_TIMEOUT',
      `no echo for a ${msg.length}-byte datagram after ${retries + 1} tries, ${timeoutMs} ms each`,
    );
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
