// Everything that touches libc, through koffi (loaded lazily: nothing here costs anything
// unless it is used): the per-OS constant table, setsockopt/getsockopt on a socket's fd, the
// fd behind a Node socket, errors shaped like Node's own, the file-descriptor limit.
// Node lacks several socket options and any way to make a socket before bind(); this is how
// the rest of the project reaches them.

import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { handleFd, transportSocket } from './internals.js';

type OptSpec = readonly [level: number, name: number] | null;

export interface PlatformTable {
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
  | 'TCP_LINGER2'
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
      TCP_LINGER2: [6, 8],
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
      TCP_LINGER2: null,
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

export interface Libc {
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number;
  getsockopt(fd: number, level: number, name: number, val: Buffer, len: number[]): number;
  socket(domain: number, type: number, proto: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  listen(fd: number, backlog: number): number;
  /** accept4(fd, NULL, NULL, flags) (Linux) */
  accept4?(fd: number, addr: null, len: null, flags: number): number;
  getsockname(fd: number, addr: Buffer, len: number[]): number;
  connect(fd: number, addr: Buffer, len: number): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
  /** fcntl(fd, cmd, int arg) */
  fcntl(fd: number, cmd: number, type: 'int', arg: number): number;
  /** poll() on one struct pollfd (8 bytes: int fd, short events, short revents) */
  poll(fds: Buffer, nfds: number, timeoutMs: number): number;
  getrlimit(resource: number, out: Buffer): number;
  close(fd: number): number;
  if_nametoindex(name: string): number;
  /** ioctl(fd, request, int *out) */
  ioctl(fd: number, request: number, out: number[]): number;
  errno(): number;
}

let libc: Libc | undefined;

export function loadLibc(): Libc {
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
    ...(process.platform === 'linux' ? { accept4: lib.func('int accept4(int, void *, void *, int)') } : {}),
    getsockname: lib.func('int getsockname(int, _Out_ void *, _Inout_ uint32_t *)'),
    connect: lib.func('int connect(int, const void *, uint32_t)'),
    send: lib.func('long send(int, const void *, size_t, int)'),
    fcntl: lib.func('int fcntl(int, int, ...)'),
    poll: lib.func('int poll(_Inout_ void *, unsigned long, int)'),
    getrlimit: lib.func('int getrlimit(int, _Out_ void *)'),
    close: lib.func('int close(int)'),
    if_nametoindex: lib.func('unsigned int if_nametoindex(const char *)'),
    ioctl: lib.func('int ioctl(int, unsigned long, _Out_ int *)'),
    errno: () => koffi.errno() as number,
  };
  return libc;
}

// errno number → name; where two names share a number (EAGAIN/EWOULDBLOCK), the first, as strerror
const ERRNO_NAMES = new Map<number, string>();
for (const [k, v] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(v)) ERRNO_NAMES.set(v, k);

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

export function setLinger(fd: number, seconds: number): void {
  const [level, opt] = spec('SO_LINGER');
  const c = loadLibc();
  const buf = Buffer.alloc(8);
  buf.writeInt32LE(1, 0);
  buf.writeInt32LE(seconds, 4);
  if (c.setsockopt(fd, level, opt, buf, 8) !== 0) throw sysError('setsockopt SO_LINGER', c.errno());
}

export function getLinger(fd: number): { onoff: boolean; seconds: number } {
  const [level, opt] = spec('SO_LINGER');
  const c = loadLibc();
  const buf = Buffer.alloc(8);
  const len = [8];
  if (c.getsockopt(fd, level, opt, buf, len) !== 0) throw sysError('getsockopt SO_LINGER', c.errno());
  return { onoff: buf.readInt32LE(0) !== 0, seconds: buf.readInt32LE(4) };
}

/** The OS file descriptor behind a net.Socket, net.Server or dgram.Socket, if it has one. */
export const socketFd = handleFd;

export function requireFd(sock: unknown, option: string): number {
  const fd = socketFd(sock);
  if (fd === undefined)
    throw new SocketOptionError(
      option,
      'the socket has no file descriptor (not open yet, or shared by cluster)',
      'EBADF',
    );
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
    const RLIMIT_NOFILE = process.platform === 'linux' ? 7 : 8;
    if (c.getrlimit(RLIMIT_NOFILE, buf) !== 0) return undefined;
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

/** SO_PEERCRED of a connected Unix-domain socket (Linux): the peer process's pid, uid and gid. */
export function peerCredentials(sock: unknown): { pid: number; uid: number; gid: number } | undefined {
  if (process.platform !== 'linux') return undefined;
  const fd = socketFd(sock);
  if (fd === undefined) return undefined;
  try {
    const c = loadLibc();
    const buf = Buffer.alloc(12);
    const len = [12];
    if (c.getsockopt(fd, 1 /* SOL_SOCKET */, 17 /* SO_PEERCRED */, buf, len) !== 0) return undefined;
    return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
  } catch {
    return undefined;
  }
}

/**
 * Bytes in a TCP socket's kernel send queue, sent or not, not yet acknowledged (Linux SIOCOUTQ);
 * undefined where it cannot be read.
 */
export function sendQueueBytes(sock: unknown): number | undefined {
  if (process.platform !== 'linux') return undefined;
  const fd = socketFd(sock);
  if (fd === undefined) return undefined;
  try {
    const out = [0];
    return loadLibc().ioctl(fd, 0x5411 /* SIOCOUTQ = TIOCOUTQ */, out) === 0 ? out[0] : undefined;
  } catch {
    return undefined;
  }
}

/** Bytes received and not yet read (ioctl SIOCINQ, Linux); undefined elsewhere or when it fails. */
export function receiveQueueBytes(sock: unknown): number | undefined {
  if (process.platform !== 'linux') return undefined;
  const fd = socketFd(sock);
  if (fd === undefined) return undefined;
  try {
    const out = [0];
    return loadLibc().ioctl(fd, 0x541b /* SIOCINQ = FIONREAD */, out) === 0 ? out[0] : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Accept one pending connection on a listening fd that Node does not watch (Linux accept4,
 * non-blocking and close-on-exec); undefined when none is waiting (EAGAIN).
 */
export function acceptOne(fd: number): number | undefined {
  const c = loadLibc();
  if (!c.accept4) throw new SocketOptionError('accept4', `not available on ${process.platform}`, 'ENOSYS');
  const r = c.accept4(fd, null, null, 0o4000 /* SOCK_NONBLOCK */ | 0o2000000 /* SOCK_CLOEXEC */);
  if (r >= 0) return r;
  const errno = c.errno();
  if (errno === 11 /* EAGAIN */ || errno === 103 /* ECONNABORTED */) return undefined;
  throw sysError('accept4', errno);
}

/** What Linux's TCP_INFO says about a connection (the fields ss -ti shows). */
export interface TcpInfo {
  state: number;
  /** retransmissions of the current segment (resets once acknowledged) */
  retransmits: number;
  /** every retransmission over the connection's life */
  totalRetrans: number;
  /** retransmission timeout, µs */
  rtoUs: number;
  /** smoothed round-trip time and its variation, µs */
  rttUs: number;
  rttVarUs: number;
  /** congestion window, segments */
  cwnd: number;
  /** segments sent and not yet acknowledged */
  unacked: number;
  /** the kernel's estimate of the delivery rate, bytes/s (0 where the kernel does not give it) */
  deliveryRate: number;
  bytesAcked: number;
  bytesReceived: number;
}

/** getsockopt(TCP_INFO) on a connected TCP socket (Linux); undefined elsewhere or when it fails. */
export function tcpInfo(sock: unknown): TcpInfo | undefined {
  if (process.platform !== 'linux') return undefined;
  const fd = socketFd(sock instanceof Socket ? transportSocket(sock) : sock);
  if (fd === undefined) return undefined;
  try {
    const c = loadLibc();
    const buf = Buffer.alloc(232);
    const len = [232];
    if (c.getsockopt(fd, 6 /* IPPROTO_TCP */, 11 /* TCP_INFO */, buf, len) !== 0) return undefined;
    const n = len[0]!;
    const u32 = (o: number) => (n >= o + 4 ? buf.readUInt32LE(o) : 0);
    const u64 = (o: number) => (n >= o + 8 ? Number(buf.readBigUInt64LE(o)) : 0);
    return {
      state: buf[0]!,
      retransmits: buf[2]!,
      totalRetrans: u32(100),
      rtoUs: u32(8),
      rttUs: u32(68),
      rttVarUs: u32(72),
      cwnd: u32(80),
      unacked: u32(24),
      deliveryRate: u64(160),
      bytesAcked: u64(120),
      bytesReceived: u64(128),
    };
  } catch {
    return undefined;
  }
}

/** `rtt 0.05/0.02 ms, rto 201 ms, cwnd 10, unacked 0, retrans 0/0, delivery 1.2 MB/s` */
export function formatTcpInfo(i: TcpInfo): string {
  const ms = (us: number) => (us / 1000).toFixed(us < 10_000 ? 2 : 0);
  return `rtt ${ms(i.rttUs)}/${ms(i.rttVarUs)} ms, rto ${ms(i.rtoUs)} ms, cwnd ${i.cwnd}, unacked ${i.unacked}, retrans ${i.retransmits}/${i.totalRetrans}${i.deliveryRate ? `, delivery ${(i.deliveryRate / 1e6).toFixed(1)} MB/s` : ''}`;
}
