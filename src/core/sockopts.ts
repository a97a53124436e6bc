// Socket options in one place, like OpenBSD nc's set_common_sockopts: every command
// applies options through applySocketOptions() and reports what the kernel says back through
// readSocketOptions(). Node lacks several options, so libc setsockopt/getsockopt are called on
// the socket's fd through koffi (loaded lazily: nothing here costs anything unless an option
// is asked for). Listening sockets that need options before bind (no SO_REUSEADDR, SO_REUSEPORT
// on Node < 22.12, a receive buffer) are made with libc and handed to Node by fd.

import { Socket as DgramSocket } from 'node:dgram';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Server, Socket } from 'node:net';
import { constants as osConstants } from 'node:os';

export interface SocketOptions {
  /** SO_REUSEADDR on a listening socket; default on (as Node and socat do). */
  reuseAddr?: boolean;
  /** SO_REUSEPORT on a listening socket: several sockets share one port, the kernel balances. */
  reusePort?: boolean;
  /** listen queue length */
  backlog?: number;
  /** SO_KEEPALIVE; a number is TCP_KEEPIDLE in ms. */
  keepAlive?: boolean | number;
  /** TCP_KEEPINTVL in ms */
  keepAliveInterval?: number;
  /** TCP_KEEPCNT */
  keepAliveCount?: number;
  /** TCP_USER_TIMEOUT in ms (Linux) */
  userTimeout?: number;
  /** TCP_NODELAY */
  noDelay?: boolean;
  /** SO_SNDBUF in bytes (the kernel doubles it on Linux) */
  sendBuffer?: number;
  /** SO_RCVBUF in bytes (the kernel doubles it on Linux) */
  recvBuffer?: number;
  /** SO_LINGER in ms (rounded up to seconds); 0 = close with RST */
  linger?: number;
}

/** One option: what was asked for and what the kernel reports back. */
export interface OptionReport {
  option: string;
  requested?: number | boolean | string;
  actual: number | boolean | string | null;
  note?: string;
}

type OptSpec = readonly [level: number, name: number] | null;

interface PlatformTable {
  libc: string;
  SOL_SOCKET: number;
  IPPROTO_TCP: number;
  IPPROTO_IPV6: number;
  AF_INET: number;
  AF_INET6: number;
  SOCK_STREAM: number;
  SOCK_DGRAM: number;
  /** sockaddr starts with a length byte (BSD) */
  sinLen: boolean;
  opts: Record<OptionName, OptSpec>;
}

export type OptionName =
  | 'SO_TYPE'
  | 'SO_REUSEADDR'
  | 'SO_REUSEPORT'
  | 'SO_KEEPALIVE'
  | 'SO_SNDBUF'
  | 'SO_RCVBUF'
  | 'SO_LINGER'
  | 'SO_ERROR'
  | 'TCP_NODELAY'
  | 'TCP_KEEPIDLE'
  | 'TCP_KEEPINTVL'
  | 'TCP_KEEPCNT'
  | 'TCP_SYNCNT'
  | 'TCP_USER_TIMEOUT'
  | 'IPV6_V6ONLY';

