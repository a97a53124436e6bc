// UDP echo client: one datagram per message on a connected socket, so the kernel reports a
// closed port as ECONNREFUSED (ICMP port unreachable). Each message waits `timeout` for its
// echo and is resent up to `retries` times — a client that just calls recvfrom() blocks forever on a
// lost datagram.
// Each request goes from a socket (a source port) of its own, so a reply is matched to its
// request by where it arrives, never by its bytes (the payload is exactly what was asked for):
// the first identical reply on a request's socket is its echo, a later one a duplicate, one
// after the request was given up late. The sockets are kept (the latest MAX_KEPT) until
// close(), so duplicates and late replies are still seen. With a fixed local port every
// request shares that one socket, and replies can only be told apart by their content.

import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { asUdpError, codedError } from '../core/errors.js';
import { applySocketOptions } from '../core/sockopts.js';

/** Largest UDP payload: 65535 − 20 (IPv4 header) − 8 (UDP header); IPv6's length field excludes its header: 65535 − 8. */
export const MAX_DATAGRAM = { ipv4: 65507, ipv6: 65527 } as const;

/** Request sockets kept open at most (the oldest is closed beyond): bounded descriptors. */
const MAX_KEPT = 256;

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
  /** replies on a request's socket whose bytes differ from what it sent */
  mismatched: number;
}

interface Request {
  msg: Buffer;
  state: 'waiting' | 'answered' | 'given-up';
  done?: (err: Error | null, reply?: Buffer) => void;
}

async function openSocket(o: UdpClientOptions): Promise<dgram.Socket> {
  const v6 = isIP(o.host) === 6 || o.family === 6;
  const socket = dgram.createSocket(v6 ? 'udp6' : 'udp4');
  try {
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
  } catch (err) {
    socket.close();
    throw err;
  }
  applySocketOptions(socket, { sendBuffer: o.sendBuffer, recvBuffer: o.recvBuffer }, { report: false });
  return socket;
}

export class UdpEchoClient {
  readonly counters: UdpCounters = {
    sent: 0,
    answered: 0,
    lost: 0,
    late: 0,
    duplicate: 0,
    retried: 0,
    mismatched: 0,
  };
  /** each open socket and the request it was last used for (none yet: the first socket) */
  private readonly owner = new Map<dgram.Socket, Request | undefined>();
  private current: dgram.Socket;
  private lastError: Error | undefined;

  private constructor(
    first: dgram.Socket,
    readonly maxSize: number,
    private readonly options: UdpClientOptions,
  ) {
    this.current = first;
    this.adopt(first);
  }

  /** The socket of the latest request (before any, the one opened first). */
  get socket(): dgram.Socket {
    return this.current;
  }

  static async open(o: UdpClientOptions): Promise<UdpEchoClient> {
    const v6 = isIP(o.host) === 6 || o.family === 6;
    return new UdpEchoClient(await openSocket(o), v6 ? MAX_DATAGRAM.ipv6 : MAX_DATAGRAM.ipv4, o);
  }

  private adopt(socket: dgram.Socket): void {
    this.owner.set(socket, undefined);
    socket.on('message', (msg) => this.onMessage(socket, msg));
    socket.on('error', (e) => {
      const err = asUdpError(e);
      const r = this.owner.get(socket);
      if (r?.state === 'waiting' && r.done) r.done(err);
      else if (socket === this.current) this.lastError = err;
    });
    // oldest first (a Map keeps insertion order): beyond the bound, the oldest is closed
    if (this.owner.size > MAX_KEPT) {
      const [oldest] = this.owner.keys();
      this.owner.delete(oldest!);
      oldest!.close();
    }
  }

  private onMessage(socket: dgram.Socket, msg: Buffer): void {
    const r = this.owner.get(socket);
    if (!r) {
      this.counters.duplicate++; // an echo of nothing we sent from this socket: count it, never print it
      return;
    }
    if (r.state === 'given-up') {
      this.counters.late++;
    } else if (!msg.equals(r.msg)) {
      this.counters.mismatched++;
    } else if (r.state === 'waiting' && r.done) {
      r.done(null, msg);
    } else {
      this.counters.duplicate++;
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
    // a socket of its own, unless the first is still unused or the local port is fixed
    if (this.owner.get(this.current) !== undefined && this.options.localPort === undefined) {
      const next = await openSocket(this.options);
      this.current = next;
      this.adopt(next);
    }
    const socket = this.current;
    const req: Request = { msg, state: 'waiting' };
    this.owner.set(socket, req);
    const t0 = performance.now();
    for (let attempt = 1; attempt <= retries + 1; attempt++) {
      if (attempt > 1) this.counters.retried++;
      this.counters.sent++;
      const result = await new Promise<Buffer | Error | null>((resolve) => {
        const timer = setTimeout(() => {
          req.done = undefined;
          resolve(null);
        }, timeoutMs);
        req.done = (err, reply) => {
          clearTimeout(timer);
          req.done = undefined;
          resolve(err ?? reply!);
        };
        socket.send(msg, (err) => {
          if (err) req.done?.(asUdpError(err));
        });
      });
      if (result instanceof Error) {
        req.state = 'given-up';
        throw result;
      }
      if (result) {
        req.state = 'answered';
        this.counters.answered++;
        return { reply: result, rttMs: performance.now() - t0, attempts: attempt };
      }
    }
    req.state = 'given-up';
    this.counters.lost++;
    throw codedError(
      'ERR_REPLY_TIMEOUT',
      `no echo for a ${msg.length}-byte datagram after ${retries + 1} tries, ${timeoutMs} ms each`,
    );
  }

  /** Close every socket of the run. */
  close(): Promise<void> {
    const all = [...this.owner.keys()];
    this.owner.clear();
    return Promise.all(all.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(
      () => {},
    );
  }
}
