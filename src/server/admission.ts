// The one gate every accepted TCP connection passes, in every server mode and in
// `echo-chat --listen`: access lists, shutdown, --max-connections, --max-connections-per-ip
// and file-descriptor headroom. A connection that passes holds a slot until its release()
// is called (when it closes, wherever it was served); one that fails is closed at once,
// before anything is read, and the refusal is logged once per (kind, source) per interval.

import type { Socket } from 'node:net';
import { type AccessControl, RateLimitedLog } from '../core/access.js';
import { fdHeadroom } from '../core/libc.js';
import type { Logger } from '../core/log.js';
import { plural } from '../core/parse.js';

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
}

export type RefusalKind =
  | 'access'
  | 'closing'
  | 'max'
  | 'per-ip'
  | 'fd-limit'
  | 'queue-full'
  | 'no-child'
  | 'proxy';

export class Admission {
  /** connections admitted and not yet released */
  held = 0;
  closing = false;
  readonly refusedBy: Partial<Record<RefusalKind, number>> = {};
  private readonly perIp = new Map<string, number>();
  private readonly log: RateLimitedLog;
  private readonly fdCap: number | undefined;
  private readonly fdLimit: number | undefined;

  constructor(private readonly o: AdmissionOptions) {
    this.log = new RateLimitedLog(o.logger);
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
   * Admit `socket`, or refuse and close it. On admission, returns the function that frees
   * its slot (idempotent); call it when the connection is over.
   */
  admit(socket: Socket, address = socket.remoteAddress ?? '?'): (() => void) | undefined {
    const { o } = this;
    if (o.access?.active) {
      const v = o.access.check(address);
      if (!v.ok) return this.refuse(socket, 'access', v.why, address);
    }
    if (this.closing) return this.refuse(socket, 'closing', 'shutting down', address);
    const open = this.held;
    if (o.maxConnections !== undefined && open >= o.maxConnections) {
      return this.refuse(
        socket,
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
        socket,
        'fd-limit',
        `${plural(open, 'connection')} open: the file-descriptor limit (${fdLimit}) is nearly reached; raise ulimit -n`,
        address,
      );
    }
    if (o.maxConnectionsPerIp !== undefined) {
      const n = this.perIp.get(address) ?? 0;
      if (n >= o.maxConnectionsPerIp) {
        return this.refuse(
          socket,
          'per-ip',
          `${plural(n, 'connection')} from this address (--max-connections-per-ip ${o.maxConnectionsPerIp})`,
          address,
        );
      }
      this.perIp.set(address, n + 1);
    }
    this.held++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held--;
      if (o.maxConnectionsPerIp !== undefined) {
        const left = (this.perIp.get(address) ?? 1) - 1;
        if (left > 0) this.perIp.set(address, left);
        else this.perIp.delete(address);
      }
    };
  }

  /** Close `socket` unread (a plain FIN), count it and log it (rate-limited). */
  refuse(socket: Socket, kind: RefusalKind, why: string, address = socket.remoteAddress ?? '?'): undefined {
    this.refusedBy[kind] = (this.refusedBy[kind] ?? 0) + 1;
    this.log.warn(
      `${kind}|${address}`,
      { peer: address, why, ...this.o.logFields },
      `refused ${address}: ${why}`,
    );
    socket.on('error', () => {});
    socket.destroy();
    return undefined;
  }

  /** Log once per key per interval; for the listener's accept errors and dispatch notices. */
  warnOnce(key: string, fields: object, msg: string): void {
    this.log.warn(key, { ...fields, ...this.o.logFields }, msg);
  }
}

export { plural };
