// The one gate every accepted TCP connection passes, in every server mode and in
// `echo-chat --listen`: access lists, shutdown, --max-connections, --max-connections-per-ip
// and file-descriptor headroom. A connection that passes holds a slot until its release()
// is called (when it closes, wherever it was served); one that fails gets a FIN at once,
// nothing of what it sends is served (it is read and dropped until its FIN, for at most
// REFUSED_LINGER_MS, so its close is a FIN, not a reset), and the refusal is logged once
// per (kind, source) per interval.

import type { Socket } from 'node:net';
import { type AccessControl, RateLimitedLog } from './access.js';
import { resumeReading } from './hold.js';
import { fdHeadroom } from './libc.js';
import type { Logger } from './log.js';
import { plural } from './parse.js';

/** How long a refused connection is read and dropped, waiting for its FIN, before it is destroyed. */
export const REFUSED_LINGER_MS = 2000;

/**
 * Stop a connection that is not served: FIN now, then read and drop what the client still
 * sends until its FIN (closing with unread bytes would send RST: ECONNRESET at the client),
 * destroyed after `lingerMs` at most so that a refused client cannot hold a descriptor.
 */
export function finUnread(socket: Socket, lingerMs = REFUSED_LINGER_MS): void {
  if (socket.destroyed) return;
  socket.on('error', () => {});
  socket.end();
  resumeReading(socket); // a socket held after its PROXY header reads again
  socket.resume();
  socket.once('end', () => socket.destroy());
  const t = setTimeout(() => socket.destroy(), lingerMs);
  t.unref();
  socket.once('close', () => clearTimeout(t));
}

export interface AdmissionOptions {
  access?: AccessControl;
  /** beyond this many held connections, new ones are refused */
  maxConnections?: number;
  /** at most this many held connections from one address */
  maxConnectionsPerIp?: number;
  /**
   * Without maxConnections, refuse a little before the process runs out of file descriptors
   * (at EMFILE libuv accepts and drops connections silently). `fdPerConnection` is how many
   * descriptors of this process one held connection costs: 1 where it is served or queued
   * here, 1/N when N other processes serve them. Default 1; 0 turns the cap off.
   */
  fdPerConnection?: number;
  /**
   * Where the descriptors are spent in other processes too (workers): replaces the check
   * above. Returns the limit that is nearly reached, or undefined while there is room.
   */
  fdCheck?: () => number | undefined;
  logger: Logger;
  logFields?: object;
  /**
   * Called before a connection is refused for a limit: frees the slots of connections known
   * to be over (clients that left while waiting); the limit is then checked again.
   */
  reclaim?: () => void;
}

export type RefusalKind =
  | 'access'
  | 'closing'
  | 'max'
  | 'per-ip'
  | 'fd-limit'
  | 'queue-full'
  | 'no-child'
  | 'proxy'
  | 'plain-on-tls';

interface Slot {
  /** the address its per-address count is under */
  address: string;
}

export class Admission {
  /** connections admitted and not yet released */
  held = 0;
  closing = false;
  readonly refusedBy: Partial<Record<RefusalKind, number>> = {};
  private readonly perIp = new Map<string, number>();
  private readonly slots = new WeakMap<() => void, Slot>();
  private readonly log: RateLimitedLog;
  private readonly fdCap: number | undefined;
  private readonly fdLimit: number | undefined;
  /** refused sockets being read and dropped now, and how many may be (each holds a descriptor) */
  private readonly lingering = new Set<Socket>();
  private readonly lingerCap: number;

  constructor(private readonly o: AdmissionOptions) {
    this.log = new RateLimitedLog(o.logger);
    const limit = fdHeadroom()?.limit;
    this.lingerCap = limit && limit < 1e9 ? Math.max(4, Math.min(256, Math.floor(limit / 16))) : 256;
    const per = o.fdPerConnection ?? 1;
    const fds = o.maxConnections === undefined && per > 0 && !o.fdCheck ? fdHeadroom() : undefined;
    if (fds && fds.limit < 1e9) {
      this.fdLimit = fds.limit;
      const margin = Math.min(64, Math.ceil(fds.limit / 8));
      this.fdCap = Math.max(1, Math.floor((fds.limit - fds.open - margin) / per));
    }
  }

  get refused(): number {
    let n = 0;
    for (const v of Object.values(this.refusedBy)) n += v;
    return n;
  }

