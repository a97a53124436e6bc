// Socket options in one place, like OpenBSD nc's set_common_sockopts: every command applies
// options through applySocketOptions() — to TCP sockets and to UDP (dgram) sockets alike — and
// reports what the kernel says back through reportSocketOptions(). The libc side is libc.ts;
// the options that must be set before bind() are listen.ts's business.

import { Socket as DgramSocket } from 'node:dgram';
import type { Server, Socket } from 'node:net';
import {
  getIntOption,
  getLinger,
  type OptionName,
  platformTable,
  requireFd,
  setIntOption,
  setLinger,
  socketFd,
} from './libc.js';

export { hasNativeReusePort, SocketOptionError } from './libc.js';

import { SocketOptionError } from './libc.js';

export interface SocketOptions {
  /** SO_REUSEADDR on a listening socket; default on (as Node and socat do). */
  reuseAddr?: boolean;
  /** SO_REUSEPORT on a listening socket: several sockets share one port, the kernel balances. */
  reusePort?: boolean;
  /** listen queue length */
  backlog?: number;
  /** SO_KEEPALIVE */
  keepAlive?: boolean;
  /** TCP_KEEPIDLE: idle time before the first probe, in ms (rounded up to seconds); implies keepAlive */
  keepAliveIdleMs?: number;
  /** TCP_KEEPINTVL: time between probes, in ms (rounded up to seconds) */
  keepAliveIntervalMs?: number;
  /** TCP_KEEPCNT */
  keepAliveCount?: number;
  /** TCP_USER_TIMEOUT in ms (Linux) */
  userTimeoutMs?: number;
  /** TCP_NODELAY */
  noDelay?: boolean;
  /** SO_SNDBUF in bytes (the kernel doubles it on Linux) */
  sendBuffer?: number;
  /** SO_RCVBUF in bytes (the kernel doubles it on Linux) */
  recvBuffer?: number;
  /** SO_LINGER: how long close() waits for unsent data, in ms; the kernel takes whole seconds, so it is rounded up. 0 = close with RST */
  lingerMs?: number;
}

/** One option: what was asked for and what the kernel reports back. */
export interface OptionReport {
  option: string;
  requested?: number | boolean | string;
  actual: number | boolean | string | null;
  note?: string;
}

// --- applying and reading back -----------------------------------------------------------

const secs = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

/**
 * Apply the per-connection options to a connected (or connecting) TCP socket, or the buffer
 * sizes to a bound UDP socket. Returns one report per option set, with the value the kernel
 * reports back (with `report: false`, nothing is read back and the list is empty: the accept
 * path of a server). Options that must be set before bind (reuseAddr, reusePort, backlog) are
 * listenTcp()'s and the UDP server's.
 */
export function applySocketOptions(
  socket: Socket | DgramSocket,
  opts: SocketOptions,
  { report = true } = {},
): OptionReport[] {
  const reports: OptionReport[] = [];
  if (socket instanceof DgramSocket) {
    for (const [k, option] of TCP_ONLY) {
      if (opts[k] !== undefined)
        throw new SocketOptionError(option, 'is a TCP option; this is a UDP socket', 'EINVAL');
    }
    // dgram's own setters (only once bound): the kernel doubles the value as for TCP
    if (opts.sendBuffer !== undefined) socket.setSendBufferSize(opts.sendBuffer);
    if (opts.recvBuffer !== undefined) socket.setRecvBufferSize(opts.recvBuffer);
    return report ? reportSocketOptions(socket, opts, reports) : reports;
  }
  if (opts.noDelay !== undefined) socket.setNoDelay(opts.noDelay);
  if (opts.keepAlive || opts.keepAliveIdleMs !== undefined) {
    // libuv sets TCP_KEEPIDLE and also forces TCP_KEEPINTVL=1s, TCP_KEEPCNT=10; fix those after
    socket.setKeepAlive(true, opts.keepAliveIdleMs ?? 0);
  } else if (opts.keepAlive === false) {
    socket.setKeepAlive(false);
  }
  const needsFd =
    opts.keepAliveIntervalMs !== undefined ||
    opts.keepAliveCount !== undefined ||
    opts.userTimeoutMs !== undefined ||
    opts.sendBuffer !== undefined ||
    opts.recvBuffer !== undefined ||
    opts.lingerMs !== undefined;
  if (needsFd) {
    const fd = requireFd(socket, 'setsockopt');
    if (opts.keepAliveIntervalMs !== undefined)
      setIntOption(fd, 'TCP_KEEPINTVL', secs(opts.keepAliveIntervalMs));
    if (opts.keepAliveCount !== undefined) setIntOption(fd, 'TCP_KEEPCNT', opts.keepAliveCount);
    if (opts.userTimeoutMs !== undefined)
      setIntOption(fd, 'TCP_USER_TIMEOUT', Math.round(opts.userTimeoutMs));
    if (opts.sendBuffer !== undefined) setIntOption(fd, 'SO_SNDBUF', opts.sendBuffer);
    if (opts.recvBuffer !== undefined) setIntOption(fd, 'SO_RCVBUF', opts.recvBuffer);
    if (opts.lingerMs !== undefined) setLinger(fd, Math.ceil(opts.lingerMs / 1000));
  }
  // the read-back costs a dozen getsockopt calls: only when someone will look at it
  return report ? reportSocketOptions(socket, opts, reports) : reports;
}