// Per-OS constants, Linux first (from <asm-generic/socket.h>, <netinet/tcp.h>), then macOS
// (<sys/socket.h>, <netinet/tcp.h>). An option a platform lacks is null and fails by name.
const TABLES: Record<string, PlatformTable> = {
  linux: {
    libc: 'libc.so.6',
    SOL_SOCKET: 1,
    IPPROTO_TCP: 6,
    IPPROTO_IPV6: 41,
    AF_INET: 2,
    AF_INET6: 10,
    SOCK_STREAM: 1,
    SOCK_DGRAM: 2,
    sinLen: false,
    opts: {
      SO_TYPE: [1, 3],
      SO_REUSEADDR: [1, 2],
      SO_ERROR: [1, 4],
      SO_SNDBUF: [1, 7],
      SO_RCVBUF: [1, 8],
      SO_KEEPALIVE: [1, 9],
      SO_LINGER: [1, 13],
      SO_REUSEPORT: [1, 15],
      TCP_NODELAY: [6, 1],
      TCP_KEEPIDLE: [6, 4],
      TCP_KEEPINTVL: [6, 5],
      TCP_KEEPCNT: [6, 6],
      TCP_SYNCNT: [6, 7],
      TCP_USER_TIMEOUT: [6, 18],
      IPV6_V6ONLY: [41, 26],
    },
  },
  darwin: {
    libc: '/usr/lib/libSystem.B.dylib',
    SOL_SOCKET: 0xffff,
    IPPROTO_TCP: 6,
    IPPROTO_IPV6: 41,
    AF_INET: 2,
    AF_INET6: 30,
    SOCK_STREAM: 1,
    SOCK_DGRAM: 2,
    sinLen: true,
    opts: {
      SO_TYPE: [0xffff, 0x1008],
      SO_REUSEADDR: [0xffff, 0x4],
      SO_ERROR: [0xffff, 0x1007],
      SO_SNDBUF: [0xffff, 0x1001],
      SO_RCVBUF: [0xffff, 0x1002],
      SO_KEEPALIVE: [0xffff, 0x8],
      SO_LINGER: [0xffff, 0x1080], // SO_LINGER_SEC: seconds, as on Linux
      SO_REUSEPORT: [0xffff, 0x200],
      TCP_NODELAY: [6, 0x1],
      TCP_KEEPIDLE: [6, 0x10], // TCP_KEEPALIVE
      TCP_KEEPINTVL: [6, 0x101],
      TCP_KEEPCNT: [6, 0x102],
      TCP_SYNCNT: null,
      TCP_USER_TIMEOUT: null,
      IPV6_V6ONLY: [41, 27],
    },
  },
};

/** An option this platform or this socket cannot do. Commands print it and exit 1. */
export class SocketOptionError extends Error {
  code: string;
  constructor(
    readonly option: string,
    message: string,
    code = 'ENOPROTOOPT',
  ) {
    super(`${option}: ${message}`);
    this.name = 'SocketOptionError';
    this.code = code;
  }
}

export function platformTable(): PlatformTable {
  const t = TABLES[process.platform];
  if (!t)
    throw new SocketOptionError('setsockopt', `socket options are not supported on ${process.platform}`);
  return t;
}

/** Node ≥ 22.12 / ≥ 23.1 has `reusePort` for net and dgram; older Node ignores it silently. */
export function hasNativeReusePort(version = process.versions.node): boolean {
  const [maj = 0, min = 0] = version.split('.').map(Number);
  return maj > 23 || (maj === 23 && min >= 1) || (maj === 22 && min >= 12);
}

// --- libc through koffi ------------------------------------------------------------------

interface Libc {
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number;
  getsockopt(fd: number, level: number, name: number, val: Buffer, len: number[]): number;
  socket(domain: number, type: number, proto: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  listen(fd: number, backlog: number): number;
  getsockname(fd: number, addr: Buffer, len: number[]): number;
  getrlimit(resource: number, out: Buffer): number;
  close(fd: number): number;
  errno(): number;
}

let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc) return libc;
  const t = platformTable();
  let koffi: any;
  try {
    koffi = createRequire(import.meta.url)('koffi');
  } catch (err) {
    throw new SocketOptionError(
      'setsockopt',
      `koffi could not be loaded (${(err as Error).message})`,
      'ENOSYS',
    );
  }
  const lib = koffi.load(t.libc);
  libc = {
    setsockopt: lib.func('int setsockopt(int, int, int, const void *, uint32_t)'),
    getsockopt: lib.func('int getsockopt(int, int, int, _Out_ void *, _Inout_ uint32_t *)'),
    socket: lib.func('int socket(int, int, int)'),
    bind: lib.func('int bind(int, const void *, uint32_t)'),
    listen: lib.func('int listen(int, int)'),
    getsockname: lib.func('int getsockname(int, _Out_ void *, _Inout_ uint32_t *)'),
    getrlimit: lib.func('int getrlimit(int, _Out_ void *)'),
    close: lib.func('int close(int)'),
    errno: () => koffi.errno() as number,
  };
  return libc;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