  /**
   * Admit `conn`, or refuse and close it. On admission, returns the function that frees
   * its slot (idempotent); call it when the connection is over. `access: false` skips the
   * access lists (a PROXY connection: they apply to the client its header names, see move());
   * only such a slot can be moved. `conn` may be a function that builds it: called only
   * to refuse (a connection accepted without a net.Socket gets one then).
   */
  admit(
    conn: Socket | (() => Socket),
    address = typeof conn === 'function' ? '?' : (conn.remoteAddress ?? '?'),
    { access = true } = {},
  ): (() => void) | undefined {
    const { o } = this;
    const socket = (): Socket => (typeof conn === 'function' ? conn() : conn);
    if (access && o.access?.active) {
      const v = o.access.check(address);
      if (!v.ok) return this.refuse(socket(), 'access', v.why, address);
    }
    if (this.closing) return this.refuse(socket(), 'closing', 'shutting down', address);
    if (o.reclaim && this.overLimit(address)) o.reclaim();
    const open = this.held;
    if (o.maxConnections !== undefined && open >= o.maxConnections) {
      return this.refuse(
        socket(),
        'max',
        `${plural(open, 'connection')} open (--max-connections ${o.maxConnections})`,
        address,
      );
    }
    const fdLimit =
      o.maxConnections !== undefined
        ? undefined
        : o.fdCheck
          ? o.fdCheck()
          : this.fdCap !== undefined && open >= this.fdCap
            ? this.fdLimit
            : undefined;
    if (fdLimit !== undefined) {
      return this.refuse(
        socket(),
        'fd-limit',
        `${plural(open, 'connection')} open: the file-descriptor limit (${fdLimit}) is nearly reached; raise ulimit -n`,
        address,
      );
    }
    if (o.maxConnectionsPerIp !== undefined) {
      const n = this.perIp.get(address) ?? 0;
      if (n >= o.maxConnectionsPerIp) {
        return this.refuse(
          socket(),
          'per-ip',
          `${plural(n, 'connection')} from this address (--max-connections-per-ip ${o.maxConnectionsPerIp})`,
          address,
        );
      }
      this.perIp.set(address, n + 1);
    }
    this.held++;
    let released = false;
    const slot: Slot = { address };
    const release = () => {
      if (released) return;
      released = true;
      this.held--;
      this.uncount(slot.address);
    };
    // only a slot admitted before its client is named (a PROXY connection) is ever moved
    if (!access) this.slots.set(release, slot);
    return release;
  }

  /** Would one more connection from `address` be over a limit? */
  private overLimit(address: string): boolean {
    const { o } = this;
    return (
      (o.maxConnections !== undefined && this.held >= o.maxConnections) ||
      (this.fdCap !== undefined && this.held >= this.fdCap) ||
      (o.maxConnectionsPerIp !== undefined && (this.perIp.get(address) ?? 0) >= o.maxConnectionsPerIp)
    );
  }

  /**
   * The connection holding `release` turns out to be from `address` (its PROXY header says
   * so): check the access lists and the per-address limit there, and move its count. False
   * when refused: its slot is freed and the socket closed.
   */
  move(socket: Socket, release: () => void, address: string): boolean {
    const { o } = this;
    const slot = this.slots.get(release);
    if (!slot) return false;
    const refuse = (kind: RefusalKind, why: string) => {
      release();
      this.refuse(socket, kind, why, address);
      return false;
    };
    if (o.access?.active) {
      const v = o.access.check(address);
      if (!v.ok) return refuse('access', v.why);
    }
    if (address === slot.address || o.maxConnectionsPerIp === undefined) {
      slot.address = address;
      return true;
    }
    if (o.reclaim && (this.perIp.get(address) ?? 0) >= o.maxConnectionsPerIp) o.reclaim();
    const n = this.perIp.get(address) ?? 0;
    if (n >= o.maxConnectionsPerIp) {
      return refuse(
        'per-ip',
        `${plural(n, 'connection')} from this address (--max-connections-per-ip ${o.maxConnectionsPerIp})`,
      );
    }
    this.uncount(slot.address);
    this.perIp.set(address, n + 1);
    slot.address = address;
    return true;
  }

  private uncount(address: string): void {
    if (this.o.maxConnectionsPerIp === undefined) return;
    const left = (this.perIp.get(address) ?? 1) - 1;
    if (left > 0) this.perIp.set(address, left);
    else this.perIp.delete(address);
  }

  /**
   * Close `socket` unserved (a plain FIN, see finUnread), count it and log it (rate-limited).
   * Beyond lingerCap refused sockets lingering at once (a flood), it is destroyed at once: a
   * client that still sends then sees a reset, and the flood cannot use up the descriptors.
   */
  refuse(socket: Socket, kind: RefusalKind, why: string, address = socket.remoteAddress ?? '?'): undefined {
    this.refusedBy[kind] = (this.refusedBy[kind] ?? 0) + 1;
    this.log.warn(
      `${kind}|${address}`,
      { peer: address, why, ...this.o.logFields },
      `refused ${address}: ${why}`,
    );
    if (socket.destroyed) return undefined;
    if (this.lingering.size >= this.lingerCap) {
      socket.on('error', () => {});
      socket.destroy();
      return undefined;
    }
    this.linger(socket);
    return undefined;
  }

  /** Close `socket` unserved (finUnread), among the sockets endLingering() closes. */
  linger(socket: Socket): void {
    if (socket.destroyed) return;
    this.lingering.add(socket);
    socket.once('close', () => this.lingering.delete(socket));
    finUnread(socket);
  }

  /**
   * The server is done: the sockets still read and dropped after their FIN are closed now, not
   * at the end of their REFUSED_LINGER_MS (each would keep the process from exiting until then).
   * A client that sends more to one of them gets a reset, as it would once the process exited.
   */
  endLingering(): void {
    for (const s of this.lingering) s.destroy();
  }

  /** Log once per key per interval; for the listener's accept errors and dispatch notices. */
  warnOnce(key: string, fields: object, msg: string): void {
    this.log.warn(key, { ...fields, ...this.o.logFields }, msg);
  }
}

export { plural };