const TCP_ONLY: [keyof SocketOptions, string][] = [
  ['keepAlive', 'SO_KEEPALIVE'],
  ['keepAliveIdleMs', 'TCP_KEEPIDLE'],
  ['keepAliveIntervalMs', 'TCP_KEEPINTVL'],
  ['keepAliveCount', 'TCP_KEEPCNT'],
  ['userTimeoutMs', 'TCP_USER_TIMEOUT'],
  ['noDelay', 'TCP_NODELAY'],
  ['lingerMs', 'SO_LINGER'],
];

/** Compare what was asked with what the kernel reports, one line per option. */
export function reportSocketOptions(
  sock: Socket | Server | DgramSocket,
  opts: SocketOptions,
  into: OptionReport[] = [],
): OptionReport[] {
  const fd = socketFd(sock);
  if (fd === undefined) return into;
  const kernel = readSocketOptions(sock);
  const push = (option: string, requested: OptionReport['requested'], note?: string) =>
    into.push({ option, requested, actual: kernel[option] ?? null, ...(note ? { note } : {}) });
  const doubled = (req: number, option: string) =>
    process.platform === 'linux' && kernel[option] === req * 2
      ? 'Linux doubles it for bookkeeping'
      : undefined;
  if (opts.reuseAddr !== undefined) push('SO_REUSEADDR', opts.reuseAddr);
  if (opts.reusePort) push('SO_REUSEPORT', true);
  if (opts.noDelay !== undefined) push('TCP_NODELAY', opts.noDelay);
  if (opts.keepAlive !== undefined || opts.keepAliveIdleMs !== undefined) {
    push('SO_KEEPALIVE', opts.keepAlive !== false);
    if (opts.keepAliveIdleMs !== undefined) push('TCP_KEEPIDLE', secs(opts.keepAliveIdleMs), 'seconds');
  }
  if (opts.keepAliveIntervalMs !== undefined)
    push('TCP_KEEPINTVL', secs(opts.keepAliveIntervalMs), 'seconds');
  if (opts.keepAliveCount !== undefined) push('TCP_KEEPCNT', opts.keepAliveCount);
  if (opts.userTimeoutMs !== undefined) push('TCP_USER_TIMEOUT', Math.round(opts.userTimeoutMs), 'ms');
  if (opts.sendBuffer !== undefined)
    push('SO_SNDBUF', opts.sendBuffer, doubled(opts.sendBuffer, 'SO_SNDBUF'));
  if (opts.recvBuffer !== undefined)
    push('SO_RCVBUF', opts.recvBuffer, doubled(opts.recvBuffer, 'SO_RCVBUF'));
  if (opts.lingerMs !== undefined) {
    push(
      'SO_LINGER',
      `on, ${Math.ceil(opts.lingerMs / 1000)}s`,
      opts.lingerMs === 0 ? 'close() sends RST' : undefined,
    );
  }
  return into;
}

/**
 * Read every option this module knows from the kernel (getsockopt). Keys are the C names;
 * an option the platform or socket type lacks is left out. SO_LINGER reads as `off` or `on, Ns`.
 */
export function readSocketOptions(sock: unknown): Record<string, number | boolean | string> {
  const fd = requireFd(sock, 'getsockopt');
  const t = platformTable();
  const out: Record<string, number | boolean | string> = {};
  const type = getIntOption(fd, 'SO_TYPE');
  out.SO_TYPE = type === t.SOCK_STREAM ? 'SOCK_STREAM' : type === t.SOCK_DGRAM ? 'SOCK_DGRAM' : type;
  const bools: OptionName[] = ['SO_REUSEADDR', 'SO_REUSEPORT', 'SO_KEEPALIVE'];
  for (const name of bools) out[name] = getIntOption(fd, name) !== 0;
  out.SO_SNDBUF = getIntOption(fd, 'SO_SNDBUF');
  out.SO_RCVBUF = getIntOption(fd, 'SO_RCVBUF');
  const l = getLinger(fd);
  out.SO_LINGER = l.onoff ? `on, ${l.seconds}s` : 'off';
  let tcp = type === t.SOCK_STREAM;
  if (tcp) {
    try {
      out.TCP_NODELAY = getIntOption(fd, 'TCP_NODELAY') !== 0;
    } catch {
      tcp = false; // a Unix-domain stream socket: no TCP level (EOPNOTSUPP)
    }
  }
  if (tcp) {
    for (const name of [
      'TCP_KEEPIDLE',
      'TCP_KEEPINTVL',
      'TCP_KEEPCNT',
      'TCP_SYNCNT',
      'TCP_USER_TIMEOUT',
    ] as const) {
      if (t.opts[name]) out[name] = getIntOption(fd, name);
    }
  }
  return out;
}

/** `SO_SNDBUF requested 16384, kernel reports 32768 (Linux doubles it for bookkeeping)` */
export function formatReport(r: OptionReport): string {
  const req = r.requested === undefined ? '' : ` requested ${r.requested},`;
  return `${r.option}${req} kernel reports ${r.actual}${r.note ? ` (${r.note})` : ''}`;
}