/** An Error shaped like Node's own system errors (code, errno, syscall). */
export function sysError(syscall: string, errno: number, detail?: string): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
  const err = new Error(`${syscall} ${code}${detail ? ` ${detail}` : ''}`) as NodeJS.ErrnoException;
  err.code = code;
  err.errno = -errno;
  err.syscall = syscall;
  return err;
}

function spec(name: OptionName): readonly [number, number] {
  const s = platformTable().opts[name];
  if (!s) throw new SocketOptionError(name, `not available on ${process.platform}`);
  return s;
}

export function setIntOption(fd: number, name: OptionName, value: number): void {
  const [level, opt] = spec(name);
  const c = loadLibc();
  const buf = Buffer.alloc(4);
  buf.writeInt32LE(value);
  if (c.setsockopt(fd, level, opt, buf, 4) !== 0) throw sysError(`setsockopt ${name}`, c.errno());
}

export function getIntOption(fd: number, name: OptionName): number {
  const [level, opt] = spec(name);
  const c = loadLibc();
  const buf = Buffer.alloc(4);
  const len = [4];
  if (c.getsockopt(fd, level, opt, buf, len) !== 0) throw sysError(`getsockopt ${name}`, c.errno());
  return buf.readInt32LE(0);
}

function setLinger(fd: number, seconds: number): void {
  const [level, opt] = spec('SO_LINGER');
  const c = loadLibc();
  const buf = Buffer.alloc(8);
  buf.writeInt32LE(1, 0);
  buf.writeInt32LE(seconds, 4);
  if (c.setsockopt(fd, level, opt, buf, 8) !== 0) throw sysError('setsockopt SO_LINGER', c.errno());
}

function getLinger(fd: number): { onoff: boolean; seconds: number } {
  const [level, opt] = spec('SO_LINGER');
  const c = loadLibc();
  const buf = Buffer.alloc(8);
  const len = [8];
  if (c.getsockopt(fd, level, opt, buf, len) !== 0) throw sysError('getsockopt SO_LINGER', c.errno());
  return { onoff: buf.readInt32LE(0) !== 0, seconds: buf.readInt32LE(4) };
}

/** The OS file descriptor behind a net.Socket, net.Server or dgram.Socket, if it has one. */
export function socketFd(sock: unknown): number | undefined {
  const s = sock as any;
  // on dgram sockets `_handle` is a deprecated getter (DEP0112): look behind its state symbol instead
  let handle = s instanceof DgramSocket ? undefined : s?._handle;
  if (handle === undefined && s && typeof s === 'object') {
    // dgram keeps its handle behind a symbol ('state symbol'); reading `_handle` would warn (DEP0112)
    for (const sym of Object.getOwnPropertySymbols(s)) {
      const v = s[sym];
      if (v && typeof v === 'object' && 'handle' in v && v.handle && typeof v.handle.fd === 'number') {
        handle = v.handle;
        break;
      }
    }
  }
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

function requireFd(sock: unknown, option: string): number {
  const fd = socketFd(sock);
  if (fd === undefined)
    throw new SocketOptionError(
      option,
      'the socket has no file descriptor (not open yet, or shared by cluster)',
      'EBADF',
    );
  return fd;
}

// --- applying and reading back -----------------------------------------------------------

const secs = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

/**
 * Apply the per-connection options to a connected (or connecting) TCP socket.
 * Returns one report per option set, with the value the kernel reports back (with
 * `report: false`, nothing is read back and the list is empty: the accept path of a server).
 * Listen-only options (reuseAddr, reusePort, backlog) are for listenTcp().
 */
export function applySocketOptions(
  socket: Socket,
  opts: SocketOptions,
  { report = true } = {},
): OptionReport[] {
  const reports: OptionReport[] = [];
  if (opts.noDelay !== undefined) socket.setNoDelay(opts.noDelay);
  if (opts.keepAlive !== undefined && opts.keepAlive !== false) {
    const idle = typeof opts.keepAlive === 'number' ? opts.keepAlive : undefined;
    // libuv sets TCP_KEEPIDLE and also forces TCP_KEEPINTVL=1s, TCP_KEEPCNT=10; fix those after
    socket.setKeepAlive(true, idle ?? 0);
  } else if (opts.keepAlive === false) {
    socket.setKeepAlive(false);
  }
  const needsFd =
    opts.keepAliveInterval !== undefined ||
    opts.keepAliveCount !== undefined ||
    opts.userTimeout !== undefined ||
    opts.sendBuffer !== undefined ||
    opts.recvBuffer !== undefined ||
    opts.linger !== undefined;
  if (needsFd) {
    const fd = requireFd(socket, 'setsockopt');
    if (opts.keepAliveInterval !== undefined) setIntOption(fd, 'TCP_KEEPINTVL', secs(opts.keepAliveInterval));
    if (opts.keepAliveCount !== undefined) setIntOption(fd, 'TCP_KEEPCNT', opts.keepAliveCount);
    if (opts.userTimeout !== undefined) setIntOption(fd, 'TCP_USER_TIMEOUT', Math.round(opts.userTimeout));
    if (opts.sendBuffer !== undefined) setIntOption(fd, 'SO_SNDBUF', opts.sendBuffer);
    if (opts.recvBuffer !== undefined) setIntOption(fd, 'SO_RCVBUF', opts.recvBuffer);
    if (opts.linger !== undefined) setLinger(fd, Math.ceil(opts.linger / 1000));
  }
  // the read-back costs a dozen getsockopt calls: only when someone will look at it
  return report ? reportOptions(socket, opts, reports) : reports;
}

/** Compare what was asked with what the kernel reports, one line per option. */
export function reportOptions(
  sock: Socket | Server,
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
  if (opts.keepAlive !== undefined) {
    push('SO_KEEPALIVE', opts.keepAlive !== false);
    if (typeof opts.keepAlive === 'number') push('TCP_KEEPIDLE', secs(opts.keepAlive), 'seconds');
  }
  if (opts.keepAliveInterval !== undefined) push('TCP_KEEPINTVL', secs(opts.keepAliveInterval), 'seconds');
  if (opts.keepAliveCount !== undefined) push('TCP_KEEPCNT', opts.keepAliveCount);
  if (opts.userTimeout !== undefined) push('TCP_USER_TIMEOUT', Math.round(opts.userTimeout), 'ms');
  if (opts.sendBuffer !== undefined)
    push('SO_SNDBUF', opts.sendBuffer, doubled(opts.sendBuffer, 'SO_SNDBUF'));
  if (opts.recvBuffer !== undefined)
    push('SO_RCVBUF', opts.recvBuffer, doubled(opts.recvBuffer, 'SO_RCVBUF'));
  if (opts.linger !== undefined) {
    push(
      'SO_LINGER',
      `on, ${Math.ceil(opts.linger / 1000)}s`,
      opts.linger === 0 ? 'close() sends RST' : undefined,
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
  if (type === t.SOCK_STREAM) {
    out.TCP_NODELAY = getIntOption(fd, 'TCP_NODELAY') !== 0;
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

// --- listening sockets made with libc ----------------------------------------------------

export interface RawListenOptions {
  host: string;
  port: number;
  backlog: number;
  reuseAddr: boolean;
  reusePort: boolean;
  recvBuffer?: number;
  sendBuffer?: number;
  /** SOCK_STREAM (default) or SOCK_DGRAM (then no listen) */
  type?: 'tcp' | 'udp';
  /** bind only, no listen (a client socket with a fixed port) */
  bindOnly?: boolean;
}

function sockaddr(host: string, port: number): { family: number; addr: Buffer } {
  const t = platformTable();
  const v6 = host.includes(':');
  const buf = Buffer.alloc(v6 ? 28 : 16);
  if (t.sinLen) {
    buf.writeUInt8(buf.length, 0);
    buf.writeUInt8(v6 ? t.AF_INET6 : t.AF_INET, 1);
  } else {
    buf.writeUInt16LE(v6 ? t.AF_INET6 : t.AF_INET, 0);
  }
  buf.writeUInt16BE(port, 2);
  if (v6) {
    ipv6Bytes(host).copy(buf, 8);
  } else {
    const parts = host.split('.').map(Number);
    if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) {
      throw new SocketOptionError('bind', `${host} is not an IPv4 or IPv6 address`, 'EINVAL');
    }
    Buffer.from(parts).copy(buf, 4);
  }
  return { family: v6 ? t.AF_INET6 : t.AF_INET, addr: buf };
}

function ipv6Bytes(host: string): Buffer {
  const [head = '', tail] = host.split('%')[0]!.split('::') as [string, string | undefined];
  const words = (s: string) => (s ? s.split(':') : []);
  let h = words(head);
  let tl = tail === undefined ? [] : words(tail);
  // embedded IPv4 at the end (::ffff:127.0.0.1)
  const expand = (arr: string[]) => {
    const last = arr[arr.length - 1];
    if (last?.includes('.')) {
      const b = last.split('.').map(Number);
      arr.splice(-1, 1, ((b[0]! << 8) | b[1]!).toString(16), ((b[2]! << 8) | b[3]!).toString(16));
    }
    return arr;
  };
  h = expand(h);
  tl = expand(tl);
  const fill = tail === undefined ? [] : new Array(8 - h.length - tl.length).fill('0');
  const all = [...h, ...fill, ...tl];
  const out = Buffer.alloc(16);
  for (const [i, w] of all.entries()) out.writeUInt16BE(Number.parseInt(w, 16), i * 2);
  return out;
}

/**
 * socket(), setsockopt() before bind, bind(), listen(): a listening fd with exactly the
 * options asked for, for `server.listen({ fd }, backlog)`. The caller owns the fd.
 */
export function rawListenFd(o: RawListenOptions): number {
  const t = platformTable();
  const c = loadLibc();
  const { family, addr } = sockaddr(o.host, o.port);
  const fd = c.socket(family, o.type === 'udp' ? t.SOCK_DGRAM : t.SOCK_STREAM, 0);
  if (fd < 0) throw sysError('socket', c.errno());
  try {
    setIntOption(fd, 'SO_REUSEADDR', o.reuseAddr ? 1 : 0);
    if (o.reusePort) setIntOption(fd, 'SO_REUSEPORT', 1);
    if (o.recvBuffer !== undefined) setIntOption(fd, 'SO_RCVBUF', o.recvBuffer);
    if (o.sendBuffer !== undefined) setIntOption(fd, 'SO_SNDBUF', o.sendBuffer);
    if (c.bind(fd, addr, addr.length) !== 0) {
      throw Object.assign(sysError('bind', c.errno(), `${o.host}:${o.port}`), {
        address: o.host,
        port: o.port,
      });
    }
    if (o.type !== 'udp' && !o.bindOnly && c.listen(fd, o.backlog) !== 0) throw sysError('listen', c.errno());
  } catch (err) {
    c.close(fd);
    throw err;
  }
  return fd;
}

/** The local port an fd is bound to (getsockname). */
export function boundPort(fd: number): number {
  const c = loadLibc();
  const buf = Buffer.alloc(128);
  if (c.getsockname(fd, buf, [128]) !== 0) throw sysError('getsockname', c.errno());
  return buf.readUInt16BE(2);
}

/**
 * How many file descriptors this process may still open: the soft RLIMIT_NOFILE minus those
 * open now. Undefined where it cannot be known (no /proc, no libc).
 */
export function fdHeadroom(): { limit: number; open: number } | undefined {
  const fdDir =
    process.platform === 'linux' ? '/proc/self/fd' : process.platform === 'darwin' ? '/dev/fd' : undefined;
  if (!fdDir) return undefined;
  try {
    const c = loadLibc();
    const buf = Buffer.alloc(16);
    if (c.getrlimit(process.platform === 'linux' ? 7 : 8, buf) !== 0) return undefined;
    const limit = Number(buf.readBigUInt64LE(0));
    return { limit, open: readdirSync(fdDir).length };
  } catch {
    return undefined;
  }
}

/** Close an fd we made but did not hand over. */
export function closeFd(fd: number): void {
  loadLibc().close(fd);
}
